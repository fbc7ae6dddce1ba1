r"""1-Lipschitz activations with their scales exposed, for graphical residual blocks.

The masked layers they follow are in :mod:`sirenvae.layers`.

References:
    | Residual Flows for Invertible Generative Modeling (Chen et al., 2019)
    | https://arxiv.org/abs/1906.02735
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ELU", "LipSwish", "Tanh", "activation"]


class _Activation(nn.Module):
    r"""A 1-Lipschitz activation :math:`h(a) = \mathrm{outer} \cdot \phi(\mathrm{inner} \cdot a)`.

    Exposing the scales lets a network fold them into its (small) weight matrices instead of
    scaling its (large) activations, and :meth:`phi_jvp` returns :math:`\phi(t)` with
    :math:`\phi'(t) \odot \delta` for exact log-determinants.
    """

    def scales(self) -> tuple[Tensor | float, Tensor | float]:
        """``(inner, outer)``."""
        return 1.0, 1.0

    @classmethod
    def stacked_scales(cls, activations: list[_Activation], like: Tensor) -> tuple[Tensor, Tensor]:
        """``(inner, outer)`` of several activations of this type as vectors, computed in one pass
        (the same values as each one's :meth:`scales`), with ``like``'s dtype and device.
        """
        pairs = [a.scales() for a in activations]
        return tuple(
            torch.stack([torch.as_tensor(p[i], dtype=like.dtype, device=like.device) for p in pairs])
            for i in range(2)
        )

    def phi(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def phi_jvp(self, t: Tensor, delta: Tensor) -> tuple[Tensor, Tensor]:
        r""":math:`\phi(t)` and :math:`\phi'(t) \odot \delta`."""
        raise NotImplementedError

    def derivatives(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        r""":math:`\phi(t)`, :math:`\phi'(t)` and :math:`\phi''(t)`, for hand-written backward passes
        (:mod:`sirenvae.flows.fused`); an activation without it takes the autograd path.
        """
        raise NotImplementedError

    def forward(self, a: Tensor) -> Tensor:
        inner, outer = self.scales()
        return outer * self.phi(inner * a)


class LipSwish(_Activation):
    r"""LipSwish :math:`h(x) = x \, \mathrm{sigmoid}(\beta x) / 1.1` with learnable :math:`\beta > 0`.

    Its derivative peaks at about 1.0998 before the division, so :math:`h` is 1-Lipschitz for
    every :math:`\beta` (Chen et al., 2019). Computed as :math:`\mathrm{silu}(\beta x) / (1.1 \beta)`.
    """

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        # beta = softplus(raw) keeps it positive
        self.raw_beta = nn.Parameter(torch.tensor(math.log(math.expm1(beta))))

    @property
    def beta(self) -> Tensor:
        return F.softplus(self.raw_beta)

    def scales(self) -> tuple[Tensor, Tensor]:
        beta = self.beta
        return beta, 1 / (1.1 * beta)

    @classmethod
    def stacked_scales(cls, activations: list[_Activation], like: Tensor) -> tuple[Tensor, Tensor]:
        beta = F.softplus(torch.stack([a.raw_beta for a in activations]))
        return beta, 1 / (1.1 * beta)

    def phi(self, t: Tensor) -> Tensor:
        return F.silu(t)

    def phi_jvp(self, t: Tensor, delta: Tensor) -> tuple[Tensor, Tensor]:
        y = F.silu(t)
        if torch.is_grad_enabled() and (t.requires_grad or delta.requires_grad):
            s = torch.sigmoid(t)
            return y, delta * s * (1 + t * (1 - s))
        # one fused kernel (it has no double backward, hence the branch)
        return y, torch.ops.aten.silu_backward(delta.expand_as(t), t)

    def derivatives(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        # with s = sigmoid(t): phi' = s + t s (1 - s), phi'' = s (1 - s) (2 + t - 2 t s); phi by silu,
        # bit for bit as phi(); tensor-tensor kernels (a Python scalar costs a cast per call)
        s = torch.sigmoid(t)
        y = F.silu(t)
        s1 = torch.addcmul(s, s, s, value=-1)
        d2 = torch.add(t, y, alpha=-2).add_(2).mul_(s1)
        return y, torch.addcmul(s, t, s1), d2


class ELU(_Activation):
    r"""ELU with :math:`\alpha = 1` (1-Lipschitz)."""

    def phi(self, t: Tensor) -> Tensor:
        return F.elu(t)

    def phi_jvp(self, t: Tensor, delta: Tensor) -> tuple[Tensor, Tensor]:
        y = F.elu(t)
        return y, delta * torch.where(t > 0, torch.ones_like(t), y + 1)

    def derivatives(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        y = F.elu(t)
        d2 = torch.where(t > 0, torch.zeros_like(t), y + 1)
        return y, torch.where(t > 0, torch.ones_like(t), d2), d2


class Tanh(_Activation):
    """Hyperbolic tangent (1-Lipschitz)."""

    def phi(self, t: Tensor) -> Tensor:
        return torch.tanh(t)

    def phi_jvp(self, t: Tensor, delta: Tensor) -> tuple[Tensor, Tensor]:
        y = torch.tanh(t)
        return y, delta * (1 - y * y)

    def derivatives(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        y = torch.tanh(t)
        d1 = 1 - y * y
        return y, d1, -2 * y * d1


_ACTIVATIONS = {"lipswish": LipSwish, "elu": ELU, "tanh": Tanh}


def activation(name: str) -> _Activation:
    """Makes a 1-Lipschitz activation by name: ``lipswish``, ``elu`` or ``tanh``."""
    try:
        return _ACTIVATIONS[name.lower()]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(_ACTIVATIONS)}") from None

r"""Transforms with a one-pass log-determinant, and zuko's lazy pattern for conditioning.

A *lazy* module owns parameters; calling it with a context, ``module(c)``, returns a short-lived
:class:`torch.distributions.Transform` (or distribution) in which everything that depends only on
the parameters is computed once. Directions are named by :attr:`Transform.inv`, never by a flag.

Why not zuko's own lazy classes: zuko is an extra (``sirenvae[maf]``, for the VAE+MAF baseline and
the benchmarks), not a base dependency, because importing it changes torch for the whole process:
it sets ``Distribution._validate_args = False`` and ``Distribution.arg_constraints = {}`` (so
``Normal(0, -1)`` no longer raises, in the user's code too) and patches ``call_and_ladj`` onto
torch's ``Transform``. Subclassing zuko would import it with :mod:`sirenvae.flows`, which does not
import it today, to delete about 60 lines (the lazy transform, inverse, composition, distribution
and ``Flow``; ``solve`` and the transforms stay ours). Nothing is lost: the classes share zuko's
duck types, so a sequence of zuko lazy transforms runs inside our :class:`Flow` and a GRF inside
``zuko.flows.Flow`` (``log_prob``, ``rsample``, ``rsample_and_log_prob`` agree to 4e-16 in float64;
only ``solve`` needs every part to be ours), and our transforms define ``call_and_ladj``
themselves, so zuko's patch leaves them bit-identical. Its import cost (about 5 ms after torch)
did not decide it.

References:
    | zuko: Normalizing flows in PyTorch (Rozet et al., 2022)
    | https://github.com/probabilists/zuko
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.distributions import constraints

from sirenvae.flows.root_finding import InverseResult

__all__ = [
    "ComposedTransform",
    "Inverse",
    "LazyComposedTransform",
    "LazyInverse",
    "LazyTransform",
    "Transform",
]


class Transform(torch.distributions.Transform):
    r"""A bijection of real vectors with :meth:`call_and_ladj`, the value and its log-determinant
    :math:`\log |\det \partial y / \partial x|` in one pass.

    Subclasses implement ``_call``, ``_inverse`` and :meth:`call_and_ladj` (or
    ``log_abs_det_jacobian``). Nothing is cached.
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self) -> None:
        super().__init__(cache_size=0)

    @property
    def inv(self) -> Transform:
        return Inverse(self)

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(y, log|det J|)`` at ``x``."""
        y = self(x)
        return y, self.log_abs_det_jacobian(x, y)

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        return self.call_and_ladj(x)[1]


class Inverse(Transform):
    """The inverse of a :class:`Transform`; its own inverse is the original."""

    def __init__(self, transform: Transform) -> None:
        super().__init__()
        self.transform = transform

    @property
    def inv(self) -> Transform:
        return self.transform

    def _call(self, y: Tensor) -> Tensor:
        return self.transform._inverse(y)

    def _inverse(self, x: Tensor) -> Tensor:
        return self.transform(x)

    def call_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        x = self.transform._inverse(y)
        return x, -self.transform.log_abs_det_jacobian(x, y)

    def log_abs_det_jacobian(self, y: Tensor, x: Tensor) -> Tensor:
        return -self.transform.log_abs_det_jacobian(x, y)


class ComposedTransform(Transform):
    r""":math:`f = f_n \circ \dots \circ f_1`; the empty composition is the identity.

    When every part solves its inverse by root finding, :meth:`solve` reports each part's
    iterations.
    """

    def __init__(self, *transforms: Transform) -> None:
        super().__init__()
        self.transforms = transforms

    @property
    def inv(self) -> ComposedTransform:
        """The inverses in reverse order, so that each part computes its own log-determinant."""
        return ComposedTransform(*(t.inv for t in reversed(self.transforms)))

    def _call(self, x: Tensor) -> Tensor:
        for t in self.transforms:
            x = t(x)
        return x

    def _inverse(self, y: Tensor) -> Tensor:
        for t in reversed(self.transforms):
            y = t.inv(y)
        return y

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        ladj = torch.zeros((), dtype=x.dtype, device=x.device)
        for t in self.transforms:
            x, l = t.call_and_ladj(x)
            ladj = ladj + l
        return x, ladj

    def solve(self, y: Tensor, **options) -> InverseResult:
        """Inverts without gradients, last part first, and reports the iterations of each part.

        Keyword arguments override the parts' :class:`~sirenvae.flows.RootFinding` options.
        """
        result = InverseResult(y, (), 0.0, True)
        for t in reversed(self.transforms):
            result = result.then(t.solve(result.z, **options))
        return result


class LazyTransform(nn.Module):
    """A module that returns a :class:`Transform` when called with a context (or ``None``)."""

    def forward(self, c: Tensor | None = None) -> Transform:
        raise NotImplementedError

    @property
    def inv(self) -> LazyTransform:
        """The lazy inverse: ``self.inv(c) == self(c).inv``."""
        return LazyInverse(self)


class LazyInverse(LazyTransform):
    """The inverse of a lazy transform (it shares the original's parameters)."""

    def __init__(self, transform: LazyTransform) -> None:
        super().__init__()
        self.transform = transform

    def forward(self, c: Tensor | None = None) -> Transform:
        return self.transform(c).inv

    @property
    def inv(self) -> LazyTransform:
        return self.transform


class LazyComposedTransform(LazyTransform):
    """Lazy transforms in sequence: ``self(c)`` composes ``t(c)`` for each ``t``."""

    def __init__(self, *transforms: LazyTransform) -> None:
        super().__init__()
        self.transforms = nn.ModuleList(transforms)

    def forward(self, c: Tensor | None = None) -> ComposedTransform:
        return ComposedTransform(*(t(c) for t in self.transforms))

    def __len__(self) -> int:
        return len(self.transforms)


def check_context(c: Tensor | None, features: int) -> Tensor | None:
    """The context a lazy transform of ``features`` context inputs is called with (``None`` if none)."""
    if features == 0:
        return None
    if c is None:
        raise ValueError(f"this flow needs a context of {features} features")
    if c.shape[-1:] != (features,):
        raise ValueError(f"expected a context with {features} features, got shape {tuple(c.shape)}")
    return c


def check_inputs(z: Tensor, features: int, dtype: torch.dtype) -> None:
    """One clear line for inputs of the wrong size or dtype (before a matmul fails deep in torch)."""
    if z.shape[-1:] != (features,):
        raise ValueError(f"expected inputs with {features} features, got shape {tuple(z.shape)}")
    if z.dtype != dtype:
        raise ValueError(f"inputs are {z.dtype} but the flow's parameters are {dtype}; call .to({z.dtype})")


def as_lazy(transform: LazyTransform | Sequence[LazyTransform]) -> LazyTransform:
    """A lazy transform, composing a sequence of them."""
    if isinstance(transform, LazyTransform):
        return transform
    return LazyComposedTransform(*transform)

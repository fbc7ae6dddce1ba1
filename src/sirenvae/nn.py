r"""Neural building blocks: masked linear layers with spectral normalisation, 1-Lipschitz activations.

References:
    | Invertible Residual Networks (Behrmann et al., 2019)
    | https://arxiv.org/abs/1811.00995
    | Residual Flows for Invertible Generative Modeling (Chen et al., 2019)
    | https://arxiv.org/abs/1906.02735
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sirenvae.defaults import KAPPA
from sirenvae.masks import inclusion_mask

__all__ = ["ELU", "LipSwish", "MaskedLinear", "MaskedMLP", "SpectralLinear", "Tanh", "activation"]


class SpectralLinear(nn.Module):
    r"""What a masked linear layer with a spectral bound does whatever its layout: power iteration per
    connected component of the mask, :math:`\sigma = \max_c \lVert W_c v_c \rVert`, and
    :math:`(W \odot M)_s = (W \odot M) / \max(1, \sigma / \kappa)` on the bounded inputs.

    A subclass gives the layout: ``masked()`` (:math:`W \odot M`), ``_bounded_weight(W)`` (its
    bounded part), ``_matvec`` / ``_rmatvec`` (products of that part with the power vectors),
    ``_scaled(W, scale, factor)`` (the scale on the bounded inputs, ``factor`` on the others) and
    ``sync_power_vectors()``; and the buffers ``u``, ``v``, ``_row_component``, ``_col_component``
    with ``_components``, ``kappa`` and ``n_power_iterations``.
    """

    def _normalize(self, x: Tensor, component: Tensor) -> Tensor:
        sq = torch.zeros(self._components, dtype=x.dtype, device=x.device).index_add(0, component, x * x)
        return x / sq.sqrt().clamp(min=1e-12)[component]

    def _component_norms(self, y: Tensor) -> Tensor:
        sq = torch.zeros(self._components, dtype=y.dtype, device=y.device)
        return sq.index_add(0, self._row_component, y * y).sqrt()

    def sigma(self, W: Tensor, update: bool = False) -> Tensor:
        r"""The estimate :math:`\max_c \lVert W_c v_c \rVert` of the spectral norm of the (masked) ``W``.

        With :math:`v` held fixed its gradient is :math:`u v^\top`, :math:`u = W v / \lVert W v \rVert`,
        as for :math:`u^\top W v`, and it is never smaller. With ``update``, one power iteration
        runs first and shares this matrix-vector product.
        """
        return self._sigma(self._bounded_weight(W), update)

    def _sigma(self, Wb: Tensor, update: bool) -> Tensor:
        if update:
            with torch.no_grad():
                v = self._normalize(self._rmatvec(Wb, self.u), self._col_component)
                self.v.copy_(v)
        else:
            # a clone: the buffer changes in place at the next training step, autograd must not see it
            v = self.v.clone() if torch.is_grad_enabled() else self.v
        Wv = self._matvec(Wb, v)
        norms = self._component_norms(Wv)
        if update:
            with torch.no_grad():
                self.u.copy_(Wv / norms.clamp(min=1e-12)[self._row_component])
        return norms.max()

    @torch.no_grad()
    def power_iterate(self, n: int) -> None:
        r"""Runs ``n`` power iterations on :math:`W \odot M`, updating the persistent vectors.

        The iteration runs separately on every connected component of the mask (the vectors are
        normalised per component). Graphical masks are close to block-diagonal; a single global
        iteration lets the components of blocks that are not dominant decay to round-off, and
        recovers them only hundreds of iterations after training makes one of them dominant.
        """
        if self.kappa is None:
            return
        Wb = self._bounded_weight(self.masked())
        for _ in range(n):
            self._sigma(Wb, update=True)

    def train(self, mode: bool = True):
        if self.training and not mode:
            self.sync_power_vectors()
        return super().train(mode)

    def normalized_weight(self, update: bool | None = None, factor: Tensor | float = 1.0) -> Tensor:
        r""":math:`(W \odot M)_s`, the masked and spectrally normalised weight, times ``factor``.

        Arguments:
            update: Run a power iteration first; by default in training mode only.
            factor: A scalar folded into the same multiplication (e.g. an activation's scale).
        """
        W = self.masked()
        if self.kappa is None:
            return W * factor if not isinstance(factor, float) or factor != 1.0 else W
        update = self.training if update is None else update
        if update and self.n_power_iterations > 1:
            self.power_iterate(self.n_power_iterations - 1)
        scale = factor / torch.clamp(self.sigma(W, update=update) / self.kappa, min=1.0)
        return self._scaled(W, scale, factor)


class MaskedLinear(SpectralLinear):
    r"""A linear layer :math:`y = (W \odot M)_s x + b` with a fixed mask and an optional spectral bound.

    With ``kappa`` set, :math:`(W \odot M)_s = (W \odot M) / \max(1, \sigma / \kappa)` where
    :math:`\sigma` estimates the spectral norm of :math:`W \odot M` by power iteration, run per
    connected component of the mask. The power vectors are persistent buffers, updated in training
    mode only; leaving training mode sets them to the exact top singular vectors, so in ``eval()``
    the bound holds exactly and no forward pass updates anything.

    Arguments:
        mask: ``(out, in)`` boolean mask, kept as a buffer.
        kappa: The spectral bound (``None``: no normalisation).
        bounded_columns: Bound only the first this many input columns (the flow's own variables);
            the remaining ones (a context) are free, since invertibility in :math:`z` only needs
            :math:`\mathrm{Lip}_z(g) < 1`. All columns by default.
        n_power_iterations: Power iterations per forward pass in training mode.
        bias: Whether to learn a bias.
    """

    def __init__(
        self,
        mask: Tensor,
        *,
        kappa: float | None = KAPPA,
        n_power_iterations: int = 1,
        bias: bool = True,
        bounded_columns: int | None = None,
    ) -> None:
        super().__init__()
        mask = torch.as_tensor(mask).bool()
        if mask.ndim != 2:
            raise ValueError(f"mask must be (out, in), got shape {tuple(mask.shape)}")
        if kappa is not None and not 0 < kappa:
            raise ValueError(f"kappa must be positive, got {kappa}")
        out_features, in_features = mask.shape
        self.kappa = kappa
        self.n_power_iterations = n_power_iterations
        self.register_buffer("mask", mask)
        # a float copy: multiplying by a bool mask would convert it on every call
        self.register_buffer("_mask_f", mask.float(), persistent=False)
        fan_in = mask.sum(dim=1, keepdim=True).clamp(min=1).float()
        bound = 1 / fan_in.sqrt()
        self.weight = nn.Parameter((torch.rand(out_features, in_features) * 2 - 1) * bound * mask)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.bounded_columns = in_features if bounded_columns is None else bounded_columns
        if not 0 < self.bounded_columns <= in_features:
            raise ValueError(f"bounded_columns must lie in [1, {in_features}], got {bounded_columns}")
        if kappa is not None:
            rows, cols, n = _mask_components(mask[:, : self.bounded_columns])
            self.register_buffer("_row_component", rows, persistent=False)
            self.register_buffer("_col_component", cols, persistent=False)
            self._components = n
            self.register_buffer("u", self._normalize(torch.randn(out_features), rows))
            self.register_buffer("v", self._normalize(torch.randn(self.bounded_columns), cols))
            self.power_iterate(50)

    @property
    def in_features(self) -> int:
        return self.mask.shape[1]

    @property
    def out_features(self) -> int:
        return self.mask.shape[0]

    @torch.no_grad()
    def sync_power_vectors(self) -> None:
        """Sets the power vectors to the exact top singular vectors of every mask component.

        Called when the layer leaves training mode, so that in ``eval()`` the normalised weight's
        spectral norm is at most ``kappa`` up to round-off, however far training moved the weights.
        """
        if self.kappa is None:
            return
        W = self._bounded_weight(self.weight * self.mask).double()
        u = torch.zeros_like(self.u, dtype=torch.float64)
        v = torch.zeros_like(self.v, dtype=torch.float64)
        for c in range(self._components):
            rows = torch.nonzero(self._row_component == c).flatten()
            cols = torch.nonzero(self._col_component == c).flatten()
            if rows.numel() == 0 or cols.numel() == 0:
                continue
            U, _, Vh = torch.linalg.svd(W[rows][:, cols], full_matrices=False)
            u[rows] = U[:, 0]
            v[cols] = Vh[0]
        self.u.copy_(u)
        self.v.copy_(v)

    def masked(self) -> Tensor:
        r""":math:`W \odot M`."""
        return self.weight * self._mask_f

    def _bounded_weight(self, W: Tensor) -> Tensor:
        return W if self.bounded_columns == W.shape[1] else W[:, : self.bounded_columns]

    def _matvec(self, Wb: Tensor, v: Tensor) -> Tensor:
        return Wb @ v

    def _rmatvec(self, Wb: Tensor, u: Tensor) -> Tensor:
        return Wb.T @ u

    def _scaled(self, W: Tensor, scale: Tensor, factor: Tensor | float) -> Tensor:
        if self.bounded_columns == W.shape[1]:
            return W * scale
        ones = torch.ones(W.shape[1] - self.bounded_columns, dtype=W.dtype, device=W.device)
        return W * torch.cat([scale.expand(self.bounded_columns), ones * factor])

    def spectral_norm(self) -> Tensor:
        """The exact spectral norm of the normalised weight (a certificate, not used in training)."""
        with torch.no_grad():
            W = self._bounded_weight(self.normalized_weight(update=False))
            return torch.linalg.matrix_norm(W.double(), ord=2)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.normalized_weight(), self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"effective_weights={int(self.mask.sum())}, kappa={self.kappa}"
        )


class MaskedMLP(nn.Module):
    r"""An MLP (ELU, no spectral bound) whose output :math:`o` depends only on the inputs in ``sets[o]``.

    Hidden units carry the sets of the outputs (``hidden_per_set`` per distinct set); a connection is
    kept iff the receiving unit's set contains the sending unit's.

    Arguments:
        sets: ``(O, I)`` boolean, the inputs each output may see.
        hidden_per_set: Hidden units per distinct output set and layer.
        hidden_layers: The number of hidden layers.
        width: With full sets (a plain MLP), the hidden width instead.
    """

    def __init__(self, sets: Tensor, hidden_per_set: int, hidden_layers: int, width: int = 0) -> None:
        super().__init__()
        sets = sets.bool()
        if bool(sets.all()) and width:
            hidden = torch.ones(width, sets.shape[1], dtype=torch.bool)
        else:
            hidden = torch.unique(sets, dim=0).repeat_interleave(hidden_per_set, dim=0)
        inner = [inclusion_mask(hidden, hidden)] * (hidden_layers - 1)
        masks = [hidden, *inner, inclusion_mask(sets, hidden)]
        self.layers = nn.ModuleList(MaskedLinear(M, kappa=None) for M in masks)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers[:-1]:
            x = F.elu(layer(x))
        return self.layers[-1](x)


class _Activation(nn.Module):
    r"""A 1-Lipschitz activation :math:`h(a) = \mathrm{outer} \cdot \phi(\mathrm{inner} \cdot a)`.

    Exposing the scales lets a network fold them into its (small) weight matrices instead of
    scaling its (large) activations, and :meth:`phi_jvp` returns :math:`\phi(t)` with
    :math:`\phi'(t) \odot \delta` for exact log-determinants.
    """

    def scales(self) -> tuple[Tensor | float, Tensor | float]:
        """``(inner, outer)``."""
        return 1.0, 1.0

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


def _mask_components(mask: Tensor) -> tuple[Tensor, Tensor, int]:
    """Connected components of the bipartite graph of a mask: a label per row and per column."""
    import networkx as nx

    out_features, in_features = mask.shape
    G = nx.Graph()
    G.add_nodes_from(range(out_features + in_features))
    r, c = torch.nonzero(mask, as_tuple=True)
    G.add_edges_from(zip(r.tolist(), (c + out_features).tolist(), strict=True))
    label = torch.empty(out_features + in_features, dtype=torch.long)
    n = 0
    for n, comp in enumerate(nx.connected_components(G)):
        label[list(comp)] = n
    return label[:out_features].clone(), label[out_features:].clone(), n + 1

r"""The dense layout of :class:`~sirenvae.layers.MaskedLinear`: the whole ``(out, in)`` weight and mask.

The fastest layout on small graphs. Power iteration runs per connected component of the mask;
leaving training mode sets the power vectors to the exact top singular vectors (an SVD per
component). A graphical flow's hidden layers are mostly their diagonal blocks: where the
connections between different variables are few, :meth:`DenseLinear.batch_last` computes one
batched matmul over the diagonal blocks and one small matmul for the rest. Layers of one shape and
mask (the same layer of every block of a flow) prepare in one pass (:func:`prepare_stacked`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sirenvae.layers.linear import MaskedLinear, Prepared
from sirenvae.masks import BlockLayer

__all__ = ["DenseLinear", "prepare_stacked", "stackable"]


class DenseLinear(MaskedLinear, layout="dense"):
    r"""A :class:`~sirenvae.layers.MaskedLinear` storing ``weight`` and ``mask`` as ``(out, in)``
    matrices; made by ``MaskedLinear(structure, layout="dense")``.
    """

    def _build(self, structure: BlockLayer, bias: bool, by_blocks: bool) -> None:
        mask = structure.dense()
        out_features, in_features = mask.shape
        self.register_buffer("mask", mask)
        # a float copy: multiplying by a bool mask would convert it on every call
        self.register_buffer("_mask_f", mask.float(), persistent=False)
        fan_in = mask.sum(dim=1, keepdim=True).clamp(min=1).float()
        bound = 1 / fan_in.sqrt()
        self.weight = nn.Parameter((torch.rand(out_features, in_features) * 2 - 1) * bound * mask)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        if self.kappa is not None:
            rows, cols, n = _mask_components(mask[:, : self.bounded_columns])
            self.register_buffer("_row_component", rows, persistent=False)
            self.register_buffer("_col_component", cols, persistent=False)
            self._components = n
            self.register_buffer("u", self._normalize(torch.randn(out_features), rows))
            self.register_buffer("v", self._normalize(torch.randn(self.bounded_columns), cols))
            self.power_iterate(50)
        square = structure.diagonal and structure.in_blocks == structure.out_blocks
        self._split = by_blocks and square and self._plan_split(mask)

    def _plan_split(self, mask: Tensor) -> bool:
        """Plans the layer as diagonal blocks plus off-diagonal block rows/columns.

        Units of one variable form ``out_units x in_units`` diagonal blocks (a batched matmul); the
        few blocks between different variables are gathered into one small dense matmul. Returns
        False (one dense matmul) when the off-diagonal part is not much smaller than the whole.
        """
        D, (ko, ki) = self.structure.out_blocks, self.units
        blocks = mask.view(D, ko, D, ki).any(dim=(1, 3))
        blocks.fill_diagonal_(False)
        rows = torch.nonzero(blocks.any(dim=1)).flatten()
        cols = torch.nonzero(blocks.any(dim=0)).flatten()
        if rows.numel() * cols.numel() > 0.25 * D * D:
            return False
        r = (rows[:, None] * ko + torch.arange(ko)).flatten()
        c = (cols[:, None] * ki + torch.arange(ki)).flatten()
        off = mask & ~torch.block_diag(*([torch.ones(ko, ki, dtype=torch.bool)] * D))
        self.register_buffer("_off_rows", r, persistent=False)
        self.register_buffer("_off_cols", c, persistent=False)
        self.register_buffer("_off_mask", off[r][:, c], persistent=False)
        return True

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

    def to_dense(self, weight: Tensor | None = None) -> Tensor:
        return self.masked() if weight is None else weight

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

    def _parts(self, W: Tensor) -> tuple[Tensor | None, Tensor | None]:
        s = self.structure
        if not s.diagonal:
            return None, None
        (G, ko, ki), n = (s.out_blocks, *self.units), s.in_blocks
        # contiguous once here rather than a copy inside every bmm
        diagonal = W.view(G, ko, n, ki).diagonal(dim1=0, dim2=2).permute(2, 0, 1).contiguous()
        off = None
        if self._split and self._off_rows.numel():
            off = W[self._off_rows][:, self._off_cols] * self._off_mask
        return diagonal, off

    def batch_last(self, x: Tensor, prepared: Prepared | None = None) -> Tensor:
        p = self.prepare() if prepared is None else prepared
        W, b = p.weight, p.bias
        if not self._split:
            return W @ x if b is None else torch.addmm(b[:, None], W, x)
        G, (ko, ki), N = self.structure.out_blocks, self.units, x.shape[-1]
        b = W.new_zeros(G * ko) if b is None else b
        out = torch.baddbmm(b.view(G, ko, 1), p.diagonal, x.view(G, ki, N)).view(G * ko, N)
        if p.off is not None:
            out.index_add_(0, self._off_rows, p.off @ x[self._off_cols])
        return out

    def batch_last_vjp(
        self, prepared: Prepared, grad: Tensor, x: Tensor, *, weight_grad: bool = True, off_grad: bool = True
    ) -> tuple[Tensor, Prepared]:
        if not self._split:
            gW = grad @ x.T if weight_grad else None
            return prepared.weight.T @ grad, Prepared(gW, None, None, None)
        G, (ko, ki), N = self.structure.out_blocks, self.units, x.shape[-1]
        grad3 = grad.view(G, ko, N)
        g_diagonal = torch.bmm(grad3, x.view(G, ki, N).transpose(1, 2))
        gx = torch.bmm(prepared.diagonal.transpose(1, 2), grad3).view(G * ki, N)
        g_off = None
        if prepared.off is not None:
            g_rows = grad[self._off_rows]
            if off_grad:
                g_off = g_rows @ x[self._off_cols].T
            gx.index_add_(0, self._off_cols, prepared.off.T @ g_rows)
        return gx, Prepared(None, None, g_diagonal, g_off)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.normalized_weight(), self.bias)


def stackable(layers: Sequence[MaskedLinear]) -> bool:
    """Whether :func:`prepare_stacked` applies: dense layers with one mask, spectral bound and
    bounded part (the same layer of every block of a flow; the mask is compared by identity of
    construction, so only its shape and the options are checked here).
    """
    first = layers[0]
    return (
        len(layers) > 1
        and all(type(layer) is DenseLinear for layer in layers)
        and first.kappa is not None
        and all(
            layer.weight.shape == first.weight.shape
            and layer.kappa == first.kappa
            and layer.bounded_columns == first.bounded_columns
            and layer.n_power_iterations == first.n_power_iterations
            and layer._split == first._split
            and layer._components == first._components
            and (layer.bias is None) == (first.bias is None)
            for layer in layers
        )
    )


def _scalars(values: Sequence[Tensor | float], like: Tensor) -> Tensor:
    return torch.stack([torch.as_tensor(v, dtype=like.dtype, device=like.device) for v in values])


def prepare_stacked(
    layers: Sequence[DenseLinear],
    update: bool | None,
    factors: Sequence[Tensor | float],
    bias_factors: Sequence[Tensor | float] | None = None,
) -> list[Prepared]:
    r""":meth:`~sirenvae.layers.MaskedLinear.prepare` of several dense layers of one mask in one pass:
    their weights stacked, one batched power iteration and one scaling for all, so that the number
    of operations (what small graphs pay for) does not grow with the layers. The same values up to
    float rounding; every layer's power vectors are updated as by its own ``prepare``.

    Arguments:
        layers: Layers for which :func:`stackable` holds.
        update: Run a power iteration first; by default in training mode only.
        factors: Each layer's ``factor``.
        bias_factors: Each layer's ``bias_factor`` (``None``: the biases as they are).
    """
    first, T = layers[0], len(layers)
    update = first.training if update is None else update
    if update and first.n_power_iterations > 1:
        for layer in layers:
            layer.power_iterate(layer.n_power_iterations - 1)
    W = torch.stack([layer.weight for layer in layers]) * first._mask_f
    bounded = first.bounded_columns
    Wb = W if bounded == W.shape[2] else W[:, :, :bounded]
    rows, cols, C = first._row_component, first._col_component, first._components
    if update:
        with torch.no_grad():
            u = torch.stack([layer.u for layer in layers])
            v = torch.bmm(u.unsqueeze(1), Wb).squeeze(1)
            sq = torch.zeros(T, C, dtype=v.dtype, device=v.device).index_add(1, cols, v * v)
            v = v / sq.sqrt().clamp(min=1e-12)[:, cols]
            torch._foreach_copy_([layer.v for layer in layers], list(v.unbind()))
    else:
        v = torch.stack([layer.v for layer in layers])
    Wv = torch.bmm(Wb, v.unsqueeze(-1)).squeeze(-1)
    norms = torch.zeros(T, C, dtype=Wv.dtype, device=Wv.device).index_add(1, rows, Wv * Wv).sqrt()
    if update:
        with torch.no_grad():
            u = Wv / norms.clamp(min=1e-12)[:, rows]
            torch._foreach_copy_([layer.u for layer in layers], list(u.unbind()))
    factor = _scalars(factors, W)
    scale = factor / torch.clamp(norms.max(dim=1).values / first.kappa, min=1.0)
    if bounded == W.shape[2]:
        W = W * scale[:, None, None]
    else:
        free = W.shape[2] - bounded
        W = W * torch.cat([scale[:, None].expand(T, bounded), factor[:, None].expand(T, free)], 1)[:, None]
    b = None
    if first.bias is not None:
        b = torch.stack([layer.bias for layer in layers])
        if bias_factors is not None:
            b = b * _scalars(bias_factors, b)[:, None]
    diagonal = off = None
    s = first.structure
    if s.diagonal:
        (G, ko, ki), n = (s.out_blocks, *first.units), s.in_blocks
        diagonal = W.view(T, G, ko, n, ki).diagonal(dim1=1, dim2=3).permute(0, 3, 1, 2).contiguous()
        if first._split and first._off_rows.numel():
            off = W[:, first._off_rows][:, :, first._off_cols] * first._off_mask
    parts = [t.unbind() if t is not None else (None,) * T for t in (W, b, diagonal, off)]
    return [Prepared(*p) for p in zip(*parts, strict=True)]


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

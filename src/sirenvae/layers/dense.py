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
from torch.autograd.function import once_differentiable

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
        if not self.structure.diagonal:
            return None, None
        # contiguous once here rather than a copy inside every bmm
        return self._diagonal_view(W).contiguous(), self._off_part(W) if self._computes_split() else None

    def _diagonal_view(self, W: Tensor) -> Tensor:
        """The diagonal blocks of a weight (or of stacked weights: leading dims kept) as a view
        ``(..., groups, out_units, in_units)``.
        """
        s = self.structure
        (G, ko, ki), n = (s.out_blocks, *self.units), s.in_blocks
        return W.view(*W.shape[:-2], G, ko, n, ki).diagonal(dim1=-4, dim2=-2).movedim(-1, -3)

    def _off_part(self, W: Tensor) -> Tensor:
        """The connections between different variables of a weight (leading dims kept), gathered
        into one small matrix (:meth:`_plan_split`).
        """
        return W.index_select(-2, self._off_rows).index_select(-1, self._off_cols) * self._off_mask

    def _computes_split(self) -> bool:
        """Whether weights prepared now compute by blocks (:meth:`batch_last`): only without
        autograd (sampling, the inverse's fixed-point sweeps, evaluation). In training the
        gathers and scatters of the split cost more than the dense matmul they save, forward and
        backward (measured 10-15% of a training step at ecoli70 and arth150, `benchmarks/training.py`).
        """
        return self._split and not torch.is_grad_enabled()

    def batch_last(self, x: Tensor, prepared: Prepared | None = None) -> Tensor:
        p = self.prepare() if prepared is None else prepared
        W, b = p.weight, p.bias
        if p.off is None:
            return W @ x if b is None else torch.addmm(b[:, None], W, x)
        G, (ko, ki), N = self.structure.out_blocks, self.units, x.shape[-1]
        b = W.new_zeros(G * ko) if b is None else b
        out = torch.baddbmm(b.view(G, ko, 1), p.diagonal, x.view(G, ki, N)).view(G * ko, N)
        if p.off.numel():
            out.index_add_(0, self._off_rows, p.off @ x[self._off_cols])
        return out

    def batch_last_vjp(
        self, prepared: Prepared, grad: Tensor, x: Tensor, *, weight_grad: bool = True, off_grad: bool = True
    ) -> tuple[Tensor, Prepared]:
        if prepared.off is None:
            gW = grad @ x.T if weight_grad else None
            return prepared.weight.T @ grad, Prepared(gW, None, None, None)
        G, (ko, ki), N = self.structure.out_blocks, self.units, x.shape[-1]
        grad3 = grad.view(G, ko, N)
        g_diagonal = torch.bmm(grad3, x.view(G, ki, N).transpose(1, 2))
        gx = torch.bmm(prepared.diagonal.transpose(1, 2), grad3).view(G * ki, N)
        g_off = None
        if prepared.off.numel():
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


def _scalars(values: Tensor | Sequence[Tensor | float], like: Tensor) -> Tensor:
    if isinstance(values, Tensor):
        return values.to(like.dtype)
    return torch.stack([torch.as_tensor(v, dtype=like.dtype, device=like.device) for v in values])


def prepare_stacked(
    layers: Sequence[DenseLinear],
    update: bool | None,
    factors: Tensor | Sequence[Tensor | float],
    bias_factors: Tensor | Sequence[Tensor | float] | None = None,
) -> list[Prepared]:
    r""":meth:`~sirenvae.layers.MaskedLinear.prepare` of several dense layers of one mask in one pass:
    their weights stacked, one batched power iteration and one scaling for all, so that the number
    of operations (what small graphs pay for) does not grow with the layers. The same values up to
    float rounding; every layer's power vectors are updated as by its own ``prepare``.

    Arguments:
        layers: Layers for which :func:`stackable` holds.
        update: Run a power iteration first; by default in training mode only.
        factors: Each layer's ``factor`` (a sequence, or a ``(T,)`` tensor).
        bias_factors: Each layer's ``bias_factor`` (``None``: the biases as they are).
    """
    first, T = layers[0], len(layers)
    update = first.training if update is None else update
    if update and first.n_power_iterations > 1:
        for layer in layers:
            layer.power_iterate(layer.n_power_iterations - 1)
    like = layers[0].weight
    factor = _scalars(factors, like)
    bias_factor = None if bias_factors is None or first.bias is None else _scalars(bias_factors, like)
    biases = [layer.bias for layer in layers] if first.bias is not None else []
    W, b, diagonal = _NormalisedStack.apply(
        layers, update, factor, bias_factor, len(biases), *biases, *(l.weight for l in layers)
    )
    off = first._off_part(W) if diagonal is not None and first._computes_split() else None
    parts = [t.unbind() if t is not None else (None,) * T for t in (W, b, diagonal, off)]
    return [Prepared(*p) for p in zip(*parts, strict=True)]


class _NormalisedStack(torch.autograd.Function):
    r"""``apply(layers, update, factor, bias_factor, n_biases, *biases, *weights)``: the stacked
    :math:`(W_t \odot M) f_t / \max(\sigma_t / \kappa, 1)` (the free columns times :math:`f_t`
    alone), biases :math:`b_t f^b_t` and the weights' diagonal blocks, ``(T, out, in)``,
    ``(T, out)`` and ``(T, groups, out_units, in_units)`` (``None`` without biases, or where the
    layer has no diagonal blocks).

    :math:`\sigma_t = \max_c \lVert (W_t v_t)_c \rVert` over the mask's components with :math:`v_t`
    held fixed, so that :math:`\partial \sigma_t / \partial W_t = u v_t^\top` on the bounded
    columns, :math:`u` the normalised rows of the largest component. Autograd records some forty
    small kernels for this per stack; the backward here is a dozen (a training step on a small
    graph pays per kernel). It is differentiable once; blocks with ``fused = False`` prepare apart
    (:func:`~sirenvae.flows.residual.prepare_blocks`), for second derivatives.
    """

    @staticmethod
    def forward(ctx, layers, update, factor, bias_factor, n_biases, *tensors):
        first, T = layers[0], len(layers)
        biases, weights = tensors[:n_biases], tensors[n_biases:]
        W = torch.stack(weights).mul_(first._mask_f)
        bounded = first.bounded_columns
        Wb = W if bounded == W.shape[2] else W[:, :, :bounded]
        rows, cols, C = first._row_component, first._col_component, first._components
        if update:
            u = torch.stack([layer.u for layer in layers])
            v = torch.bmm(u.unsqueeze(1), Wb).squeeze(1)
            sq = torch.zeros(T, C, dtype=v.dtype, device=v.device).index_add_(1, cols, v * v)
            v = v / sq.sqrt_().clamp_(min=1e-12)[:, cols]
            torch._foreach_copy_([layer.v for layer in layers], list(v.unbind()))
        else:
            v = torch.stack([layer.v for layer in layers])
        Wv = torch.bmm(Wb, v.unsqueeze(-1)).squeeze(-1)
        norms = torch.zeros(T, C, dtype=Wv.dtype, device=Wv.device).index_add_(1, rows, Wv * Wv).sqrt_()
        if update:
            torch._foreach_copy_(
                [layer.u for layer in layers], list((Wv / norms.clamp(min=1e-12)[:, rows]).unbind())
            )
        sigma, top = norms.max(dim=1)
        denom = torch.clamp(sigma / first.kappa, min=1.0)
        scale = factor / denom
        if bounded == W.shape[2]:
            columns = scale[:, None, None]
        else:
            free = W.shape[2] - bounded
            columns = torch.cat([scale[:, None].expand(T, bounded), factor[:, None].expand(T, free)], 1)[
                :, None
            ]
        out = W * columns
        b = None
        if n_biases:
            b = torch.stack(biases)
            ctx.b = b
            if bias_factor is not None:
                b = b * bias_factor[:, None]
        ctx.save_for_backward(W, v, Wv, sigma, denom, scale, columns)
        ctx.top, ctx.rows, ctx.bounded, ctx.n_biases = top, rows, bounded, n_biases
        ctx.mask, ctx.bias_factor, ctx.kappa = first._mask_f, bias_factor, first.kappa
        ctx.first = first
        diagonal = first._diagonal_view(out).contiguous() if first.structure.diagonal else None
        return out, b, diagonal

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out, g_b, g_diagonal):
        W, v, Wv, sigma, denom, scale, columns = ctx.saved_tensors
        bounded, n_biases = ctx.bounded, ctx.n_biases
        needs = ctx.needs_input_grad
        g_factor = g_bias_factor = None
        g_biases: tuple = (None,) * n_biases
        if g_diagonal is not None:  # the diagonal blocks are a copy of part of the weight
            g_out = torch.zeros_like(W) if g_out is None else g_out.clone()
            ctx.first._diagonal_view(g_out).add_(g_diagonal)
        if g_out is None:
            g_weights: tuple = (None,) * W.shape[0]
        else:
            gW = g_out * columns
            full = bounded == W.shape[2]
            gob = g_out if full else g_out[:, :, :bounded]
            Wbd = W if full else W[:, :, :bounded]
            g_scale = (gob * Wbd).sum((1, 2))
            if needs[2]:
                g_factor = g_scale / denom
                if not full:
                    g_factor = g_factor + (g_out[:, :, bounded:] * W[:, :, bounded:]).sum((1, 2))
            # where the bound is active, d scale / d sigma = -scale / sigma, and d sigma / d W_b is
            # u v^T with u = Wv / sigma on the rows of the largest component
            active = sigma / ctx.kappa > 1.0
            per_sigma2 = torch.where(active, -g_scale * scale / sigma.clamp(min=1e-12) ** 2, 0.0)
            top_rows = ctx.rows[None, :] == ctx.top[:, None]
            a = torch.where(top_rows, Wv * per_sigma2[:, None], 0.0)
            if full:
                gW.baddbmm_(a.unsqueeze(2), v.unsqueeze(1))
            else:
                gW[:, :, :bounded].baddbmm_(a.unsqueeze(2), v.unsqueeze(1))
            g_weights = gW.mul_(ctx.mask).unbind()
        if n_biases and g_b is not None:
            bias_factor = ctx.bias_factor
            g_biases = (g_b if bias_factor is None else g_b * bias_factor[:, None]).unbind()
            if bias_factor is not None and needs[3]:
                g_bias_factor = (g_b * ctx.b).sum(1)
        return (None, None, g_factor, g_bias_factor, None, *g_biases, *g_weights)


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

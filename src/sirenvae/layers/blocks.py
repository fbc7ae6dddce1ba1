r"""The block-sparse layout of :class:`~sirenvae.layers.MaskedLinear`: memory and time by the edges.

A layer stores one dense ``out_units x in_units`` block per pair of unit groups that the graph
connects (:class:`~sirenvae.masks.BlockLayer`). In a graphical flow's layers the diagonal blocks
come first: a product with batch-last activations ``(groups * units, N)`` is one batched matmul over
them plus a gather of the sending groups, a batched matmul and an ``index_add`` into the receiving
groups for the rest. A decoder's MLP over parent sets has no diagonal and takes the second route
alone. The spectral normalisation is that of the dense layout on the same weights: power
iteration per connected component of the mask, :math:`Wv` by gather and :math:`W^\top u` by
``index_add``; leaving training mode converges it in float64 (with Lanczos where that is slow).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sirenvae.layers.linear import MaskedLinear, Prepared
from sirenvae.masks import BlockLayer

__all__ = ["BlockSparseLinear", "block_apply", "gather_apply", "top_singular", "unit_components"]

#: Power iterations at most when :meth:`BlockSparseLinear.sync_power_vectors` converges them
#: before it turns to Lanczos.
SYNC_POWER_ITERATIONS = 200


def top_singular(gram, v0: Tensor, tol: float, steps: int = 80, restarts: int = 10) -> tuple[Tensor, Tensor]:
    r"""The top eigenpair :math:`(\sigma^2 \to \sigma, v)` of the Gram operator :math:`W^\top W`.

    Lanczos with full reorthogonalisation, restarted from the Ritz vector until its residual
    :math:`\lVert W^\top W x - \theta x \rVert \le tol \cdot \theta`; converges in far fewer products
    than power iteration when the spectral gap is small.
    """
    x = v0 / v0.norm().clamp(min=1e-300)
    theta = x.new_zeros(())
    for _ in range(restarts):
        m = min(steps, x.numel())
        Q = x.new_zeros(m, x.numel())
        alpha, beta = x.new_zeros(m), x.new_zeros(m)
        q, n = x, 0
        for j in range(m):
            Q[j] = q
            w = gram(q)
            alpha[j] = w @ q
            w = w - Q[: j + 1].T @ (Q[: j + 1] @ w)
            w = w - Q[: j + 1].T @ (Q[: j + 1] @ w)
            beta[j] = w.norm()
            n = j + 1
            if beta[j] <= 1e-14 * alpha[: j + 1].abs().max():
                break
            q = w / beta[j]
        T = torch.diag(alpha[:n]) + torch.diag(beta[: n - 1], 1) + torch.diag(beta[: n - 1], -1)
        evals, evecs = torch.linalg.eigh(T)
        theta, s = evals[-1], evecs[:, -1]
        x = Q[:n].T @ s
        x = x / x.norm()
        if (beta[n - 1] * s[-1]).abs() <= tol * theta.abs():
            break
    return theta.clamp(min=0).sqrt(), x


def unit_components(rows: Tensor, cols: Tensor, n_rows: int, n_cols: int) -> tuple[Tensor, Tensor, int]:
    """Connected components of the bipartite graph of a mask given by its ``(row, col)`` entries."""
    n = n_rows + n_cols
    try:
        import numpy as np
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        g = coo_matrix((np.ones(rows.numel()), (rows.numpy(), cols.numpy() + n_rows)), shape=(n, n))
        count, label = connected_components(g, directed=False)
        label = torch.from_numpy(label).long()
    except ImportError:  # label propagation with pointer jumping
        label = torch.arange(n)
        a, b = rows, cols + n_rows
        while True:
            m = torch.minimum(label[a], label[b])
            new = label.scatter_reduce(0, a, m, "amin").scatter_reduce(0, b, m, "amin")
            new = new[new]
            if torch.equal(new, label):
                break
            label = new
        label = torch.unique(label, return_inverse=True)[1]
        count = int(label.max()) + 1 if n else 0
    return label[:n_rows].clone(), label[n_rows:].clone(), int(count)


def block_apply(
    W_diag: Tensor, W_off: Tensor | None, b: Tensor, x: Tensor, rows: Tensor, cols: Tensor
) -> Tensor:
    """``W x + b`` for batch-last ``x`` of shape ``(in_groups * in_units, N)``, by blocks.

    ``W_diag`` ``(G, out_units, in_units)`` are the diagonal blocks of groups ``0..G-1``; ``W_off``
    the other blocks, from group ``cols`` to group ``rows``.
    """
    G, ko, ki = W_diag.shape
    N = x.shape[-1]
    xb = x.reshape(-1, ki, N)
    bias = b.view(G, ko, 1)
    if ki == 1:
        out = torch.addcmul(bias, W_diag, xb[:G])
    else:
        out = torch.baddbmm(bias, W_diag, xb[:G])
    if W_off is not None:
        # one input unit per group (the first layer): a broadcast product, not E matmuls of rank 1
        y = W_off * xb[cols] if ki == 1 else torch.bmm(W_off, xb[cols])
        out.index_add_(0, rows, y)
    return out.view(G * ko, N)


def gather_apply(W: Tensor, b: Tensor, x: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """``W x + b`` for batch-last ``x`` of shape ``(in_groups * in_units, N)`` by blocks in any
    order: ``W[e]`` from group ``cols[e]`` to group ``rows[e]``.
    """
    _, ko, ki = W.shape
    N = x.shape[-1]
    xb = x.reshape(-1, ki, N)[cols]
    y = W * xb if ki == 1 else torch.bmm(W, xb)
    # a copy (contiguous() would return the bias itself for N = 1, and index_add_ writes into it)
    out = b.view(-1, ko, 1).expand(-1, ko, N).clone(memory_format=torch.contiguous_format)
    return out.index_add_(0, rows, y).view(-1, N)


class BlockSparseLinear(MaskedLinear, layout="block-sparse"):
    r"""A :class:`~sirenvae.layers.MaskedLinear` storing ``weight`` and ``mask`` by blocks,
    ``(blocks, out_units, in_units)``; made by ``MaskedLinear(structure, layout="block-sparse")``.

    The same weights and power vectors give the same normalised weights as the dense layout; leaving
    training mode converges the power iteration (in float64) instead of a dense SVD per component.
    """

    def _build(self, structure: BlockLayer, bias: bool, by_blocks: bool) -> None:
        layer = structure
        E, ko, ki = layer.mask.shape
        self.out_blocks, self.in_blocks = layer.out_blocks, layer.in_blocks
        self.diagonal = layer.diagonal
        self.register_buffer("mask", layer.mask)
        self.register_buffer("rows", layer.rows, persistent=False)
        self.register_buffer("cols", layer.cols, persistent=False)
        self._full = bool(layer.mask.all())
        self.register_buffer("_mask_f", layer.mask.float(), persistent=False)
        fan_in = torch.zeros(self.out_blocks, ko, dtype=torch.long)
        fan_in = fan_in.index_add(0, layer.rows, layer.mask.sum(2))
        bound = fan_in.clamp(min=1).to(torch.get_default_dtype()).rsqrt()[layer.rows].unsqueeze(2)
        self.weight = nn.Parameter((torch.rand(E, ko, ki) * 2 - 1) * bound * layer.mask)
        self.bias = nn.Parameter(torch.zeros(self.out_blocks * ko)) if bias else None
        bounded = layer.cols < self.bounded_groups
        self._all_bounded = bool(bounded.all())
        self.register_buffer("_bounded", torch.nonzero(bounded).flatten(), persistent=False)
        self.register_buffer("_scale_bounded", bounded, persistent=False)
        self.register_buffer("_brows", layer.rows[bounded], persistent=False)
        self.register_buffer("_bcols", layer.cols[bounded], persistent=False)
        if self.kappa is None:
            return
        r, c = BlockLayer(layer.rows[bounded], layer.cols[bounded], layer.mask[bounded], 0, 0).units()
        rows, cols, n = unit_components(r, c, self.out_blocks * ko, self.bounded_groups * ki)
        self.register_buffer("_row_component", rows, persistent=False)
        self.register_buffer("_col_component", cols, persistent=False)
        self._components = n
        self.register_buffer("u", self._normalize(torch.randn(rows.numel()), rows))
        self.register_buffer("v", self._normalize(torch.randn(cols.numel()), cols))
        self._warm_up()

    @torch.no_grad()
    def _warm_up(self, most: int = 50, tol: float = 1e-3) -> None:
        """Power iterations at initialisation until the estimate moves by less than ``tol`` relative
        over 5 of them (at most ``most``): large graphs would spend seconds on the full 50.
        """
        Wb = self._bounded_weight(self.masked())
        last = None
        for it in range(most):
            sigma = float(self._sigma(Wb, update=True))
            if it % 5 == 4:
                if last is not None and abs(sigma - last) <= tol * sigma:
                    return
                last = sigma

    def masked(self) -> Tensor:
        r""":math:`W \odot M` by blocks."""
        return self.weight if self._full else self.weight * self._mask_f

    def to_dense(self, weight: Tensor | None = None) -> Tensor:
        return self.structure.dense_weight(self.masked() if weight is None else weight)

    def _matvec(self, Wb: Tensor, v: Tensor) -> Tensor:
        ko, ki = self.units
        rows, cols = self._brows, self._bcols
        y = (Wb * v.view(-1, 1, ki)[cols]).sum(2)
        return torch.zeros(self.out_blocks, ko, dtype=y.dtype, device=y.device).index_add(0, rows, y).view(-1)

    def _rmatvec(self, Wb: Tensor, u: Tensor) -> Tensor:
        ko, ki = self.units
        rows, cols = self._brows, self._bcols
        y = (Wb * u.view(-1, ko, 1)[rows]).sum(1)
        zero = torch.zeros(self.bounded_groups, ki, dtype=y.dtype, device=y.device)
        return zero.index_add(0, cols, y).view(-1)

    def _bounded_weight(self, W: Tensor) -> Tensor:
        return W if self._all_bounded else W[self._bounded]

    @torch.no_grad()
    def sync_power_vectors(self, tol: float = 1e-12) -> None:
        """Converges the power vectors (float64) to the top singular vectors of every component.

        Power iteration until no component's estimate moves by more than ``tol`` relative to the
        largest; where that is slow (a small spectral gap in a large component), the top singular
        pair of the whole layer, which bounds every component, comes from Lanczos
        (:func:`top_singular`) and replaces the vectors of the component(s) that hold it.
        """
        if self.kappa is None:
            return
        Wb = self._bounded_weight(self.masked()).double()
        u, v = self.u.double(), self.v.double()
        previous, converged = None, False
        for it in range(SYNC_POWER_ITERATIONS):
            v = self._normalize(self._rmatvec(Wb, u), self._col_component)
            Wv = self._matvec(Wb, v)
            norms = self._component_norms(Wv)
            u = Wv / norms.clamp(min=1e-12)[self._row_component]
            if it % 5 == 4:
                converged = previous is not None and bool(
                    ((norms - previous).abs() <= tol * norms.max()).all()
                )
                if converged:
                    break
                previous = norms
        if not converged:
            u, v = _lanczos_vectors(self, Wb, v, tol)
        self.u.copy_(u)
        self.v.copy_(v)

    def _scaled(self, W: Tensor, scale: Tensor, factor: Tensor | float) -> Tensor:
        if self._all_bounded:
            return W * scale
        per_block = torch.where(self._scale_bounded, scale, torch.as_tensor(factor, dtype=W.dtype))
        return W * per_block.view(-1, 1, 1)

    def spectral_norm(self) -> Tensor:
        """The spectral norm of the normalised weight: dense SVD up to 1e6 entries, else Lanczos."""
        with torch.no_grad():
            W = self.normalized_weight(update=False).double()
            if self.shape[0] * self.bounded_columns <= 1e6:
                return torch.linalg.matrix_norm(self.to_dense(W)[:, : self.v.numel()], ord=2)
            Wb = self._bounded_weight(W)
            return top_singular(lambda q: self._rmatvec(Wb, self._matvec(Wb, q)), self.v.double(), 1e-12)[0]

    def _parts(self, W: Tensor) -> tuple[Tensor | None, Tensor | None]:
        if not self.diagonal:
            return None, None
        D = self.out_blocks
        return W[:D], W[D:] if W.shape[0] > D else None

    def forward(self, x: Tensor) -> Tensor:
        """``(..., in) -> (..., out)``, batch-first like :class:`torch.nn.Linear`."""
        y = self.batch_last(x.reshape(-1, x.shape[-1]).T)
        return y.T.reshape(*x.shape[:-1], -1)

    def batch_last(self, x: Tensor, prepared: Prepared | None = None) -> Tensor:
        p = self.prepare() if prepared is None else prepared
        W, D = p.weight, self.out_blocks
        bias = p.bias if p.bias is not None else W.new_zeros(D * self.units[0])
        # contiguous once: the gathers and products read rows
        x = x.contiguous()
        if not self.diagonal:
            return gather_apply(W, bias, x, self.rows, self.cols)
        return block_apply(p.diagonal, p.off, bias, x, self.rows[D:], self.cols[D:])


def _lanczos_vectors(layer: BlockSparseLinear, Wb: Tensor, v: Tensor, tol: float) -> tuple[Tensor, Tensor]:
    """Power vectors with the top singular pair of the whole layer in the component(s) that hold it."""
    _, x = top_singular(lambda q: layer._rmatvec(Wb, layer._matvec(Wb, q)), v, tol)
    comp = layer._col_component
    mass = torch.zeros(layer._components, dtype=x.dtype, device=x.device).index_add(0, comp, x * x)
    v = torch.where(mass[comp] > 1e-8, layer._normalize(x, comp), v)
    Wv = layer._matvec(Wb, v)
    return Wv / layer._component_norms(Wv).clamp(min=1e-12)[layer._row_component], v

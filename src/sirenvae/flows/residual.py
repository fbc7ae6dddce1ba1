r"""Graphical residual blocks: :math:`y = z + g(z \oplus c)` with :math:`g` masked by a Bayesian network.

:math:`g` is an MLP whose masks let :math:`g_i` see only :math:`\{i\} \cup pa(i)`
(:mod:`sirenvae.masks`), spectrally normalised so that :math:`\mathrm{Lip}_z(g) < 1`. In topological
order the Jacobian is lower triangular, so

.. math:: \log |\det J| = \sum_i \log(1 + \partial g_i / \partial z_i),

computed exactly by carrying one derivative per hidden unit through the blocks of units designated
to the same variable. The inverse is a fixed point (:mod:`sirenvae.flows.root_finding`).

References:
    | Graphical Residual Flows (Mouton & Kroon, 2022), ICLR workshop DGM4HSD
    | Invertible Residual Networks (Behrmann et al., 2019)
    | https://arxiv.org/abs/1811.00995
"""

from __future__ import annotations

import copy
from dataclasses import replace

import torch
from torch import Tensor

from sirenvae.defaults import KAPPA
from sirenvae.flows.core import LazyTransform, Transform, check_context
from sirenvae.flows.fused import FusedResidual, fusable
from sirenvae.flows.root_finding import InverseResult, RootFinding, fixed_point, implicit_gradient
from sirenvae.flows.sparse import BlockSparseLinear, block_apply, read_blocks_as_dense
from sirenvae.masks import check_adjacency, graphical_blocks, graphical_masks
from sirenvae.nn import MaskedLinear
from sirenvae.nn import activation as make_activation

__all__ = ["GRFBlock", "GraphicalResidualTransform", "use_sparse"]

#: Graphs with at least this many hidden units per layer go on the block-sparse path by default
#: (measured: on par at ecoli70, 184 units; 1.3x faster at arth150, 428 units, training included).
SPARSE_MIN_UNITS = 400


def use_sparse(adjacency: Tensor, hidden_per_set: int = 4, singletons: bool = False) -> bool:
    """Whether the block-sparse layers pay off: many hidden units and a sparse graph."""
    A = torch.as_tensor(adjacency)
    D = A.shape[0]
    units = D * hidden_per_set * (2 if singletons else 1)
    return units >= SPARSE_MIN_UNITS and int(torch.count_nonzero(A)) <= 0.1 * D * D


def _batch_first(t: Tensor, batch: torch.Size) -> Tensor:
    """``(D, N)`` batch-last activations as contiguous ``(*batch, D)``: the elementwise ops that
    follow (the residual sum, the Newton step) are several times slower on mixed layouts.
    """
    return t.T.contiguous().view(*batch, t.shape[0])


class GRFBlock(LazyTransform):
    r"""One graphical residual block: ``block(c)`` is the transform :math:`z \mapsto z + g(z \oplus c)`.

    Arguments:
        adjacency: ``(D, D)`` boolean, ``A[i, j]`` iff ``j`` is a parent of ``i`` (a DAG).
        context_adjacency: ``(D, C)`` boolean, ``C[i, j]`` iff context ``j`` is a parent of ``i``.
        hidden_per_set: Hidden units per variable set and hidden layer.
        hidden_layers: The number of hidden layers.
        kappa: The spectral bound of every layer, :math:`0 < \kappa < 1`.
        activation: ``lipswish``, ``elu`` or ``tanh``.
        singletons: Also give each variable hidden units that see only itself.
        n_power_iterations: Power iterations per training step.
        root_finding: How the inverse is solved.
        name: Names the block in convergence errors.
        sparse: Store the layers by blocks between variables (:mod:`sirenvae.flows.sparse`), with
            memory and time by edges; by default for large sparse graphs (:func:`use_sparse`).
    """

    def __init__(
        self,
        adjacency: Tensor,
        context_adjacency: Tensor | None = None,
        *,
        hidden_per_set: int = 4,
        hidden_layers: int = 2,
        kappa: float = KAPPA,
        activation: str = "lipswish",
        singletons: bool = False,
        n_power_iterations: int = 1,
        root_finding: RootFinding | None = None,
        name: str = "a graphical residual block",
        sparse: bool | None = None,
    ) -> None:
        super().__init__()
        if not 0 < kappa < 1:
            raise ValueError(f"kappa must lie in (0, 1) for the block to be invertible, got {kappa}")
        A, C = check_adjacency(adjacency, context_adjacency)
        self.sparse = sparse = use_sparse(A, hidden_per_set, singletons) if sparse is None else sparse
        # the graph by edges and the mask options: to read a block-sparse checkpoint into dense layers
        self._graph = (torch.nonzero(A), torch.nonzero(C), A.shape[0], C.shape[1])
        self._mask_options = {"hidden_per_set": hidden_per_set, "hidden_layers": hidden_layers}
        self._mask_options["singletons"] = singletons
        make = graphical_blocks if sparse else graphical_masks
        masks = make(
            adjacency,
            context_adjacency,
            hidden_per_set=hidden_per_set,
            hidden_layers=hidden_layers,
            singletons=singletons,
        )
        self.features = masks.features
        self.context_features = masks.context
        self.units = masks.units
        self.root_finding = root_finding or RootFinding()
        self.name = name
        # only the first layer sees the context, whose columns stay unbounded
        opts = {"kappa": kappa, "n_power_iterations": n_power_iterations}
        self.layers = torch.nn.ModuleList(
            BlockSparseLinear(M, **opts, bounded_blocks=masks.features if l == 0 else None)
            if sparse
            else MaskedLinear(M, **opts, bounded_columns=masks.features if l == 0 else None)
            for l, M in enumerate(masks.layers)
        )
        self.activations = torch.nn.ModuleList(make_activation(activation) for _ in range(hidden_layers))
        #: With autograd on, compute g and its diagonal in one node with a hand-written backward
        #: (:mod:`sirenvae.flows.fused`; dense layout only). Off for second derivatives.
        self.fused = True
        D, k = self.features, self.units
        self.register_buffer("_designated", torch.arange(D).repeat_interleave(k), persistent=False)
        self._split = not sparse and hidden_layers >= 2 and self._plan_split(masks.layers[1], k, "_off_")
        self._split_last = not sparse and self._plan_split(masks.layers[-1], 1, "_last_")

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        """Also reads a block-sparse checkpoint into dense layers (the block-sparse layers read a
        dense one by themselves), so a flow loads whichever layout it was saved in.
        """
        first = state_dict.get(prefix + "layers.0.mask")
        if not self.sparse and first is not None and first.dim() == 3:
            edges, context_edges, D, Cn = self._graph
            A, C = torch.zeros(D, D, dtype=torch.bool), torch.zeros(D, Cn, dtype=torch.bool)
            A[tuple(edges.T)], C[tuple(context_edges.T)] = True, True
            for l, layer in enumerate(graphical_blocks(A, C, **self._mask_options).layers):
                read_blocks_as_dense(state_dict, f"{prefix}layers.{l}.", layer)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _plan_split(self, mask: Tensor, out_units: int, prefix: str) -> bool:
        """Plans a layer into hidden units as diagonal blocks plus off-diagonal block rows/columns.

        Units of one designated variable form ``out_units x k`` diagonal blocks (a batched matmul);
        the few blocks between different variables are gathered into one small dense matmul. Returns
        False (plain dense matmuls) when the off-diagonal part is not much smaller than the whole.
        """
        D, k = self.features, self.units
        blocks = mask.view(D, out_units, D, k).any(dim=(1, 3))
        blocks.fill_diagonal_(False)
        rows = torch.nonzero(blocks.any(dim=1)).flatten()
        cols = torch.nonzero(blocks.any(dim=0)).flatten()
        if rows.numel() * cols.numel() > 0.25 * D * D:
            return False
        r = (rows[:, None] * out_units + torch.arange(out_units)).flatten()
        c = (cols[:, None] * k + torch.arange(k)).flatten()
        off = mask & ~torch.block_diag(*([torch.ones(out_units, k, dtype=torch.bool)] * D))
        self.register_buffer(prefix + "rows", r, persistent=False)
        self.register_buffer(prefix + "cols", c, persistent=False)
        self.register_buffer(prefix + "mask", off[r][:, c], persistent=False)
        return True

    @property
    def effective_weights(self) -> int:
        """The number of unmasked weights."""
        return int(sum(int(layer.mask.sum()) for layer in self.layers))

    def folded(self, update: bool | None = None) -> list[tuple[Tensor, Tensor]]:
        r"""Normalised weights and biases with the activations' scales folded in.

        With :math:`h_l(a) = o_l \phi(\iota_l a)`, the pre-activations :math:`t_l = \iota_l a_l` obey
        :math:`t_l = \hat W_l \phi(t_{l-1}) + \hat b_l` with :math:`\hat W_l = \iota_l o_{l-1} W_l` and
        :math:`\hat b_l = \iota_l b_l`, so a layer costs one matmul and one :math:`\phi`.
        """
        # each scale once, and no multiplications by 1
        scales = [act.scales() for act in self.activations]
        out = []
        for l, layer in enumerate(self.layers):
            if l == len(scales):
                out.append((layer.normalized_weight(update, scales[l - 1][1] if l else 1.0), layer.bias))
                continue
            inner = scales[l][0]
            factor = inner * scales[l - 1][1] if l else inner
            out.append((layer.normalized_weight(update, factor), layer.bias * inner))
        return out

    def forward(self, c: Tensor | None = None) -> GraphicalResidualTransform:
        """Prepares the weights once (a power iteration in training mode) and binds the context."""
        c = check_context(c, self.context_features)
        return GraphicalResidualTransform(self, self.folded(), c)

    def certify(self) -> Tensor:
        """The exact Lipschitz bound in :math:`z` of :math:`g`: the product of the exact spectral
        norms of its normalised weights, the first restricted to the columns of :math:`z` (the
        activations are 1-Lipschitz; the context is not bounded).
        """
        bound = torch.ones((), dtype=torch.float64)
        with torch.no_grad():
            for layer in self.layers:
                bound = bound * layer.spectral_norm().cpu()
        return bound


class GraphicalResidualTransform(Transform):
    r""":math:`z \mapsto z + g(z \oplus c)` with the weights of a :class:`GRFBlock` prepared once.

    Short-lived: made by ``block(c)``, it holds the folded weights (and the autograd graph back to
    the parameters), the first layer's diagonal, the diagonal blocks of each later layer and the
    off-diagonal parts of hidden -> hidden layers.
    """

    def __init__(self, block: GRFBlock, layers: list[tuple[Tensor, Tensor]], context: Tensor | None) -> None:
        super().__init__()
        self.block, self.layers, self.context = block, layers, context
        D, k = block.features, block.units
        hidden = len(block.activations)
        W0 = layers[0][0]
        self.diag_blocks: list[Tensor] = []
        self.off: list[Tensor | None] = []
        if block.sparse:
            # by blocks, diagonal first: (D, k, 1), then (D, k, k) and (D, 1, k)
            self.delta0 = W0[:D].reshape(D * k)
            self.off_first = W0[D:] if W0.shape[0] > D else None
            for l in range(1, hidden + 1):
                W = layers[l][0]
                self.diag_blocks.append(W[:D])
                self.off.append(W[D:] if W.shape[0] > D else None)
            return
        self.delta0 = W0.gather(1, block._designated[:, None]).view(D * k)
        for l in range(1, hidden + 1):
            W = layers[l][0]
            if l < hidden:
                # contiguous once here rather than a copy inside every bmm
                diag = W.view(D, k, D, k).diagonal(dim1=0, dim2=2)
                self.diag_blocks.append(diag.permute(2, 0, 1).contiguous())
                split = block._split and block._off_rows.numel()
                self.off.append(W[block._off_rows][:, block._off_cols] * block._off_mask if split else None)
            else:
                self.diag_blocks.append(W.view(D, D, k).diagonal(dim1=0, dim2=1).T.unsqueeze(1).contiguous())
                split = block._split_last and block._last_rows.numel()
                self.off_last = W[block._last_rows][:, block._last_cols] * block._last_mask if split else None

    def bind(self, context: Tensor | None) -> GraphicalResidualTransform:
        """The same prepared weights with another context (no copy of the weights)."""
        t = copy.copy(self)
        t.context = context
        return t

    def detach(self) -> GraphicalResidualTransform:
        """The same transform cut from the parameters' graph (and from the context's)."""
        c = None if self.context is None else self.context.detach()
        return GraphicalResidualTransform(self.block, [(W.detach(), b.detach()) for W, b in self.layers], c)

    def _inputs(self, z: Tensor) -> Tensor:
        block = self.block
        if z.shape[-1:] != (block.features,):
            raise ValueError(f"expected inputs with {block.features} features, got shape {tuple(z.shape)}")
        w = self.layers[0][0]
        if z.dtype != w.dtype:
            raise ValueError(
                f"inputs are {z.dtype} but the flow's parameters are {w.dtype}; call .to({z.dtype})"
            )
        if self.context is None:
            return z
        shape = torch.broadcast_shapes(z.shape[:-1], self.context.shape[:-1])
        z = z.expand(*shape, block.features)
        c = self.context.to(z.dtype).expand(*shape, block.context_features)
        return torch.cat([z, c], dim=-1)

    def _hidden(self, l: int, h: Tensor) -> Tensor:
        """Hidden layer ``l`` -> ``l + 1`` on batch-last activations ``(D k, N)``."""
        W, b = self.layers[l]
        block = self.block
        if block.sparse:
            layer = block.layers[l]
            D = block.features
            return block_apply(self.diag_blocks[l - 1], self.off[l - 1], b, h, layer.rows[D:], layer.cols[D:])
        D, k = block.features, block.units
        N = h.shape[-1]
        if l == len(block.activations):
            if not block._split_last:
                return torch.addmm(b[:, None], W, h)
            out = torch.baddbmm(b.view(D, 1, 1), self.diag_blocks[-1], h.view(D, k, N)).view(D, N)
            if self.off_last is not None:
                out.index_add_(0, block._last_rows, self.off_last @ h[block._last_cols])
            return out
        if not block._split:
            return torch.addmm(b[:, None], W, h)
        out = torch.baddbmm(b.view(D, k, 1), self.diag_blocks[l - 1], h.view(D, k, N)).view(D * k, N)
        W_off = self.off[l - 1]
        if W_off is not None:
            out.index_add_(0, block._off_rows, W_off @ h[block._off_cols])
        return out

    def _per_layer(self) -> list[Tensor | None]:
        """``(W, b, diagonal blocks, off-diagonal part)`` of every layer after the first."""
        hidden = len(self.block.activations)
        out: list[Tensor | None] = []
        for l in range(1, hidden + 1):
            off = self.off[l - 1] if l < hidden else self.off_last
            out.extend((*self.layers[l], self.diag_blocks[l - 1], off))
        return out

    def g(self, z: Tensor, diag: bool = True) -> tuple[Tensor, Tensor | None]:
        r"""The residual :math:`g(z \oplus c)` and, if ``diag``, :math:`\partial g_i / \partial z_i`.

        The diagonal is carried through the layers as one derivative per unit,
        :math:`\delta_r = \partial t_r / \partial z_{v(r)}`, through the diagonal blocks of units that
        share a designated variable (Mouton & Kroon, 2022). Activations are kept batch-last,
        ``(units, N)``, so that the per-variable blocks are one batched matmul on long rows.
        """
        block = self.block
        u = self._inputs(z)
        batch = u.shape[:-1]
        u = u.reshape(-1, u.shape[-1])
        N = u.shape[0]
        D, k = block.features, block.units
        W, b = self.layers[0]
        if block.sparse:
            first = block.layers[0]
            # batch-last and contiguous once: the gathers and products below read rows
            t = block_apply(W[:D], self.off_first, b, u.T.contiguous(), first.rows[D:], first.cols[D:])
        else:
            t = torch.addmm(b[:, None], W, u.T)
        if diag and torch.is_grad_enabled() and (u.requires_grad or W.requires_grad) and fusable(block):
            g, d = FusedResidual.apply(self, u, W, b, self.delta0, *self._per_layer())
            return g.view(*batch, D), d.view(*batch, D)
        if not diag:
            for l, act in enumerate(block.activations):
                t = self._hidden(l + 1, act.phi(t))
            return _batch_first(t, batch), None
        delta = self.delta0[:, None].expand(D * k, N)
        for l, act in enumerate(block.activations):
            h, e = act.phi_jvp(t, delta)
            t = self._hidden(l + 1, h)
            delta = torch.bmm(self.diag_blocks[l], e.view(D, k, N)).view(-1, N)
        return _batch_first(t, batch), _batch_first(delta, batch)

    def _call(self, z: Tensor) -> Tensor:
        return z + self.g(z, diag=False)[0]

    def call_and_ladj(self, z: Tensor) -> tuple[Tensor, Tensor]:
        g, d = self.g(z)
        return z + g, torch.log1p(d).sum(-1)

    def solve(self, y: Tensor, **options) -> InverseResult:
        """Solves :math:`y = z + g(z)` without gradients and reports how (never raises).

        Keyword arguments override the block's :class:`~sirenvae.flows.RootFinding` options.
        """
        opts = replace(self.block.root_finding, **options) if options else self.block.root_finding
        return self._solve(self.detach(), y, opts)

    def _solve(self, fixed: GraphicalResidualTransform, y: Tensor, opts: RootFinding) -> InverseResult:
        if self.context is not None:
            shape = torch.broadcast_shapes(y.shape[:-1], self.context.shape[:-1])
            y = y.expand(*shape, self.block.features)
        return fixed_point(fixed.g, y.detach(), opts)

    def _inverse(self, y: Tensor) -> Tensor:
        """The inverse by :meth:`solve`, with implicit gradients when autograd is on."""
        opts = self.block.root_finding
        fixed = self.detach()
        result = self._solve(fixed, y, opts)
        result.check(opts, self.block.name)
        if not torch.is_grad_enabled():
            return result.z
        return implicit_gradient(
            result.z,
            y,
            lambda z: self.g(z, diag=False)[0],
            fixed.g,
            atol=opts.atol,
            max_sweeps=max(opts.max_iter, self.block.features + 1),
        )

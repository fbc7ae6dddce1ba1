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
from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import Tensor

from sirenvae.defaults import KAPPA
from sirenvae.flows.core import LazyTransform, Transform, check_context
from sirenvae.flows.fused import FusedResidual, fusable
from sirenvae.flows.root_finding import InverseResult, RootFinding, fixed_point, implicit_gradient
from sirenvae.layers import MaskedLinear, Prepared, choose_layout
from sirenvae.layers.dense import prepare_stacked, stackable
from sirenvae.masks import check_adjacency, graphical_blocks
from sirenvae.nn import activation as make_activation

__all__ = ["GRFBlock", "GraphicalResidualTransform", "graph_layout", "prepare_blocks"]


def graph_layout(layout: str, adjacency: Tensor, hidden_per_set: int = 4, singletons: bool = False) -> str:
    """The layout of a graphical residual network's layers over ``adjacency``: ``layout``, or for
    ``"auto"`` the rule of :func:`~sirenvae.layers.layout.choose_layout` on the graph's edges and
    the hidden units of a layer.
    """
    A = torch.as_tensor(adjacency)
    units = A.shape[0] * hidden_per_set * (2 if singletons else 1)
    return choose_layout(layout, connections=int(torch.count_nonzero(A)), cells=A.numel(), units=units)


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
        layout: ``"dense"``, ``"block-sparse"`` (the layers by blocks between variables, memory
            and time by edges) or ``"auto"``, block-sparse for large sparse graphs
            (:func:`graph_layout`). Both compute the same function.
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
        layout: str = "auto",
    ) -> None:
        super().__init__()
        if not 0 < kappa < 1:
            raise ValueError(f"kappa must lie in (0, 1) for the block to be invertible, got {kappa}")
        A, _ = check_adjacency(adjacency, context_adjacency)
        layout = graph_layout(layout, A, hidden_per_set, singletons)
        masks = graphical_blocks(
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
        # only the first layer sees the context, whose columns stay unbounded; the later ones may
        # compute by their diagonal blocks
        opts = {"layout": layout, "kappa": kappa, "n_power_iterations": n_power_iterations}
        self.layers = torch.nn.ModuleList(
            MaskedLinear(M, **opts, bounded_groups=masks.features if l == 0 else None, by_blocks=l > 0)
            for l, M in enumerate(masks.layers)
        )
        self.activations = torch.nn.ModuleList(make_activation(activation) for _ in range(hidden_layers))
        #: With autograd on, compute g and its diagonal in one node with a hand-written backward
        #: (:mod:`sirenvae.flows.fused`; layers with :meth:`~sirenvae.layers.MaskedLinear.batch_last_vjp`
        #: only). Off for second derivatives.
        self.fused = True

    @property
    def layout(self) -> str:
        """The layout of the layers (:mod:`sirenvae.layers.layout`)."""
        return self.layers[0].layout

    @property
    def effective_weights(self) -> int:
        """The number of unmasked weights."""
        return int(sum(int(layer.mask.sum()) for layer in self.layers))

    def prepare(self, update: bool | None = None) -> list[Prepared]:
        r"""The layers' prepared weights (:meth:`~sirenvae.layers.MaskedLinear.prepare`): normalised
        weights and biases with the activations' scales folded in.

        With :math:`h_l(a) = o_l \phi(\iota_l a)`, the pre-activations :math:`t_l = \iota_l a_l` obey
        :math:`t_l = \hat W_l \phi(t_{l-1}) + \hat b_l` with :math:`\hat W_l = \iota_l o_{l-1} W_l` and
        :math:`\hat b_l = \iota_l b_l`, so a layer costs one matmul and one :math:`\phi`.
        """
        return [
            layer.prepare(update, factor=factor, bias_factor=bias_factor)
            for layer, (factor, bias_factor) in zip(self.layers, self._factors(), strict=True)
        ]

    def _factors(self) -> list[tuple[Tensor | float, Tensor | float | None]]:
        """``(factor, bias_factor)`` of every layer: each scale once, and no multiplications by 1."""
        scales = [act.scales() for act in self.activations]
        return _layer_factors([s[0] for s in scales], [s[1] for s in scales], 1.0)

    def forward(self, c: Tensor | None = None) -> GraphicalResidualTransform:
        """Prepares the weights once (a power iteration in training mode) and binds the context."""
        c = check_context(c, self.context_features)
        return GraphicalResidualTransform(self, self.prepare(), c)

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


def prepare_blocks(blocks: Sequence[GRFBlock], update: bool | None = None) -> list[list[Prepared]]:
    """:meth:`GRFBlock.prepare` of every block of a flow, the same layer of all blocks in one pass
    where they are dense with one mask (:func:`~sirenvae.layers.dense.prepare_stacked`; block by
    block otherwise): weight preparation is a large part of a training step on small graphs.
    """
    columns = list(zip(*(b.layers for b in blocks), strict=True)) if len(blocks) > 1 else []
    one_kind = len({type(a) for b in blocks for a in b.activations}) <= 1
    fused = all(b.fused for b in blocks)  # the stacked pass is differentiable once, like the fused block
    if not columns or not one_kind or not fused or not all(stackable(layers) for layers in columns):
        return [b.prepare(update) for b in blocks]
    factors = _stacked_factors(blocks)
    out = [
        prepare_stacked(layers, update, factor, bias_factor)
        for layers, (factor, bias_factor) in zip(columns, factors, strict=True)
    ]
    return [list(p) for p in zip(*out, strict=True)]


def _layer_factors(inner: Sequence, outer: Sequence, one) -> list[tuple]:
    r"""``(factor, bias_factor)`` of every layer of a block from its activations' ``inner`` and
    ``outer`` scales (:meth:`GRFBlock.prepare`): layer ``l`` takes :math:`\iota_l o_{l-1}` and its
    bias :math:`\iota_l`; the last takes the last :math:`o` (``one`` without activations).
    """
    A = len(inner)
    if A == 0:
        return [(one, None)]
    out = [(inner[0], inner[0])]
    out += [(inner[l] * outer[l - 1], inner[l]) for l in range(1, A)]
    return [*out, (outer[A - 1], None)]


def _stacked_factors(blocks: Sequence[GRFBlock]) -> list[tuple[Tensor, Tensor | None]]:
    """:meth:`GRFBlock._factors` of every layer for all ``blocks`` at once, as vectors over the
    blocks: the activations' scales (all of one type) in one pass.
    """
    acts = [act for b in blocks for act in b.activations]
    like = blocks[0].layers[0].weight
    T, A = len(blocks), len(blocks[0].activations)
    ones = torch.ones(T, dtype=like.dtype, device=like.device)
    if A == 0:
        return _layer_factors([], [], ones)
    inner, outer = type(acts[0]).stacked_scales(acts, like)
    return _layer_factors(inner.view(T, A).unbind(1), outer.view(T, A).unbind(1), ones)


class GraphicalResidualTransform(Transform):
    r""":math:`z \mapsto z + g(z \oplus c)` with the weights of a :class:`GRFBlock` prepared once.

    Short-lived: made by ``block(c)``, it holds every layer's prepared weights (and the autograd
    graph back to the parameters): the folded weights, the diagonal blocks and the off-diagonal
    parts (:class:`~sirenvae.layers.Prepared`).
    """

    def __init__(self, block: GRFBlock, prepared: list[Prepared], context: Tensor | None) -> None:
        super().__init__()
        self.block, self.prepared, self.context = block, prepared, context
        #: the first layer's diagonal: the derivative of every hidden unit in its variable
        self.delta0 = prepared[0].diagonal.reshape(block.features * block.units)

    def bind(self, context: Tensor | None) -> GraphicalResidualTransform:
        """The same prepared weights with another context (no copy of the weights)."""
        t = copy.copy(self)
        t.context = context
        return t

    def detach(self) -> GraphicalResidualTransform:
        """The same transform cut from the parameters' graph (and from the context's)."""
        c = None if self.context is None else self.context.detach()
        return GraphicalResidualTransform(self.block, [p.detach() for p in self.prepared], c)

    def _inputs(self, z: Tensor) -> Tensor:
        block = self.block
        if z.shape[-1:] != (block.features,):
            raise ValueError(f"expected inputs with {block.features} features, got shape {tuple(z.shape)}")
        w = self.prepared[0].weight
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
        return self.block.layers[l].batch_last(h, self.prepared[l])

    def _per_layer(self) -> list[Tensor | None]:
        """``(W, b, diagonal blocks, off-diagonal part)`` of every layer after the first."""
        out: list[Tensor | None] = []
        for p in self.prepared[1:]:
            out.extend((p.weight, p.bias, p.diagonal, p.off))
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
        W, b = self.prepared[0].weight, self.prepared[0].bias
        t = block.layers[0].batch_last(u.T, self.prepared[0])
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
            delta = torch.bmm(self.prepared[l + 1].diagonal, e.view(D, k, N)).view(-1, N)
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

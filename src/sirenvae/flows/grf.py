r"""Graphical residual flows: stacks of graphical residual blocks sharing one graph.

References:
    | Graphical Residual Flows (Mouton & Kroon, 2022), ICLR workshop DGM4HSD
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from sirenvae.defaults import CONDITIONING, KAPPA
from sirenvae.flows import residual
from sirenvae.flows.affine import GraphAffine
from sirenvae.flows.core import ComposedTransform, LazyTransform, Transform, check_context
from sirenvae.flows.distributions import Flow, StandardNormalBase
from sirenvae.flows.parents import ParentConditionedTransform, generations
from sirenvae.flows.residual import GraphicalResidualTransform, GRFBlock, graph_layout
from sirenvae.flows.root_finding import Method, OnFail, RootFinding
from sirenvae.masks import check_adjacency

__all__ = ["CONDITIONING", "GRF", "Conditioning", "GraphicalResidualFlow"]

Conditioning = Literal["ancestors", "parents"]

DEFAULT_ROOT_FINDING = RootFinding()


class GraphicalResidualFlow(LazyTransform):
    r"""A stack of graphical residual blocks: ``flow(c)`` is :math:`F = f_T \circ \dots \circ f_1`.

    ``flow(c)`` maps in the normalizing direction, with ``call_and_ladj`` for the exact
    log-determinant; ``flow(c).inv`` inverts it (differentiable by implicit gradients) and
    ``flow(c).solve(y)`` reports iterations and residuals.

    With ``conditioning="ancestors"`` (the paper's), block :math:`t` reads the previous block's
    output, so :math:`F_i` depends on all ancestors of :math:`i`. With ``conditioning="parents"``,
    every block reads the variable's own running value and the parents' values at the stack's input
    (:class:`~sirenvae.flows.parents.ParentConditionedTransform`), so :math:`F_i` depends on
    :math:`z_i` and :math:`z_{pa(i)}` only: the BN's exact factorisation at any depth. ``affine=True``
    ends the stack with the graph-masked affine step (:class:`~sirenvae.flows.GraphAffine`), which
    reads the stack's input in the parent-conditioned stack and its own input otherwise.

    Arguments:
        adjacency: ``(D, D)`` boolean, ``A[i, j]`` iff ``j`` is a parent of ``i`` (a DAG).
        context_adjacency: ``(D, C)`` boolean, which context inputs each variable sees.
        blocks: The number of residual blocks :math:`T` (``0`` with ``affine``: a linear-Gaussian BN).
        conditioning: ``ancestors`` (stacked blocks) or ``parents`` (exact factorisation).
        affine: End with the graph-masked affine step.
        hidden_per_set: Hidden units per variable set and hidden layer.
        hidden_layers: Hidden layers per block.
        kappa: The spectral bound of every layer.
        activation: ``lipswish``, ``elu`` or ``tanh``.
        singletons: Also give each variable hidden units that see only itself.
        n_power_iterations: Power iterations per training step.
        atol, rtol, max_iter, method, on_fail: How the inverse is solved (:class:`RootFinding`).
        layout: ``"dense"``, ``"block-sparse"`` (every layer by blocks between variables, memory
            and time by edges; :mod:`sirenvae.layers`) or ``"auto"``, block-sparse for large sparse
            graphs (:func:`~sirenvae.flows.residual.graph_layout`). Both compute the same function.

    Example:
        >>> A = torch.tensor([[0, 0, 0], [1, 0, 0], [1, 1, 0]], dtype=torch.bool)
        >>> flow = GraphicalResidualFlow(A, blocks=2, conditioning="parents", affine=True)
        >>> z = torch.randn(5, 3)
        >>> y, ladj = flow().call_and_ladj(z)
        >>> torch.allclose(flow().inv(y), z, atol=1e-4)
        True
    """

    def __init__(
        self,
        adjacency: Tensor,
        context_adjacency: Tensor | None = None,
        *,
        blocks: int = 3,
        conditioning: Conditioning = "ancestors",
        affine: bool = False,
        hidden_per_set: int = 4,
        hidden_layers: int = 2,
        kappa: float = KAPPA,
        activation: str = "lipswish",
        singletons: bool = False,
        n_power_iterations: int = 1,
        atol: float = DEFAULT_ROOT_FINDING.atol,
        rtol: float | None = DEFAULT_ROOT_FINDING.rtol,
        max_iter: int = DEFAULT_ROOT_FINDING.max_iter,
        method: Method = DEFAULT_ROOT_FINDING.method,
        on_fail: OnFail = DEFAULT_ROOT_FINDING.on_fail,
        layout: str = "auto",
    ) -> None:
        super().__init__()
        if conditioning not in CONDITIONING:
            raise ValueError(f"conditioning must be one of {', '.join(CONDITIONING)}, got {conditioning!r}")
        if blocks < 0 or (blocks == 0 and not affine):
            raise ValueError(f"blocks must be >= 1 (or 0 with affine=True), got {blocks}")
        A, C = check_adjacency(adjacency, context_adjacency)
        D = A.shape[0]
        self.features, self.context_features = D, C.shape[1]
        self.conditioning = conditioning
        layout = graph_layout(layout, A, hidden_per_set, singletons)
        self._sweeps = generations(A)
        options = RootFinding(atol=atol, rtol=rtol, max_iter=max_iter, method=method, on_fail=on_fail)
        self._root_finding = options
        if conditioning == "parents":
            # own value only (bounded), the stack input's parents and the context as context
            block_graph = (torch.zeros_like(A), torch.cat([A, C], dim=1))
        else:
            block_graph = (A, C)
        self.transforms = torch.nn.ModuleList(
            GRFBlock(
                *block_graph,
                hidden_per_set=hidden_per_set,
                hidden_layers=hidden_layers,
                kappa=kappa,
                activation=activation,
                singletons=singletons,
                n_power_iterations=n_power_iterations,
                root_finding=options,
                name=f"block {i}",
                layout=layout,
            )
            for i in range(blocks)
        )
        self.affine = GraphAffine(A, C, layout=layout) if affine else None

    @property
    def layout(self) -> str:
        """The layout of the layers and the affine step (:mod:`sirenvae.layers.layout`)."""
        return self.blocks[0].layout if len(self.blocks) else self.affine.layout

    @property
    def blocks(self) -> torch.nn.ModuleList:
        """The residual blocks, first applied first."""
        return self.transforms

    def __len__(self) -> int:
        return len(self.transforms) + (self.affine is not None)

    def forward(self, c: Tensor | None = None) -> Transform:
        c = check_context(c, self.context_features)
        # all blocks' weights in one pass per layer
        prepared = residual.prepare_blocks(self.transforms)
        if self.conditioning == "ancestors":
            steps = [
                GraphicalResidualTransform(b, p, c) for b, p in zip(self.transforms, prepared, strict=True)
            ]
            if self.affine is not None:
                steps.append(self.affine(c))
            return ComposedTransform(*steps)
        affine = self.affine.prepared() if self.affine is not None else None
        return ParentConditionedTransform(
            [GraphicalResidualTransform(b, p, None) for b, p in zip(self.transforms, prepared, strict=True)],
            affine,
            c,
            features=self.features,
            sweeps=self._sweeps,
            root_finding=self._root_finding,
        )

    @property
    def root_finding(self) -> RootFinding:
        """How the inverse is solved."""
        return self._root_finding

    @root_finding.setter
    def root_finding(self, options: RootFinding) -> None:
        self._root_finding = options
        for block in self.blocks:
            block.root_finding = options

    @property
    def effective_weights(self) -> int:
        """The number of unmasked weights over all blocks (and the affine step's parameters)."""
        affine = self.affine.effective_weights if self.affine is not None else 0
        return sum(b.effective_weights for b in self.blocks) + affine

    def certify(self) -> Tensor:
        """The exact Lipschitz bound in the running value of every block's residual :math:`g`."""
        if not len(self.blocks):
            return torch.ones(0, dtype=torch.float64)
        return torch.stack([block.certify() for block in self.blocks])


class GRF(Flow):
    r"""A (conditional) graphical residual flow distribution with a standard normal base.

    ``GRF(A)()`` is :math:`p(x)` with :math:`\log p(x) = \log \mathcal{N}(F(x)) + \log|\det J_F(x)|`
    (one pass); with a context adjacency, ``GRF(A, Ac)(c)`` is :math:`p(x \mid c)`. For a fast
    sampler, such as an encoder, use the flow of the inverse:
    ``Flow(GraphicalResidualFlow(A, Ac).inv, StandardNormalBase(D))``.

    Arguments:
        adjacency: ``(D, D)`` boolean, ``A[i, j]`` iff ``j`` is a parent of ``i``.
        context_adjacency: ``(D, C)`` boolean, which context inputs each variable sees.
        kwargs: Keyword arguments of :class:`GraphicalResidualFlow`.

    Example:
        >>> A = torch.tensor([[0, 0], [1, 0]], dtype=torch.bool)
        >>> p = GRF(A, torch.ones(2, 3, dtype=torch.bool))
        >>> x, log_p = p(torch.randn(7, 3)).rsample_and_log_prob()
        >>> x.shape, log_p.shape
        (torch.Size([7, 2]), torch.Size([7]))
    """

    def __init__(self, adjacency: Tensor, context_adjacency: Tensor | None = None, **kwargs) -> None:
        transform: LazyTransform = GraphicalResidualFlow(adjacency, context_adjacency, **kwargs)
        super().__init__(transform, StandardNormalBase(transform.features))

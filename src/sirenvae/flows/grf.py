r"""Graphical residual flows: stacks of graphical residual blocks sharing one graph.

References:
    | Graphical Residual Flows (Mouton & Kroon, 2022), ICLR workshop DGM4HSD
"""

from __future__ import annotations

import torch
from torch import Tensor

from sirenvae.defaults import KAPPA
from sirenvae.flows.core import LazyComposedTransform, LazyTransform
from sirenvae.flows.distributions import Flow, StandardNormalBase
from sirenvae.flows.residual import GRFBlock
from sirenvae.flows.root_finding import Method, OnFail, RootFinding

__all__ = ["GRF", "GraphicalResidualFlow"]

DEFAULT_ROOT_FINDING = RootFinding()


class GraphicalResidualFlow(LazyComposedTransform):
    r"""A stack of graphical residual blocks: ``flow(c)`` is :math:`F = f_T \circ \dots \circ f_1`.

    ``flow(c)`` maps in the normalizing direction, with ``call_and_ladj`` for the exact
    log-determinant; ``flow(c).inv`` solves each block in reverse order (differentiable by implicit
    gradients) and ``flow(c).solve(y)`` reports iterations and residuals. Stacked blocks keep the
    Jacobian triangular, but :math:`F_i` depends on all ancestors of :math:`i`, not only its parents.

    Arguments:
        adjacency: ``(D, D)`` boolean, ``A[i, j]`` iff ``j`` is a parent of ``i`` (a DAG).
        context_adjacency: ``(D, C)`` boolean, which context inputs each variable sees.
        blocks: The number of blocks :math:`T`.
        hidden_per_set: Hidden units per variable set and hidden layer.
        hidden_layers: Hidden layers per block.
        kappa: The spectral bound of every layer.
        activation: ``lipswish``, ``elu`` or ``tanh``.
        singletons: Also give each variable hidden units that see only itself.
        n_power_iterations: Power iterations per training step.
        atol, rtol, max_iter, method, on_fail: How the inverse is solved (:class:`RootFinding`).

    Example:
        >>> A = torch.tensor([[0, 0, 0], [1, 0, 0], [1, 1, 0]], dtype=torch.bool)
        >>> flow = GraphicalResidualFlow(A, blocks=2)
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
    ) -> None:
        if blocks < 1:
            raise ValueError(f"blocks must be >= 1, got {blocks}")
        options = RootFinding(atol=atol, rtol=rtol, max_iter=max_iter, method=method, on_fail=on_fail)
        super().__init__(
            *(
                GRFBlock(
                    adjacency,
                    context_adjacency,
                    hidden_per_set=hidden_per_set,
                    hidden_layers=hidden_layers,
                    kappa=kappa,
                    activation=activation,
                    singletons=singletons,
                    n_power_iterations=n_power_iterations,
                    root_finding=options,
                    name=f"block {i}",
                )
                for i in range(blocks)
            )
        )
        self.features = self.blocks[0].features
        self.context_features = self.blocks[0].context_features

    @property
    def blocks(self) -> torch.nn.ModuleList:
        """The blocks, first applied first."""
        return self.transforms

    @property
    def root_finding(self) -> RootFinding:
        """How the inverse is solved."""
        return self.blocks[0].root_finding

    @root_finding.setter
    def root_finding(self, options: RootFinding) -> None:
        for block in self.blocks:
            block.root_finding = options

    @property
    def effective_weights(self) -> int:
        """The number of unmasked weights over all blocks."""
        return sum(b.effective_weights for b in self.blocks)

    def certify(self) -> Tensor:
        """The exact Lipschitz bound in :math:`z` of every block's residual :math:`g`."""
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

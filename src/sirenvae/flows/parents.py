r"""The parent-conditioned stack: graphical residual blocks that keep the exact BN factorisation.

With :math:`z` the stack's input, :math:`y^0 = z` and, for :math:`t = 1, \dots, T`,

.. math:: y^t_i = y^{t-1}_i + g^t_i(y^{t-1}_i ; z_{pa(i)}, c),

optionally followed by the graph-masked affine step
:math:`u_i = (y^T_i - b_i - \sum_{j \in pa(i)} B_{ij} z_j - C_i \cdot c) / s_i`. Only the variable's
own running value is :math:`\kappa`-bounded; the parents of the *input* enter as context, so
:math:`u_i` depends on :math:`z_i` and :math:`z_{pa(i)}` only, whatever :math:`T`: a structural
equation per variable (docs/results.md, "What changed in the model"). Stacked blocks of the paper
instead let :math:`z_i` depend on all its ancestors. The Jacobian is triangular with diagonal
:math:`\prod_t (1 + \partial g^t_i / \partial y^{t-1}_i) / s_i`, so the log-determinant is exact.
The inverse goes by topological generations: a sweep solves every variable's scalar fixed points
given its parents' current values, and after as many sweeps as the graph has generations every
value is exact.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from sirenvae.flows.affine import AffineStep
from sirenvae.flows.core import Transform, check_inputs
from sirenvae.flows.residual import GraphicalResidualTransform
from sirenvae.flows.root_finding import InverseResult, RootFinding, fixed_point, implicit_gradient
from sirenvae.masks import topological_levels

__all__ = ["ParentConditionedTransform", "generations"]


def generations(A: Tensor) -> int:
    """The number of topological generations of the DAG ``A`` (longest path + 1)."""
    return int(topological_levels(A).max()) + 1 if A.shape[0] else 0


class ParentConditionedTransform(Transform):
    r"""The parent-conditioned stack with its weights prepared once (made by the flow's ``flow(c)``).

    Arguments:
        blocks: The prepared blocks, each over the features with the stack input and the context
            as its context.
        affine: The prepared affine step (:class:`~sirenvae.flows.affine.AffineStep`), or ``None``.
        context: The context :math:`c`, or ``None``.
        features: :math:`D`.
        sweeps: The number of generations, an upper bound on the inverse's sweeps.
        root_finding: How each block's scalar fixed points are solved.
        name: Names the flow in convergence errors.
    """

    def __init__(
        self,
        blocks: list[GraphicalResidualTransform],
        affine: AffineStep | None,
        context: Tensor | None,
        *,
        features: int,
        sweeps: int,
        root_finding: RootFinding,
        name: str = "a parent-conditioned flow",
    ) -> None:
        super().__init__()
        self.blocks, self.affine, self.context = blocks, affine, context
        self.features, self.sweeps = features, sweeps
        self.root_finding, self.name = root_finding, name

    def detach(self) -> ParentConditionedTransform:
        """The same transform cut from the parameters' graph (and from the context's)."""
        return ParentConditionedTransform(
            [b.detach() for b in self.blocks],
            None if self.affine is None else self.affine.detach(),
            None if self.context is None else self.context.detach(),
            features=self.features,
            sweeps=self.sweeps,
            root_finding=self.root_finding,
            name=self.name,
        )

    def _check(self, z: Tensor) -> Tensor:
        dtype = (
            self.affine.log_scale.dtype
            if self.affine is not None
            else self.blocks[0].prepared[0].weight.dtype
        )
        check_inputs(z, self.features, dtype)
        if self.context is None:
            return z
        shape = torch.broadcast_shapes(z.shape[:-1], self.context.shape[:-1])
        return z.expand(*shape, self.features)

    def _block_context(self, z: Tensor) -> Tensor:
        """The blocks' context: the stack input, then :math:`c`."""
        if self.context is None:
            return z
        c = self.context.to(z.dtype).expand(*z.shape[:-1], self.context.shape[-1])
        return torch.cat([z, c], dim=-1)

    def _offset(self, z: Tensor) -> Tensor:
        return self.affine.offset(z, self.context)

    def _run(self, z: Tensor, diag: bool) -> tuple[Tensor, Tensor | None]:
        r""":math:`F(z)` and, if ``diag``, :math:`\log \partial F_i / \partial z_i` per variable."""
        z = self._check(z)
        ctx = self._block_context(z)
        y, log_d = z, None
        for block in self.blocks:
            g, d = block.bind(ctx).g(y, diag)
            y = y + g
            if diag:
                log_d = torch.log1p(d) if log_d is None else log_d + torch.log1p(d)
        if self.affine is not None:
            log_s = self.affine.log_scale
            y = (y - self._offset(z)) * torch.exp(-log_s)
            if diag:
                log_d = -log_s.expand_as(y) if log_d is None else log_d - log_s
        if diag and log_d is None:
            log_d = torch.zeros_like(y)
        return y, log_d

    def _call(self, z: Tensor) -> Tensor:
        return self._run(z, diag=False)[0]

    def call_and_ladj(self, z: Tensor) -> tuple[Tensor, Tensor]:
        y, log_d = self._run(z, diag=True)
        return y, log_d.sum(-1)

    def solve(self, u: Tensor, **options) -> InverseResult:
        """Inverts without gradients, generation by generation, and reports the iterations.

        Keyword arguments override the :class:`~sirenvae.flows.RootFinding` options.
        """
        opts = replace(self.root_finding, **options) if options else self.root_finding
        return self.detach()._solve(u, opts)

    @torch.no_grad()
    def _solve(self, u: Tensor, opts: RootFinding) -> InverseResult:
        u = self._check(u.detach())
        z = u.clone()
        iterations: list[int] = []
        residual, converged = 0.0, True
        tol = opts.atol + (4 * torch.finfo(u.dtype).eps if opts.rtol is None else opts.rtol) * u.abs()
        # each block's solution of the last sweep starts its next solve: settled variables stay put
        starts: list[Tensor | None] = [None] * len(self.blocks)
        for _ in range(max(1, self.sweeps)):
            ctx = self._block_context(z)
            y = u
            if self.affine is not None:
                y = u * torch.exp(self.affine.log_scale) + self._offset(z)
            for i, block in reversed(list(enumerate(self.blocks))):
                # full Newton steps: errors left in a parent are amplified by the sweeps after it
                r = fixed_point(block.bind(ctx).g, y, opts, chord=False, start=starts[i])
                iterations.extend(r.iterations)
                residual, converged = max(residual, r.residual), converged and r.converged
                y = starts[i] = r.z
            settled = bool(((y - z).abs() <= tol).all())
            z = y
            if settled:
                break
        # as for the paper's stack, the tolerance holds per block (in the blocks' units); the residual
        # reported is also that of the whole map, |F(z) - u|, after the affine step divides by s
        r = (self._run(z, diag=False)[0] - u).abs()
        final = r.max().item() if r.numel() else 0.0
        return InverseResult(z, tuple(iterations), max(residual, final), converged)

    def _inverse(self, u: Tensor) -> Tensor:
        """The inverse by :meth:`solve`, with implicit gradients when autograd is on."""
        opts = self.root_finding
        fixed = self.detach()
        result = fixed._solve(u, opts)
        result.check(opts, self.name)
        if not torch.is_grad_enabled():
            return result.z

        def residual(z: Tensor) -> Tensor:
            return self._call(z) - z

        def residual_and_diag(z: Tensor) -> tuple[Tensor, Tensor]:
            y, log_d = fixed._run(z, diag=True)
            return y - z, torch.exp(log_d) - 1

        return implicit_gradient(
            result.z,
            u,
            residual,
            residual_and_diag,
            atol=opts.atol,
            max_sweeps=max(opts.max_iter, self.features + 1),
        )

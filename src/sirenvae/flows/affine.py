r"""The graph-masked affine step: a linear-Gaussian Bayesian network as one transform.

.. math:: u_i = \frac{z_i - b_i - \sum_{j \in pa(i)} B_{ij} z_j - C_i \cdot c}{s_i},
    \qquad \log |\det J| = -\sum_i \log s_i,

that is :math:`u = S^{-1}((I - B \odot A) z - b - (C \odot A_c) c)`. Over a standard normal base this
is exactly a linear-Gaussian BN with graph :math:`A`; its inverse is one triangular solve in a
topological order. Couplings start small and random: at zero, the couplings from latents to observed
nodes sit at a saddle of the marginal likelihood.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sirenvae.flows.core import LazyTransform, Transform, check_context, check_inputs
from sirenvae.flows.root_finding import InverseResult
from sirenvae.layers import Couplings, GraphCoupling
from sirenvae.masks import check_adjacency, topological_levels

__all__ = ["AffineStep", "GraphAffine", "GraphAffineTransform"]

#: The standard deviation of the initial couplings.
INIT_COUPLING = 0.1


def topological_order(A: Tensor) -> Tensor:
    """A topological order of the DAG ``A`` (``A[i, j]``: ``j`` is a parent of ``i``)."""
    return torch.argsort(topological_levels(A), stable=True)


@dataclass(frozen=True)
class AffineStep:
    r"""The affine step's parameters with their masks applied, prepared once (:meth:`GraphAffine.prepared`).

    Attributes:
        coupling: :math:`B \odot A` (:class:`~sirenvae.layers.Couplings`: products and the inverse).
        context: :math:`C \odot A_c`, or ``None`` without a context.
        shift: :math:`b`.
        log_scale: :math:`\log s`.
        scale_context: :math:`E \odot A_e`, the context's linear effect on :math:`\log s`, or ``None``.
    """

    coupling: Couplings
    context: Tensor | None
    shift: Tensor
    log_scale: Tensor
    scale_context: Tensor | None = None

    def log_scale_at(self, c: Tensor | None) -> Tensor:
        r""":math:`\log s + (E \odot A_e) c`: the log-scales given the context (``log_scale`` without
        a scale context), broadcast over ``c``'s leading dims.
        """
        if self.scale_context is None or c is None:
            return self.log_scale
        return self.log_scale + c.to(self.log_scale.dtype) @ self.scale_context.T

    def offset(self, z: Tensor | None, c: Tensor | None) -> Tensor:
        r""":math:`b + (B \odot A) z + (C \odot A_c) c`, broadcast over leading dims (either term
        skipped when absent).
        """
        out = self.shift
        if z is not None:
            out = out + self.coupling.matvec(z)
        if self.context is not None and c is not None:
            out = out + c.to(self.shift.dtype) @ self.context.T
        return out

    def detach(self) -> AffineStep:
        """The same step cut from the parameters' graph."""
        context = None if self.context is None else self.context.detach()
        scale = None if self.scale_context is None else self.scale_context.detach()
        return AffineStep(
            self.coupling.detach(), context, self.shift.detach(), self.log_scale.detach(), scale
        )


class GraphAffine(GraphCoupling, LazyTransform):
    r"""``GraphAffine(A, Ac)(c)`` is :math:`z \mapsto S^{-1}((I - B \odot A) z - b - (C \odot A_c) c)`.

    Arguments:
        adjacency: ``(D, D)`` boolean, ``A[i, j]`` iff ``j`` is a parent of ``i`` (a DAG).
        context_adjacency: ``(D, C)`` boolean, which context inputs each variable sees.
        scale_context: ``(D, C)`` boolean, which context inputs also move each variable's log-scale,
            :math:`\log s_i(c) = \log s_i + \sum_j E_{ij} c_j` (a heteroscedastic step; the effect
            starts at zero), e.g. an encoder's presence bits, so that a missing informative value
            can widen the posterior. ``None``: constant scales.
        layout: ``"dense"`` (a masked ``(D, D)`` ``coupling``), ``"block-sparse"`` (one coupling
            per edge, of shape ``(edges,)`` in the order of ``A.nonzero()``; the inverse then goes
            by generations, a sweep each, instead of a dense triangular solve) or ``"auto"``
            (:class:`~sirenvae.layers.GraphCoupling`).

    Example:
        >>> A = torch.tensor([[0, 0], [1, 0]], dtype=torch.bool)
        >>> t = GraphAffine(A)()
        >>> z = torch.randn(4, 2)
        >>> torch.allclose(t.inv(t(z)), z, atol=1e-6)
        True
    """

    def __init__(
        self,
        adjacency: Tensor,
        context_adjacency: Tensor | None = None,
        *,
        layout: str = "dense",
        scale_context: Tensor | None = None,
    ) -> None:
        super().__init__()
        A, C = check_adjacency(adjacency, context_adjacency)
        D = A.shape[0]
        self.features, self.context_features = D, C.shape[1]
        self._init_couplings(A, layout, INIT_COUPLING)
        self.register_buffer("context_mask", C)
        context = nn.Parameter(torch.randn(C.shape) * INIT_COUPLING * C) if C.shape[1] else None
        self.context_coupling = context
        self.shift = nn.Parameter(torch.zeros(D))
        self.log_scale = nn.Parameter(torch.zeros(D))
        if scale_context is not None:
            E = torch.as_tensor(scale_context, dtype=torch.bool)
            if tuple(E.shape) != (D, C.shape[1]):
                raise ValueError(f"scale_context must have shape ({D}, {C.shape[1]}), got {tuple(E.shape)}")
            if bool((E & ~C.bool()).any()):
                raise ValueError(
                    "scale_context must be within context_adjacency (a variable's scale reads its context)"
                )
            self.register_buffer("scale_mask", E)
            self.scale_coupling = nn.Parameter(torch.zeros(E.shape))
        else:
            self.scale_mask = self.scale_coupling = None

    @property
    def effective_weights(self) -> int:
        """The number of free parameters."""
        scale = 0 if self.scale_mask is None else int(self.scale_mask.sum())
        return self.edges + int(self.context_mask.sum()) + 2 * self.features + scale

    def prepared(self) -> AffineStep:
        """The step's parameters with their masks applied (:class:`AffineStep`)."""
        C = self.context_coupling * self.context_mask if self.context_features else None
        E = None if self.scale_coupling is None else self.scale_coupling * self.scale_mask
        return AffineStep(self.couplings(), C, self.shift, self.log_scale, E)

    def offset(self, z: Tensor | None, c: Tensor | None) -> Tensor:
        r""":math:`b + (B \odot A) z + (C \odot A_c) c`, broadcast over leading dims."""
        return self.prepared().offset(z, c)

    def forward(self, c: Tensor | None = None) -> GraphAffineTransform:
        c = check_context(c, self.context_features)
        return GraphAffineTransform(self, c)


class GraphAffineTransform(Transform):
    r"""The affine step bound to a context; inverse by a triangular solve in topological order."""

    def __init__(self, step: GraphAffine, context: Tensor | None) -> None:
        super().__init__()
        self.step, self.context = step, context

    def _check(self, z: Tensor) -> None:
        check_inputs(z, self.step.features, self.step.shift.dtype)

    def solve(self, u: Tensor, **options) -> InverseResult:
        """The inverse without gradients, as an :class:`~sirenvae.flows.InverseResult` (exact: no
        iterations, zero residual), so that compositions with fixed-point transforms can report.
        """
        with torch.no_grad():
            return InverseResult(self._inverse(u), (), 0.0, True)

    def _call(self, z: Tensor) -> Tensor:
        return self.call_and_ladj(z)[0]

    def call_and_ladj(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self._check(z)
        prepared = self.step.prepared()
        log_s = prepared.log_scale_at(self.context)
        u = (z - prepared.offset(z, self.context)) * torch.exp(-log_s)
        return u, (-log_s.sum(-1)).expand(u.shape[:-1])

    def _inverse(self, u: Tensor) -> Tensor:
        self._check(u)
        prepared = self.step.prepared()
        rhs = u * torch.exp(prepared.log_scale_at(self.context)) + prepared.offset(None, self.context)
        return prepared.coupling.solve(rhs)

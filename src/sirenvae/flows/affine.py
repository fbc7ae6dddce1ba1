r"""The graph-masked affine step: a linear-Gaussian Bayesian network as one transform.

.. math:: u_i = \frac{z_i - b_i - \sum_{j \in pa(i)} B_{ij} z_j - C_i \cdot c}{s_i},
    \qquad \log |\det J| = -\sum_i \log s_i,

that is :math:`u = S^{-1}((I - B \odot A) z - b - (C \odot A_c) c)`. Over a standard normal base this
is exactly a linear-Gaussian BN with graph :math:`A`; its inverse is one triangular solve in a
topological order. Couplings start small and random: at zero, the couplings from latents to observed
nodes sit at a saddle of the marginal likelihood.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sirenvae.flows.core import LazyTransform, Transform, check_context, check_inputs
from sirenvae.flows.root_finding import InverseResult
from sirenvae.masks import check_adjacency, topological_levels

__all__ = ["GraphAffine", "GraphAffineTransform", "affine_offset"]

#: The standard deviation of the initial couplings.
INIT_COUPLING = 0.1


def topological_order(A: Tensor) -> Tensor:
    """A topological order of the DAG ``A`` (``A[i, j]``: ``j`` is a parent of ``i``)."""
    return torch.argsort(topological_levels(A), stable=True)


#: Couplings by edges: ``(child, parent, weight)``, ``B[child, parent] = weight``.
EdgeCoupling = tuple[Tensor, Tensor, Tensor]


def affine_offset(
    B: Tensor | EdgeCoupling, C: Tensor | None, b: Tensor, z: Tensor | None, c: Tensor | None
) -> Tensor:
    r""":math:`b + B z + C c` with masked couplings (either term skipped when absent); ``B`` dense
    ``(D, D)`` or by edges (gathered and added per child, cost by edges).
    """
    out = b
    if z is not None:
        if isinstance(B, tuple):
            child, parent, w = B
            out = out + torch.zeros_like(z).index_add(-1, child, z[..., parent] * w)
        else:
            out = out + z @ B.T
    if C is not None and c is not None:
        out = out + c.to(b.dtype) @ C.T
    return out


class GraphAffine(LazyTransform):
    r"""``GraphAffine(A, Ac)(c)`` is :math:`z \mapsto S^{-1}((I - B \odot A) z - b - (C \odot A_c) c)`.

    Arguments:
        adjacency: ``(D, D)`` boolean, ``A[i, j]`` iff ``j`` is a parent of ``i`` (a DAG).
        context_adjacency: ``(D, C)`` boolean, which context inputs each variable sees.
        sparse: Keep one coupling per edge (``coupling`` of shape ``(edges,)``, in the order of
            ``A.nonzero()``) instead of a masked ``(D, D)`` matrix; the inverse then goes by
            generations (a sweep per generation) instead of a dense triangular solve.

    Example:
        >>> A = torch.tensor([[0, 0], [1, 0]], dtype=torch.bool)
        >>> t = GraphAffine(A)()
        >>> z = torch.randn(4, 2)
        >>> torch.allclose(t.inv(t(z)), z, atol=1e-6)
        True
    """

    def __init__(
        self, adjacency: Tensor, context_adjacency: Tensor | None = None, *, sparse: bool = False
    ) -> None:
        super().__init__()
        A, C = check_adjacency(adjacency, context_adjacency)
        D = A.shape[0]
        self.features, self.context_features = D, C.shape[1]
        self.sparse = sparse
        levels = topological_levels(A)
        self._generations = int(levels.max()) + 1
        if sparse:
            child, parent = torch.nonzero(A, as_tuple=True)
            self.register_buffer("child", child)
            self.register_buffer("parent", parent)
            self.coupling = nn.Parameter(torch.randn(child.shape) * INIT_COUPLING)
        else:
            self.register_buffer("mask", A)
            self.register_buffer("_order", torch.argsort(levels, stable=True), persistent=False)
            self.coupling = nn.Parameter(torch.randn(D, D) * INIT_COUPLING * A)
        self.register_buffer("context_mask", C)
        context = nn.Parameter(torch.randn(C.shape) * INIT_COUPLING * C) if C.shape[1] else None
        self.context_coupling = context
        self.shift = nn.Parameter(torch.zeros(D))
        self.log_scale = nn.Parameter(torch.zeros(D))

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        """Also loads the other layout's checkpoint: a ``(D, D)`` coupling and its mask on the
        sparse path, couplings by edges on the dense one.
        """
        mask = state_dict.get(prefix + "mask")
        child, parent = state_dict.get(prefix + "child"), state_dict.get(prefix + "parent")
        if not self.sparse and child is not None and parent is not None:
            A = torch.zeros(self.features, self.features, dtype=torch.bool)
            A[child.cpu(), parent.cpu()] = True
            if not torch.equal(self.mask.cpu(), A):
                raise ValueError(f"{prefix}child/parent of the checkpoint do not match this step's graph")
            edges = state_dict[prefix + "coupling"]
            dense = edges.new_zeros(self.features, self.features)
            dense[child.to(edges.device), parent.to(edges.device)] = edges
            state_dict[prefix + "coupling"], state_dict[prefix + "mask"] = dense, self.mask
            del state_dict[prefix + "child"], state_dict[prefix + "parent"]
        if self.sparse and mask is not None:
            A = torch.zeros(self.features, self.features, dtype=torch.bool)
            A[self.child.cpu(), self.parent.cpu()] = True
            if not torch.equal(mask.bool().cpu(), A):
                raise ValueError(f"{prefix}mask of the checkpoint does not match this step's graph")
            del state_dict[prefix + "mask"]
            dense = state_dict[prefix + "coupling"]
            state_dict[prefix + "coupling"] = dense[self.child.to(dense.device), self.parent.to(dense.device)]
            state_dict.setdefault(prefix + "child", self.child)
            state_dict.setdefault(prefix + "parent", self.parent)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def effective_weights(self) -> int:
        """The number of free parameters."""
        edges = self.coupling.numel() if self.sparse else int(self.mask.sum())
        return edges + int(self.context_mask.sum()) + 2 * self.features

    def prepared(self) -> tuple[Tensor | EdgeCoupling, Tensor | None, Tensor, Tensor]:
        r"""``(B ⊙ A, C ⊙ A_c or None, b, log s)``: the step's parameters with their masks applied
        (``B`` by edges on the sparse path).
        """
        C = self.context_coupling * self.context_mask if self.context_features else None
        B = (self.child, self.parent, self.coupling) if self.sparse else self.coupling * self.mask
        return B, C, self.shift, self.log_scale

    def offset(self, z: Tensor | None, c: Tensor | None) -> Tensor:
        r""":math:`b + (B \odot A) z + (C \odot A_c) c`, broadcast over leading dims."""
        B, C, b, _ = self.prepared()
        return affine_offset(B, C, b, z, c)

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
        self._check(z)
        return (z - self.step.offset(z, self.context)) * torch.exp(-self.step.log_scale)

    def call_and_ladj(self, z: Tensor) -> tuple[Tensor, Tensor]:
        u = self._call(z)
        return u, (-self.step.log_scale.sum()).expand(u.shape[:-1])

    def _inverse(self, u: Tensor) -> Tensor:
        self._check(u)
        step = self.step
        rhs = u * torch.exp(step.log_scale) + step.offset(None, self.context)
        if step.sparse:
            # z = rhs + B z: after t sweeps the first t generations are exact
            B = step.prepared()[0]
            z = rhs
            for _ in range(step._generations - 1):
                z = affine_offset(B, None, rhs, z, None)
            return z
        P = step._order
        shape = rhs.shape[:-1]
        L = torch.eye(step.features, dtype=rhs.dtype, device=rhs.device) - step.coupling * step.mask
        L = L[P][:, P]
        flat = rhs.reshape(-1, step.features)[:, P].T
        zP = torch.linalg.solve_triangular(L, flat, upper=False, unitriangular=True).T
        z = torch.empty_like(zP)
        z[:, P] = zP
        return z.reshape(*shape, step.features)

r"""Graph-masked couplings :math:`B \odot A` between the variables of a DAG, in either layout.

The affine step's :math:`B` (:class:`~sirenvae.flows.GraphAffine`): a ``(D, D)`` matrix whose
entry :math:`B_{ij}` exists iff :math:`j` is a parent of :math:`i`. Dense, it is stored whole as
``coupling`` with its ``mask``, and :math:`(I - B)^{-1}` is one triangular solve in a topological
order; block-sparse, one ``coupling`` per edge with its ``child`` and ``parent``, memory by edges,
and the inverse goes by generations (a sweep each). A module holding couplings subclasses
:class:`GraphCoupling`, which keeps those tensors on the module itself (their checkpoint names) and
loads a checkpoint of either layout into either.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from sirenvae.layers.layout import choose_layout
from sirenvae.masks import topological_levels

__all__ = ["Couplings", "GraphCoupling"]


@dataclass(frozen=True)
class Couplings:
    r""":math:`B \odot A` prepared: ``weight`` dense ``(D, D)`` with a topological ``order``, or by
    edges ``(E,)`` with their ``child`` and ``parent`` and the ``sweeps`` its inverse needs.
    """

    weight: Tensor
    child: Tensor | None = None
    parent: Tensor | None = None
    order: Tensor | None = None
    sweeps: int = 0

    def matvec(self, z: Tensor) -> Tensor:
        r""":math:`B z`, broadcast over leading dims (by edges: gathered and added per child)."""
        if self.child is None:
            return z @ self.weight.T
        return torch.zeros_like(z).index_add(-1, self.child, z[..., self.parent] * self.weight)

    def solve(self, rhs: Tensor) -> Tensor:
        r"""The :math:`z` with :math:`z = \mathrm{rhs} + B z`, that is :math:`(I - B)^{-1}\,\mathrm{rhs}`."""
        if self.child is not None:
            # after t sweeps the first t generations are exact
            z = rhs
            for _ in range(self.sweeps):
                z = rhs + self.matvec(z)
            return z
        P, D = self.order, self.weight.shape[0]
        shape = rhs.shape[:-1]
        L = torch.eye(D, dtype=rhs.dtype, device=rhs.device) - self.weight
        L = L[P][:, P]
        flat = rhs.reshape(-1, D)[:, P].T
        zP = torch.linalg.solve_triangular(L, flat, upper=False, unitriangular=True).T
        z = torch.empty_like(zP)
        z[:, P] = zP
        return z.reshape(*shape, D)

    def detach(self) -> Couplings:
        """The same couplings cut from the parameters' graph."""
        return replace(self, weight=self.weight.detach())


class GraphCoupling(nn.Module):
    r"""A module with couplings :math:`B \odot A` (``coupling``) in a layout; made by
    :meth:`_init_couplings` in the subclass's constructor.
    """

    def _init_couplings(self, A: Tensor, layout: str, scale: float) -> None:
        r"""Couplings over the DAG ``A`` (``A[i, j]``: ``j`` is a parent of ``i``) drawn from
        :math:`\mathcal{N}(0, \mathrm{scale}^2)`; ``layout`` ``"auto"`` as for a flow with one unit
        per variable (:func:`~sirenvae.layers.layout.choose_layout`).
        """
        D = A.shape[0]
        layout = choose_layout(layout, connections=int(torch.count_nonzero(A)), cells=A.numel(), units=D)
        levels = topological_levels(A)
        self._variables = D
        self._generations = int(levels.max()) + 1
        if layout == "block-sparse":
            child, parent = torch.nonzero(A, as_tuple=True)
            self.register_buffer("child", child)
            self.register_buffer("parent", parent)
            self.coupling = nn.Parameter(torch.randn(child.shape) * scale)
        else:
            self.register_buffer("mask", A)
            self.register_buffer("_order", torch.argsort(levels, stable=True), persistent=False)
            self.coupling = nn.Parameter(torch.randn(D, D) * scale * A)

    @property
    def layout(self) -> str:
        """``"dense"`` or ``"block-sparse"``."""
        return "dense" if "mask" in self._buffers else "block-sparse"

    @property
    def edges(self) -> int:
        """The number of couplings (the edges of the DAG)."""
        return int(self.mask.sum()) if self.layout == "dense" else self.coupling.numel()

    def couplings(self) -> Couplings:
        r""":math:`B \odot A` with what products and the inverse need."""
        if self.layout == "dense":
            return Couplings(self.coupling * self.mask, order=self._order)
        return Couplings(self.coupling, self.child, self.parent, sweeps=self._generations - 1)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        """Also loads the other layout's checkpoint: a ``(D, D)`` coupling and its mask into
        couplings by edges, couplings by edges into a dense one.
        """
        mask = state_dict.get(prefix + "mask")
        child, parent = state_dict.get(prefix + "child"), state_dict.get(prefix + "parent")
        D = self._variables
        if self.layout == "dense" and child is not None and parent is not None:
            A = torch.zeros(D, D, dtype=torch.bool)
            A[child.cpu(), parent.cpu()] = True
            if not torch.equal(self.mask.cpu(), A):
                raise ValueError(f"{prefix}child/parent of the checkpoint do not match this step's graph")
            edges = state_dict[prefix + "coupling"]
            dense = edges.new_zeros(D, D)
            dense[child.to(edges.device), parent.to(edges.device)] = edges
            state_dict[prefix + "coupling"], state_dict[prefix + "mask"] = dense, self.mask
            del state_dict[prefix + "child"], state_dict[prefix + "parent"]
        if self.layout == "block-sparse" and mask is not None:
            A = torch.zeros(D, D, dtype=torch.bool)
            A[self.child.cpu(), self.parent.cpu()] = True
            if not torch.equal(mask.bool().cpu(), A):
                raise ValueError(f"{prefix}mask of the checkpoint does not match this step's graph")
            del state_dict[prefix + "mask"]
            dense = state_dict[prefix + "coupling"]
            state_dict[prefix + "coupling"] = dense[self.child.to(dense.device), self.parent.to(dense.device)]
            state_dict.setdefault(prefix + "child", self.child)
            state_dict.setdefault(prefix + "parent", self.parent)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

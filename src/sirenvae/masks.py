r"""Masks of graphical networks from variable sets carried by units.

Every unit carries a set of variables. The input unit of variable :math:`j` (a feature or a context
input) carries :math:`\{j\}`; output unit :math:`i` carries :math:`S_i = \{i\} \cup pa(i)`; a hidden
unit carries :math:`S_v` or the singleton :math:`\{v\}` of its *designated* variable :math:`v`.
A connection is kept iff the receiving unit's set contains the sending unit's set, so output
:math:`i` depends on :math:`S_i` only.

Hidden units are sorted by designated variable, ``k`` consecutive units per variable, so the
connections between units of the same designated variable form ``k x k`` diagonal blocks; the exact
log-determinant of a graphical residual block only needs those blocks.

References:
    | Graphical Residual Flows (Mouton & Kroon, 2022), ICLR workshop DGM4HSD
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import BoolTensor, Tensor

__all__ = ["GraphicalMasks", "check_adjacency", "graphical_masks", "inclusion_mask", "variable_sets"]


def inclusion_mask(receiver: Tensor, sender: Tensor) -> BoolTensor:
    r"""``M[r, s]`` iff the set of sending unit ``s`` is contained in the set of receiving unit ``r``.

    Sets are rows of boolean matrices over the same variables:
    :math:`S_s \subseteq S_r \iff |S_s \setminus S_r| = 0`.
    """
    return (sender.float() @ (~receiver).float().T).T == 0


def check_adjacency(
    adjacency: Tensor, context_adjacency: Tensor | None = None
) -> tuple[BoolTensor, BoolTensor]:
    """Validates a ``(D, D)`` DAG adjacency (``A[i, j]``: j is a parent of i) and a ``(D, C)``
    context adjacency; returns both as boolean tensors with an empty diagonal for ``A``.

    The diagonal may be given (as zuko requires); it is ignored.
    """
    A = torch.as_tensor(adjacency)
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] == 0:
        raise ValueError(f"adjacency must be a non-empty square (D, D) matrix, got {tuple(A.shape)}")
    A = A.bool().clone()
    A.fill_diagonal_(False)
    # Kahn's algorithm: a DAG can be emptied by removing nodes without parents
    remaining = A.clone()
    alive = torch.ones(A.shape[0], dtype=torch.bool)
    while alive.any():
        free = alive & ~remaining[:, alive].any(dim=1)
        if not free.any():
            cycle = torch.nonzero(alive).flatten().tolist()
            raise ValueError(f"adjacency is not acyclic: variables {cycle[:10]} lie on or after a cycle")
        alive &= ~free
        remaining[:, free] = False
    if context_adjacency is None:
        C = torch.zeros(A.shape[0], 0, dtype=torch.bool)
    else:
        C = torch.as_tensor(context_adjacency).bool()
        if C.ndim != 2 or C.shape[0] != A.shape[0]:
            raise ValueError(
                f"context_adjacency must have shape (D, C) = ({A.shape[0]}, C), got {tuple(C.shape)}"
            )
    return A, C


def variable_sets(adjacency: Tensor, context_adjacency: Tensor | None = None) -> BoolTensor:
    r"""The sets :math:`S_i = \{i\} \cup pa(i) \cup pa_c(i)` as a ``(D, D + C)`` boolean matrix."""
    A, C = check_adjacency(adjacency, context_adjacency)
    D = A.shape[0]
    return torch.cat([A | torch.eye(D, dtype=torch.bool), C], dim=1)


@dataclass(frozen=True)
class GraphicalMasks:
    """The masks of one graphical MLP.

    Attributes:
        layers: Masks of the linear layers, each ``(out, in)``: input to hidden, hidden to hidden,
            hidden to output.
        units: Hidden units per variable (``k``); hidden unit ``r`` is designated to ``r // k``.
        features: ``D``, the number of outputs (and of non-context inputs).
        context: ``C``, the number of context inputs.
    """

    layers: tuple[BoolTensor, ...]
    units: int
    features: int
    context: int

    @property
    def effective_weights(self) -> int:
        """The number of unmasked weights (biases excluded)."""
        return int(sum(int(M.sum()) for M in self.layers))


def graphical_masks(
    adjacency: Tensor,
    context_adjacency: Tensor | None = None,
    *,
    hidden_per_set: int = 4,
    hidden_layers: int = 2,
    singletons: bool = False,
) -> GraphicalMasks:
    r"""Builds the masks of a graphical MLP :math:`\mathbb{R}^{D + C} \to \mathbb{R}^D`.

    Arguments:
        adjacency: ``(D, D)``, ``A[i, j]`` iff ``j`` is a parent of ``i``.
        context_adjacency: ``(D, C)``, ``C[i, j]`` iff context input ``j`` is a parent of ``i``.
        hidden_per_set: Hidden units per variable set in every hidden layer.
        hidden_layers: The number of hidden layers (at least 1).
        singletons: Also give every variable ``hidden_per_set`` units carrying :math:`\{v\}`.
    """
    if hidden_per_set < 1:
        raise ValueError(f"hidden_per_set must be >= 1, got {hidden_per_set}")
    if hidden_layers < 1:
        raise ValueError(f"hidden_layers must be >= 1, got {hidden_layers}")
    S = variable_sets(adjacency, context_adjacency)
    D, DC = S.shape
    eye = torch.eye(D, DC, dtype=torch.bool)
    # the kinds of sets a hidden unit can carry: S_v for every v, then {v} if singletons
    kinds = torch.cat([S, eye]) if singletons else S
    per_kind = hidden_per_set
    k = per_kind * (2 if singletons else 1)
    # hidden unit r = v * k + t carries kind v (t < per_kind) or D + v (singleton)
    t = torch.arange(k).repeat(D)
    v = torch.arange(D).repeat_interleave(k)
    unit_kind = torch.where(t < per_kind, v, v + D)
    U = kinds[unit_kind]  # (D k, D + C) sets of hidden units

    kind_sub = inclusion_mask(kinds, kinds)  # (kinds, kinds)
    hidden = kind_sub[unit_kind][:, unit_kind]
    first = U  # input unit j carries {j}: kept iff j in the receiver's set
    last = inclusion_mask(S, kinds)[:, unit_kind]
    layers = (first, *([hidden] * (hidden_layers - 1)), last)
    return GraphicalMasks(tuple(M.contiguous() for M in layers), k, D, DC - D)

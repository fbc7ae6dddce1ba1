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

__all__ = [
    "BlockLayer",
    "GraphicalBlocks",
    "GraphicalMasks",
    "check_adjacency",
    "edge_blocks",
    "graphical_blocks",
    "graphical_masks",
    "inclusion_mask",
    "set_blocks",
    "set_groups",
    "topological_levels",
    "variable_sets",
]


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
    topological_levels(A)
    if context_adjacency is None:
        C = torch.zeros(A.shape[0], 0, dtype=torch.bool)
    else:
        C = torch.as_tensor(context_adjacency).bool()
        if C.ndim != 2 or C.shape[0] != A.shape[0]:
            raise ValueError(
                f"context_adjacency must have shape (D, C) = ({A.shape[0]}, C), got {tuple(C.shape)}"
            )
    return A, C


def topological_levels(A: Tensor) -> Tensor:
    """The generation of every node of ``A`` (``A[i, j]``: j is a parent of i; roots are 0).

    Kahn's algorithm on the edge list, one generation at a time, so the cost grows with the edges;
    raises one clear line if ``A`` has a cycle.
    """
    D = A.shape[0]
    child, parent = torch.nonzero(A.cpu(), as_tuple=True)
    keep = child != parent
    child, parent = child[keep], parent[keep]
    indegree = torch.bincount(child, minlength=D)
    level = torch.zeros(D, dtype=torch.long)
    alive = torch.ones(D, dtype=torch.bool)
    g = 0
    while alive.any():
        free = alive & (indegree == 0)
        if not free.any():
            cycle = torch.nonzero(alive).flatten().tolist()
            raise ValueError(f"adjacency is not acyclic: variables {cycle[:10]} lie on or after a cycle")
        level[free] = g
        alive &= ~free
        indegree = indegree - torch.bincount(child[free[parent]], minlength=D)
        g += 1
    return level


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


@dataclass(frozen=True)
class BlockLayer:
    """One layer of a graphical MLP stored by blocks between the unit groups of variables.

    Receiving group ``rows[e]`` gets a dense ``out_units x in_units`` block from sending group
    ``cols[e]``, with the pattern ``mask[e]``. With ``diagonal`` (a graphical flow's layers) the
    first ``out_blocks`` blocks are the diagonal (``rows = cols = arange``): a unit group's
    connections from its own variable's group; otherwise the blocks are in any order
    (:func:`set_blocks`). Memory grows with the number of blocks, that is with the edges of the
    graph, not with ``D^2``.
    """

    rows: Tensor
    cols: Tensor
    mask: BoolTensor
    out_blocks: int
    in_blocks: int
    diagonal: bool = True

    @property
    def shape(self) -> tuple[int, int]:
        """The shape ``(out, in)`` of the equivalent dense mask."""
        return self.out_blocks * self.mask.shape[1], self.in_blocks * self.mask.shape[2]

    def units(self) -> tuple[Tensor, Tensor]:
        """Unit-level ``(row, col)`` of every kept connection, in the order of ``mask.nonzero()``."""
        e, a, b = torch.nonzero(self.mask, as_tuple=True)
        return self.rows[e] * self.mask.shape[1] + a, self.cols[e] * self.mask.shape[2] + b

    def dense(self) -> BoolTensor:
        """The equivalent dense ``(out, in)`` mask (for checks on small graphs)."""
        M = torch.zeros(self.shape, dtype=torch.bool)
        M[self.units()] = True
        return M

    def dense_weight(self, blocks: Tensor) -> Tensor:
        """The dense ``(out, in)`` matrix of a weight stored by these blocks, ``(blocks, out, in)``."""
        e, a, b = (i.to(blocks.device) for i in torch.nonzero(self.mask, as_tuple=True))
        r, c = (i.to(blocks.device) for i in self.units())
        dense = blocks.new_zeros(self.shape)
        dense[r, c] = blocks[e, a, b]
        return dense

    def blocks_of(self, dense: Tensor) -> Tensor:
        """A dense ``(out, in)`` weight by these blocks, ``(blocks, out_units, in_units)``; the inverse
        of :meth:`dense_weight` on the kept connections (the others are dropped).
        """
        e, a, b = (i.to(dense.device) for i in torch.nonzero(self.mask, as_tuple=True))
        r, c = (i.to(dense.device) for i in self.units())
        blocks = dense.new_zeros(self.mask.shape)
        blocks[e, a, b] = dense[r, c]
        return blocks

    def with_units(
        self, inputs: Tensor | int | None = None, outputs: Tensor | int | None = None
    ) -> BlockLayer:
        r"""The same layer with several units per variable on either side.

        Input group ``c`` becomes ``inputs[c]`` consecutive groups of one unit (the one-hot block of
        a categorical parent, a mask bit beside a value), each with the group's connections; output
        group ``r`` becomes ``outputs[r]`` groups (a head with several outputs per node). Every
        unit keeps its variable's connections, so the dependence between variables is the graph's.
        An int means that many units for every group. Expanding a side needs one unit per group
        there (a first layer's inputs, a last layer's outputs). The diagonal blocks stay first
        (``diagonal``) while the groups they join keep one unit each.
        """
        rows, cols, mask, diagonal = self.rows, self.cols, self.mask, self.diagonal
        out_blocks, in_blocks = self.out_blocks, self.in_blocks
        if inputs is not None:
            n = _unit_counts(inputs, in_blocks, mask.shape[2], "input")
            e, t = _ranges(n[cols])
            rows, cols, mask = rows[e], (torch.cumsum(n, 0) - n)[cols[e]] + t, mask[e]
            diagonal = diagonal and bool((n[:out_blocks] == 1).all())
            in_blocks = int(n.sum())
        if outputs is not None:
            n = _unit_counts(outputs, out_blocks, mask.shape[1], "output")
            e, t = _ranges(n[rows])
            rows, cols, mask = (torch.cumsum(n, 0) - n)[rows[e]] + t, cols[e], mask[e]
            diagonal = diagonal and bool((n == 1).all())
            out_blocks = int(n.sum())
        return BlockLayer(rows, cols, mask.contiguous(), out_blocks, in_blocks, diagonal)


def _unit_counts(counts: Tensor | int, groups: int, units: int, side: str) -> Tensor:
    """Units per group as a ``(groups,)`` long tensor, checked."""
    n = torch.as_tensor(counts, dtype=torch.long)
    n = n.expand(groups).clone() if n.ndim == 0 else n
    if n.shape != (groups,) or bool((n < 1).any()):
        raise ValueError(f"{side} units must be one count >= 1 per group ({groups}), got {counts!r}")
    if units != 1 and bool((n != 1).any()):
        raise ValueError(f"several {side} units per variable need one {side} unit per block, not {units}")
    return n


def edge_blocks(sets: Tensor) -> BlockLayer:
    """A layer with a ``1 x 1`` block per connection of the boolean ``(out, in)`` matrix ``sets``
    (output ``o`` from input ``i`` iff ``sets[o, i]``), in the order of ``sets.nonzero()``.
    """
    S = torch.as_tensor(sets).bool()
    r, c = torch.nonzero(S, as_tuple=True)
    return BlockLayer(r, c, torch.ones(r.numel(), 1, 1, dtype=torch.bool), *S.shape, diagonal=False)


@dataclass(frozen=True)
class GraphicalBlocks:
    """The masks of one graphical MLP by blocks (:class:`BlockLayer`), as :class:`GraphicalMasks`."""

    layers: tuple[BlockLayer, ...]
    units: int
    features: int
    context: int

    @property
    def effective_weights(self) -> int:
        """The number of unmasked weights (biases excluded)."""
        return int(sum(int(layer.mask.sum()) for layer in self.layers))


def _ranges(count: Tensor) -> tuple[Tensor, Tensor]:
    """Consecutive ranges of lengths ``count``: for every position, its range and its offset in it."""
    owner = torch.repeat_interleave(torch.arange(count.numel()), count)
    return owner, torch.arange(owner.numel()) - torch.repeat_interleave(torch.cumsum(count, 0) - count, count)


def _subsets(D: int, width: int, members: tuple[Tensor, Tensor], pairs: tuple[Tensor, Tensor]) -> Tensor:
    r"""For pairs ``(v, w)``: is :math:`S_w \subseteq S_v`? Sets are ``(variable, member)`` lists."""
    var, elem = members
    order = torch.argsort(var, stable=True)
    sorted_elem = elem[order]
    size = torch.bincount(var, minlength=D)
    start = torch.cumsum(size, 0) - size
    key = torch.sort(var * width + elem).values
    v, w = pairs
    count = size[w]
    pair, offset = _ranges(count)
    query = v[pair] * width + sorted_elem[start[w][pair] + offset]
    pos = torch.searchsorted(key, query).clamp(max=max(key.numel() - 1, 0))
    missing = key[pos] != query
    bad = torch.zeros(v.numel(), dtype=torch.bool)
    bad[pair[missing]] = True
    return ~bad


def graphical_blocks(
    adjacency: Tensor,
    context_adjacency: Tensor | None = None,
    *,
    hidden_per_set: int = 4,
    hidden_layers: int = 2,
    singletons: bool = False,
) -> GraphicalBlocks:
    r"""The masks of :func:`graphical_masks` by blocks, built from the edge list in :math:`O(|E|)`.

    Unit group ``v`` may only receive from the groups of :math:`\{v\} \cup pa(v)` (and, in the first
    layer, from the inputs in :math:`S_v`): a set :math:`S_w \ni w` lies in :math:`S_v` only if
    :math:`w \in S_v`. Hidden groups of a parent ``w`` are kept iff :math:`S_w \subseteq S_v`.
    """
    if hidden_per_set < 1:
        raise ValueError(f"hidden_per_set must be >= 1, got {hidden_per_set}")
    if hidden_layers < 1:
        raise ValueError(f"hidden_layers must be >= 1, got {hidden_layers}")
    A, C = check_adjacency(adjacency, context_adjacency)
    D, Cn = A.shape[0], C.shape[1]
    child, parent = torch.nonzero(A, as_tuple=True)
    cchild, cparent = torch.nonzero(C, as_tuple=True)
    ar = torch.arange(D)
    members = (torch.cat([ar, child, cchild]), torch.cat([ar, parent, cparent + D]))
    subset = _subsets(D, D + Cn, members, (child, parent))
    single_set = torch.bincount(members[0], minlength=D) == 1  # S_v = {v}
    p = hidden_per_set
    k = 2 * p if singletons else p
    is_set = torch.arange(k) < p  # the unit carries S_v (else the singleton {v})
    E = child.numel()

    def layer(rows: Tensor, cols: Tensor, mask: Tensor, in_blocks: int) -> BlockLayer:
        keep = torch.cat([torch.ones(D, dtype=torch.bool), mask[D:].flatten(1).any(1)])
        return BlockLayer(rows[keep], cols[keep], mask[keep].contiguous(), D, in_blocks)

    # input -> hidden: group v receives input j in S_v (its singleton units only its own input)
    first_mask = torch.cat(
        [torch.ones(D, k, 1, dtype=torch.bool), is_set.view(1, k, 1).expand(E + cchild.numel(), k, 1)]
    )
    first = layer(torch.cat([ar, child, cchild]), torch.cat([ar, parent, cparent + D]), first_mask, D + Cn)
    # hidden -> hidden: [out, in] iff set(in) ⊆ set(out)
    out_set, in_set = is_set.view(k, 1), is_set.view(1, k)
    diag = (~(~out_set & in_set)).expand(D, k, k) | single_set.view(D, 1, 1)
    off = out_set & (~in_set | (in_set & subset.view(E, 1, 1)))
    hidden = layer(torch.cat([ar, child]), torch.cat([ar, parent]), torch.cat([diag, off]), D)
    # hidden -> output i (which carries S_i)
    off_last = ~is_set.view(1, 1, k) | subset.view(E, 1, 1)
    last_mask = torch.cat([torch.ones(D, 1, k, dtype=torch.bool), off_last.expand(E, 1, k)])
    last = layer(torch.cat([ar, child]), torch.cat([ar, parent]), last_mask, D)
    return GraphicalBlocks((first, *([hidden] * (hidden_layers - 1)), last), k, D, Cn)


def set_groups(sets: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor], int]:
    """The distinct rows of a boolean ``sets`` matrix in the order of ``torch.unique(sets, dim=0)``,
    found from its nonzeros (not by sorting whole rows): the group of every row, the members
    ``(group, element)`` of the groups sorted by group then element, and the number of groups.
    """
    if sets.numel() and bool(sets.all()):  # one group holding every element (a plain MLP's)
        O, I = sets.shape
        return torch.zeros(O, dtype=torch.long), (torch.zeros(I, dtype=torch.long), torch.arange(I)), 1
    r, c = torch.nonzero(sets, as_tuple=True)
    rows: list[list[int]] = [[] for _ in range(sets.shape[0])]
    for i, j in zip(r.tolist(), c.tolist(), strict=True):
        rows[i].append(-j)
    # rows compare like their negated member lists: the first column where they differ is the
    # smallest member of one row only, and that row is the larger
    keys = [tuple(m) for m in rows]
    distinct = sorted(set(keys))
    index = {key: g for g, key in enumerate(distinct)}
    group = torch.tensor([index[key] for key in keys], dtype=torch.long)
    a = torch.tensor([g for g, key in enumerate(distinct) for _ in key], dtype=torch.long)
    j = torch.tensor([-x for key in distinct for x in key], dtype=torch.long)
    return group, (a, j), len(distinct)


def set_blocks(sets: Tensor, hidden_per_set: int, hidden_layers: int) -> tuple[BlockLayer, ...]:
    r"""The masks of :class:`~sirenvae.layers.MaskedMLP` ``(sets, hidden_per_set, hidden_layers)`` by blocks.

    Hidden unit groups carry the distinct rows of ``sets`` (in the order of ``torch.unique``, as
    the dense MLP's units); group :math:`a` receives input :math:`j \in S_a`, hidden group
    :math:`b` iff :math:`S_b \subseteq S_a`, and output :math:`o` (a group of one unit) hidden group
    :math:`b` iff :math:`S_b \subseteq` ``sets[o]``. Built from the members of the sets, so memory
    grows with the number of blocks, not with ``outputs x inputs``.
    """
    if hidden_per_set < 1:
        raise ValueError(f"hidden_per_set must be >= 1, got {hidden_per_set}")
    if hidden_layers < 1:
        raise ValueError(f"hidden_layers must be >= 1, got {hidden_layers}")
    S = torch.as_tensor(sets).bool()
    O, I = S.shape
    group, (a, j), G = set_groups(S)
    k = hidden_per_set
    size = torch.bincount(a, minlength=G)
    # candidates b ⊆ a: b empty, or the smallest element of b lies in a
    nonempty = torch.nonzero(size > 0).flatten()
    smallest = j[(torch.cumsum(size, 0) - size)[nonempty]]
    order = torch.argsort(smallest, stable=True)
    by_smallest, count = nonempty[order], torch.bincount(smallest, minlength=I)
    start = torch.cumsum(count, 0) - count
    n = count[j]
    rep, offset = _ranges(n)
    empty = torch.nonzero(size == 0).flatten()
    ca = torch.cat([a[rep], torch.arange(G).repeat_interleave(empty.numel())])
    cb = torch.cat([by_smallest[start[j[rep]] + offset], empty.repeat(G)])
    keep = _subsets(G, I, (a, j), (ca, cb))
    pa, pb = ca[keep], cb[keep]
    pa, sort = torch.sort(pa, stable=True)
    pb = pb[sort]
    # output o takes the pairs of its group
    pairs = torch.bincount(pa, minlength=G)
    n = pairs[group]
    out, offset = _ranges(n)
    src = pb[(torch.cumsum(pairs, 0) - pairs)[group[out]] + offset]

    def full(n: int, ko: int, ki: int) -> BoolTensor:
        return torch.ones(n, ko, ki, dtype=torch.bool)

    first = BlockLayer(a, j, full(a.numel(), k, 1), G, I, diagonal=False)
    hidden = BlockLayer(pa, pb, full(pa.numel(), k, k), G, G, diagonal=False)
    last = BlockLayer(out, src, full(out.numel(), 1, k), O, G, diagonal=False)
    return (first, *([hidden] * (hidden_layers - 1)), last)

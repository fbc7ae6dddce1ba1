r"""Bayesian network structures: nodes in a fixed topological order and validation.

The adjacency convention is zuko's: a boolean matrix :math:`A` with :math:`A_{ij} = 1` iff node
:math:`j` is a parent of node :math:`i` (rows are children), nodes in topological order, so that
:math:`A` is strictly lower triangular. Readers and writers of graph files live in
:mod:`sirenvae.graph_io`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import networkx as nx
import torch

from sirenvae.names import closest_node

__all__ = ["BayesianNetwork", "GraphError", "LatentSplit"]


class GraphError(ValueError):
    """A graph or a variable set is malformed; the message names the problem and the fix."""


class BayesianNetwork:
    r"""The structure of a Bayesian network: a DAG over named variables.

    Nodes are stored in a topological order that is stable: among the nodes whose parents are all
    placed, the one given first comes first. Every constructor validates its input and raises
    :class:`GraphError` (a :class:`ValueError`) naming the problem.

    Arguments:
        parents: A mapping from each node to the sequence of its parents. The mapping's order breaks
            ties in the topological order.
        name: An optional name for the network.

    Example:
        >>> bn = BayesianNetwork({"a": [], "b": ["a"], "c": ["a", "b"]})
        >>> bn.nodes
        ('a', 'b', 'c')
        >>> bn.adjacency().int()
        tensor([[0, 0, 0],
                [1, 0, 0],
                [1, 1, 0]], dtype=torch.int32)
    """

    def __init__(self, parents: Mapping[str, Sequence[str]], *, name: str = "") -> None:
        given = _checked_parents(parents)
        order = _stable_topological_order(given)
        self._nodes: tuple[str, ...] = order
        self._index = {v: i for i, v in enumerate(order)}
        # parents kept in topological order for determinism
        self._parents = {v: tuple(sorted(given[v], key=self._index.__getitem__)) for v in order}
        children: dict[str, list[str]] = {v: [] for v in order}
        for v in order:
            for p in self._parents[v]:
                children[p].append(v)
        self._children = {v: tuple(c) for v, c in children.items()}
        self.name = name

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_edges(
        cls, nodes: Sequence[str], edges: Iterable[tuple[str, str]], *, name: str = ""
    ) -> BayesianNetwork:
        """Builds a network from a node list and ``(parent, child)`` edges."""
        nodes = list(nodes)
        dup = first_duplicate(nodes)
        if dup is not None:
            raise GraphError(f"duplicate node name {dup!r}")
        parents: dict[str, list[str]] = {v: [] for v in nodes}
        for edge in edges:
            p, c = edge
            for v in (p, c):
                if v not in parents:
                    raise GraphError(f"edge ({p!r} -> {c!r}) names unknown node {v!r}")
            if p in parents[c]:
                raise GraphError(f"duplicate edge {p!r} -> {c!r}")
            parents[c].append(p)
        return cls(parents, name=name)

    # ------------------------------------------------------------------ basic structure
    @property
    def nodes(self) -> tuple[str, ...]:
        """The node names in topological order."""
        return self._nodes

    @property
    def edges(self) -> list[tuple[str, str]]:
        """All ``(parent, child)`` pairs, children in topological order."""
        return [(p, v) for v in self._nodes for p in self._parents[v]]

    def index(self, node: str) -> int:
        """The position of ``node`` in the topological order."""
        try:
            return self._index[node]
        except KeyError:
            raise GraphError(f"unknown node {node!r}; known nodes: {_preview(self._nodes)}") from None

    def parents(self, node: str) -> tuple[str, ...]:
        """The parents of ``node``, in topological order."""
        self.index(node)
        return self._parents[node]

    def children(self, node: str) -> tuple[str, ...]:
        """The children of ``node``, in topological order."""
        self.index(node)
        return self._children[node]

    def roots(self) -> tuple[str, ...]:
        """Nodes without parents."""
        return tuple(v for v in self._nodes if not self._parents[v])

    def leaves(self) -> tuple[str, ...]:
        """Nodes without children."""
        has_child = {p for v in self._nodes for p in self._parents[v]}
        return tuple(v for v in self._nodes if v not in has_child)

    def ancestors(self, node: str) -> set[str]:
        """All ancestors of ``node`` (excluding itself)."""
        self.index(node)
        return _reach(self._parents[node], self._parents.__getitem__)

    def descendants(self, node: str) -> set[str]:
        """All descendants of ``node`` (excluding itself)."""
        return _reach(self.children(node), self.children)

    def depth(self) -> int:
        """The number of edges on the longest directed path."""
        level: dict[str, int] = {}
        for v in self._nodes:
            level[v] = 1 + max((level[p] for p in self._parents[v]), default=-1)
        return max(level.values())

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, node: object) -> bool:
        return node in self._index

    def __iter__(self):
        return iter(self._nodes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BayesianNetwork):
            return NotImplemented
        # the same structure, whatever order ties were broken in
        return set(self._nodes) == set(other._nodes) and all(
            set(self._parents[v]) == set(other._parents[v]) for v in self._nodes
        )

    def __hash__(self) -> int:
        return hash(frozenset((v, frozenset(self._parents[v])) for v in self._nodes))

    def __repr__(self) -> str:
        name = f"{self.name!r}, " if self.name else ""
        return f"BayesianNetwork({name}{len(self)} nodes, {len(self.edges)} edges)"

    # ------------------------------------------------------------------ matrices and views
    def adjacency(self, nodes: Sequence[str] | None = None) -> torch.Tensor:
        """The boolean adjacency ``A[i, j] = (nodes[j] is a parent of nodes[i])``.

        Arguments:
            nodes: The order of rows and columns; the topological order by default. A subset gives
                the adjacency of the induced subgraph.
        """
        nodes = self._nodes if nodes is None else self._check_nodes(nodes, "nodes")
        return self._edges_between(nodes, nodes)

    def cross_adjacency(self, rows: Sequence[str], cols: Sequence[str]) -> torch.Tensor:
        """``C[i, j] = (cols[j] is a parent of rows[i])``: e.g. latents' observed parents."""
        return self._edges_between(self._check_nodes(rows, "rows"), self._check_nodes(cols, "cols"))

    def _edges_between(self, rows: Sequence[str], cols: Sequence[str]) -> torch.Tensor:
        pos = {v: j for j, v in enumerate(cols)}
        pairs = [(i, pos[p]) for i, v in enumerate(rows) for p in self._parents[v] if p in pos]
        M = torch.zeros(len(rows), len(cols), dtype=torch.bool)
        if pairs:
            M[tuple(torch.tensor(pairs).T)] = True
        return M

    def subgraph(self, nodes: Iterable[str]) -> BayesianNetwork:
        """The induced subgraph on ``nodes`` (edges between kept nodes only)."""
        keep = set(self._check_nodes(list(nodes), "nodes"))
        return BayesianNetwork(
            {v: [p for p in self._parents[v] if p in keep] for v in self._nodes if v in keep},
            name=self.name,
        )

    def moral_graph(self) -> nx.Graph:
        """The moral graph: co-parents married, directions dropped."""
        U = nx.Graph()
        U.add_nodes_from(self._nodes)
        for v in self._nodes:
            pa = self._parents[v]
            U.add_edges_from((p, v) for p in pa)
            U.add_edges_from((a, b) for i, a in enumerate(pa) for b in pa[i + 1 :])
        return U

    def to_networkx(self) -> nx.DiGraph:
        """A ``networkx.DiGraph`` with the same nodes (in topological order) and edges."""
        G = nx.DiGraph()
        G.add_nodes_from(self._nodes)
        G.add_edges_from(self.edges)
        return G

    def _check_nodes(self, nodes: Sequence[str], what: str) -> tuple[str, ...]:
        nodes = tuple(nodes)
        for v in nodes:
            if v not in self._index:
                raise GraphError(f"{what}: unknown node {v!r}; known nodes: {_preview(self._nodes)}")
        dup = first_duplicate(nodes)
        if dup is not None:
            raise GraphError(f"{what}: node {dup!r} appears twice")
        return nodes


class LatentSplit:
    r"""A Bayesian network with its nodes split into latent :math:`Z` and observed :math:`X`.

    Validated once, where user input enters, then passed down as a value: models, inversion and
    data readers take a split rather than re-checking a list of names.

    Arguments:
        graph: The network.
        latent: The latent nodes, in any order; stored in the graph's topological order.
        allow_empty: Accept an empty ``latent`` (a model whose hidden nodes are all discrete and
            summed out among its decoder's nodes; a user's split always names one).

    Raises:
        GraphError: If ``latent`` names an unknown node, repeats a node, is empty (unless
            ``allow_empty``) or is every node.

    Example:
        >>> split = LatentSplit(BayesianNetwork({"z": [], "x": ["z"], "y": ["x", "z"]}), ["z"])
        >>> split.observed, split.prior_context
        (('x', 'y'), ())
    """

    def __init__(self, graph: BayesianNetwork, latent: Iterable[str], *, allow_empty: bool = False) -> None:
        latent = [latent] if isinstance(latent, str) else list(latent)
        for v in latent:
            if v not in graph:
                raise GraphError(f"latent set: unknown node {v!r}; known nodes: {_preview(graph.nodes)}")
        dup = first_duplicate(latent)
        if dup is not None:
            raise GraphError(f"latent set: node {dup!r} appears twice")
        if not latent and not allow_empty:
            raise GraphError("latent set is empty: name at least one latent node")
        if len(latent) == len(graph):
            raise GraphError("latent set holds every node: leave at least one node observed")
        keep = set(latent)
        self.graph = graph
        self.latent: tuple[str, ...] = tuple(v for v in graph.nodes if v in keep)
        self.observed: tuple[str, ...] = tuple(v for v in graph.nodes if v not in keep)

    def on(self, graph: BayesianNetwork) -> LatentSplit:
        """The same split on another graph over the same nodes (e.g. a model variant's graph)."""
        if set(graph.nodes) != set(self.graph.nodes):
            raise GraphError("a split moves only to a graph over the same nodes")
        return LatentSplit(graph, self.latent, allow_empty=True)

    @property
    def prior_context(self) -> tuple[str, ...]:
        """The observed nodes with a latent child: the context of the prior over the latents."""
        latent = set(self.latent)
        return tuple(v for v in self.observed if any(c in latent for c in self.graph.children(v)))

    def latent_index(self) -> list[int]:
        """Positions of the latent nodes in the graph's order."""
        return [self.graph.index(v) for v in self.latent]

    def observed_index(self) -> list[int]:
        """Positions of the observed nodes in the graph's order."""
        return [self.graph.index(v) for v in self.observed]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LatentSplit):
            return NotImplemented
        return self.graph == other.graph and self.latent == other.latent

    def __hash__(self) -> int:
        return hash((self.graph, self.latent))

    def __repr__(self) -> str:
        return f"LatentSplit({self.graph!r}, latent={len(self.latent)}, observed={len(self.observed)})"


# ---------------------------------------------------------------------- internals
def _checked_parents(parents: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
    if not isinstance(parents, Mapping):
        raise GraphError(
            f"parents must be a mapping from node name to its parents, got {type(parents).__name__}"
        )
    if len(parents) == 0:
        raise GraphError("the graph is empty: give at least one node")
    given: dict[str, tuple[str, ...]] = {}
    for node, pa in parents.items():
        if not isinstance(node, str) or node == "":
            raise GraphError(f"node names must be non-empty strings, got {node!r}")
        if isinstance(pa, str) or not isinstance(pa, Iterable):
            raise GraphError(f"the parents of {node!r} must be a list of names, got {pa!r}")
        pa = tuple(pa)
        for p in pa:
            if p == node:
                raise GraphError(f"self-loop: node {node!r} lists itself as a parent")
            if p not in parents:
                close = closest_node(p, [v for v in parents if v != node])
                hint = "" if close is None else f" (did you mean {close!r}?)"
                raise GraphError(
                    f"unknown node {p!r} listed as a parent of {node!r}{hint}: every parent must be a "
                    "node of the graph"
                )
        dup = first_duplicate(pa)
        if dup is not None:
            raise GraphError(f"node {node!r} lists parent {dup!r} twice")
        given[node] = pa
    return given


def _stable_topological_order(parents: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
    position = {v: i for i, v in enumerate(parents)}
    missing = {v: len(pa) for v, pa in parents.items()}
    children: dict[str, list[str]] = {v: [] for v in parents}
    for v, pa in parents.items():
        for p in pa:
            children[p].append(v)
    import heapq

    ready = [(position[v], v) for v, n in missing.items() if n == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, v = heapq.heappop(ready)
        order.append(v)
        for c in children[v]:
            missing[c] -= 1
            if missing[c] == 0:
                heapq.heappush(ready, (position[c], c))
    if len(order) != len(parents):
        G = nx.DiGraph([(p, v) for v, pa in parents.items() for p in pa])
        cycle = nx.find_cycle(G)
        path = " -> ".join([u for u, _ in cycle] + [cycle[0][0]])
        raise GraphError(f"the graph has a cycle: {path}; a Bayesian network must be acyclic")
    return tuple(order)


def first_duplicate(items: Iterable[str]) -> str | None:
    """The first name that appears a second time in ``items``, or ``None``."""
    seen: set[str] = set()
    for v in items:
        if v in seen:
            return v
        seen.add(v)
    return None


def _preview(nodes: Sequence[str], n: int = 8) -> str:
    shown = ", ".join(repr(v) for v in nodes[:n])
    return shown + (f", ... ({len(nodes)} in all)" if len(nodes) > n else "")


def _reach(start, step) -> set[str]:
    """The nodes reachable from ``start`` (included) by repeated ``step`` (e.g. parents, children)."""
    seen: set[str] = set()
    stack = list(start)
    while stack:
        v = stack.pop()
        if v not in seen:
            seen.add(v)
            stack.extend(step(v))
    return seen

r"""Bayesian network structures: nodes in a fixed topological order, validation, readers and writers.

The adjacency convention is zuko's: a boolean matrix :math:`A` with :math:`A_{ij} = 1` iff node
:math:`j` is a parent of node :math:`i` (rows are children), nodes in topological order, so that
:math:`A` is strictly lower triangular.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import networkx as nx
import torch

__all__ = ["BayesianNetwork", "GraphError", "check_latent", "read_graph"]


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
                    raise GraphError(
                        f"unknown node {p!r} listed as a parent of {node!r}; "
                        "declare every node before using it as a parent"
                    )
            dup = _first_duplicate(pa)
            if dup is not None:
                raise GraphError(f"node {node!r} lists parent {dup!r} twice")
            given[node] = pa

        order = _stable_topological_order(given)
        self._nodes: tuple[str, ...] = order
        self._index = {v: i for i, v in enumerate(order)}
        # parents kept in topological order for determinism
        self._parents = {v: tuple(sorted(given[v], key=self._index.__getitem__)) for v in order}
        self.name = name

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_edges(
        cls, nodes: Sequence[str], edges: Iterable[tuple[str, str]], *, name: str = ""
    ) -> BayesianNetwork:
        """Builds a network from a node list and ``(parent, child)`` edges."""
        nodes = list(nodes)
        dup = _first_duplicate(nodes)
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
        return tuple(v for v in self._nodes if node in self._parents[v])

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
        seen: set[str] = set()
        stack = list(self._parents[node])
        while stack:
            v = stack.pop()
            if v not in seen:
                seen.add(v)
                stack.extend(self._parents[v])
        return seen

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
        pos = {v: i for i, v in enumerate(nodes)}
        A = torch.zeros(len(nodes), len(nodes), dtype=torch.bool)
        for i, v in enumerate(nodes):
            for p in self._parents[v]:
                if p in pos:
                    A[i, pos[p]] = True
        return A

    def cross_adjacency(self, rows: Sequence[str], cols: Sequence[str]) -> torch.Tensor:
        """``C[i, j] = (cols[j] is a parent of rows[i])``: e.g. latents' observed parents."""
        rows = self._check_nodes(rows, "rows")
        cols = self._check_nodes(cols, "cols")
        C = torch.zeros(len(rows), len(cols), dtype=torch.bool)
        for i, v in enumerate(rows):
            for j, p in enumerate(cols):
                C[i, j] = p in self._parents[v]
        return C

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
        dup = _first_duplicate(nodes)
        if dup is not None:
            raise GraphError(f"{what}: node {dup!r} appears twice")
        return nodes

    # ------------------------------------------------------------------ readers
    @classmethod
    def from_json(cls, source: str | Path | Mapping[str, Any]) -> BayesianNetwork:
        """Reads the structure from the JSON schema of the shipped networks.

        The document holds ``{"name": ..., "nodes": [{"name": ..., "parents": [...], ...}]}``;
        fields other than ``name`` and ``parents`` (parameters) are ignored here.
        """
        doc = _load_json(source)
        entries = doc.get("nodes") if isinstance(doc, Mapping) else None
        if not isinstance(entries, list):
            raise GraphError("JSON graph: expected an object with a 'nodes' list")
        parents: dict[str, list[str]] = {}
        for k, entry in enumerate(entries):
            if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
                raise GraphError(f"JSON graph: node entry {k} has no string 'name'")
            name = entry["name"]
            if name in parents:
                raise GraphError(f"JSON graph: duplicate node name {name!r}")
            pa = entry.get("parents", [])
            if not isinstance(pa, list) or not all(isinstance(p, str) for p in pa):
                raise GraphError(f"JSON graph: 'parents' of {name!r} must be a list of names")
            parents[name] = pa
        return cls(parents, name=str(doc.get("name", "")))

    @classmethod
    def from_edge_list(cls, source: str | Path | io.TextIOBase) -> BayesianNetwork:
        """Reads a CSV edge list with header ``parent,child``.

        A row with an empty parent declares a node without parents; nodes are ordered by first
        appearance.
        """
        text = _read_text(source)
        rows = list(csv.reader(io.StringIO(text)))
        rows = [r for r in rows if any(cell.strip() for cell in r)]
        if not rows:
            raise GraphError("edge list: the file is empty")
        header = [h.strip().lower() for h in rows[0]]
        if header != ["parent", "child"]:
            raise GraphError(f"edge list: header must be 'parent,child', got {','.join(rows[0])!r}")
        nodes: list[str] = []
        seen: set[str] = set()
        edges: list[tuple[str, str]] = []
        for line, row in enumerate(rows[1:], start=2):
            if len(row) != 2:
                raise GraphError(f"edge list: line {line} has {len(row)} fields, expected 2")
            p, c = row[0].strip(), row[1].strip()
            if not c:
                raise GraphError(f"edge list: line {line} has an empty child")
            for v in (p, c):
                if v and v not in seen:
                    seen.add(v)
                    nodes.append(v)
            if p:
                if (p, c) in edges:
                    raise GraphError(f"edge list: duplicate edge {p!r} -> {c!r} on line {line}")
                edges.append((p, c))
        return cls.from_edges(nodes, edges)

    @classmethod
    def from_dot(cls, source: str | Path) -> BayesianNetwork:
        """Reads a ``digraph`` in the DOT language (nodes, edges, chains and ``{a b}`` groups;
        attributes are ignored).
        """
        if isinstance(source, Path) or "{" not in source:
            path = Path(source)
            if not path.exists():
                raise GraphError(f"DOT file not found: {path}")
            source = path.read_text()
        name, nodes, edges = _parse_dot(source)
        return cls.from_edges(nodes, edges, name=name)

    @classmethod
    def from_networkx(cls, graph: nx.DiGraph) -> BayesianNetwork:
        """Converts a ``networkx.DiGraph`` (or any subclass, such as a pgmpy model)."""
        if not isinstance(graph, nx.DiGraph):
            raise GraphError(f"expected a networkx.DiGraph, got {type(graph).__name__}")
        nodes = [str(v) for v in graph.nodes]
        return cls.from_edges(nodes, [(str(p), str(c)) for p, c in graph.edges])

    @classmethod
    def from_pgmpy(cls, model: Any) -> BayesianNetwork:
        """Converts a pgmpy model (discrete or linear-Gaussian); only the structure is kept."""
        if not (hasattr(model, "nodes") and hasattr(model, "edges")):
            raise GraphError(f"expected a pgmpy model, got {type(model).__name__}")
        nodes = [str(v) for v in model.nodes()]
        return cls.from_edges(nodes, [(str(p), str(c)) for p, c in model.edges()])

    @classmethod
    def from_bif(cls, path: str | Path) -> BayesianNetwork:
        """Reads the structure of a BIF file with pgmpy (``pip install 'sirenvae[pgmpy]'``)."""
        try:
            from pgmpy.readwrite import BIFReader
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("reading BIF needs pgmpy: pip install 'sirenvae[pgmpy]'") from e
        path = Path(path)
        if not path.exists():
            raise GraphError(f"BIF file not found: {path}")
        try:
            model = BIFReader(str(path)).get_model()
        except Exception as e:
            raise GraphError(f"could not parse BIF file {path}: {e}") from e
        bn = cls.from_pgmpy(model)
        bn.name = path.stem
        return bn

    # ------------------------------------------------------------------ writers
    def to_dict(self) -> dict[str, Any]:
        """The JSON document (structure only) in the schema of the shipped networks."""
        return {
            "name": self.name,
            "nodes": [{"name": v, "parents": list(self._parents[v])} for v in self._nodes],
        }

    def to_json(self, path: str | Path | None = None) -> str:
        """Serialises to JSON; writes to ``path`` when given and returns the text."""
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    def to_dot(self, path: str | Path | None = None) -> str:
        """Serialises to DOT; writes to ``path`` when given and returns the text."""
        lines = [f"digraph {_dot_quote(self.name or 'G')} {{"]
        lines += [f"  {_dot_quote(v)};" for v in self._nodes]
        lines += [f"  {_dot_quote(p)} -> {_dot_quote(c)};" for p, c in self.edges]
        lines.append("}")
        text = "\n".join(lines) + "\n"
        if path is not None:
            Path(path).write_text(text)
        return text


def read_graph(source: str | Path | nx.DiGraph | Any) -> BayesianNetwork:
    """Reads a graph from a file (by extension: ``.json``, ``.csv``, ``.dot``/``.gv``, ``.bif``),
    a ``networkx.DiGraph`` or a pgmpy model.
    """
    if isinstance(source, BayesianNetwork):
        return source
    if isinstance(source, nx.DiGraph):
        return BayesianNetwork.from_networkx(source)
    if not isinstance(source, str | Path):
        return BayesianNetwork.from_pgmpy(source)
    path = Path(source)
    if not path.exists():
        raise GraphError(f"graph file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".json":
        return BayesianNetwork.from_json(path)
    if suffix in {".csv", ".txt"}:
        return BayesianNetwork.from_edge_list(path)
    if suffix in {".dot", ".gv"}:
        return BayesianNetwork.from_dot(path)
    if suffix == ".bif":
        return BayesianNetwork.from_bif(path)
    raise GraphError(
        f"unknown graph format {suffix!r} for {path}; use .json, .csv (parent,child), .dot or .bif"
    )


def check_latent(bn: BayesianNetwork, latent: Iterable[str]) -> tuple[str, ...]:
    """Validates a latent set and returns it in the network's topological order.

    Raises:
        GraphError: If it names an unknown node, repeats a node, is empty or is every node.
    """
    if isinstance(latent, str):
        latent = [latent]
    latent = list(latent)
    for v in latent:
        if v not in bn:
            raise GraphError(f"latent set: unknown node {v!r}; known nodes: {_preview(bn.nodes)}")
    dup = _first_duplicate(latent)
    if dup is not None:
        raise GraphError(f"latent set: node {dup!r} appears twice")
    if not latent:
        raise GraphError("latent set is empty: name at least one latent node")
    if len(latent) == len(bn):
        raise GraphError("latent set holds every node: leave at least one node observed")
    keep = set(latent)
    return tuple(v for v in bn.nodes if v in keep)


# ---------------------------------------------------------------------- internals
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


def _first_duplicate(items: Iterable[str]) -> str | None:
    seen: set[str] = set()
    for v in items:
        if v in seen:
            return v
        seen.add(v)
    return None


def _preview(nodes: Sequence[str], n: int = 8) -> str:
    shown = ", ".join(repr(v) for v in nodes[:n])
    return shown + (f", ... ({len(nodes)} in all)" if len(nodes) > n else "")


def _load_json(source: str | Path | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(source, Mapping):
        return source
    path = Path(source)
    if not path.exists():
        raise GraphError(f"JSON graph file not found: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise GraphError(f"{path} is not valid JSON: {e}") from e


def _read_text(source: str | Path | io.TextIOBase) -> str:
    if isinstance(source, io.TextIOBase):
        return source.read()
    path = Path(source)
    if not path.exists():
        raise GraphError(f"file not found: {path}")
    return path.read_text()


_DOT_TOKEN = re.compile(
    r'\s+|//[^\n]*|#[^\n]*|/\*.*?\*/|(?P<tok>->|--|"(?:[^"\\]|\\.)*"|[A-Za-z_\x80-\uffff][\w.\x80-\uffff]*'
    r"|-?(?:\.\d+|\d+(?:\.\d*)?)|[{}\[\];,=:]|<[^>]*>)",
    re.S,
)


def _dot_tokens(text: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    while pos < len(text):
        m = _DOT_TOKEN.match(text, pos)
        if m is None:
            raise GraphError(f"DOT: cannot parse near {text[pos : pos + 20]!r}")
        if m.group("tok") is not None:
            tokens.append(m.group("tok"))
        pos = m.end()
    return tokens


def _dot_id(tok: str) -> str:
    if tok.startswith('"'):
        return tok[1:-1].replace('\\"', '"')
    return tok


def _parse_dot(text: str) -> tuple[str, list[str], list[tuple[str, str]]]:
    toks = _dot_tokens(text)
    k = 0
    if k < len(toks) and toks[k].lower() == "strict":
        k += 1
    if k >= len(toks) or toks[k].lower() not in {"digraph", "graph"}:
        raise GraphError("DOT: expected 'digraph' at the start")
    if toks[k].lower() == "graph":
        raise GraphError("DOT: an undirected 'graph' is not a Bayesian network; use 'digraph'")
    k += 1
    name = ""
    if k < len(toks) and toks[k] != "{":
        name = _dot_id(toks[k])
        k += 1
    if k >= len(toks) or toks[k] != "{":
        raise GraphError("DOT: expected '{' after the graph header")
    k += 1
    nodes: list[str] = []
    seen: set[str] = set()
    edges: list[tuple[str, str]] = []

    def add(v: str) -> None:
        if v not in seen:
            seen.add(v)
            nodes.append(v)

    def skip_attrs(k: int) -> int:
        if k < len(toks) and toks[k] == "[":
            while k < len(toks) and toks[k] != "]":
                k += 1
            if k >= len(toks):
                raise GraphError("DOT: unterminated attribute list '['")
            k += 1
        return k

    def endpoint(k: int) -> tuple[list[str], int]:
        if toks[k] == "{":
            group: list[str] = []
            k += 1
            while k < len(toks) and toks[k] != "}":
                if toks[k] not in {";", ","}:
                    group.append(_dot_id(toks[k]))
                k += 1
            if k >= len(toks):
                raise GraphError("DOT: unterminated '{' group")
            return group, k + 1
        if toks[k] in {"}", "[", "]", "->", "--", "=", ";", ","}:
            raise GraphError(f"DOT: unexpected {toks[k]!r}")
        node = _dot_id(toks[k])
        k += 1
        while k + 1 < len(toks) and toks[k] == ":":  # ports and compass points are ignored
            k += 2
        return [node], k

    while k < len(toks) and toks[k] != "}":
        t = toks[k]
        if t in {";", ","}:
            k += 1
            continue
        if t.lower() in {"graph", "node", "edge"} and k + 1 < len(toks) and toks[k + 1] == "[":
            k = skip_attrs(k + 1)
            continue
        if t.lower() == "subgraph":
            raise GraphError("DOT: subgraphs are not supported; list the edges directly")
        if k + 1 < len(toks) and toks[k + 1] == "=":  # graph attribute a=b
            k += 3
            continue
        group, k = endpoint(k)
        chain = [group]
        while k < len(toks) and toks[k] in {"->", "--"}:
            if toks[k] == "--":
                raise GraphError("DOT: undirected edge '--' in a digraph")
            group, k = endpoint(k + 1)
            chain.append(group)
        k = skip_attrs(k)
        for g in chain:
            for v in g:
                add(v)
        for a, b in zip(chain, chain[1:], strict=False):
            edges.extend((p, c) for p in a for c in b)
    if k >= len(toks):
        raise GraphError("DOT: missing closing '}'")
    return name, nodes, edges


def _dot_quote(v: str) -> str:
    return '"' + v.replace('"', '\\"') + '"'

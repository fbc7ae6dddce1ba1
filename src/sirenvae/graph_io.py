r"""Readers and writers of :class:`~sirenvae.graph.BayesianNetwork` structures.

Formats: the JSON document of the shipped networks, CSV edge lists, the DOT language, BIF and pgmpy
models (with the optional pgmpy) and ``networkx`` digraphs. Every format that is both read and
written round-trips any graph: ``from_X(to_X(bn)) == bn`` for any node names (with the one
exception documented in :func:`from_edge_list`). Readers raise :class:`~sirenvae.graph.GraphError`
naming the problem.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import networkx as nx

from sirenvae.graph import BayesianNetwork, GraphError

__all__ = [
    "from_bif", "from_dict", "from_dot", "from_edge_list", "from_json", "from_networkx", "from_pgmpy",
    "declared_latent", "node_entries", "read_graph", "to_dict", "to_dot", "to_edge_list", "to_json",
]  # fmt: skip


def read_graph(source: str | Path | nx.DiGraph | Any) -> BayesianNetwork:
    """Reads a graph from a file, a ``networkx.DiGraph`` or a pgmpy model.

    A file's format follows its extension: ``.json``, ``.csv``/``.txt`` (a ``parent,child`` edge
    list), ``.dot``/``.gv`` or ``.bif``. A :class:`~sirenvae.graph.BayesianNetwork` is returned as is.

    Arguments:
        source: A path, a ``networkx.DiGraph``, a pgmpy model or a network.
    """
    if isinstance(source, BayesianNetwork):
        return source
    if isinstance(source, nx.DiGraph):
        return from_networkx(source)
    if not isinstance(source, str | Path):
        return from_pgmpy(source)
    path = Path(source)
    if not path.exists():
        raise GraphError(f"graph file not found: {path}")
    suffix = path.suffix.lower()
    readers = {".json": from_json, ".csv": from_edge_list, ".txt": from_edge_list}
    readers |= {".dot": from_dot, ".gv": from_dot, ".bif": from_bif}
    if suffix not in readers:
        raise GraphError(
            f"unknown graph format {suffix!r} for {path}; use .json, .csv (parent,child), .dot or .bif"
        )
    return readers[suffix](path)


# ---------------------------------------------------------------------- JSON
#: Keys of a JSON graph document that name no node where the document maps nodes to parents.
_DOCUMENT_KEYS = ("latent", "name", "directed", "multigraph", "graph")


def _parents_mapping(doc: Mapping) -> bool:
    """Whether ``doc`` is ``{child: [parents], ...}`` (besides :data:`_DOCUMENT_KEYS`)."""
    rest = [v for k, v in doc.items() if k not in _DOCUMENT_KEYS]
    return bool(rest) and all(isinstance(v, list) and all(isinstance(p, str) for p in v) for v in rest)


def node_entries(doc: Any) -> list[Mapping[str, Any]]:
    """The node entries ``[{"name": ..., "parents": [...], ...}]`` of a JSON graph document.

    Besides the shipped networks' ``{"nodes": [{"name": ..., "parents": [...]}]}`` it reads the
    shapes users write by hand: the document itself as ``{child: [parents], ...}``, ``"nodes"`` as
    a mapping ``{name: {"parents": [...]}}`` (or ``{name: [parents]}``), an ``"edges"`` list of
    ``[parent, child]`` pairs (or ``{"source", "target"}`` objects, networkx's ``"links"`` too)
    beside an optional ``"nodes"`` list of names or entries, or the document itself such a list.
    Other fields of an entry (``type``, ``levels``, parameters) are kept.

    Example:
        >>> [dict(e) for e in node_entries({"nodes": {"a": {}, "b": {"parents": ["a"]}}})]
        [{'name': 'a', 'parents': []}, {'name': 'b', 'parents': ['a']}]
        >>> [e["parents"] for e in node_entries({"edges": [["a", "b"], ["a", "c"]]})]
        [[], ['a'], ['a']]
        >>> [e["parents"] for e in node_entries({"a": [], "b": ["a"], "latent": ["a"]})]
        [[], ['a']]
    """
    if isinstance(doc, list) and doc and all(isinstance(e, list) and len(e) == 2 for e in doc):
        doc = {"edges": doc}  # the document itself a list of [parent, child] pairs
    if not isinstance(doc, Mapping):
        raise GraphError(
            "JSON graph: expected an object with a 'nodes' list (or an 'edges' list), or a list of "
            "[parent, child] pairs"
        )
    nodes = doc.get("nodes")
    edges = doc.get("edges", doc.get("links"))
    if doc.get("directed") is False:
        raise GraphError(
            "JSON graph: the document says it is undirected ('directed': false); a DAG is needed"
        )
    if nodes is None and edges is None and _parents_mapping(doc):
        nodes = {k: v for k, v in doc.items() if k not in _DOCUMENT_KEYS}
    if nodes is None and edges is None:
        raise GraphError(
            "JSON graph: expected an object with a 'nodes' list, e.g. "
            '{"nodes": [{"name": "a"}, {"name": "b", "parents": ["a"]}]}, or an \'edges\' list of '
            "[parent, child] pairs"
        )
    entries: list[dict[str, Any]] = []
    if isinstance(nodes, Mapping):
        for name, entry in nodes.items():
            if isinstance(entry, list):
                entry = {"parents": entry}
            if entry is None:
                entry = {}
            if not isinstance(entry, Mapping):
                raise GraphError(f"JSON graph: node {name!r} must map to an object or a parents list")
            entries.append({"name": str(name), **{k: v for k, v in entry.items() if k != "name"}})
    elif isinstance(nodes, list):
        for k, entry in enumerate(nodes):
            if isinstance(entry, str):
                entry = {"name": entry}
            elif (
                isinstance(entry, Mapping) and "name" not in entry and isinstance(entry.get("id"), str | int)
            ):
                entry = {"name": str(entry["id"]), **{k2: v for k2, v in entry.items() if k2 != "id"}}
            if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
                raise GraphError(f"JSON graph: node entry {k} has no string 'name'")
            entries.append(dict(entry))
    elif nodes is not None:
        raise GraphError("JSON graph: 'nodes' must be a list of node entries or a mapping name -> entry")
    for entry in entries:
        entry.setdefault("parents", [])
    if edges is not None:
        if not isinstance(edges, list):
            raise GraphError("JSON graph: 'edges' must be a list of [parent, child] pairs")
        index = {e["name"]: e for e in entries}
        for k, given in enumerate(edges):
            edge = given
            if isinstance(edge, Mapping):
                edge = [
                    next((edge[key] for key in ("source", "parent", "from") if key in edge), None),
                    next((edge[key] for key in ("target", "child", "to") if key in edge), None),
                ]
            if isinstance(edge, list | tuple):  # networkx's integer node ids name nodes as text
                edge = [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in edge]
            if (
                not isinstance(edge, list | tuple)
                or len(edge) != 2
                or not all(isinstance(v, str) for v in edge)
            ):
                raise GraphError(f"JSON graph: edge {k} is not a [parent, child] pair of names: {given!r}")
            for v in edge:
                if v not in index:
                    index[v] = {"name": v, "parents": []}
                    entries.append(index[v])
            pa = index[edge[1]]["parents"]
            if not isinstance(pa, list):
                raise GraphError(f"JSON graph: 'parents' of {edge[1]!r} must be a list of names")
            if edge[0] not in pa:
                index[edge[1]]["parents"] = [*pa, edge[0]]
    return entries


def from_dict(doc: Mapping[str, Any]) -> BayesianNetwork:
    """Builds the structure from a JSON graph document.

    The document holds ``{"name": ..., "nodes": [{"name": ..., "parents": [...], ...}]}`` (the
    shipped networks' schema; :func:`node_entries` lists the other shapes read); node fields other
    than ``name`` and ``parents`` (types, levels, parameters) are ignored here.

    Arguments:
        doc: The parsed document.

    Example:
        >>> bn = from_dict({"name": "ab", "nodes": [{"name": "a"}, {"name": "b", "parents": ["a"]}]})
        >>> bn.edges
        [('a', 'b')]
    """
    parents: dict[str, list[str]] = {}
    for entry in node_entries(doc):
        name = entry["name"]
        if name in parents:
            raise GraphError(f"JSON graph: duplicate node name {name!r}")
        pa = entry.get("parents", [])
        if not isinstance(pa, list) or not all(isinstance(p, str) for p in pa):
            raise GraphError(f"JSON graph: 'parents' of {name!r} must be a list of names")
        parents[name] = pa
    return BayesianNetwork(parents, name=str(doc.get("name", "")) if isinstance(doc, Mapping) else "")


def declared_types(source: str | Path | Any) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The ``"type"`` and ``"levels"`` a JSON graph file declares per node, or a BIF file's states
    (``{}`` for other sources): ``({node: type word}, {node: levels})``; the words are those of
    ``--types``.
    """
    if isinstance(source, str | Path) and Path(source).suffix.lower() == ".bif":
        return _bif_states(Path(source))
    if not isinstance(source, str | Path) or Path(source).suffix.lower() != ".json":
        return {}, {}
    try:
        doc = json.loads(Path(source).read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}, {}  # read_graph reports a bad file
    types, levels = {}, {}
    try:
        entries = node_entries(doc)
    except GraphError:
        return {}, {}  # read_graph reports a bad document
    for entry in entries:
        if isinstance(entry.get("type"), str):
            types[entry["name"]] = entry["type"]
        lv = entry.get("levels")
        if lv is not None:
            if not isinstance(lv, list) or len(lv) < 2:
                raise GraphError(
                    f"JSON graph: 'levels' of {entry['name']!r} must be a list of 2 or more labels"
                )
            name, labels = entry["name"], [str(v) for v in lv]
            repeated = sorted({v for v in labels if labels.count(v) > 1})
            if repeated:
                raise GraphError(f"JSON graph: 'levels' of {name!r} repeat {', '.join(map(repr, repeated))}")
            kind = types.setdefault(name, "binary" if len(lv) == 2 else "categorical")
            if kind not in ("binary", "categorical") or (kind == "binary" and len(lv) != 2):
                raise GraphError(
                    f"JSON graph: {name!r} has type {kind!r} and {len(lv)} levels; levels go with type "
                    "binary (2 of them) or categorical"
                )
            levels[name] = labels
    return types, levels


def declared_latent(source: str | Path | Any) -> list[str] | None:
    """The latent nodes a JSON graph file declares: a top-level ``"latent"`` list, or nodes with
    ``"latent": true`` (``None`` when it declares none, or for other sources). They act as ``--latent``.
    """
    if not isinstance(source, str | Path) or Path(source).suffix.lower() != ".json":
        return None
    try:
        doc = json.loads(Path(source).read_text(encoding="utf-8-sig"))
        entries = node_entries(doc)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, GraphError):
        return None  # read_graph reports a bad file
    listed = doc.get("latent") if isinstance(doc, Mapping) else None
    if isinstance(listed, str):
        listed = [listed]
    if listed is not None and (not isinstance(listed, list) or not all(isinstance(v, str) for v in listed)):
        raise GraphError("JSON graph: 'latent' must be a list of node names")
    names = list(listed or []) + [e["name"] for e in entries if e.get("latent") is True]
    return list(dict.fromkeys(names)) or None


def to_dict(bn: BayesianNetwork) -> dict[str, Any]:
    """The JSON document (structure only) in the schema of the shipped networks.

    Arguments:
        bn: The network.

    Example:
        >>> to_dict(BayesianNetwork({"a": [], "b": ["a"]}, name="ab"))
        {'name': 'ab', 'nodes': [{'name': 'a', 'parents': []}, {'name': 'b', 'parents': ['a']}]}
    """
    return {"name": bn.name, "nodes": [{"name": v, "parents": list(bn.parents(v))} for v in bn.nodes]}


def from_json(source: str | Path | Mapping[str, Any]) -> BayesianNetwork:
    """Reads the structure from a JSON file (or an already parsed document, see :func:`from_dict`).

    Arguments:
        source: A path to a JSON file, or the document itself.
    """
    if isinstance(source, Mapping):
        return from_dict(source)
    path = Path(source)
    if not path.exists():
        raise GraphError(f"JSON graph file not found: {path}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise GraphError(f"{path} is not valid JSON: {e}") from e
    return from_dict(doc)


def to_json(bn: BayesianNetwork, path: str | Path | None = None) -> str:
    """Serialises the structure to JSON; writes to ``path`` when given and returns the text.

    Arguments:
        bn: The network.
        path: An optional file to write.
    """
    text = json.dumps(to_dict(bn), indent=1)
    _write(path, text + "\n")
    return text


# ---------------------------------------------------------------------- CSV edge lists
#: The headers an edge list may have, parent column first.
EDGE_HEADERS = (("parent", "child"), ("from", "to"), ("source", "target"), ("cause", "effect"))


def from_edge_list(source: str | Path | io.TextIOBase) -> BayesianNetwork:
    r"""Reads a CSV edge list with the header ``parent,child`` (or ``from,to``, ``source,target``,
    ``cause,effect``).

    A row with an empty parent declares a node without parents; nodes are ordered by first
    appearance. Names are stripped of surrounding whitespace, so names that begin or end with
    whitespace do not round-trip through :func:`to_edge_list`.

    Arguments:
        source: A path, or a text stream opened with ``newline=""``.

    Example:
        >>> from_edge_list(io.StringIO("parent,child\na,b\n,c\n")).nodes
        ('a', 'b', 'c')
    """
    rows = list(csv.reader(io.StringIO(_read_text(source), newline="")))
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        raise GraphError("edge list: the file is empty")
    header = tuple(h.strip().lower() for h in rows[0])
    if header not in EDGE_HEADERS:
        raise GraphError(
            f"edge list: header must be 'parent,child' (or from,to / source,target / cause,effect), got "
            f"{','.join(rows[0])!r}"
        )
    nodes: dict[str, None] = {}
    edges: dict[tuple[str, str], None] = {}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != 2:
            raise GraphError(f"edge list: line {line} has {len(row)} fields, expected 2")
        p, c = row[0].strip(), row[1].strip()
        if not c:
            raise GraphError(f"edge list: line {line} has an empty child")
        nodes.update({v: None for v in (p, c) if v})
        if p:
            if (p, c) in edges:
                raise GraphError(f"edge list: duplicate edge {p!r} -> {c!r} on line {line}")
            edges[p, c] = None
    bn = BayesianNetwork.from_edges(list(nodes), list(edges))
    bn.from_edge_list = True  # messages about its nodes can say how an edge list declares one
    return bn


def to_edge_list(bn: BayesianNetwork, path: str | Path | None = None) -> str:
    r"""Serialises the structure to a CSV edge list; writes to ``path`` when given and returns the text.

    The header is ``parent,child``; each node without parents gets a row with an empty parent. The
    :mod:`csv` module quotes names holding commas, quotes or line breaks (rows end in ``\r\n``).

    Arguments:
        bn: The network.
        path: An optional file to write.

    Example:
        >>> to_edge_list(BayesianNetwork({"a": [], "b": ["a"]})).splitlines()
        ['parent,child', ',a', 'a,b']
    """
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(["parent", "child"])
    for v in bn.nodes:
        writer.writerows([(p, v) for p in bn.parents(v)] or [("", v)])
    return _write(path, buf.getvalue())


# ---------------------------------------------------------------------- DOT
def from_dot(source: str | Path) -> BayesianNetwork:
    r"""Reads a ``digraph`` in the DOT language.

    Nodes, edges, chains ``a -> b -> c`` and groups ``{a b} -> c`` are understood; attributes,
    ports and comments are ignored. In quoted names ``\\`` and ``\"`` stand for ``\`` and ``"``;
    any other backslash is kept as written, as Graphviz does.

    Arguments:
        source: A :class:`~pathlib.Path`, or a string: DOT text if it holds ``digraph`` and ``{``,
            else a path (a missing path holding ``{`` is parsed as text, for its error message).

    Example:
        >>> from_dot('digraph "g" { a -> "b c" }').edges
        [('a', 'b c')]
    """
    text = _dot_source(source)
    name, nodes, edges = _DotParser(text).parse()
    return BayesianNetwork.from_edges(nodes, edges, name=name)


def to_dot(bn: BayesianNetwork, path: str | Path | None = None) -> str:
    r"""Serialises the structure to DOT; writes to ``path`` when given and returns the text.

    Every name is quoted (``\`` and ``"`` escaped), so any name round-trips through
    :func:`from_dot`; an unnamed network gives an anonymous ``digraph``.

    Arguments:
        bn: The network.
        path: An optional file to write.

    Example:
        >>> print(to_dot(BayesianNetwork({"a": [], 'b"': ["a"]}, name="g")), end="")
        digraph "g" {
          "a";
          "b\"";
          "a" -> "b\"";
        }
    """
    header = f"digraph {_dot_quote(bn.name)} {{" if bn.name else "digraph {"
    lines = [header]
    lines += [f"  {_dot_quote(v)};" for v in bn.nodes]
    lines += [f"  {_dot_quote(p)} -> {_dot_quote(c)};" for p, c in bn.edges]
    lines.append("}")
    return _write(path, "\n".join(lines) + "\n")


# ---------------------------------------------------------------------- networkx, pgmpy, BIF
def from_networkx(graph: nx.DiGraph) -> BayesianNetwork:
    """Converts a ``networkx.DiGraph`` (or any subclass, such as a pgmpy model).

    Arguments:
        graph: The digraph; node labels are converted with :class:`str`.

    Example:
        >>> from_networkx(nx.DiGraph([("a", "b")])).edges
        [('a', 'b')]
    """
    if not isinstance(graph, nx.DiGraph):
        raise GraphError(f"expected a networkx.DiGraph, got {type(graph).__name__}")
    nodes = [str(v) for v in graph.nodes]
    return BayesianNetwork.from_edges(nodes, [(str(p), str(c)) for p, c in graph.edges])


def from_pgmpy(model: Any) -> BayesianNetwork:
    """Converts a pgmpy model (discrete or linear-Gaussian); only the structure is kept.

    Arguments:
        model: Any object with ``nodes()`` and ``edges()``.
    """
    if not (hasattr(model, "nodes") and hasattr(model, "edges")):
        raise GraphError(f"expected a pgmpy model, got {type(model).__name__}")
    nodes = [str(v) for v in model.nodes()]
    return BayesianNetwork.from_edges(nodes, [(str(p), str(c)) for p, c in model.edges()])


def from_bif(path: str | Path) -> BayesianNetwork:
    """Reads the structure of a BIF file with pgmpy (``pip install 'sirenvae[pgmpy]'``).

    Arguments:
        path: The BIF file; its stem names the network.
    """
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
    bn = from_pgmpy(model)
    bn.name = path.stem
    return bn


def _bif_states(path: Path) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Every variable of a BIF file as binary or categorical with its declared states."""
    from pgmpy.readwrite import BIFReader

    try:
        model = BIFReader(str(path)).get_model()
        states = {v: model.get_cpds(v).state_names[v] for v in model.nodes()}
    except Exception:  # noqa: BLE001 - read_graph reports a bad file
        return {}, {}
    levels = {v: [str(s) for s in st] for v, st in states.items() if len(st) >= 2}
    return {v: "binary" if len(lv) == 2 else "categorical" for v, lv in levels.items()}, levels


# ---------------------------------------------------------------------- internals
def _write(path: str | Path | None, text: str) -> str:
    """Writes ``text`` as UTF-8 without newline translation when a path is given; returns it."""
    if path is not None:
        with Path(path).open("w", encoding="utf-8", newline="") as f:
            f.write(text)
    return text


def _read_text(source: str | Path | io.TextIOBase) -> str:
    if isinstance(source, io.TextIOBase):
        return source.read()
    path = Path(source)
    if not path.exists():
        raise GraphError(f"file not found: {path}")
    with path.open(encoding="utf-8-sig", newline="") as f:
        return f.read()


def _dot_source(source: str | Path) -> str:
    if isinstance(source, str) and "digraph" in source and "{" in source:
        return source
    path = Path(source)
    try:
        is_file = path.is_file()
    except (OSError, ValueError):  # a name too long for a path, or holding NUL
        is_file = False
    if is_file:
        with path.open(encoding="utf-8-sig", newline="") as f:
            return f.read()
    if isinstance(source, str) and "{" in source:
        return source  # not a file: parse it to say what is wrong with it as DOT
    raise GraphError(f"DOT file not found: {path}")


def _dot_quote(v: str) -> str:
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


_DOT_ESCAPE = re.compile(r'\\([\\"])')

_DOT_TOKEN = re.compile(
    r'\s+|//[^\n]*|#[^\n]*|/\*.*?\*/|(?P<tok>->|--|"(?:[^"\\]|\\.)*"|[A-Za-z_\x80-\uffff][\w.\x80-\uffff]*'
    r"|-?(?:\.\d+|\d+(?:\.\d*)?)|[{}\[\];,=:]|<[^>]*>)",
    re.S,
)

_DOT_PUNCTUATION = frozenset({"}", "[", "]", "->", "--", "=", ";", ","})


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
        return _DOT_ESCAPE.sub(r"\1", tok[1:-1])
    return tok


class _DotParser:
    """A recursive-descent reader of the subset of DOT that describes a digraph's structure."""

    def __init__(self, text: str) -> None:
        self.toks = _dot_tokens(text)
        self.k = 0
        self.nodes: dict[str, None] = {}
        self.edges: list[tuple[str, str]] = []

    def parse(self) -> tuple[str, list[str], list[tuple[str, str]]]:
        name = self._header()
        while self._peek() != "}":
            if not self._peek():
                raise GraphError("DOT: missing closing '}'")
            self._statement()
        return name, list(self.nodes), self.edges

    def _peek(self, ahead: int = 0) -> str:
        """The token ``ahead`` places on, or ``""`` past the end (no token is empty)."""
        k = self.k + ahead
        return self.toks[k] if k < len(self.toks) else ""

    def _header(self) -> str:
        if self._peek().lower() == "strict":
            self.k += 1
        if self._peek().lower() not in {"digraph", "graph"}:
            raise GraphError("DOT: expected 'digraph' at the start")
        if self._peek().lower() == "graph":
            raise GraphError("DOT: an undirected 'graph' is not a Bayesian network; use 'digraph'")
        self.k += 1
        name = ""
        if self._peek() not in {"{", ""}:
            name = _dot_id(self._peek())
            self.k += 1
        if self._peek() != "{":
            raise GraphError("DOT: expected '{' after the graph header")
        self.k += 1
        return name

    def _statement(self) -> None:
        t = self._peek()
        if t in {";", ","}:
            self.k += 1
        elif t.lower() in {"graph", "node", "edge"} and self._peek(1) == "[":
            self.k += 1
            self._skip_attrs()
        elif t.lower() == "subgraph":
            raise GraphError("DOT: subgraphs are not supported; list the edges directly")
        elif self._peek(1) == "=":  # graph attribute a=b
            self.k += 3
        else:
            self._edge_chain()

    def _edge_chain(self) -> None:
        chain = [self._endpoint()]
        while self._peek() in {"->", "--"}:
            if self._peek() == "--":
                raise GraphError("DOT: undirected edge '--' in a digraph")
            self.k += 1
            chain.append(self._endpoint())
        self._skip_attrs()
        self.nodes.update({v: None for group in chain for v in group})
        for a, b in zip(chain, chain[1:], strict=False):
            self.edges.extend((p, c) for p in a for c in b)

    def _endpoint(self) -> list[str]:
        t = self._peek()
        if t == "{":
            return self._group()
        if not t:
            raise GraphError("DOT: missing closing '}'")
        if t in _DOT_PUNCTUATION:
            raise GraphError(f"DOT: unexpected {t!r}")
        self.k += 1
        while self._peek() == ":" and self._peek(1):  # ports and compass points are ignored
            self.k += 2
        return [_dot_id(t)]

    def _group(self) -> list[str]:
        self.k += 1
        group = self._skip_to("}", "DOT: unterminated '{' group")
        return [_dot_id(t) for t in group if t not in {";", ","}]

    def _skip_attrs(self) -> None:
        if self._peek() == "[":
            self._skip_to("]", "DOT: unterminated attribute list '['")

    def _skip_to(self, end: str, error: str) -> list[str]:
        """Moves past the next ``end`` and returns the tokens skipped before it."""
        start = self.k
        while self._peek() not in {end, ""}:
            self.k += 1
        if not self._peek():
            raise GraphError(error)
        self.k += 1
        return self.toks[start : self.k - 1]

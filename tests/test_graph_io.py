import ast
import io
import json
from pathlib import Path

import networkx as nx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sirenvae.graph
from sirenvae import graph_io
from sirenvae.graph import BayesianNetwork, GraphError
from sirenvae.graph_io import (
    declared_latent,
    declared_types,
    from_dict,
    from_dot,
    from_edge_list,
    from_json,
    from_networkx,
    from_pgmpy,
    read_graph,
    to_dict,
    to_dot,
    to_edge_list,
    to_json,
)


def diamond():
    return BayesianNetwork({"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}, name="diamond")


# names that break naive quoting: escapes, quotes, CSV and DOT syntax, keywords, unicode
TRICKY = [
    "a\\", "\\", "\\\\", '"', '\\"', 'a"b', "node", "edge", "graph", "digraph", "subgraph", "strict",
    "NODE", "1abc", "-2.5", "a b", "->", "--", "a,b", "x\ny", "x\r\ny", "é", "名前", "\U0001d4b3",
    "{", "}", "[", "]", ";", "=", ":", "//", "/*", "*/", "#", "<b>", "parent", "child", "\\n", "\x00",
]  # fmt: skip
SYNTAX = st.text(st.sampled_from(list('\\"\n\r,;{}[]=:-># \tab') + ["é"]), min_size=1, max_size=6)
NAMES = st.one_of(st.sampled_from(TRICKY), st.text(min_size=1, max_size=8), SYNTAX)
GRAPH_NAMES = st.one_of(st.just(""), NAMES)


@st.composite
def dags(draw, names=NAMES, graph_names=GRAPH_NAMES):
    """Random DAGs of 1-8 nodes with arbitrary names, given in a random (non-topological) order."""
    nodes = draw(st.lists(names, min_size=1, max_size=8, unique=True))
    parents = {v: [u for u in nodes[:i] if draw(st.booleans())] for i, v in enumerate(nodes)}
    order = draw(st.permutations(nodes))
    return BayesianNetwork({v: parents[v] for v in order}, name=draw(graph_names))


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def same(a: BayesianNetwork, b: BayesianNetwork, *, name: bool = True) -> bool:
    return a == b and set(a.edges) == set(b.edges) and (not name or a.name == b.name)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("graph-io")


# ---------------------------------------------------------------------- round-trip properties
@PROPERTY
@given(dags())
def test_dict_and_json_round_trip(bn):
    assert same(from_dict(to_dict(bn)), bn)
    assert same(from_json(json.loads(to_json(bn))), bn)


@PROPERTY
@given(bn=dags())
def test_json_file_round_trip(bn, scratch):
    path = scratch / "g.json"
    to_json(bn, path)
    assert same(from_json(path), bn)
    assert same(read_graph(path), bn)


@PROPERTY
@given(dags())
def test_dot_text_round_trip(bn):
    assert same(from_dot(to_dot(bn)), bn)


@PROPERTY
@given(bn=dags())
def test_dot_file_round_trip(bn, scratch):
    path = scratch / "g.dot"
    to_dot(bn, path)
    assert same(from_dot(path), bn)
    assert same(from_dot(str(path)), bn)
    assert same(read_graph(path), bn)


# the edge list strips names on reading: names with surrounding whitespace are out of its domain
STRIPPED = NAMES.filter(lambda s: s == s.strip())


@PROPERTY
@given(bn=dags(names=STRIPPED))
def test_edge_list_round_trip(bn, scratch):
    text = to_edge_list(bn)
    assert same(from_edge_list(io.StringIO(text, newline="")), bn, name=False)
    path = scratch / "g.csv"
    assert to_edge_list(bn, path) == text
    assert same(from_edge_list(path), bn, name=False)
    assert same(read_graph(path), bn, name=False)


@PROPERTY
@given(dags())
def test_networkx_round_trip(bn):
    G = bn.to_networkx()
    assert same(from_networkx(G), bn, name=False)
    assert same(read_graph(G), bn, name=False)


@PROPERTY
@given(dags())
def test_pgmpy_round_trip(bn):
    models = pytest.importorskip("pgmpy.models")
    cls = getattr(models, "DiscreteBayesianNetwork", None) or models.BayesianNetwork
    model = cls(bn.edges)
    model.add_nodes_from([v for v in bn.nodes if not bn.parents(v) and not bn.children(v)])
    assert same(from_pgmpy(model), bn, name=False)
    assert same(read_graph(model), bn, name=False)


# ---------------------------------------------------------------------- DOT
def test_dot_backslash_regression(tmp_path):
    bn = BayesianNetwork({"a\\": [], 'b"': ["a\\"]}, name="n\\")
    text = to_dot(bn)
    assert '"a\\\\" -> "b\\"";' in text and text.startswith('digraph "n\\\\" {')
    assert same(from_dot(text), bn)
    path = tmp_path / "g.dot"
    to_dot(bn, path)
    assert same(from_dot(path), bn)


def test_dot_unescapes_only_backslash_and_quote():
    g = from_dot(r'digraph { "a\\b" -> "c\"d"; "e\nf"; "g\\\"" }')
    assert set(g.nodes) == {"a\\b", 'c"d', "e\\nf", 'g\\"'}
    assert g.edges == [("a\\b", 'c"d')]


def test_dot_round_trip_and_parser(tmp_path):
    bn = diamond()
    path = tmp_path / "g.dot"
    to_dot(bn, path)
    assert read_graph(path) == bn
    assert from_dot(path).name == "diamond"
    assert to_dot(BayesianNetwork({"a": []})).startswith("digraph {")  # unnamed stays unnamed
    text = """
    /* comment */ strict digraph "my net" {
        rankdir=LR; node [shape=box];
        a -> b -> d [color=red];  // chain
        a -> c; c -> d
        "quoted \\"x\\"";
        {a b} -> e
        f:port:n -> g
    }"""
    g = from_dot(text)
    assert g.name == "my net"
    assert set(g.edges) == {
        ("a", "b"), ("b", "d"), ("a", "c"), ("c", "d"), ("a", "e"), ("b", "e"), ("f", "g")
    }  # fmt: skip
    assert 'quoted "x"' in g


@pytest.mark.parametrize(
    "text, match",
    [
        ("graph { a -- b }", "undirected 'graph'"),
        ("digraph { a -- b }", "undirected edge"),
        ("digraph { a -> b", "closing"),
        ("digraph { a -> ", "closing"),
        ("digraph { a [color=red }", "unterminated attribute"),
        ("digraph { a -> {b c", "unterminated '{' group"),
        ("digraph { subgraph s { a } }", "subgraphs are not supported"),
        ("digraph { -> b }", "unexpected '->'"),
        ("digraph x y { }", "expected '{'"),
        ("flowchart { a }", "expected 'digraph'"),
        ("digraph { a -> b; a -> b }", "duplicate edge"),
        ("digraph { a -> b -> a }", "cycle"),
        ("digraph { a ` b }", "cannot parse"),
    ],
)
def test_dot_errors(text, match):
    with pytest.raises(GraphError, match=match):
        from_dot(text)


def test_dot_path_or_text(tmp_path):
    odd = tmp_path / "{odd}.gv"  # a path holding '{' is still a path
    to_dot(diamond(), odd)
    assert from_dot(str(odd)) == diamond() and from_dot(odd) == diamond()
    with pytest.raises(GraphError, match="DOT file not found"):
        from_dot(str(tmp_path / "missing.dot"))
    with pytest.raises(GraphError, match="DOT file not found"):
        from_dot(tmp_path / "digraph {.dot")  # a Path is never DOT text
    with pytest.raises(GraphError, match="undirected"):
        from_dot("graph {" + " a -- b;" * 200 + "}")  # too long for a file name: parsed as text


# ---------------------------------------------------------------------- JSON
def test_json_round_trip_and_errors(tmp_path):
    bn = diamond()
    path = tmp_path / "g.json"
    to_json(bn, path)
    assert read_graph(path) == bn
    assert read_graph(path).name == "diamond"
    (tmp_path / "dup.json").write_text(json.dumps({"nodes": [{"name": "a"}, {"name": "a"}]}))
    with pytest.raises(GraphError, match="duplicate node name 'a'"):
        read_graph(tmp_path / "dup.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(GraphError, match="not valid JSON"):
        read_graph(tmp_path / "bad.json")
    (tmp_path / "nolist.json").write_text(json.dumps({"graph": {"a": []}}))
    with pytest.raises(GraphError, match="'nodes' list"):
        read_graph(tmp_path / "nolist.json")
    (tmp_path / "number.json").write_text(json.dumps({"nodes": 3}))
    with pytest.raises(GraphError, match="'nodes' must be a list"):
        read_graph(tmp_path / "number.json")
    (tmp_path / "edge.json").write_text(json.dumps({"edges": [["a", "b", "c"]]}))
    with pytest.raises(GraphError, match=r"edge 0 is not a \[parent, child\] pair"):
        read_graph(tmp_path / "edge.json")
    with pytest.raises(GraphError, match="JSON graph file not found"):
        from_json(tmp_path / "missing.json")


def test_dict_ignores_parameters_and_checks_entries():
    doc = {"name": "n", "nodes": [{"name": "a", "sd": 1.0}, {"name": "b", "parents": ["a"], "sd": 2}]}
    assert to_dict(from_dict(doc)) == {
        "name": "n",
        "nodes": [{"name": "a", "parents": []}, {"name": "b", "parents": ["a"]}],
    }
    with pytest.raises(GraphError, match="node entry 0 has no string 'name'"):
        from_dict({"nodes": [{"name": 1}]})
    with pytest.raises(GraphError, match="'parents' of 'a' must be a list"):
        from_dict({"nodes": [{"name": "a", "parents": "b"}]})
    with pytest.raises(GraphError, match="'nodes' list"):
        from_dict([])


# ---------------------------------------------------------------------- CSV edge lists
def test_edge_list(tmp_path):
    path = tmp_path / "edges.csv"
    path.write_text("parent,child\na,b\na,c\nb,d\nc,d\n,e\n")
    bn = read_graph(path)
    assert set(bn.nodes) == {"a", "b", "c", "d", "e"}
    assert set(bn.edges) == {("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")}
    path.write_bytes("\ufeffparent,child\r\na,b\r\n".encode())  # Excel's byte order mark
    assert read_graph(path).edges == [("a", "b")]
    (tmp_path / "bom.json").write_bytes('\ufeff{"a": [], "b": ["a"]}'.encode())
    assert read_graph(tmp_path / "bom.json").edges == [("a", "b")]
    for header in ("from,to", "Source, Target", "cause,effect"):
        path.write_text(f"{header}\na,b\n")
        assert read_graph(path).edges == [("a", "b")]
    path.write_text("child,parent\na,b\n")  # the other direction is not guessed
    with pytest.raises(GraphError, match="header must be 'parent,child'"):
        read_graph(path)
    path.write_text("parent,child\na,b\nb,a\n")
    with pytest.raises(GraphError, match="cycle"):
        read_graph(path)
    path.write_text("parent,child\na,b,c\n")
    with pytest.raises(GraphError, match="line 2 has 3 fields"):
        read_graph(path)
    path.write_text("parent,child\na,b\na,b\n")
    with pytest.raises(GraphError, match="duplicate edge 'a' -> 'b' on line 3"):
        read_graph(path)
    path.write_text("parent,child\na,\n")
    with pytest.raises(GraphError, match="line 2 has an empty child"):
        read_graph(path)
    path.write_text("\n")
    with pytest.raises(GraphError, match="empty"):
        read_graph(path)
    with pytest.raises(GraphError, match="file not found"):
        from_edge_list(tmp_path / "missing.csv")


def test_edge_list_writer_quotes_names():
    bn = BayesianNetwork({"a,b": [], 'say "hi"': ["a,b"], "two\nlines": [], "c": ["two\nlines"]})
    text = to_edge_list(bn)
    assert text.splitlines()[:3] == ["parent,child", ',"a,b"', '"a,b","say ""hi"""']
    assert same(from_edge_list(io.StringIO(text, newline="")), bn, name=False)


# ---------------------------------------------------------------------- networkx, pgmpy, BIF, dispatch
def test_networkx_and_unknown_format(tmp_path):
    G = nx.DiGraph([("x", "y"), ("y", "z")])
    bn = read_graph(G)
    assert bn.nodes == ("x", "y", "z")
    assert nx.utils.graphs_equal(bn.to_networkx(), G)
    with pytest.raises(GraphError, match="cycle"):
        read_graph(nx.DiGraph([("x", "y"), ("y", "x")]))
    with pytest.raises(GraphError, match="expected a networkx.DiGraph"):
        from_networkx(nx.Graph([("x", "y")]))
    with pytest.raises(GraphError, match="expected a pgmpy model"):
        read_graph(42)
    with pytest.raises(GraphError, match="not found"):
        read_graph(tmp_path / "missing.json")
    (tmp_path / "g.xyz").write_text("")
    with pytest.raises(GraphError, match="unknown graph format"):
        read_graph(tmp_path / "g.xyz")
    assert read_graph(bn) is bn


def test_pgmpy_model_and_bif(tmp_path):
    pytest.importorskip("pgmpy")
    from pgmpy.utils import get_example_model

    from sirenvae.networks import load_network

    model = get_example_model("ecoli70")
    bn = from_pgmpy(model)
    assert bn == load_network("ecoli70").graph
    assert set(bn.nodes) == set(model.nodes()) and set(bn.edges) == set(model.edges())
    bif = tmp_path / "tiny.bif"
    bif.write_text(
        """network tiny { }
variable A { type discrete [ 2 ] { a0, a1 }; }
variable B { type discrete [ 2 ] { b0, b1 }; }
probability ( A ) { table 0.3, 0.7; }
probability ( B | A ) { (a0) 0.1, 0.9; (a1) 0.5, 0.5; }
"""
    )
    g = read_graph(bif)
    assert g.edges == [("A", "B")] and g.name == "tiny"
    with pytest.raises(GraphError, match="BIF file not found"):
        graph_io.from_bif(tmp_path / "missing.bif")


def test_graph_does_not_import_graph_io():
    tree = ast.parse(Path(sirenvae.graph.__file__).read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any("graph_io" in m for m in imported)


def test_json_shapes_users_write_by_hand(tmp_path):
    """Nodes as a mapping, an edge list, networkx's node-link links: the same diamond each time."""
    bn = diamond()
    shapes = {
        "mapping": {"nodes": {v: {"parents": list(bn.parents(v))} for v in bn.nodes}},
        "mapping-of-lists": {"nodes": {v: list(bn.parents(v)) for v in bn.nodes}},
        "child-to-parents": {v: list(bn.parents(v)) for v in bn.nodes},
        "edges": {"edges": [list(e) for e in bn.edges]},
        "names-and-edges": {"nodes": list(bn.nodes), "edges": [list(e) for e in bn.edges]},
        "node-link": {
            "nodes": [{"id": v} for v in bn.nodes],
            "links": [{"source": a, "target": b} for a, b in bn.edges],
        },
        "from-to": {"edges": [{"from": a, "to": b} for a, b in bn.edges]},
        "parent-child": {"edges": [{"parent": a, "child": b} for a, b in bn.edges]},
    }
    for label, doc in shapes.items():
        (tmp_path / f"{label}.json").write_text(json.dumps(doc))
        assert read_graph(tmp_path / f"{label}.json") == bn, label
    # networkx's own node-link data of integer nodes; an undirected document is refused
    ints = nx.node_link_data(nx.DiGraph([(0, 1), (0, 2)]), edges="links")
    assert read_graph(_write(tmp_path / "ints.json", ints)).edges == [("0", "1"), ("0", "2")]
    with pytest.raises(GraphError, match="undirected"):
        read_graph(_write(tmp_path / "undirected.json", {**ints, "directed": False}))
    # an isolated node survives the edge form only when named in "nodes"
    got = read_graph(_write(tmp_path / "iso.json", {"nodes": ["z"], "edges": [["a", "b"]]}))
    assert set(got.nodes) == {"a", "b", "z"} and got.edges == [("a", "b")]
    # the mapping form carries types and levels like the list form
    doc = {"nodes": {"s": {"type": "binary", "levels": ["no", "yes"]}, "y": {"parents": ["s"]}}}
    assert declared_types(_write(tmp_path / "typed.json", doc)) == ({"s": "binary"}, {"s": ["no", "yes"]})
    # the document itself a list of [parent, child] pairs; another list is refused in one line
    pairs = _write(tmp_path / "pairs.json", [["a", "b"], ["a", "c"], ["b", "c"]])
    assert read_graph(pairs).edges == [("a", "b"), ("a", "c"), ("b", "c")] and declared_latent(pairs) is None
    with pytest.raises(GraphError, match=r"or a list of \[parent, child\] pairs"):
        read_graph(_write(tmp_path / "numbers.json", [1, 2]))
    with pytest.raises(
        GraphError, match=r"edge 1 is not a \[parent, child\] pair of names: \{'a': 'h', 'b': 'x'\}"
    ):
        read_graph(_write(tmp_path / "keys.json", {"edges": [["h", "y"], {"a": "h", "b": "x"}]}))


def _write(path, doc):
    path.write_text(json.dumps(doc))
    return path


def test_a_json_graph_declares_its_latent_nodes(tmp_path):
    """A top-level "latent" list or "latent": true per node, as --latent would say them."""
    from sirenvae.graph_io import declared_latent

    doc = {
        "latent": ["a"],
        "nodes": {"a": {}, "b": {"parents": ["a"], "latent": True}, "c": {"parents": ["b"]}},
    }
    assert declared_latent(_write(tmp_path / "g.json", doc)) == ["a", "b"]
    assert declared_latent(_write(tmp_path / "none.json", {"edges": [["a", "b"]]})) is None
    top = _write(tmp_path / "top.json", {"latent": ["a"], "a": [], "b": ["a"]})  # {child: [parents]}
    assert declared_latent(top) == ["a"] and read_graph(top).edges == [("a", "b")]
    assert declared_latent(tmp_path / "g.csv") is None
    with pytest.raises(GraphError, match="'latent' must be a list"):
        declared_latent(_write(tmp_path / "bad.json", {"latent": [1], "edges": [["a", "b"]]}))


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        ({"type": "binary", "levels": ["p", "q", "r"]}, "type 'binary' and 3 levels"),
        ({"levels": ["p", "p"]}, "repeat 'p'"),
        ({"type": "count", "levels": ["1", "2"]}, "type 'count' and 2 levels"),
    ],
)
def test_declared_levels_must_agree_with_the_type_and_not_repeat(tmp_path, entry, match):
    path = tmp_path / "g.json"
    path.write_text(
        json.dumps({"nodes": [{"name": "a", "parents": []}, {"name": "h", "parents": ["a"]} | entry]})
    )
    with pytest.raises(GraphError, match=match):
        declared_types(path)
    ok = {"nodes": [{"name": "h", "parents": [], "type": "categorical", "levels": ["no", "yes"]}]}
    path.write_text(json.dumps(ok))
    assert declared_types(path) == ({"h": "categorical"}, {"h": ["no", "yes"]})

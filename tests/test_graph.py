import json

import networkx as nx
import pytest
import torch

from sirenvae.graph import BayesianNetwork, GraphError, check_latent, read_graph


def diamond():
    return BayesianNetwork({"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}, name="diamond")


def test_topological_order_is_stable_and_adjacency_lower_triangular():
    bn = BayesianNetwork({"d": ["b", "c"], "c": ["a"], "b": ["a"], "a": []})
    assert bn.nodes == ("a", "c", "b", "d")  # given order breaks ties: c was listed before b
    assert bn == BayesianNetwork({"a": [], "b": ["a"], "c": ["a"], "d": ["c", "b"]})
    assert bn != BayesianNetwork({"a": [], "b": ["a"], "c": ["a"], "d": ["c"]})
    A = bn.adjacency()
    assert torch.equal(A, torch.tril(A, -1))
    for i, v in enumerate(bn.nodes):
        assert {bn.nodes[j] for j in torch.nonzero(A[i]).flatten().tolist()} == set(bn.parents(v))


def test_structure_queries():
    bn = diamond()
    assert bn.children("a") == ("b", "c")
    assert bn.roots() == ("a",) and bn.leaves() == ("d",)
    assert bn.ancestors("d") == {"a", "b", "c"}
    assert bn.depth() == 2
    assert bn.subgraph(["a", "b", "d"]).edges == [("a", "b"), ("b", "d")]
    U = bn.moral_graph()
    assert U.has_edge("b", "c")  # co-parents of d are married
    C = bn.cross_adjacency(["d", "b"], ["b", "c", "a"])
    assert C.tolist() == [[True, True, False], [False, False, True]]


def test_cycle_is_printed():
    with pytest.raises(GraphError, match=r"cycle: .*a -> .*a"):
        BayesianNetwork({"a": ["c"], "b": ["a"], "c": ["b"]})


@pytest.mark.parametrize(
    "parents, match",
    [
        ({"a": ["a"]}, "self-loop"),
        ({"a": ["z"]}, "unknown node 'z'"),
        ({}, "empty"),
        ({"a": [], "b": ["a", "a"]}, "twice"),
        ({"a": "b"}, "list of names"),
        ({"": []}, "non-empty strings"),
    ],
)
def test_bad_graphs(parents, match):
    with pytest.raises(GraphError, match=match):
        BayesianNetwork(parents)


def test_graph_error_is_value_error():
    assert issubclass(GraphError, ValueError)


def test_unknown_node_queries():
    bn = diamond()
    with pytest.raises(GraphError, match="unknown node 'x'"):
        bn.parents("x")
    with pytest.raises(GraphError, match="unknown node 'x'"):
        bn.adjacency(["a", "x"])


def test_latent_validation():
    bn = diamond()
    assert check_latent(bn, ["c", "a"]) == ("a", "c")
    with pytest.raises(GraphError, match="unknown node 'q'"):
        check_latent(bn, ["q"])
    with pytest.raises(GraphError, match="empty"):
        check_latent(bn, [])
    with pytest.raises(GraphError, match="every node"):
        check_latent(bn, bn.nodes)
    with pytest.raises(GraphError, match="twice"):
        check_latent(bn, ["a", "a"])


def test_json_round_trip_and_errors(tmp_path):
    bn = diamond()
    path = tmp_path / "g.json"
    bn.to_json(path)
    assert read_graph(path) == bn
    assert read_graph(path).name == "diamond"
    (tmp_path / "dup.json").write_text(json.dumps({"nodes": [{"name": "a"}, {"name": "a"}]}))
    with pytest.raises(GraphError, match="duplicate node name 'a'"):
        read_graph(tmp_path / "dup.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(GraphError, match="not valid JSON"):
        read_graph(tmp_path / "bad.json")
    (tmp_path / "nolist.json").write_text(json.dumps({"nodes": {"a": []}}))
    with pytest.raises(GraphError, match="'nodes' list"):
        read_graph(tmp_path / "nolist.json")


def test_edge_list(tmp_path):
    path = tmp_path / "edges.csv"
    path.write_text("parent,child\na,b\na,c\nb,d\nc,d\n,e\n")
    bn = read_graph(path)
    assert set(bn.nodes) == {"a", "b", "c", "d", "e"}
    assert set(bn.edges) == {("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")}
    path.write_text("from,to\na,b\n")
    with pytest.raises(GraphError, match="header must be 'parent,child'"):
        read_graph(path)
    path.write_text("parent,child\na,b\nb,a\n")
    with pytest.raises(GraphError, match="cycle"):
        read_graph(path)
    path.write_text("parent,child\na,b,c\n")
    with pytest.raises(GraphError, match="line 2 has 3 fields"):
        read_graph(path)


def test_dot_round_trip_and_parser(tmp_path):
    bn = diamond()
    path = tmp_path / "g.dot"
    bn.to_dot(path)
    assert read_graph(path) == bn
    text = """
    /* comment */ strict digraph "my net" {
        rankdir=LR; node [shape=box];
        a -> b -> d [color=red];  // chain
        a -> c; c -> d
        "quoted \\"x\\"";
        {a b} -> e
    }"""
    g = BayesianNetwork.from_dot(text)
    assert g.name == "my net"
    assert set(g.edges) == {("a", "b"), ("b", "d"), ("a", "c"), ("c", "d"), ("a", "e"), ("b", "e")}
    assert 'quoted "x"' in g
    with pytest.raises(GraphError, match="undirected"):
        BayesianNetwork.from_dot("graph { a -- b }")
    with pytest.raises(GraphError, match="closing"):
        BayesianNetwork.from_dot("digraph { a -> b")


def test_networkx_and_unknown_format(tmp_path):
    G = nx.DiGraph([("x", "y"), ("y", "z")])
    bn = read_graph(G)
    assert bn.nodes == ("x", "y", "z")
    assert nx.utils.graphs_equal(bn.to_networkx(), G)
    with pytest.raises(GraphError, match="cycle"):
        read_graph(nx.DiGraph([("x", "y"), ("y", "x")]))
    with pytest.raises(GraphError, match="not found"):
        read_graph(tmp_path / "missing.json")
    (tmp_path / "g.xyz").write_text("")
    with pytest.raises(GraphError, match="unknown graph format"):
        read_graph(tmp_path / "g.xyz")


def test_pgmpy_model_and_bif(tmp_path):
    pgmpy = pytest.importorskip("pgmpy")
    from pgmpy.utils import get_example_model

    from sirenvae.networks import load_network

    model = get_example_model("ecoli70")
    bn = BayesianNetwork.from_pgmpy(model)
    assert bn == load_network("ecoli70").graph
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
    assert g.edges == [("A", "B")]
    assert pgmpy is not None

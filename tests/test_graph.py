import pytest
import torch

from sirenvae.graph import BayesianNetwork, GraphError, LatentSplit


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
    assert bn.descendants("a") == {"b", "c", "d"} and bn.descendants("d") == set()
    assert all(v in bn.ancestors(w) for v in bn.nodes for w in bn.descendants(v))
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
        ({"a": ["z"]}, "unknown node 'z' listed as a parent of 'a': every parent must be a node"),
        (
            {"x10": [], "x11": ["x1O"]},
            r"unknown node 'x1O' listed as a parent of 'x11' \(did you mean 'x10'\?\)",
        ),
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
    split = LatentSplit(bn, ["c", "a"])
    assert split.latent == ("a", "c") and split.observed == ("b", "d")
    assert split.latent_index() == [bn.index("a"), bn.index("c")]
    # the observed parents of latents are the prior's context
    assert split.prior_context == tuple(v for v in ("b", "d") if set(bn.children(v)) & {"a", "c"})
    assert split == LatentSplit(bn, ("a", "c")) and split != LatentSplit(bn, ["a"])
    with pytest.raises(GraphError, match="unknown node 'q'"):
        LatentSplit(bn, ["q"])
    with pytest.raises(GraphError, match="empty"):
        LatentSplit(bn, [])
    with pytest.raises(GraphError, match="every node"):
        LatentSplit(bn, bn.nodes)
    with pytest.raises(GraphError, match="twice"):
        LatentSplit(bn, ["a", "a"])
    with pytest.raises(GraphError, match="same nodes"):
        split.on(BayesianNetwork({"a": []}))

import networkx as nx
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from sirenvae.graph import BayesianNetwork, GraphError
from sirenvae.inversion import faithful_inverse, is_faithful, redundant_edges
from sirenvae.networks import load_network


@st.composite
def dags_with_latents(draw, max_nodes=9):
    n = draw(st.integers(2, max_nodes))
    names = [f"v{i}" for i in range(n)]
    parents = {names[i]: [names[j] for j in range(i) if draw(st.booleans())] for i in range(n)}
    perm = draw(st.permutations(names))  # the given order need not be topological
    bn = BayesianNetwork({v: parents[v] for v in perm})
    k = draw(st.integers(1, n - 1))
    latent = draw(st.lists(st.sampled_from(names), min_size=k, max_size=k, unique=True))
    return bn, latent


def edges(H):
    return set(H.edges)


def test_chain():
    bn = BayesianNetwork({"z1": [], "z2": ["z1"], "x": ["z2"]})
    H = faithful_inverse(bn, ["z1", "z2"])
    assert edges(H) == {("x", "z2"), ("z2", "z1")}


def test_v_structure_explaining_away():
    bn = BayesianNetwork({"z1": [], "z2": [], "x": ["z1", "z2"]})
    H = faithful_inverse(bn, ["z1", "z2"])
    assert edges(H) == {("x", "z1"), ("x", "z2"), ("z2", "z1")}
    # dropping the explaining-away edge makes it unfaithful
    H_bad = BayesianNetwork({"x": [], "z2": ["x"], "z1": ["x"]})
    assert not is_faithful(bn, H_bad, ["z1", "z2"])


def test_binary_tree():
    bn = BayesianNetwork(
        {
            "z0": [],
            "z1": ["z0"],
            "z2": ["z0"],
            "x1": ["z1"],
            "x2": ["z1"],
            "x3": ["z2"],
            "x4": ["z2"],
        }
    )
    H = faithful_inverse(bn, ["z0", "z1", "z2"])
    assert edges(H) == {
        ("z1", "z0"),
        ("z2", "z0"),
        ("z2", "z1"),
        ("x1", "z1"),
        ("x2", "z1"),
        # eliminating z1 married z2 with x1, x2: z2 is sampled first and sees every leaf
        ("x1", "z2"),
        ("x2", "z2"),
        ("x3", "z2"),
        ("x4", "z2"),
    }


def test_arithmetic_circuit_by_hand():
    bn = load_network("arithmetic-circuit").graph
    Z = [f"z{i}" for i in range(6)]
    H = faithful_inverse(bn, Z)
    assert edges(H) == {
        ("x0", "z5"),
        ("x1", "z5"),
        ("z5", "z3"),
        ("x0", "z3"),
        ("z3", "z2"),
        ("z2", "z1"),
        ("z3", "z1"),
        ("z1", "z0"),
        ("z2", "z0"),
        ("z3", "z0"),
        ("z3", "z4"),
        ("z5", "z4"),
    }
    assert is_faithful(bn, H, Z) and redundant_edges(bn, H, Z) == []


def test_observed_are_roots_and_latents_follow():
    bn = load_network("ecoli70").graph
    latent = [v for v in bn.nodes if bn.children(v)]
    H = faithful_inverse(bn, latent)
    for v in bn.leaves():
        assert H.parents(v) == ()
    assert nx.is_directed_acyclic_graph(H.to_networkx())
    assert is_faithful(bn, H, latent)


@pytest.mark.parametrize("name", ["ecoli70", "magic-niab", "magic-irri"])
def test_shipped_networks_are_minimal(name):
    bn = load_network(name).graph
    if name == "magic-niab":
        latent = [v for v in bn.nodes if bn.parents(v) and bn.children(v)]
    else:
        latent = [v for v in bn.nodes if bn.children(v)]
    H = faithful_inverse(bn, latent)
    assert is_faithful(bn, H, latent)
    assert redundant_edges(bn, H, latent) == []


def test_bad_latent_sets():
    bn = BayesianNetwork({"a": [], "b": ["a"]})
    with pytest.raises(GraphError, match="unknown node 'c'"):
        faithful_inverse(bn, ["c"])
    with pytest.raises(GraphError, match="every node"):
        faithful_inverse(bn, ["a", "b"])


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags_with_latents())
# a NaMI inverse with a redundant edge (v0 -> v3), so that pruning is always exercised
@example((BayesianNetwork({"v0": [], "v1": [], "v2": ["v0", "v1"], "v3": ["v1"]}), ["v2", "v1", "v3"]))
def test_random_dags_faithful_and_pruned_minimal(case):
    bn, latent = case
    H = faithful_inverse(bn, latent)
    assert is_faithful(bn, H, latent)
    assert nx.is_directed_acyclic_graph(H.to_networkx())
    # edges only point into latents
    assert all(c in latent for _, c in H.edges)
    P = faithful_inverse(bn, latent, prune=True)
    assert is_faithful(bn, P, latent)
    assert redundant_edges(bn, P, latent) == []
    assert edges(P) <= edges(H)
    # pruning changes exactly the latents that have a redundant parent in H: each one's first
    # removal is a redundant edge of H, and a latent without one is left as it was
    redundant = redundant_edges(bn, H, latent)
    assert {c for _, c in edges(H) - edges(P)} == {c for _, c in redundant}
    assert (edges(P) == edges(H)) == (redundant == [])
    event("pruned" if redundant else "already minimal")


def test_is_faithful_detects_missing_edges():
    # removing any edge of a NaMI inverse of a dense graph must break faithfulness or be
    # reported redundant: the two checks agree
    bn = BayesianNetwork({"z0": [], "z1": ["z0"], "x0": ["z0", "z1"], "x1": ["z1", "x0"]})
    H = faithful_inverse(bn, ["z0", "z1"])
    red = set(redundant_edges(bn, H, ["z0", "z1"]))
    for p, c in H.edges:
        pa = {v: [q for q in H.parents(v) if (q, v) != (p, c)] for v in H.nodes}
        assert is_faithful(bn, BayesianNetwork(pa), ["z0", "z1"]) == ((p, c) in red)

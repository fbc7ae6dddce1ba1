"""Causal queries: identification, closed forms, the do-sampler and counterfactuals of a fitted model."""

import pytest

from sirenvae.graph import BayesianNetwork, GraphError
from sirenvae.identification import identify, latent_projection


def bn(parents):
    return BayesianNetwork(parents)


# ---------------------------------------------------------------------- identification
def test_latent_projection_follows_latent_chains():
    chain = bn({"a": [], "h1": ["a"], "h2": ["h1"], "b": ["h2"], "c": ["h1"], "d": []})
    g = latent_projection(chain, ["h1", "h2"])
    assert g.parents["b"] == {"a"} and g.parents["c"] == {"a"}
    assert g.siblings["b"] == {"c"} and g.siblings["c"] == {"b"}
    assert g.siblings["a"] == set() and g.districts() == [{"a"}, {"b", "c"}, {"d"}]


@pytest.mark.parametrize(
    ("parents", "latent", "x", "y", "expected"),
    [
        # the bow arc: confounded cause and effect
        ({"u": [], "x": ["u"], "y": ["x", "u"]}, ["u"], ["x"], ["y"], False),
        # the front door
        ({"u": [], "x": ["u"], "m": ["x"], "y": ["m", "u"]}, ["u"], ["x"], ["y"], True),
        # the back door through an observed w
        ({"u": [], "w": ["u"], "x": ["u"], "y": ["x", "w"]}, ["u"], ["x"], ["y"], True),
        # an instrument does not identify the effect without parametric assumptions
        ({"u": [], "z": [], "x": ["z", "u"], "y": ["x", "u"]}, ["u"], ["x"], ["y"], False),
        # the napkin (Pearl 2009, Fig. 4.5): identified, but by no adjustment set
        (
            {"u1": [], "u2": [], "w1": ["u1", "u2"], "w2": ["w1"], "x": ["w2", "u1"], "y": ["x", "u2"]},
            ["u1", "u2"],
            ["x"],
            ["y"],
            True,
        ),
        # confounding between x's child and y
        ({"u": [], "x": [], "m": ["x", "u"], "y": ["m", "u"]}, ["u"], ["x"], ["y"], True),
        ({"u": [], "x": [], "m": ["x", "u"], "y": ["m", "u"]}, ["u"], ["m"], ["y"], False),
        # no latent at all, a latent intervened, a latent target
        ({"u": [], "x": ["u"], "y": ["x"]}, ["u"], ["x"], ["y"], True),
        ({"u": [], "x": ["u"], "y": ["x"]}, ["u"], ["u"], ["y"], False),
        ({"u": [], "x": ["u"], "y": ["x"]}, ["u"], ["x"], ["u"], False),
        # joint interventions: both confounded with y, one the other's instrument
        ({"u": [], "a": [], "b": ["a"], "y": ["a", "b", "u"], "c": ["u"]}, ["u"], ["a", "b"], ["y"], True),
        ({"u": [], "a": ["u"], "b": ["a"], "y": ["b", "u"]}, ["u"], ["a", "b"], ["y"], True),
        ({"u": [], "a": ["u"], "b": ["a", "u"], "y": ["b"]}, ["u"], ["a"], ["y"], False),
    ],
)
def test_identify_decides_known_cases(parents, latent, x, y, expected):
    result = identify(bn(parents), latent, x, y)
    assert result.identified is expected, result.reason
    assert result.label == ("identified" if expected else "model-dependent")
    assert (result.hedge is not None) == (not expected and not set(x + y) & set(latent))


def test_identify_rejects_unknown_and_overlapping_nodes():
    g = bn({"u": [], "x": ["u"], "y": ["x"]})
    with pytest.raises(GraphError, match="unknown node 'q'"):
        identify(g, ["u"], ["q"], ["y"])
    with pytest.raises(GraphError, match="both intervened on and targets"):
        identify(g, ["u"], ["x"], ["x", "y"])

import math

import pytest
import torch

from sirenvae.graph import GraphError
from sirenvae.networks import available_networks, load_network, network_document

LINEAR = ["ecoli70", "arth150", "magic-niab", "magic-irri"]


def test_available():
    assert set(available_networks()) == {*LINEAR, "arithmetic-circuit"}
    for name in available_networks():
        assert network_document(name)["citation"]
    with pytest.raises(GraphError, match="unknown network 'nope'"):
        load_network("nope")


@pytest.mark.parametrize(
    "name, nodes, edges",
    [("ecoli70", 46, 70), ("arth150", 107, 150), ("magic-niab", 44, 66), ("magic-irri", 64, 102)],
)
def test_sizes_and_sample_moments(name, nodes, edges):
    net = load_network(name)
    assert (len(net.graph), len(net.graph.edges)) == (nodes, edges)
    x = net.sample(40_000, seed=1)
    mean, cov = net.mean_and_covariance()
    sd = cov.diagonal().sqrt()
    n = x.shape[0]
    # standard errors: mean sd/sqrt(n); covariance entries about sd_i sd_j sqrt(2/n)
    assert ((x.mean(0) - mean).abs() / sd).max() < 5 / math.sqrt(n)
    corr_err = (torch.cov(x.T) - cov) / torch.outer(sd, sd)
    assert corr_err.abs().max() < 6 * math.sqrt(2 / n)


def test_sampling_is_seeded():
    net = load_network("ecoli70")
    assert torch.equal(net.sample(5, seed=3), net.sample(5, seed=3))
    assert not torch.equal(net.sample(5, seed=3), net.sample(5, seed=4))


@pytest.mark.parametrize("name", LINEAR)
def test_subset_log_prob_matches_monte_carlo_entropy(name):
    net = load_network(name)
    g = net.graph
    leaves = list(g.leaves())
    x = net.sample(20_000, seed=2)[:, [g.index(v) for v in leaves]]
    lp = net.log_prob(x, leaves)
    # -E[log p(x)] is the entropy; its MC standard error is std(lp)/sqrt(n)
    assert abs(-lp.mean().item() - net.entropy(leaves)) < 5 * lp.std().item() / math.sqrt(len(lp))


def test_log_prob_of_a_pair_is_the_bivariate_gaussian():
    net = load_network("ecoli70")
    mean, cov = net.mean_and_covariance(["cspG", "cspA"])
    x = torch.tensor([[2.0, 0.3]], dtype=torch.float64)
    d = x - mean
    expected = -0.5 * (d @ torch.linalg.inv(cov) @ d.T).squeeze() - 0.5 * torch.logdet(2 * math.pi * cov)
    assert torch.allclose(net.log_prob(x, ["cspG", "cspA"]), expected.reshape(1))


def test_oracle_entropies_of_the_spec():
    # SPEC section 5: oracle H(x) under the latent rules
    expected = {"ecoli70": 31.20, "arth150": 37.02, "magic-irri": 9.86, "magic-niab": 32.52}
    for name, h in expected.items():
        g = load_network(name).graph
        if name == "magic-niab":
            observed = [v for v in g.nodes if not (g.parents(v) and g.children(v))]
        else:
            observed = list(g.leaves())
        assert round(load_network(name).entropy(observed), 2) == h


def test_against_pgmpy_log_likelihood():
    pytest.importorskip("pgmpy")
    from pgmpy.utils import get_example_model

    net = load_network("ecoli70")
    model = get_example_model("ecoli70")
    x = net.sample(50, seed=5)
    import pandas as pd

    df = pd.DataFrame(x.numpy(), columns=list(net.graph.nodes))
    theirs = model.log_likelihood(df)
    ours = net.log_prob(x).sum().item()
    assert abs(ours - float(theirs)) < 1e-6 * abs(ours) + 1e-6


def test_arithmetic_circuit_matches_reference_moments():
    net = load_network("arithmetic-circuit")
    ref = network_document("arithmetic-circuit")["reference_moments_10000_samples"]
    assert list(net.graph.nodes) == ref["order"]
    x = net.sample(10_000, seed=0)
    n = x.shape[0]
    # two independent 10k-sample estimates differ by about sqrt(2) standard errors
    se = torch.tensor(ref["stds"], dtype=torch.float64) * math.sqrt(2 / n)
    assert ((x.mean(0) - torch.tensor(ref["means"], dtype=torch.float64)).abs() < 5 * se).all()
    assert torch.allclose(x.std(0), torch.tensor(ref["stds"], dtype=torch.float64), rtol=0.05)
    assert torch.isfinite(net.log_prob(x)).all()

import math

import pytest
import torch

from sirenvae.graph import GraphError
from sirenvae.networks import available_networks, load_network, network_document

LINEAR = ["ecoli70", "arth150", "magic-niab", "magic-irri"]


def test_available():
    assert set(available_networks()) == {*LINEAR, "arithmetic-circuit", "alarm", "child"}
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
    # the oracle H(x) under the default latent rules
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


def small_linear_network():
    """r (observed root) -> z1; z0 -> z1; z0, z1 -> x0; z1 -> x1: observed parents and children."""
    from sirenvae.networks import LinearGaussianNetwork

    nodes = [
        {"name": "r", "parents": [], "intercept": 1.0, "coefficients": [], "sd": 1.0},
        {"name": "z0", "parents": [], "intercept": -0.5, "coefficients": [], "sd": 1.5},
        {"name": "z1", "parents": ["r", "z0"], "intercept": 0.2, "coefficients": [0.8, -1.2], "sd": 0.7},
        {"name": "x0", "parents": ["z0", "z1"], "intercept": 0.0, "coefficients": [1.0, 0.5], "sd": 0.6},
        {"name": "x1", "parents": ["z1"], "intercept": 2.0, "coefficients": [-1.4], "sd": 0.4},
    ]
    return LinearGaussianNetwork.from_json({"name": "small", "nodes": nodes})


def test_importance_sampling_recovers_the_exact_gaussian_marginal():
    from sirenvae.networks import importance_log_marginal, oracle

    net = small_linear_network()
    observed = ["r", "x0", "x1"]
    idx = [net.graph.index(v) for v in observed]
    x = net.sample(40, seed=0)[:, idx]
    exact = net.log_prob(x, observed)
    est = importance_log_marginal(net, x, observed, samples=20_000, seed=1)
    z = (est.log_prob - exact) / est.se
    assert est.se.max() < 0.2 and z.abs().max() < 4.5 and abs(z.mean()) < 4.5 / math.sqrt(len(z))
    assert abs(est.nll - (-exact.mean().item())) < 4 * est.nll_se
    # seeded: the same rows and seed give the same estimate
    again = importance_log_marginal(net, x, observed, samples=20_000, seed=1)
    assert torch.equal(again.log_prob, est.log_prob)
    # a linear network's oracle is exact
    truth = oracle(net, x.float(), observed)
    assert truth.exact and truth.se == 0 and truth.nll == pytest.approx(-exact.mean().item(), abs=1e-5)


def circuit_rows(n: int, seed: int = 0):
    from sirenvae.data import default_latent_rule, latent_split, sample_splits

    net = load_network("arithmetic-circuit")
    split = latent_split(net.graph, default_latent_rule("arithmetic-circuit"))
    return net, sample_splits(net, split, train_size=2, test_size=n, seed=seed)


def test_the_circuit_proposal_agrees_with_likelihood_weighting():
    from sirenvae.networks import importance_log_marginal

    net, splits = circuit_rows(6, seed=3)
    x, observed = splits.test, splits.observed
    fast = importance_log_marginal(net, x, observed, samples=4096, seed=0, proposal="circuit")
    slow = importance_log_marginal(net, x, observed, samples=1 << 18, seed=1, proposal="prior")
    z = (fast.log_prob - slow.log_prob) / (fast.se.square() + slow.se.square()).sqrt()
    assert z.abs().max() < 4.5, z
    # the proposal aims where the posterior is: a large share of effective samples
    assert fast.ess.median() > 0.1 * 4096 and fast.se.max() < 0.1


def test_the_circuit_oracle_is_a_seeded_monte_carlo_estimate():
    from sirenvae.baselines import fit_classical
    from sirenvae.networks import oracle, oracle_nll

    net, splits = circuit_rows(300)
    truth = oracle(net, splits.test, splits.observed, samples=1024)
    assert truth.method == "monte-carlo" and not truth.exact and 0 < truth.se < 0.02
    assert truth == oracle(net, splits.test, splits.observed, samples=1024)
    assert oracle_nll(net, splits.test, splits.observed) is None  # no exact density
    # no model beats the truth on average: factor analysis fitted to many rows is worse
    train = net.sample(2000, seed=5)[:, [6, 7]].float()
    fa = fit_classical("fa", train)
    assert -fa.log_prob(splits.test).mean().item() > truth.nll + 0.5


def test_importance_sampling_errors():
    from sirenvae.networks import importance_log_marginal

    net, splits = circuit_rows(3)
    with pytest.raises(ValueError, match="unknown proposal 'magic'"):
        importance_log_marginal(net, splits.test, splits.observed, proposal="magic")
    with pytest.raises(ValueError, match=r"x must have shape \(N, 2\)"):
        importance_log_marginal(net, splits.test[:, :1], splits.observed)
    with pytest.raises(ValueError, match="circuit proposal is for the arithmetic circuit"):
        importance_log_marginal(small_linear_network(), torch.zeros(2, 2), ["x0", "x1"], proposal="circuit")

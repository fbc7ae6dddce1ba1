import math
from dataclasses import replace

import pytest
import torch

from helpers import SMALL_LATENT, TINY, float64, rows, small_network
from sirenvae.graph import BayesianNetwork, LatentSplit
from sirenvae.models import ModelConfig, build_model
from sirenvae.objectives import (
    elbo,
    evaluate,
    evaluate_rows,
    iwae,
    log_weights,
    prior_draws,
    reconstruction_error,
    warmup_elbo,
)
from sirenvae.pipeline import TrainOptions, train_model
from sirenvae.training import FitConfig


def test_iwae_matches_quadrature_with_one_latent():
    bn = BayesianNetwork({"z": [], "x1": ["z"], "x2": ["z"]})
    torch.manual_seed(0)
    model = float64(build_model(LatentSplit(bn, ("z",)), TINY, variant="true"))
    with torch.no_grad():  # a decoder that clearly depends on z
        model.decoder.net.layers[0].weight.mul_(3)
    x = torch.randn(6, 2, dtype=torch.float64)
    t = torch.linspace(-15, 15, 6001, dtype=torch.float64)
    with torch.no_grad():
        lj = model.log_joint(x, t[:, None, None].expand(-1, 6, 1))  # (grid, N)
        log_px = torch.logsumexp(lj, 0) + math.log(t[1] - t[0])
        torch.manual_seed(1)
        est = iwae(model, x, 5000)
    assert (est - log_px).abs().max() < 0.05


def test_elbo_below_iwae_increasing_in_k():
    net = small_network()
    torch.manual_seed(0)
    model = float64(build_model(LatentSplit(net.graph, SMALL_LATENT), TINY, variant="true"))
    x = rows(net, SMALL_LATENT, 300, dtype=torch.float64)
    model.set_standardization(x)
    torch.manual_seed(2)
    with torch.no_grad():
        values = {
            "elbo": elbo(model, x, 50),
            "k10": iwae(model, x, 10),
            "k100": iwae(model, x, 100),
        }

    def below(a, b):
        d = values[b] - values[a]
        # the mean difference must be positive beyond three standard errors
        return d.mean() > -3 * d.std() / math.sqrt(d.numel())

    assert below("elbo", "k10") and below("k10", "k100")
    assert values["k100"].mean() > values["elbo"].mean()


def test_reconstruction_error_and_weights_shapes():
    net = small_network()
    model = float64(build_model(LatentSplit(net.graph, SMALL_LATENT), TINY, variant="vae"))
    x = rows(net, SMALL_LATENT, 20, dtype=torch.float64)
    assert log_weights(model, x, 7).shape == (7, 20)
    re = reconstruction_error(model, x)
    assert re.shape == (20,) and (re >= 0).all()
    r = evaluate(model, x, importance_samples=10)
    assert r["nll"] <= r["neg_elbo"] + 0.5


def test_true_structure_learns_a_linear_gaussian_network():
    net = small_network()
    train = rows(net, SMALL_LATENT, 20_000, seed=0)
    test = rows(net, SMALL_LATENT, 2000, seed=1)
    torch.manual_seed(0)
    model, history = train_model(
        LatentSplit(net.graph, SMALL_LATENT),
        train,
        model_config=ModelConfig(),
        fit_config=FitConfig(lr=3e-3, batch_size=256, max_epochs=12, patience=12),
        options=TrainOptions(warmup_steps=300),
    )
    oracle = -net.log_prob(test.double(), ("x1", "x2", "x3")).mean().item()
    nll = evaluate(model, test, importance_samples=200)["nll"]
    assert abs(nll - oracle) < 0.3, (nll, oracle)


def test_evaluation_per_row_and_chunk_independent():
    net = small_network()
    torch.manual_seed(0)
    model = float64(build_model(LatentSplit(net.graph, SMALL_LATENT), TINY, variant="true"))
    model.train()
    x = rows(net, SMALL_LATENT, 60, dtype=torch.float64)
    torch.manual_seed(1)
    small = evaluate_rows(model, x, importance_samples=50, chunk=50)  # one row per chunk
    assert model.training  # left in the mode it was in
    assert all(v.shape == (60,) for v in small.values())
    # with the same draws, the IWAE bound is never below the ELBO, row by row
    assert (small["nll"] <= small["neg_elbo"] + 1e-9).all()
    torch.manual_seed(2)
    big = evaluate_rows(model, x, importance_samples=50, chunk=10**6)  # all rows at once
    d = small["nll"] - big["nll"]
    assert d.mean().abs() < 4 * d.std() / math.sqrt(d.numel()) + 1e-6
    summary = evaluate(model, x, importance_samples=50, chunk=50)
    assert summary["rows"] == 60 and math.isfinite(summary["nll"])


def test_large_graphs_evaluate_in_smaller_chunks():
    from types import SimpleNamespace

    from sirenvae.objectives import EVAL_CHUNK, eval_chunk

    # a chunk holds about as many node values as 8,192 samples of 1,000 nodes, never under 64 samples
    for nodes, expected in [(46, EVAL_CHUNK), (1000, EVAL_CHUNK), (2000, EVAL_CHUNK // 2), (10**6, 64)]:
        graph = BayesianNetwork({f"v{i}": [] for i in range(nodes)}) if nodes <= 2000 else range(nodes)
        assert eval_chunk(SimpleNamespace(graph=graph)) == expected, nodes


def test_the_warmup_objective_is_the_elbo_at_beta_one_and_grows_with_a_negative_kl_term():
    net = small_network()
    torch.manual_seed(0)
    model = float64(build_model(LatentSplit(net.graph, SMALL_LATENT), TINY, variant="true"))
    x = rows(net, SMALL_LATENT, 50, dtype=torch.float64)
    model.set_standardization(x)
    with torch.no_grad():
        torch.manual_seed(3)
        full = elbo(model, x, 4)
        torch.manual_seed(3)
        assert torch.allclose(warmup_elbo(model, x, 1.0, 4), full)
        # beta weighs log p(z) - log q(z|x): at 0 the objective is the expected log-likelihood
        torch.manual_seed(3)
        z, log_q = model.posterior(x, 4)
        log_px, log_pz = model.log_joint_parts(x, z)
        torch.manual_seed(3)
        assert torch.allclose(warmup_elbo(model, x, 0.0, 4), log_px.mean(0))
        torch.manual_seed(3)
        half = warmup_elbo(model, x, 0.5, 4)
        assert torch.allclose(half, (log_px + 0.5 * (log_pz - log_q)).mean(0))


# ---------------------------------------------------------------------- defensive importance sampling
VARIANTS = [
    ("true", TINY),
    ("true", replace(TINY, conditioning="parents", affine=True)),
    ("fc", TINY),
    ("vae", TINY),
    ("vae-maf", TINY),
]


@pytest.mark.parametrize(("variant", "config"), VARIANTS)
def test_the_encoder_density_of_any_latents_matches_its_own_draws(variant, config):
    net = small_network()
    torch.manual_seed(0)
    model = float64(build_model(LatentSplit(net.graph, SMALL_LATENT), config, variant=variant))
    x = rows(net, SMALL_LATENT, 9, dtype=torch.float64)
    with torch.no_grad():
        z, log_q = model.posterior(x, 4)
        again = model.posterior_log_prob(x, z)
    assert torch.allclose(again, log_q, atol=1e-6)


def _one_latent():
    bn = BayesianNetwork({"z": [], "x1": ["z"], "x2": ["z"]})
    torch.manual_seed(0)
    model = float64(build_model(LatentSplit(bn, ("z",)), TINY, variant="true"))
    with torch.no_grad():
        model.decoder.net.layers[0].weight.mul_(3)
    x = torch.randn(6, 2, dtype=torch.float64)
    t = torch.linspace(-15, 15, 6001, dtype=torch.float64)
    with torch.no_grad():
        lj = model.log_joint(x, t[:, None, None].expand(-1, 6, 1))
    return model, x, torch.logsumexp(lj, 0) + math.log(t[1] - t[0])


def test_prior_draws_keep_the_estimate_unbiased_and_rescue_a_bad_encoder(monkeypatch):
    model, x, log_px = _one_latent()
    torch.manual_seed(1)
    with torch.no_grad():
        lw = model.importance_samples(x, 3000, 3000)[2]
    assert lw.shape == (6000, 6)
    assert (torch.logsumexp(lw, 0) - math.log(6000) - log_px).abs().max() < 0.05

    far = torch.distributions.Normal(torch.tensor(9.0, dtype=torch.float64), 0.1)  # misses the posterior

    def posterior(x, samples):
        z = far.sample((samples, x.shape[0], 1))
        return z, far.log_prob(z).sum(-1)

    monkeypatch.setattr(model, "posterior", posterior)
    monkeypatch.setattr(model, "posterior_log_prob", lambda x, z: far.log_prob(z).sum(-1))
    with torch.no_grad():
        plain = iwae(model, x, 200)
        lw = model.importance_samples(x, 200, 2000)[2]
    defensive = torch.logsumexp(lw, 0) - math.log(lw.shape[0])
    assert (plain - log_px).max() < -20  # the encoder's bound is far too loose
    assert (defensive - log_px).abs().max() < 0.1


def test_evaluation_adds_prior_draws_and_keeps_the_encoders_elbo():
    net = small_network()
    torch.manual_seed(0)
    model = float64(build_model(LatentSplit(net.graph, SMALL_LATENT), TINY, variant="true"))
    x = rows(net, SMALL_LATENT, 30, dtype=torch.float64)
    model.set_standardization(x)
    results = {}
    for share in (0.0, 0.5):
        torch.manual_seed(3)  # the encoder's draws come first, so they are the same in both
        results[share] = evaluate_rows(model, x, importance_samples=20, defensive=share)
    assert torch.equal(results[0.0]["neg_elbo"], results[0.5]["neg_elbo"])
    assert not torch.equal(results[0.0]["nll"], results[0.5]["nll"])
    assert prior_draws(1000) == 100 and prior_draws(1) == 0


def test_prior_draws_are_skipped_where_the_prior_reads_a_missing_cell():
    bn = BayesianNetwork({"a": [], "z": ["a"], "b": ["z"], "c": ["z", "a"]})
    config = replace(TINY, conditioning="parents", affine=True)
    torch.manual_seed(0)
    model = float64(build_model(LatentSplit(bn, ("z",)), config, variant="true"))
    assert model.prior_context == ("a",)
    x = torch.randn(5, 3, dtype=torch.float64)
    with torch.no_grad():
        assert model.importance_samples(x, 4, 3)[2].shape == (7, 5)
        holes = x.clone()
        holes[0, 2] = float("nan")  # c: not read by the prior
        assert model.importance_samples(holes, 4, 3)[2].shape == (7, 5)
        holes[1, 0] = float("nan")  # a: the prior's context
        assert model.importance_samples(holes, 4, 3)[2].shape == (4, 5)


def test_defensive_prior_draws_tolerate_an_inverse_short_of_its_tolerance():
    """The prior draws beside the encoder's are proposals: a flow inverse that misses its tolerance
    there must not abort an NLL estimate (it did, on a circuit fit: residual 1.4e-6, atol 1e-6).
    """
    from sirenvae.flows.grf import GraphicalResidualFlow

    net = small_network()
    torch.manual_seed(0)
    model = build_model(LatentSplit(net.graph, SMALL_LATENT), TINY, variant="true")
    x = rows(net, SMALL_LATENT, 32)
    model.set_standardization(x)
    flows = [m for m in model.prior.modules() if isinstance(m, GraphicalResidualFlow)]
    assert flows
    for f in flows:
        f.root_finding = replace(f.root_finding, max_iter=1, atol=1e-30, rtol=0.0, on_fail="raise")
    with torch.no_grad():
        torch.manual_seed(0)
        values = iwae(model, x, 20, 5)
    assert torch.isfinite(values).all()
    assert all(f.root_finding.max_iter == 1 for f in flows)  # the strict options come back

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from helpers import SMALL_LATENT, TINY, float64, rows, small_network
from sirenvae.graph import BayesianNetwork, LatentSplit
from sirenvae.models import VARIANTS, Decoder, ModelConfig, build_model
from sirenvae.models.config import DECODER_MEANS
from sirenvae.models.likelihoods import DiagStudentT, Normal
from sirenvae.objectives import elbo, iwae
from sirenvae.pipeline import TrainOptions, load_model, train_model
from sirenvae.training import FitConfig

LIKELIHOODS = ("normal", "studentt")  # the location-scale families (discrete ones: test_mixed.py)

FAMILIES = [(m, lik) for m in DECODER_MEANS for lik in LIKELIHOODS]


def family_id(f):
    return f"{f[0]}-{f[1]}"


def t_cdf(t: torch.Tensor, df: float) -> torch.Tensor:
    """The Student-t CDF by the trapezoid rule on a fine grid (the tails beyond ±400 hold < 1e-9)."""
    grid = torch.linspace(-400, 400, 800_001, dtype=torch.float64)
    one = torch.ones(1, dtype=torch.float64)
    d = DiagStudentT(df * one, 0 * one, one)
    pdf = d.log_prob(grid[:, None]).exp()
    cdf = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumulative_trapezoid(pdf, grid)])
    return torch.from_numpy(np.interp(t.numpy(), grid.numpy(), cdf.numpy()))


def test_studentt_log_prob_moments_and_noise_match_torch():
    torch.manual_seed(0)
    df = 2 + 5 * torch.rand(3, dtype=torch.float64)
    loc, scale = torch.randn(4, 3, dtype=torch.float64), 0.1 + torch.rand(4, 3, dtype=torch.float64)
    x = 10 * torch.randn(7, 4, 3, dtype=torch.float64)
    d = DiagStudentT(df, loc, scale)
    ref = torch.distributions.StudentT(df, loc, scale)
    assert torch.allclose(d.log_prob(x), ref.log_prob(x).sum(-1), atol=1e-12)
    assert torch.allclose(d.variance, ref.variance) and torch.equal(d.mean, loc)
    assert d.batch_shape == (4,) and d.event_shape == (3,)
    heavy = DiagStudentT(torch.tensor([1.5, 2.0, 3.0]), torch.zeros(3), torch.ones(3))
    assert torch.equal(heavy.variance, torch.tensor([math.inf, math.inf, 3.0]))  # none below 2
    eta = d.noise((5,))
    assert eta.shape == (5, 4, 3)
    assert torch.allclose(d.residual(d.reparameterize(eta)), eta, atol=1e-12)
    # the noise is standard Student-t with the distribution's degrees of freedom (Kolmogorov-Smirnov)
    for nu in (2.5, 4.0, 30.0):
        n = 4000
        unit = torch.ones(1, dtype=torch.float64)
        s = DiagStudentT(nu * unit, 0 * unit, unit).noise((n,)).flatten().sort().values
        F = t_cdf(s, nu)
        ks = torch.maximum((torch.arange(1, n + 1) / n - F).abs(), (torch.arange(n) / n - F).abs()).max()
        assert ks < 1.95 / math.sqrt(n), (nu, ks)


@pytest.mark.parametrize("family", FAMILIES, ids=family_id)
@pytest.mark.parametrize("variant", ["true", "vae"])
def test_decoder_reads_only_the_parents(variant, family):
    net = small_network()
    g = net.graph
    torch.manual_seed(0)
    config = replace(TINY, variant=variant, decoder_mean=family[0], likelihood=family[1])
    model = float64(build_model(LatentSplit(g, SMALL_LATENT), config))
    nodes = torch.randn(len(g), dtype=torch.float64)
    p = model.decoder(nodes)
    assert isinstance(p, DiagStudentT if family[1] == "studentt" else Normal)
    for field in ("loc", "scale"):
        J = torch.autograd.functional.jacobian(lambda v, f=field: getattr(model.decoder(v), f), nodes)
        for i, v in enumerate(model.observed):
            seen = set(g.parents(v)) if variant == "true" else set(SMALL_LATENT)
            for j, w in enumerate(g.nodes):
                if w not in seen:
                    assert J[i, j] == 0, (field, v, w)
                elif field == "loc":  # the mean reads every parent
                    assert J[i, j] != 0, (v, w)
    # perturbing every non-parent of x3 leaves its distribution unchanged
    i = model.observed.index("x3")
    others = [j for j, w in enumerate(g.nodes) if w not in g.parents("x3")]
    moved = nodes.clone()
    moved[others] += 5 * torch.randn(len(others), dtype=torch.float64)
    q = model.decoder(moved)
    if variant == "true":
        assert q.loc[i] == p.loc[i] and q.scale[i] == p.scale[i]


def test_linear_decoder_recovers_a_linear_gaussian_conditional():
    # c = 1 + 2a - b + 0.5 e1, d = -0.5 c + 0.3 e2, decoded teacher-forced from their parents
    torch.manual_seed(0)
    n = 4000
    a, b = torch.randn(n), torch.randn(n)
    c = 1 + 2 * a - b + 0.5 * torch.randn(n)
    d = -0.5 * c + 0.3 * torch.randn(n)
    nodes = torch.stack([a, b, c, d], -1)
    sets = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 0]], dtype=torch.bool)
    decoder = Decoder(sets, 2, 1, 1e-3, mean="linear")
    opt = torch.optim.Adam(decoder.parameters(), lr=0.05)
    for _ in range(600):
        opt.zero_grad()
        (-decoder(nodes).log_prob(nodes[:, 2:]).mean()).backward()
        opt.step()
    W = decoder.linear.weight * decoder.linear.mask
    expected = torch.tensor([[2.0, -1.0, 0.0, 0.0], [0.0, 0.0, -0.5, 0.0]])
    assert torch.allclose(W, expected, atol=0.05), W
    assert torch.allclose(decoder.linear.bias, torch.tensor([1.0, 0.0]), atol=0.05)
    assert torch.allclose(decoder(nodes).scale, torch.tensor([0.5, 0.3]), atol=0.02)


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_ancestral_sampling_uses_one_fixed_noise_and_is_deterministic(likelihood, monkeypatch):
    net = small_network()  # x1 -> x3: two generations of observed nodes, several sweeps
    torch.manual_seed(1)
    config = replace(TINY, likelihood=likelihood, decoder_mean="linear+mlp")
    model = float64(build_model(LatentSplit(net.graph, SMALL_LATENT), config))
    family = DiagStudentT if likelihood == "studentt" else Normal
    drawn = []
    real = family.noise

    def recorded(self, *args):
        drawn.append(real(self, *args))
        return drawn[-1]

    monkeypatch.setattr(family, "noise", recorded)
    torch.manual_seed(2)
    z, x = model.sample(500)
    torch.manual_seed(2)
    z2, x2 = model.sample(500)
    assert torch.equal(z, z2) and torch.equal(x, x2)
    assert len(drawn) == 2  # one draw per call, reused over every sweep
    # exact: every observed node is its decoder's location plus scale times the drawn noise
    assert torch.allclose(model.residuals(x, z), drawn[0], atol=1e-8)


def test_old_model_json_loads_with_todays_decoder():
    old = ModelConfig(variant="fc").to_dict()
    del old["decoder_mean"], old["likelihood"]
    config = ModelConfig.from_dict(old)
    assert config == ModelConfig(variant="fc")
    assert (config.decoder_mean, config.likelihood) == ("mlp", "normal")
    # today's decoder has exactly the old tensors, so old checkpoints load strictly
    model = build_model(LatentSplit(small_network().graph, SMALL_LATENT), config)
    keys = {k.split(".", 1)[1] for k in model.state_dict() if k.startswith("decoder.")}
    assert keys and all(k.startswith("net.layers.") for k in keys), keys
    with pytest.raises(ValueError, match="unknown likelihood 'cauchy'"):
        ModelConfig(likelihood="cauchy")
    with pytest.raises(ValueError, match="unknown decoder_mean 'quadratic'"):
        ModelConfig(decoder_mean="quadratic")
    with pytest.raises(ValueError, match="min_scale must be non-negative"):
        ModelConfig(min_scale=-0.1)


@pytest.mark.parametrize("variant", VARIANTS)
def test_new_decoders_train_in_every_variant(variant):
    net = small_network()
    torch.manual_seed(0)
    config = replace(TINY, variant=variant, decoder_mean="linear+mlp", likelihood="studentt")
    model = build_model(LatentSplit(net.graph, SMALL_LATENT), config)
    x = rows(net, SMALL_LATENT, 64)
    model.set_standardization(x)
    e = elbo(model, x, 3)
    assert torch.isfinite(e).all()
    (-e.mean()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
    assert model.decoder.raw_df.grad.abs().sum() > 0 and model.decoder.linear.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("family", [("linear", "studentt"), ("linear+mlp", "normal")], ids=family_id)
def test_new_configs_round_trip_through_checkpoints(tmp_path, family):
    net = small_network()
    x = rows(net, SMALL_LATENT, 200)
    config = replace(TINY, decoder_mean=family[0], likelihood=family[1], min_scale=0.1)
    split = LatentSplit(net.graph, SMALL_LATENT)
    model, _ = train_model(
        split,
        x,
        model_config=config,
        fit_config=FitConfig(lr=3e-3, batch_size=64, max_epochs=3, patience=100),
        options=TrainOptions(warmup_steps=5),
        out=tmp_path,
    )
    loaded, meta = load_model(tmp_path)
    assert loaded.config == config
    model.eval()
    z = torch.randn(5, len(x), len(SMALL_LATENT))
    with torch.no_grad():
        assert torch.equal(model.log_joint(x, z), loaded.log_joint(x, z))


@pytest.mark.parametrize("family", [("mlp", "studentt"), ("linear+mlp", "studentt")], ids=family_id)
def test_studentt_iwae_matches_quadrature_with_one_latent(family):
    bn = BayesianNetwork({"z": [], "x1": ["z"], "x2": ["z"]})
    torch.manual_seed(0)
    config = replace(TINY, decoder_mean=family[0], likelihood=family[1])
    model = float64(build_model(LatentSplit(bn, ("z",)), config))
    with torch.no_grad():  # a decoder that clearly depends on z
        model.decoder.net.layers[0].weight.mul_(3)
    x = 2 * torch.randn(6, 2, dtype=torch.float64)
    t = torch.linspace(-15, 15, 6001, dtype=torch.float64)
    with torch.no_grad():
        lj = model.log_joint(x, t[:, None, None].expand(-1, 6, 1))
        log_px = torch.logsumexp(lj, 0) + math.log(t[1] - t[0])
        torch.manual_seed(1)
        est = iwae(model, x, 5000)
    assert (est - log_px).abs().max() < 0.05


def test_elbo_below_iwae_with_a_studentt_decoder():
    net = small_network()
    torch.manual_seed(0)
    config = replace(TINY, likelihood="studentt", decoder_mean="linear+mlp")
    model = float64(build_model(LatentSplit(net.graph, SMALL_LATENT), config))
    x = rows(net, SMALL_LATENT, 300, dtype=torch.float64)
    model.set_standardization(x)
    torch.manual_seed(2)
    with torch.no_grad():
        values = {"elbo": elbo(model, x, 50), "k10": iwae(model, x, 10), "k100": iwae(model, x, 100)}

    def below(a, b):
        d = values[b] - values[a]
        return d.mean() > -3 * d.std() / math.sqrt(d.numel())

    assert below("elbo", "k10") and below("k10", "k100")
    assert values["k100"].mean() > values["elbo"].mean()

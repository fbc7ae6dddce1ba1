"""Mixed tables in the model: the discrete and positive families, one-hot parents, exact likelihoods."""

import math

import pytest
import torch
from torch.distributions import Bernoulli as TorchBernoulli
from torch.distributions import Categorical as TorchCategorical
from torch.distributions import LogNormal as TorchLogNormal
from torch.distributions import NegativeBinomial as TorchNegativeBinomial
from torch.distributions import Poisson as TorchPoisson

from helpers import float64
from sirenvae.graph import BayesianNetwork, LatentSplit
from sirenvae.models import ModelConfig, build_model
from sirenvae.models.discrete import Bernoulli, Categorical, NegativeBinomial, Poisson
from sirenvae.models.likelihoods import UNSEEN, family
from sirenvae.objectives import iwae

#: A categorical root that is a parent of a latent and of an observed node, and every family.
GRAPH = BayesianNetwork(
    {"c": [], "z1": ["c"], "z2": ["z1"], "b": ["z1", "c"], "n": ["z2"], "p": ["b", "z2"], "y": ["z1"]}
)
TYPES = {"c": "categorical:3", "b": "binary", "n": "negbin", "p": "lognormal"}
SMALL = dict(
    prior_blocks=1, encoder_blocks=1, hidden_per_set=2, decoder_hidden_per_set=2, conditioning="parents"
)


def _rows(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = torch.randint(0, 3, (n,), generator=g).double()
    z1 = torch.randn(n, generator=g, dtype=torch.float64) + c - 1
    z2 = 0.8 * z1 + 0.5 * torch.randn(n, generator=g, dtype=torch.float64)
    b = (torch.rand(n, generator=g, dtype=torch.float64) < torch.sigmoid(z1)).double()
    counts = torch.poisson((0.5 * z2).exp() * 3, generator=g)
    p = (0.3 * b + 0.4 * z2 + 0.3 * torch.randn(n, generator=g, dtype=torch.float64)).exp()
    y = z1 + 0.3 * torch.randn(n, generator=g, dtype=torch.float64)
    cols = {"c": c, "b": b, "n": counts, "p": p, "y": y}
    split = LatentSplit(GRAPH, ["z1", "z2"])
    return split, torch.stack([cols[v] for v in split.observed], -1)


def test_discrete_log_densities_match_torch():
    torch.manual_seed(0)
    logits = torch.randn(6, 4, dtype=torch.float64)
    x = torch.randint(0, 2, (6, 4)).double()
    assert torch.allclose(Bernoulli(logits).log_prob(x), TorchBernoulli(logits=logits).log_prob(x).sum(-1))
    cat_logits = torch.randn(6, 4, 3, dtype=torch.float64)
    codes = torch.randint(0, 3, (6, 4))
    ref = TorchCategorical(logits=cat_logits).log_prob(codes).sum(-1)
    assert torch.allclose(Categorical(cat_logits).log_prob(codes.double()), ref)
    # with an unseen-level probability: seen levels share 1 - eps, code K has eps
    got = Categorical(cat_logits, UNSEEN).log_prob(codes.double())
    assert torch.allclose(got, ref + 4 * math.log1p(-UNSEEN))
    unseen = codes.double().clone()
    unseen[:, 0] = 3
    drop = TorchCategorical(logits=cat_logits[:, 0]).log_prob(codes[:, 0])
    expected = got - drop - math.log1p(-UNSEEN) + math.log(UNSEEN)
    assert torch.allclose(Categorical(cat_logits, UNSEEN).log_prob(unseen), expected)
    rate = torch.randn(6, 4, dtype=torch.float64)
    k = torch.poisson(rate.exp() * 2)
    assert torch.allclose(Poisson(rate).log_prob(k), TorchPoisson(rate.exp()).log_prob(k).sum(-1))
    r = 0.3 + torch.rand(6, 4, dtype=torch.float64) * 3
    nb = NegativeBinomial(rate, r)
    # torch's parameterisation: total_count r, probs mu / (r + mu)
    ref_nb = TorchNegativeBinomial(total_count=r, probs=rate.exp() / (r + rate.exp()))
    assert torch.allclose(nb.log_prob(k), ref_nb.log_prob(k).sum(-1))
    assert torch.allclose(nb.mean, ref_nb.mean) and torch.allclose(nb.variance, ref_nb.variance)


def test_masked_discrete_log_prob_skips_the_holes_even_when_nan():
    logits = torch.randn(5, 3, dtype=torch.float64)
    x = torch.randint(0, 2, (5, 3)).double()
    mask = torch.tensor([[1, 0, 1]] * 5, dtype=torch.bool)
    holey = torch.where(mask, x, math.nan)
    full = TorchBernoulli(logits=logits).log_prob(x)
    assert torch.allclose(Bernoulli(logits).log_prob(holey, mask), (full * mask).sum(-1))
    cat = torch.randn(5, 3, 4, dtype=torch.float64)
    c = torch.randint(0, 4, (5, 3)).double()
    ref = (TorchCategorical(logits=cat).log_prob(c.long()) * mask).sum(-1)
    assert torch.allclose(Categorical(cat).log_prob(torch.where(mask, c, math.nan), mask), ref)


@pytest.mark.parametrize("kind", ["binary", "categorical", "poisson", "negbin", "poisson-large"])
def test_inverse_cdf_draws_have_the_distributions_moments(kind):
    torch.manual_seed(1)
    n = 40_000
    if kind == "binary":
        d = Bernoulli(torch.tensor([-1.0, 0.0, 2.0], dtype=torch.float64))
        mean, var = d.mean, d.mean * (1 - d.mean)
    elif kind == "categorical":
        logits = torch.tensor([[0.0, 1.0, -1.0, 0.5]], dtype=torch.float64)
        d = Categorical(logits)
        draws = d.reparameterize(d.noise((n,)))
        freq = torch.stack([(draws == k).double().mean(0) for k in range(4)], -1)
        assert torch.allclose(freq, logits.softmax(-1), atol=0.01)
        return
    elif kind == "negbin":
        d = NegativeBinomial(torch.tensor([0.0, 2.0], dtype=torch.float64), torch.tensor([0.5, 3.0]).double())
        mean, var = d.mean, d.variance
    else:
        rates = [0.1, 3.0, 40.0] if kind == "poisson" else [500.0, 5000.0]  # the normal approximation
        d = Poisson(torch.tensor(rates, dtype=torch.float64).log())
        mean, var = d.mean, d.variance
    draws = d.reparameterize(d.noise((n,)))
    assert torch.equal(draws, draws.round()) and bool((draws >= 0).all())
    se = (var / n).sqrt()
    assert torch.all((draws.mean(0) - mean).abs() < 5 * se + 1e-3), (draws.mean(0), mean)
    assert torch.allclose(draws.var(0), var, rtol=0.08, atol=1e-3)
    # the same noise gives the same draw (ancestral sampling settles with fixed noise)
    eta = d.noise((10,))
    assert torch.equal(d.reparameterize(eta), d.reparameterize(eta))
    # drawing only the cells needed (the holes) gives the same draws there
    need = torch.rand(eta.shape, generator=torch.Generator().manual_seed(0)) < 0.5
    assert torch.equal(d.reparameterize(eta, need)[need], d.reparameterize(eta)[need])


@pytest.mark.parametrize(
    "make", [Poisson, lambda r: NegativeBinomial(r, torch.full_like(r, 2.0))], ids=["poisson", "negbin"]
)
def test_count_draws_stay_finite_and_carry_no_gradient_at_extreme_means(make):
    """A heavy-tailed parent can push a count's log-mean far out: its draw stays a finite count (an
    infinite parent would turn the masked layers' zeros into NaN), and backpropagating through a
    draw whose variance underflowed to 0 gives no NaN (a drawn count has no pathwise gradient)."""
    from sirenvae.models.discrete import MAX_DRAWN_COUNT

    raw = torch.tensor([-200.0, 0.0, 95.0, 1e4], requires_grad=True)  # float32: exp overflows at 89
    d = make(raw)
    draws = d.reparameterize(d.noise((50,)))
    assert torch.isfinite(draws).all() and (draws <= MAX_DRAWN_COUNT).all() and (draws[:, 0] == 0).all()
    assert (draws[:, 2:] == MAX_DRAWN_COUNT).all()
    (draws.sum() + make(raw[:2]).log_prob(draws[:, :2]).sum()).backward()
    assert torch.isfinite(raw.grad).all()


def test_lognormal_family_gives_the_log_normal_density_on_the_raw_scale():
    split = LatentSplit(BayesianNetwork({"z": [], "p": ["z"]}), ["z"])
    model = float64(build_model(split, ModelConfig(types={"p": "lognormal"}, **SMALL)))
    x = torch.rand(50, 1, dtype=torch.float64) * 5 + 0.1
    model.set_standardization(x)
    z = torch.randn(50, 1, dtype=torch.float64)
    log_px, _ = model.log_joint_parts(x, z)
    d = model.decoder(model.nodes(z, model.standardize(x)))  # a normal on (log x - m) / s
    mu = d.loc[:, 0] * model.scale[0] + model.loc[0]
    sigma = d.scale[:, 0] * model.scale[0]
    assert torch.allclose(log_px, TorchLogNormal(mu, sigma).log_prob(x[:, 0]))
    assert torch.allclose(model.unstandardize(model.standardize(x)), x)


@pytest.mark.parametrize("variant", ["true", "fc", "vae"])
def test_a_categorical_parents_one_hot_block_respects_the_graph(variant):
    split, x = _rows()
    torch.manual_seed(0)
    model = float64(
        build_model(split, ModelConfig(variant=variant, types=TYPES, decoder_mean="linear+mlp", **SMALL))
    )
    model.set_standardization(x)
    units = {"c": 3, "z1": 1, "z2": 1, "b": 1, "n": 1, "p": 1, "y": 1}
    cols = [v for v in GRAPH.nodes for _ in range(units[v])]
    nodes = torch.randn(len(cols), dtype=torch.float64)
    assert model.nodes(torch.zeros(2, dtype=torch.float64), model.standardize(x[0])).shape == (len(cols),)
    obs = model.observation
    rows = obs.head_rows()
    J = torch.autograd.functional.jacobian(
        lambda v: model.decoder.net(v) if hasattr(model.decoder, "net") else None, nodes
    )
    for r, (i, _) in enumerate(rows):
        v = model.observed[i]
        seen = set(GRAPH.parents(v)) if variant != "vae" else {"z1", "z2"}
        for j, w in enumerate(cols):
            if w not in seen:
                assert J[r, j] == 0, (v, w)
    if variant != "true":
        return
    # the prior reads its context c as three units, each wired to c's children among the latents
    u = model.standardize(x[:4])
    z = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    ctx = model.observation.encode(u)[:, :3].clone().requires_grad_(True)
    log_p = model.prior(ctx).log_prob(z).sum()
    assert ctx.shape == (4, 3) and bool((torch.autograd.grad(log_p, ctx)[0] != 0).any())


def _exact_log_px(model, x, grid=4001, span=9.0):
    """log p(x) of a model with one latent by the trapezoid rule over z (its prior is a flow)."""
    zs = torch.linspace(-span, span, grid, dtype=torch.float64)[:, None, None]  # (G, 1, 1)
    log_px, log_pz = model.log_joint_parts(x, zs.expand(grid, x.shape[0], 1))
    f = (log_px + log_pz).exp()
    return torch.trapezoid(f, zs[:, 0, 0], dim=0).log()


def test_iwae_tightens_to_the_exact_likelihood_of_a_mixed_model():
    # z -> b (binary), c (categorical), n (poisson), y (normal): one latent, exact by quadrature
    g = BayesianNetwork({"z": [], "b": ["z"], "c": ["z"], "n": ["z"], "y": ["z"]})
    split = LatentSplit(g, ["z"])
    types = {"b": "binary", "c": "categorical:3", "n": "poisson"}
    torch.manual_seed(3)
    model = float64(build_model(split, ModelConfig(types=types, **SMALL)))
    x = torch.tensor([[1.0, 2.0, 3.0, 0.5], [0.0, 0.0, 0.0, -1.0], [1.0, 1.0, 7.0, 2.0]], dtype=torch.float64)
    model.set_standardization(torch.cat([x, x + torch.tensor([0.0, 0.0, 1.0, 0.3])]))
    exact = _exact_log_px(model, x)
    with torch.no_grad():
        bound = torch.stack([iwae(model, x, 1) for _ in range(400)]).mean(0)
        tight = iwae(model, x, 20_000)
    assert torch.all(bound <= exact + 0.02), (bound, exact)
    assert torch.allclose(tight, exact, atol=0.05), (tight, exact)
    # a hole in the categorical leaf: the bound of the present cells, against their exact marginal
    holey = x.clone()
    holey[:, 1] = math.nan
    keep = LatentSplit(g, ["z"])
    assert keep.observed.index("c") == 1
    exact_holey = _exact_log_px(model, holey)
    with torch.no_grad():
        assert torch.allclose(iwae(model, holey, 20_000), exact_holey, atol=0.05)
    assert torch.all(exact_holey > exact)  # fewer cells: a larger probability


def test_a_continuous_model_keeps_one_family_and_the_old_layout():
    split, _ = _rows()
    model = build_model(split, ModelConfig(**SMALL))
    assert model.observation.single is not None and model.family.name == "normal"
    names = {k for k, _ in model.decoder.named_buffers()} | {k for k, _ in model.decoder.named_parameters()}
    assert not any(n.startswith("offset") or n == "raw_rows" for n in names)
    mixed = build_model(split, ModelConfig(types=TYPES, **SMALL))
    assert mixed.family.name.startswith("mixed (") and "categorical:3 x1" in mixed.family.name


def test_sampling_a_mixed_model_gives_values_in_each_domain_and_fits_the_marginals():
    split, x = _rows(400, seed=2)
    torch.manual_seed(0)
    model = build_model(split, ModelConfig(types=TYPES, **SMALL)).double()
    model.set_standardization(x)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(150):
        opt.zero_grad()
        (-iwae(model, x, 1).mean()).backward()
        opt.step()
    model.eval()
    torch.manual_seed(1)
    _, s = model.sample(4000)
    col = {v: s[:, i] for i, v in enumerate(split.observed)}
    data = {v: x[:, i] for i, v in enumerate(split.observed)}
    assert set(col["c"].unique().tolist()) <= {0.0, 1.0, 2.0} and set(col["b"].unique().tolist()) <= {
        0.0,
        1.0,
    }
    assert (
        bool((col["n"] >= 0).all()) and torch.equal(col["n"], col["n"].round()) and bool((col["p"] > 0).all())
    )
    for v in ("b", "y"):
        assert abs(col[v].mean() - data[v].mean()) < 0.15 * (1 + data[v].std()), v
    for k in range(3):
        assert abs((col["c"] == k).double().mean() - (data["c"] == k).double().mean()) < 0.08


def test_fitting_types_rejects_an_unknown_family_clearly():
    with pytest.raises(ValueError, match="node 'b': unknown likelihood 'bernouli'"):
        ModelConfig(types={"b": "bernouli"})
    with pytest.raises(ValueError, match="needs its levels"):
        family("categorical")


def test_inverse_cdf_abduction_reproduces_each_value():
    torch.manual_seed(4)
    b = Bernoulli(torch.randn(500, 3, dtype=torch.float64))
    x = b.sample()
    assert torch.equal(b.reparameterize(b.abduct(x)), x)
    c = Categorical(torch.randn(500, 3, 4, dtype=torch.float64))
    k = c.sample()
    assert torch.equal(c.reparameterize(c.abduct(k)), k)


def test_a_counterfactual_through_discrete_nodes_is_opt_in_and_consistent():
    from sirenvae.models import causal

    split, x = _rows(40)
    types = {"c": "categorical:3", "b": "binary", "p": "lognormal", "n": "negbin"}
    torch.manual_seed(0)
    model = float64(build_model(split, ModelConfig(types=types, affine=True, **SMALL)))
    model.set_standardization(x)
    do_c = causal.resolve(model, {"c": 1.0})
    with pytest.raises(ValueError, match=r"reaches the discrete node\(s\) b, n, .*--allow-unidentified"):
        causal.counterfactual(model, x[:4], do_c, 3)
    with pytest.raises(ValueError, match=r"discrete node\(s\) n, .*a count has no such answer"):
        causal.counterfactual(model, x[:4], do_c, 3, discrete=True)
    no_count = float64(
        build_model(split, ModelConfig(types={"c": "categorical:3", "b": "binary"}, affine=True, **SMALL))
    )
    no_count.set_standardization(x)
    rows = x[x[:, 0] == 1][:5]  # c is 1 already: intervening on its own value changes nothing
    _, u, _ = causal.counterfactual(no_count, rows, causal.resolve(no_count, {"c": 1.0}), 4, discrete=True)
    assert torch.allclose(no_count.unstandardize(u), rows.expand(4, *rows.shape), atol=1e-5)


def test_the_prior_reads_its_context_as_the_decoder_does():
    # one count family for every observed node: c, a parent of z1, enters the prior as log(1 + c)
    split, x = _rows(8)
    model = float64(build_model(split, ModelConfig(likelihood="poisson", **SMALL)))
    seen = []
    model.prior.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    counts = x.abs().round()
    model.prior_given(model.standardize(counts))
    assert torch.equal(seen[0], counts[:, [split.observed.index("c")]].log1p())

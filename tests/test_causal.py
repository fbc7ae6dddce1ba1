"""Causal queries: identification, closed forms, the do-sampler and counterfactuals of a fitted model."""

import json
import random

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import sirenvae
from sirenvae.cli import app
from sirenvae.graph import BayesianNetwork, GraphError, LatentSplit
from sirenvae.graph_io import to_dict
from sirenvae.identification import identify, latent_projection
from sirenvae.models import build_model, causal
from sirenvae.networks import LinearGaussianNetwork, load_network


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
        # a latent intervened on that no target descends from: P(w | do(u)) = P(w)
        ({"u": [], "x": ["u"], "w": []}, ["u"], ["u"], ["w"], True),
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


def random_dag(rng, n=8, p=0.35):
    names = [f"v{i}" for i in range(n)]
    return bn({v: [u for u in names[:i] if rng.random() < p] for i, v in enumerate(names)})


def test_identify_agrees_with_tian_and_pearl_on_random_graphs():
    """P_x(v) is identified iff no child of x shares x's c-component (Tian & Pearl 2002, Thm. 4);
    with all of x's parents observed the effect on any node is identified (back-door by pa(x)).
    """
    rng = random.Random(0)
    seen = {True: 0, False: 0}
    for _ in range(400):
        g = random_dag(rng)
        latent = [v for v in g.nodes if rng.random() < 0.45][: len(g) - 2]
        observed = [v for v in g.nodes if v not in latent]
        x = rng.choice(observed)
        proj = latent_projection(g, latent)
        district = next(d for d in proj.districts() if x in d)
        children = {c for c in observed if x in proj.parents[c]}
        expected = not (children & district)
        got = identify(g, latent, [x], [v for v in observed if v != x]).identified
        assert got == expected, (g.edges, latent, x)
        seen[expected] += 1
        if not set(g.parents(x)) & set(latent):
            assert all(identify(g, latent, [x], [y]).identified for y in observed if y != x)
    assert min(seen.values()) > 30  # both answers were exercised


def test_identify_rejects_unknown_and_overlapping_nodes():
    g = bn({"u": [], "x": ["u"], "y": ["x"]})
    with pytest.raises(GraphError, match="unknown node 'q'"):
        identify(g, ["u"], ["q"], ["y"])
    with pytest.raises(GraphError, match="both intervened on and targets"):
        identify(g, ["u"], ["x"], ["x", "y"])
    nothing = identify(g, ["u"], ["x", "y"], [])
    assert not nothing.identified and "no observed node is left free" in nothing.reason


# ---------------------------------------------------------------------- closed forms
def propagate(net, eps, do=None):
    """Ancestral values of ``net`` from standard noises ``eps`` (N, D) under ``do`` (brute force)."""
    do = do or {}
    x = torch.empty_like(eps)
    for i, v in enumerate(net.graph.nodes):
        if v in do:
            x[:, i] = do[v]
            continue
        pa = [net.graph.index(p) for p in net.graph.parents(v)]
        x[:, i] = net.intercept[i] + x[:, pa] @ net.weights[i, pa] + net.sd[i] * eps[:, i]
    return x


def test_intervene_matches_monte_carlo_of_the_mutilated_network():
    net = load_network("ecoli70")
    do = {"cspG": 2.0, "fixC": -1.0}
    mean, cov = net.intervene(do)
    x = propagate(
        net, torch.randn(100_000, len(net.graph), generator=torch.Generator().manual_seed(0)).double(), do
    )
    sd = cov.diagonal().sqrt()
    assert ((x.mean(0) - mean).abs() <= 5 * sd / 100_000**0.5 + 1e-12).all()
    assert torch.allclose(torch.cov(x.T), cov, atol=0.02 * cov.diagonal().max().item())
    for v, a in do.items():
        assert mean[net.graph.index(v)] == a and sd[net.graph.index(v)] == 0
    # conditioning on a value is not intervening: a confounded node's mean moves differently
    base_mean, base_cov = net.mean_and_covariance()
    assert not torch.allclose(net.intervene({})[0], mean) and torch.allclose(net.intervene({})[0], base_mean)
    assert torch.allclose(net.intervene({})[1], base_cov)


def test_counterfactual_closed_form_agrees_with_brute_force():
    net = load_network("ecoli70")
    eps = torch.randn(5, len(net.graph), generator=torch.Generator().manual_seed(1)).double()
    x = propagate(net, eps)
    do = {"cspG": 1.5}
    # everything observed: the noises are known, the counterfactual is the same noises propagated
    mean, cov = net.counterfactual(x, do)
    assert torch.allclose(mean, propagate(net, eps, do), atol=1e-8) and cov.abs().max() < 1e-8
    # nothing intervened: the posterior predictive is Gaussian conditioning of the joint
    O = [v for v in net.graph.nodes if v not in ("cspG", "asnA", "lacA")]
    io = [net.graph.index(v) for v in O]
    mean, cov = net.counterfactual(x[:, io], {}, O)
    m, S = net.mean_and_covariance()
    gain = S[:, io] @ torch.linalg.inv(S[io][:, io])
    assert torch.allclose(mean, m + (x[:, io] - m[io]) @ gain.T, atol=1e-8)
    assert torch.allclose(cov, S - gain @ S[io], atol=1e-8)
    assert torch.allclose(mean[:, io], x[:, io], atol=1e-8)


# ---------------------------------------------------------------------- the do-sampler, exactly
def descendants(graph, v):
    out, todo = set(), [v]
    while todo:
        for c in graph.children(todo.pop()):
            out.add(c)
            todo.append(c)
    return out


@pytest.fixture(scope="module")
def untrained():
    """A random parent-conditioned model with a prior context (a and c are observed parents of latents)."""
    torch.manual_seed(0)
    g = bn(
        {
            "a": [],
            "h1": ["a"],
            "h2": ["h1"],
            "b": ["h1"],
            "c": ["b", "h2"],
            "d": ["c"],
            "h3": ["c"],
            "e": ["h3"],
        }
    )
    model = build_model(LatentSplit(g, ["h1", "h2", "h3"]), conditioning="parents").eval()
    with torch.no_grad():
        model.loc.copy_(torch.tensor([1.0, -2.0, 0.5, 3.0, 0.0]))
        model.scale.copy_(torch.tensor([2.0, 0.5, 1.0, 4.0, 1.5]))
    return model


def test_propagate_without_intervention_is_the_sampler(untrained):
    torch.manual_seed(1)
    z0, x0 = untrained.sample(32)
    torch.manual_seed(1)
    z1, u1 = causal.propagate(untrained, *causal.draw_noise(untrained, 32))
    assert torch.equal(z0, z1) and torch.allclose(x0, u1 * untrained.scale + untrained.loc)


@pytest.mark.parametrize("chain", [3, 5])
def test_ancestral_sampling_settles_alternating_chains(chain):
    # z1 -> x1 -> z2 -> x2 -> ...: each latent waits for an observed parent (the sampler used to
    # stop after as many sweeps as the observed nodes alone have generations, 1 here)
    parents, previous = {}, []
    for i in range(1, chain + 1):
        parents[f"z{i}"] = previous
        parents[f"x{i}"] = [f"z{i}"]
        previous = [f"x{i}"]
    torch.manual_seed(0)
    split = LatentSplit(bn(parents), [f"z{i}" for i in range(1, chain + 1)])
    model = build_model(split, conditioning="parents").double().eval()
    eps, eta = (t.double() for t in causal.draw_noise(model, 16))
    z, u = causal.propagate(model, eps, eta)
    # the structural equations hold for every node: the noises come back
    torch.testing.assert_close(model.prior_given(u).transform(z), eps, rtol=0, atol=1e-6)
    torch.testing.assert_close(model.decoder(model.nodes(z, u)).residual(u), eta, rtol=0, atol=1e-9)


@pytest.mark.parametrize(
    "do", [{"h1": 0.7}, {"h1": 0.7, "h2": -0.3}, {"b": 2.0}, {"b": 2.0, "h3": -1.0}, {"a": 0.0}]
)
def test_interventions_are_exact_and_keep_every_other_noise(untrained, do):
    m = untrained
    torch.manual_seed(2)
    eps, eta = causal.draw_noise(m, 64)
    z0, u0 = causal.propagate(m, eps, eta)
    z, u = causal.propagate(m, eps, eta, causal.resolve(m, do))
    before, after = m.nodes(z0, u0 * m.scale + m.loc), m.nodes(z, u * m.scale + m.loc)
    changed = set(do).union(*(descendants(m.graph, v) for v in do))
    for v in m.graph.nodes:
        i = m.graph.index(v)
        if v in do:
            assert torch.allclose(after[:, i], torch.tensor(do[v]), atol=1e-6, rtol=0), v
        elif v not in changed:
            assert torch.equal(after[:, i], before[:, i]), v  # non-descendants keep their values
    moved = [m.graph.index(v) for v in changed - set(do)]
    assert (after[:, moved] - before[:, moved]).abs().max() > 1e-2  # descendants follow
    # every node that is not intervened on keeps its own noise
    with torch.no_grad():
        eps_after = m.prior_given(u).transform(z)
        eta_after = m.decoder(m.nodes(z, u)).residual(u)
    free_z = [i for i, v in enumerate(m.latent) if v not in do]
    free_x = [i for i, v in enumerate(m.observed) if v not in do]
    assert torch.allclose(eps_after[:, free_z], eps[:, free_z], atol=1e-4)
    assert torch.allclose(eta_after[:, free_x], eta[:, free_x], atol=1e-4)


def test_counterfactual_without_intervention_returns_the_row(untrained):
    torch.manual_seed(3)
    _, x = untrained.sample(6)
    z, u, ess = causal.counterfactual(untrained, x, None, 20)
    assert z.shape == (20, 6, 3) and ess.shape == (6,) and (ess >= 1).all()
    assert torch.allclose(u * untrained.scale + untrained.loc, x.expand(20, 6, 5), atol=1e-4)


@pytest.mark.parametrize("do", [{"h2": 0.4}, {"c": 1.0, "h1": -0.5}])
def test_counterfactuals_keep_what_the_intervention_cannot_reach(untrained, do):
    m = untrained
    torch.manual_seed(4)
    _, x = m.sample(6)
    z, u, _ = causal.counterfactual(m, x, causal.resolve(m, do), 10)
    after = m.nodes(z, causal.raw(m, u, causal.resolve(m, do)))
    reached = set(do).union(*(descendants(m.graph, v) for v in do))
    for v in m.observed:
        i = m.graph.index(v)
        if v in do:
            assert (after[..., i] == do[v]).all()
        elif v not in reached:
            assert torch.allclose(after[..., i], x[:, m.observed.index(v)].expand(10, 6), atol=1e-4), v
    for v in do:
        assert torch.allclose(after[..., m.graph.index(v)], torch.tensor(do[v]), atol=1e-6)


def test_quantile_values_and_bad_interventions(untrained):
    state = torch.get_rng_state()
    iv = causal.resolve(untrained, {"h3": "q0.9", "e": "q0.5"}, samples=4000)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random stream is untouched
    assert causal.resolve(untrained, {"h3": "q0.9", "e": "q0.5"}, samples=4000).values == iv.values
    torch.manual_seed(0)
    z, x = untrained.sample(4000)
    assert abs(iv.values["h3"] - z[:, 2].quantile(0.9).item()) < 0.2
    for do, match in [
        ({"q": 1.0}, "unknown node 'q'"),
        ({"hh3": 1.0}, "unknown node 'hh3' \\(did you mean 'h3'\\?\\)"),
        ({"h33": 1.0}, "unknown node 'h33'; the nodes are "),  # a sibling in numbers alone: no guess
        ({}, "name at least one node"),
        ({"a": "high"}, "must be a number or a quantile"),
        ({"a": "q1.5"}, "must be a number or a quantile"),
        ({"a": "q0.0"}, "must be a number or a quantile"),
        ({"a": float("nan")}, "must be finite"),
        ({v: 0.0 for v in untrained.graph.nodes}, "every node is intervened on"),
    ]:
        with pytest.raises(ValueError, match=match):
            causal.resolve(untrained, do)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"conditioning": "ancestors"}, "conditioning=ancestors"),
        ({"conditioning": "parents", "variant": "fc"}, "another latent graph"),
        ({"conditioning": "parents", "variant": "ind"}, "another latent graph"),
        ({"variant": "vae"}, "vae baseline has no graph"),
        ({"variant": "vae-maf"}, "vae-maf baseline"),
    ],
)
def test_models_without_structural_equations_are_refused(options, match):
    g = bn({"h": [], "x": ["h"], "y": ["x", "h"], "w": ["h"]})
    model = build_model(LatentSplit(g, ["h"]), **options)
    with pytest.raises(ValueError, match=match):
        causal.propagate(model, *causal.draw_noise(model, 2))


# ---------------------------------------------------------------------- a fitted model vs the closed forms
#: Two hidden confounders: h1 of x and w, h2 of m and k. The effects of x and of m on y are identified
#: (through the observed w and k), and conditioning on x differs from setting it.
CONFOUNDED = {
    "h1": [],
    "h2": [],
    "x": ["h1"],
    "w": ["h1"],
    "k": ["h2"],
    "m": ["x", "h2"],
    "y": ["m", "w", "k"],
}
COEFFICIENTS = {
    ("x", "h1"): 1.0,
    ("w", "h1"): 0.8,
    ("m", "x"): 0.9,
    ("m", "h2"): 0.8,
    ("k", "h2"): 1.0,
    ("y", "m"): 0.7,
    ("y", "w"): 0.8,
    ("y", "k"): -0.6,
}


def confounded_network():
    g = bn(CONFOUNDED)
    D = len(g)
    B = torch.zeros(D, D, dtype=torch.float64)
    for (child, parent), c in COEFFICIENTS.items():
        B[g.index(child), g.index(parent)] = c
    sd = torch.tensor([1.0 if v.startswith("h") else 0.5 for v in g.nodes], dtype=torch.float64)
    return LinearGaussianNetwork(g, torch.zeros(D, dtype=torch.float64), B, sd)


OBSERVED = ["x", "w", "k", "m", "y"]


@pytest.fixture(scope="module")
def fitted():
    """A linear-Gaussian SIReN-VAE (parents conditioning) fitted on 100·|G| rows of the network."""
    net = confounded_network()
    x = net.sample(100 * len(net.graph), seed=0)
    df = pd.DataFrame(x.numpy(), columns=net.graph.nodes)[OBSERVED]
    model = sirenvae.fit(
        net.graph,
        df,
        latent=["h1", "h2"],
        conditioning="parents",
        affine=True,
        prior_blocks=0,
        encoder_blocks=0,
        decoder_mean="linear",
        max_epochs=100,
        warmup_steps=0,
        seed=0,
        progress=False,
        settings="paper",  # the settings above, trained once: no search
    )
    return net, model


@pytest.mark.parametrize("do", [{"x": 1.0}, {"x": -1.5}, {"m": 1.0}, {"x": 0.5, "k": 1.0}])
def test_fitted_interventional_distributions_match_the_closed_form(fitted, do):
    net, model = fitted
    samples = model.sample(20_000, do=do)
    assert samples.attrs["causal"] == "identified"
    mean, cov = net.intervene(do)
    for v in OBSERVED:
        i = net.graph.index(v)
        sd = cov[i, i].sqrt().item()
        if v in do:
            assert (samples[v] == do[v]).all()
            continue
        assert abs(samples[v].mean() - mean[i].item()) < 0.1 * sd, v
        assert abs(samples[v].std() / sd - 1) < 0.15, v


def test_fitted_model_tells_conditioning_from_intervening(fitted):
    net, model = fitted
    ix, iy = net.graph.index("x"), net.graph.index("y")
    _, S = net.mean_and_covariance()
    conditional = (S[iy, ix] / S[ix, ix]).item()  # dE[y | x]/dx
    causal_slope = ((net.intervene({"x": 1.0})[0] - net.intervene({"x": -1.0})[0])[iy] / 2).item()
    assert conditional - causal_slope > 0.4  # the confounding by h1 through w
    observed = model.sample(20_000)
    model_conditional = np.cov(observed["x"], observed["y"])[0, 1] / observed["x"].var()
    effect = model.effect("y", {"x": 1.0}, {"x": -1.0}, n=5000)
    assert effect["causal"] == "identified" and effect["se"] < 0.01
    assert abs(model_conditional - conditional) < 0.1 and abs(effect["effect"] / 2 - causal_slope) < 0.1
    # w is no descendant of x: exactly no effect, and the same draws of w under either arm
    up, down = (
        model.effect("w", {"x": 1.0}, {"x": -1.0}, n=500),
        model.effect("w", {"x": -1.0}, {"x": 1.0}, n=500),
    )
    assert up["effect"] == 0 and up["se"] == 0 and up["mean_do"] == up["mean_vs"] == down["mean_do"]
    assert "no descendant" in up["reason"]


def test_fitted_counterfactuals_match_the_closed_form(fitted):
    net, model = fitted
    rows = net.sample(20, seed=1)
    io = [net.graph.index(v) for v in OBSERVED]
    df = pd.DataFrame(rows[:, io].numpy(), columns=OBSERVED, index=[f"r{i}" for i in range(20)])
    for do in ({"x": 1.0}, {"m": -0.5}):
        cf = model.counterfactual(df, do, n=200)
        assert cf.attrs["causal"] == "model-dependent" and cf.shape == (20 * 200, len(net.graph))
        ess = cf.attrs["ess"]
        assert list(ess.index) == list(df.index) and ((ess >= 1) & (ess <= 2000 + 200)).all()
        got = cf.groupby(level=0, sort=False).mean()
        mean, _ = net.counterfactual(rows[:, io], do, OBSERVED)
        _, S = net.mean_and_covariance()
        for v in OBSERVED:
            i = net.graph.index(v)
            assert np.abs(got[v].to_numpy() - mean[:, i].numpy()).max() < 0.15 * S[i, i].sqrt().item(), v


def test_unidentified_queries_need_force(fitted):
    net, model = fitted
    with pytest.raises(ValueError, match=r"latent node\(s\) h1; pass allow_unidentified=True"):
        model.sample(10, do={"h1": 1.0})
    s = model.sample(10, do={"h1": "q0.9"}, allow_unidentified=True, latents=False)
    assert s.attrs["causal"] == "model-dependent" and list(s.columns) == list(model.observed)
    with pytest.raises(ValueError, match="unknown target node 'q'"):
        model.effect("q", {"x": 1.0})


# ---------------------------------------------------------------------- the command line
runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_error(result):
    assert result.exit_code == 2, result.output
    lines = [line for line in (result.stderr or result.output).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.fixture(scope="module")
def user_run(tmp_path_factory):
    """A run on a user's own graph and CSV, with the rows' IDs in a column."""
    root = tmp_path_factory.mktemp("causal")
    net = confounded_network()
    (root / "graph.json").write_text(json.dumps(to_dict(net.graph)))
    rows = pd.DataFrame(net.sample(300, seed=0).numpy(), columns=net.graph.nodes)[OBSERVED]
    rows.insert(0, "id", [f"p{i}" for i in range(len(rows))])
    rows.to_csv(root / "train.csv", index=False)
    rows.head(4).to_csv(root / "rows.csv", index=False)
    fit = ["--epochs", "3", "--no-progress", "--id-column", "id"]  # the default settings: auto
    result = cli(
        "fit", "--graph", root / "graph.json", "--data", root / "train.csv", "--out", root / "run", *fit
    )
    assert result.exit_code == 0, result.output
    return root


def test_cli_effect_sample_and_counterfactual(user_run):
    run = user_run / "run"
    result = cli("effect", run, "--target", "y", "--do", "x=1", "--vs", "x=-1", "-n", 200, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["causal"] == "identified" and out["se"] >= 0 and out["do"] == {"x": "1"}
    assert out["effect"] == pytest.approx(out["mean_do"] - out["mean_vs"])
    # a standard error that is float round-off (shared noise draws cancelling) is said to be none
    said = cli("effect", run, "--target", "y", "--do", "x=1", "--vs", "x=-1", "-n", 200).output
    exact = out["se"] <= 1e-6 * max(1.0, abs(out["effect"]))
    assert ("no Monte-Carlo error: the two interventions share their noise draws" in said) == exact
    assert ("(Monte-Carlo se, n = 200;" in said) != exact
    result = cli("effect", run, "--target", "y", "--do", "h1=q0.9", "-n", 200, "--allow-unidentified")
    assert (
        result.exit_code == 0 and "model-dependent" in result.output and "model's own units" in result.output
    )
    result = cli("sample", run, "-n", 50, "--do", "x=1.5", "--do", "k=-1", "-o", user_run / "s.csv")
    assert result.exit_code == 0 and "identified" in result.output, result.output
    assert "extrapolates" not in result.output
    far = cli("effect", run, "--target", "y", "--do", "x=1000", "-n", 20)
    assert far.exit_code == 0 and "note: x=1000 is" in far.output and "extrapolates" in far.output
    s = pd.read_csv(user_run / "s.csv")
    assert (
        list(s.columns) == list(confounded_network().graph.nodes) and (s.x == 1.5).all() and (s.k == -1).all()
    )
    out = user_run / "cf.csv"
    args = ("--data", user_run / "rows.csv", "--id-column", "id", "-n", 5, "-o", out)
    result = cli("counterfactual", run, "--do", "x=2", *args)
    assert result.exit_code == 0 and "model-dependent" in result.output, result.output
    cf = pd.read_csv(out)
    assert list(cf.columns[:3]) == ["row", "id", "statistic"] and len(cf) == 4 * 7
    means = cf[cf.statistic == "mean"]
    rows = pd.read_csv(user_run / "rows.csv")
    assert list(means.id) == list(rows.id) and (means.x == 2).all()
    assert np.allclose(means.w, rows.w, atol=1e-4) and np.allclose(means.k, rows.k, atol=1e-4)


def test_cli_refusals_are_one_line(user_run, tmp_path):
    run = user_run / "run"
    assert "not identified: the intervention sets latent node(s) h1" in one_error(
        cli("effect", run, "--target", "y", "--do", "h1=1")
    )
    assert "--do takes node=value" in one_error(cli("effect", run, "--target", "y", "--do", "x"))
    assert "sets node 'x' twice" in one_error(
        cli("effect", run, "--target", "y", "--do", "x=1", "--do", "x=2")
    )
    assert "unknown node 'q'" in one_error(
        cli("sample", run, "-n", 5, "--do", "q=1", "-o", tmp_path / "a.csv")
    )
    every = [f"--do={v}=0" for v in confounded_network().graph.nodes]
    assert "every node is intervened on" in one_error(
        cli("sample", run, "-n", 5, *every, "-o", tmp_path / "a.csv")
    )
    assert "must be a number or a quantile" in one_error(cli("effect", run, "--target", "y", "--do", "x=big"))
    assert "repeat it for more" in one_error(cli("effect", run, "--target", "y", "--do", "x=1,k=2"))
    assert "0 < P < 1" in one_error(cli("effect", run, "--target", "y", "--do", "x=q1.5"))
    ancestors = tmp_path / "ancestors"
    fit = ("--epochs", "1", "--no-progress", "--id-column", "id", "--out", ancestors, "--settings", "paper")
    assert (
        cli("fit", "--graph", user_run / "graph.json", "--data", user_run / "train.csv", *fit).exit_code == 0
    )
    assert "conditioning=ancestors" in one_error(cli("effect", ancestors, "--target", "y", "--do", "x=1"))


def test_the_documented_interventions_on_ecoli70():
    from sirenvae.experiments.causal import interventions

    net = load_network("ecoli70")
    todo = dict(interventions(net, ["sucA", "cspG", "fixC", "eutG", "yheI"]))
    assert set(todo) == {"cspA", "yceP", "yedE", "pspA", "ygcE", "atpD", "lacY", "dnaK"}
    assert todo["dnaK"] == ["mopB", "ftsJ"] and "lacA" not in todo  # lacA's effects are confounded


def test_cli_on_a_shipped_network(tmp_path):
    run = tmp_path / "eco"
    fit = ("--train-size", 92, "--latent", "sucA,cspG,fixC,eutG,yheI", "--settings", "paper")
    fit += ("--set", "conditioning=parents")
    result = cli("fit", "--network", "ecoli70", *fit, "--epochs", 2, "--no-progress", "--out", run)
    assert result.exit_code == 0, result.output
    result = cli("effect", run, "--target", "lacZ", "--do", "lacY=4.7", "--vs", "lacY=-2.6", "-n", 100)
    assert result.exit_code == 0 and "identified (ID algorithm" in result.output, result.output
    assert "not identified: hedge" in one_error(cli("effect", run, "--target", "lacZ", "--do", "lacA=1"))


def test_an_unknown_target_suggests_the_closest_node(fitted):
    _, model = fitted
    with pytest.raises(ValueError, match=r"unknown target node 'yy' \(did you mean 'y'\?\)"):
        model.effect("yy", {"x": 1.0})
    with pytest.raises(ValueError, match="unknown target node 'zzz'; the nodes are "):
        model.effect("zzz", {"x": 1.0})

"""Discrete hidden nodes summed out exactly (``ModelConfig.summed``, ``SIReNVAE._summed_parts``)."""

import itertools
import json
import math
import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from helpers import float64
from sirenvae.api import fit_rows
from sirenvae.cli import app
from sirenvae.defaults import EXACT_LR, LR
from sirenvae.fitted import load
from sirenvae.graph import BayesianNetwork, GraphError, LatentSplit
from sirenvae.models import ModelConfig, build_model
from sirenvae.objectives import iwae
from sirenvae.variables import Variable

#: a -> h (3 states, hidden) -> x, y; a -> x; w an isolated binary root.
GRAPH = BayesianNetwork({"a": [], "h": ["a"], "x": ["h", "a"], "y": ["h"], "w": []})
TYPES = {"a": "binary", "h": "categorical:3", "x": "binary", "y": "binary", "w": "binary"}


#: GRAPH with v, a binary child of w: a count table with a parent, scored once for all the states.
GRAPH_V = BayesianNetwork({v: list(GRAPH.parents(v)) for v in GRAPH.nodes} | {"v": ["w"]})


def _model(mean="mlp", graph=GRAPH, **overrides):
    torch.manual_seed(0)
    split = LatentSplit(graph, [], allow_empty=True)
    types = TYPES | ({"v": "binary"} if "v" in graph.nodes else {})
    model = build_model(split, variant="true", types=types, summed=("h",), decoder_mean=mean, **overrides)
    return float64(model)


def _every_row(model):
    rows = []
    free = [v for v in model.observed if v != "h"]
    for values in itertools.product(range(2), repeat=len(free)):
        cells = dict(zip(free, values, strict=True)) | {"h": math.nan}
        rows.append([cells[v] for v in model.observed])
    return torch.tensor(rows, dtype=torch.float64)


@pytest.mark.parametrize("mean, tables", [("mlp", False), ("linear", False), ("linear+mlp", True)])
def test_the_summed_model_is_a_normalised_distribution_of_the_observed_nodes(mean, tables):
    model = _model(mean, summed_tables=tables)
    x = _every_row(model)
    model.set_standardization(x)
    if tables:  # h and its children x, y: free tables, here far from uniform
        assert [model.observed[i] for i in model.decoder.learned.nodes] == ["h", "x", "y"]
        with torch.no_grad():
            model.decoder.learned.logits.normal_(0.0, 2.0, generator=torch.Generator().manual_seed(0))
    log_p = iwae(model, x, 3)
    assert torch.allclose(log_p.exp().sum(), torch.tensor(1.0, dtype=torch.float64), atol=1e-12)
    # with no continuous latent the estimate is exact: no Monte-Carlo error between calls
    assert torch.allclose(log_p, iwae(model, x, 50), rtol=0, atol=1e-12)


def _latent_model():
    """z -> h (binary, summed) -> x, y; z -> x."""
    bn = BayesianNetwork({"z": [], "h": ["z"], "x": ["h", "z"], "y": ["h"]})
    torch.manual_seed(1)
    model = float64(build_model(LatentSplit(bn, ["z"]), types={"h": "binary", "y": "binary"}, summed=("h",)))
    model.set_standardization(torch.tensor([[0.0, 0.1, 1.0], [1.0, -0.5, 0.0]], dtype=torch.float64))
    return model


def _by_hand(model, rows, z):
    r""":math:`\log p(x, h, z)` at h = 0 and 1, stacked: the terms the model must sum."""
    terms = []
    for h in (0.0, 1.0):
        full = rows.clone()
        full[:, 0] = h
        u = model.standardize(full)
        part = model.decoder(model.nodes(z, u)).log_prob(u) + model.prior_given(u).log_prob(z)
        terms.append(part + model.observation.log_det(full, model.scale, None))
    return torch.stack(terms)


def test_the_sum_over_states_matches_brute_force_with_a_continuous_latent():
    model = _latent_model()
    rows = torch.tensor([[math.nan, 0.3, 1.0], [math.nan, -1.2, 0.0]], dtype=torch.float64)
    z = torch.randn(4, 2, 1, dtype=torch.float64)
    log_px, log_pz = model.log_joint_parts(rows, z)
    assert torch.allclose(log_px + log_pz, torch.logsumexp(_by_hand(model, rows, z), 0), atol=1e-12)


def test_a_count_table_with_a_parent_is_read_once_for_every_state_and_matches_brute_force():
    model = _model("mlp", GRAPH_V)
    x = _every_row(model)
    fit = x.clone()  # v mostly copies w, so that its table is far from even
    fit[:, model.observed.index("v")] = fit[:, model.observed.index("w")]
    model.set_standardization(torch.cat([x, fit, fit]))
    assert {model.observed[i] for i in model.decoder.tables.nodes} == {"a", "w", "v"}
    z = x.new_zeros(1, len(x), 0)
    by_hand = []
    for h in range(3):
        full = x.clone()
        full[:, model.observed.index("h")] = h
        u = model.standardize(full)
        by_hand.append(
            model.decoder(model.nodes(z, u)).log_prob(u) + model.observation.log_det(full, model.scale, None)
        )
    expected = torch.logsumexp(torch.stack(by_hand), 0)[0] + model.summed_nodes.renorm
    assert torch.allclose(iwae(model, x, 1), expected, atol=1e-12)


def test_count_tables_skip_the_summed_node_and_its_children():
    model = _model()
    tabled = {model.observed[i] for i in model.decoder.tables.nodes}
    assert tabled == {"a", "w"}  # h is never seen; x and y read it


def test_a_summed_node_needs_a_graph_variant_and_a_discrete_family():
    with pytest.raises(ValueError, match="graph variant"):
        ModelConfig(variant="vae", summed=("h",))
    split = LatentSplit(GRAPH, [], allow_empty=True)
    with pytest.raises(ValueError, match="binary or categorical family"):
        build_model(split, types={**TYPES, "h": "normal"}, summed=("h",))
    with pytest.raises(GraphError, match="latent set is empty"):
        LatentSplit(GRAPH, [])


def _data(n, seed):
    rng = np.random.default_rng(seed)
    a = rng.random(n) < 0.4
    h = np.where(a, rng.choice(3, n, p=[0.1, 0.2, 0.7]), rng.choice(3, n, p=[0.7, 0.2, 0.1]))
    x = rng.random(n) < np.array([0.05, 0.5, 0.95])[h]
    y = rng.random(n) < np.array([0.9, 0.5, 0.1])[h]
    w = rng.random(n) < 0.5
    word = np.array(["no", "yes"])
    return pd.DataFrame({"a": word[a.astype(int)], "x": word[x.astype(int)], "y": word[y.astype(int)],
                         "w": word[w.astype(int)]})  # fmt: skip


def test_fitting_learns_the_hidden_node_and_beats_the_model_without_it():
    train, test = _data(400, 0), _data(2000, 1)
    graph = {"nodes": [{"name": "h", "latent": True, "levels": ["lo", "mid", "hi"], "parents": ["a"]},
                       {"name": "a"}, {"name": "x", "parents": ["h", "a"]}, {"name": "y", "parents": ["h"]},
                       {"name": "w"}]}  # fmt: skip
    with pytest.warns(UserWarning, match="summed out exactly over their 3 joint states"):
        fitted = fit_rows_from(graph, train)
    assert fitted.latent == ("h",) and fitted.observed == ("a", "x", "y", "w")
    assert fitted.model.summed == ("h",) and fitted.model.latent == ()
    # the posterior of h: draws from its exact conditional, as labels
    row = test.iloc[:1]
    draws = fitted.posterior(row, n=4000, seed=3)
    x = fitted.tensor(row).double()
    model = fitted.model.double()
    joint = []
    for h in range(3):
        full = x.clone()
        full[:, model.observed.index("h")] = h
        u = model.standardize(full)
        joint.append(model.decoder(model.nodes(full.new_zeros(1, 1, 0), u)).log_prob(u)[0, 0])
    exact = torch.softmax(torch.stack(joint), 0)
    shares = draws["h"].value_counts(normalize=True).reindex(["lo", "mid", "hi"], fill_value=0.0)
    assert np.allclose(shares.to_numpy(), exact.detach().numpy(), atol=0.03), (shares, exact)
    probs = draws.attrs["probabilities"]["h"]
    assert list(probs.columns) == ["lo", "mid", "hi"]
    assert np.allclose(probs.to_numpy()[0], exact.detach().numpy(), atol=1e-5)
    drawn = fitted.sample(200, seed=1)
    assert set(drawn["h"]) <= {"lo", "mid", "hi"} and set(drawn["x"]) <= {"yes", "no"}
    assert fitted.sample(50, do={"a": "yes"}).attrs["causal"] == "identified"  # no latent: no prior to tie
    nll = -fitted.log_prob(test, importance_samples=5).mean()
    # the same rows with x and y independent given a (h ignored): what the hidden node must beat
    codes = (test == "yes").to_numpy()
    tr = (train == "yes").to_numpy()
    base = 0.0
    for j, col in enumerate(["a", "x", "y", "w"]):
        if col in ("x",):
            for a in (0, 1):
                p = (tr[tr[:, 0] == a, j].sum() + 0.5) / ((tr[:, 0] == a).sum() + 1)
                rows = codes[:, 0] == a
                base -= np.where(codes[rows, j], np.log(p), np.log1p(-p)).sum() / len(codes)
        else:
            p = (tr[:, j].sum() + 0.5) / (len(tr) + 1)
            base -= np.where(codes[:, j], np.log(p), np.log1p(-p)).mean()
    assert nll < base - 0.05, (nll, base)


def fit_rows_from(graph, train):
    import tempfile
    from pathlib import Path

    from sirenvae.api import fit

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "g.json"
        path.write_text(json.dumps(graph))
        return fit(str(path), train, settings="paper", max_epochs=150, seed=0, lr=0.01)


def test_fit_rows_keeps_a_vae_continuous_and_sums_for_true():
    split = LatentSplit(GRAPH, ["h"])
    x = torch.tensor([[0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0]] * 8)
    variables = {v: Variable("binary", ("0", "1")) for v in ("a", "x", "y", "w")}
    variables["h"] = Variable("categorical", ("p", "q", "r"))
    vae = fit_rows(split, x, model="vae", settings="paper", options={"max_epochs": 1, "progress": False},
                   variables=variables)  # fmt: skip
    assert vae.model.latent == ("h",) and vae.model.summed == ()
    true = fit_rows(split, x, model="true", settings="paper", options={"max_epochs": 1, "progress": False},
                    variables=variables)  # fmt: skip
    assert true.model.summed == ("h",) and true.latent == ("h",)
    # an exact model takes its own learning rate unless one is given; the VAE the usual one
    assert (vae.meta["fit"]["lr"], true.meta["fit"]["lr"]) == (LR, EXACT_LR)
    given = fit_rows(split, x, settings="paper", options={"max_epochs": 1, "progress": False, "lr": 0.02},
                     variables=variables)  # fmt: skip
    assert given.meta["fit"]["lr"] == 0.02


runner = CliRunner()


def test_the_command_line_sums_a_stated_hidden_node_and_refuses_its_counterfactuals(tmp_path):
    graph = {"nodes": [{"name": "a"}, {"name": "h", "latent": True, "type": "binary", "parents": ["a"]},
                       {"name": "x", "parents": ["h", "a"]}, {"name": "y", "parents": ["h"]},
                       {"name": "w"}]}  # fmt: skip
    (tmp_path / "g.json").write_text(json.dumps(graph))
    _data(120, 2).to_csv(tmp_path / "train.csv", index=False)
    holey = _data(20, 3)
    holey.loc[::3, "x"] = ""
    holey.to_csv(tmp_path / "rows.csv", index=False)
    run = tmp_path / "run"
    r = runner.invoke(app, ["fit", "--graph", str(tmp_path / "g.json"), "--data", str(tmp_path / "train.csv"),
                            "--out", str(run), "--settings", "paper", "--set", "conditioning=parents",
                            "--epochs", "5", "--no-progress"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "summed out exactly over their 2 joint states" in r.output
    assert "learned up to a relabelling" in r.output and "--allow-unidentified" in r.output
    assert "best training loss (NLL + head prior, per row; all rows)" in r.output  # no validation rows
    assert re.search(r"\(restart \d of 3, the lowest of [\d.]+, [\d.]+, [\d.]+\)", r.output), r.output
    meta = json.loads((run / "model.json").read_text())
    assert meta["model"]["summed"] == ["h"] and meta["latent"] == []
    fitted = load(run)
    again = load(run)
    test = _data(30, 4)
    assert np.array_equal(fitted.log_prob(test).to_numpy(), again.log_prob(test).to_numpy())
    # the loaded model is a distribution over the 16 labelled rows (h summed out, tables intact)
    every = pd.DataFrame(
        list(itertools.product(*[sorted(set(test[c])) for c in test.columns])), columns=test.columns
    )
    assert len(every) == 16 and abs(fitted.log_prob(every).map(math.exp).sum() - 1) < 1e-4
    r = runner.invoke(app, ["graph", "--run", str(run), "-o", str(tmp_path / "g.png")])
    assert r.exit_code == 0 and "(1 latent: h; h summed out exactly, no encoder) to" in r.output, r.output
    r = runner.invoke(app, ["posterior", str(run), "--data", str(tmp_path / "rows.csv"), "-n", "5",
                            "-o", str(tmp_path / "post.csv")])  # fmt: skip
    assert r.exit_code == 0, r.output
    post = pd.read_csv(tmp_path / "post.csv")
    drawn = post.loc[post["statistic"].str.startswith("sample"), "h"]
    assert list(post.columns) == ["row", "statistic", "h"] and len(drawn) == 20 * 5
    assert set(drawn.astype(float)) <= {0.0, 1.0}  # the labels "0" and "1" (read back as numbers)
    p0, p1 = (post.loc[post["statistic"] == f"P({k})", "h"].astype(float).to_numpy() for k in (0, 1))
    mode = post.loc[post["statistic"] == "mean", "h"].astype(float).to_numpy()
    assert len(p0) == 20 and np.allclose(p0 + p1, 1) and (mode == (p1 > p0)).all()
    r = runner.invoke(app, ["evaluate", str(run), "--data", str(tmp_path / "rows.csv")])
    assert r.exit_code == 0, r.output
    assert "K = 1000" in r.output and "NLL (IWAE)" in r.output  # rows with holes: importance sampled
    test.to_csv(tmp_path / "complete.csv", index=False)
    r = runner.invoke(app, ["evaluate", str(run), "--data", str(tmp_path / "complete.csv")])
    assert "exact: every hidden node summed out" in r.output and "NLL (exact) and -ELBO" in r.output
    rows = str(tmp_path / "rows.csv")
    r = runner.invoke(app, ["impute", str(run), "--data", rows, "-o", str(tmp_path / "f.csv")])
    assert r.exit_code == 0, r.output
    filled = pd.read_csv(tmp_path / "f.csv")
    assert list(filled.columns) == ["a", "x", "y", "w"] and set(filled["x"]) <= {"yes", "no"}
    present = holey["x"] != ""
    assert (filled["a"] == holey["a"]).all() and (filled.loc[present, "x"] == holey.loc[present, "x"]).all()
    r = runner.invoke(app, ["counterfactual", str(run), "--data", str(tmp_path / "train.csv"),
                            "--do", "a=yes", "-o", str(tmp_path / "cf.csv")])  # fmt: skip
    assert r.exit_code == 2 and "summed out" in r.output


@pytest.mark.parametrize("form", ["bdeu", "configuration"])
def test_the_head_prior_is_the_dirichlet_log_density_of_the_touched_conditionals(form):
    model = _model("mlp", head_prior=2.0, head_prior_form=form)
    x = _every_row(model)
    model.set_standardization(x)
    nodes = model.summed_nodes
    # h (parent a: 2 configurations) and its children x (h, a: 6) and y (h: 3); not a, w
    assert sorted(model.observed[i] for i in nodes._target.unique().tolist()) == ["h", "x", "y"]
    assert len(nodes._target) == 2 + 6 + 3
    by_hand = 0.0
    graph, observed = model.graph, model.observed
    for v in ("h", "x", "y"):
        parents = graph.parents(v)
        levels = model.observation.members[observed.index(v)].levels
        configs = list(itertools.product(*(range(model.observation.members[observed.index(p)].levels)
                                           for p in parents)))  # fmt: skip
        pseudo_rows = 2.0 / len(configs) if form == "bdeu" else 2.0  # per configuration
        for config in configs:
            for k in range(levels):
                u = torch.zeros(1, len(observed), dtype=torch.float64)
                for p, c in zip(parents, config, strict=True):
                    u[0, observed.index(p)] = c
                u[0, observed.index(v)] = k
                mask = torch.zeros_like(u, dtype=torch.bool)
                mask[0, observed.index(v)] = True
                d = model.decoder(model.nodes(torch.zeros(1, 0, dtype=torch.float64), u))
                by_hand += pseudo_rows / levels * d.log_prob(u, mask).item()
    assert math.isclose(nodes.log_prior(model).item(), by_hand, rel_tol=1e-10)


def test_a_run_from_before_the_bdeu_form_keeps_its_head_prior():
    config = ModelConfig.from_dict({"variant": "true", "summed": ["h"], "head_prior": 1.0})
    assert (config.head_prior, config.head_prior_form) == (1.0, "configuration")
    assert (ModelConfig().head_prior, ModelConfig().head_prior_form) == (10.0, "bdeu")
    with pytest.raises(ValueError, match="head_prior_form"):
        ModelConfig(head_prior_form="per-row")


def test_auto_tries_candidates_that_differ_only_in_latent_options_once():
    from sirenvae.selection import resolve_candidates

    types = {v: "binary" for v in ("a", "x", "y", "w")} | {"h": "categorical:3"}
    fixed = {"types": types, "summed": ("h",)}
    observed = ("a", "h", "x", "y", "w")
    with_latent, _ = resolve_candidates("true", fixed, None, observed, latent=True)
    without, notices = resolve_candidates("true", fixed, None, observed, latent=False)
    tables = ["tables", "tables-smooth"]
    assert [c.name for c, _ in with_latent] == ["linear", "flow", "flow-t", *tables]  # no linear-t
    assert [c.name for c, _ in without] == ["linear", "flow", "flow-t", *tables]
    assert notices == ["candidate 'linear-t' is the same as 'linear' here (no column is continuous, so the "
                       "noise family does not apply)",
                       "no column is continuous, so 'flow-t' take(s) no Student-t noise here: each differs "
                       "from the others in its decoder alone"]  # fmt: skip
    fixed_mean = fixed | {"decoder_mean": "linear"}
    with_latent, _ = resolve_candidates("true", fixed_mean, None, observed, latent=True)
    without, notices = resolve_candidates("true", fixed_mean, None, observed, latent=False)
    assert len(with_latent) == 4 and [c.name for c, _ in without] == ["linear", *tables] and len(notices) == 3
    assert "'flow' is the same as 'linear' here (every hidden node is summed out" in notices[1]


def test_a_model_with_every_hidden_node_summed_trains_on_all_rows():
    from sirenvae.pipeline import TrainOptions, train_model
    from sirenvae.training import FitConfig

    x = torch.tensor([[0.0, math.nan, 1.0, 0.0, 1.0], [1.0, math.nan, 0.0, 1.0, 0.0]] * 30)
    fit, options = FitConfig(max_epochs=2, progress=False), TrainOptions(valid_fraction=0.5)
    config = ModelConfig(types=TYPES, summed=("h",))
    _, history = train_model(LatentSplit(GRAPH, [], allow_empty=True), x, model_config=config, fit_config=fit,
                             options=options)  # fmt: skip
    assert not history.valid_loss  # no rows held out: early stopping reads the exact training objective
    bn = BayesianNetwork({"z": [], "a": ["z"], "h": ["a"], "x": ["h", "a"], "y": ["h"], "w": []})
    _, history = train_model(LatentSplit(bn, ["z"]), x, model_config=config, fit_config=fit, options=options)
    assert len(history.valid_loss) == 2  # a continuous latent left: the bound, early-stopped as before


def test_hidden_draws_with_a_hole_that_the_hidden_node_reads_follow_the_exact_posterior():
    from sirenvae.imputation import hidden_draws, hidden_probabilities

    model = _model()
    model.set_standardization(_every_row(model))
    row = torch.tensor([[math.nan, math.nan, 1.0, 0.0, 1.0]], dtype=torch.float64)  # a missing; h summed
    assert model.observed == ("a", "h", "x", "y", "w")
    joint = torch.zeros(3, dtype=torch.float64)
    for h in range(3):
        for a in range(2):
            full = row.clone()
            full[0, 0], full[0, 1] = a, h
            u = model.standardize(full)
            log_p = model.decoder(model.nodes(full.new_zeros(1, 1, 0), u)).log_prob(u)[0, 0]
            joint[h] += log_p.exp().item()
    exact = joint / joint.sum()
    torch.manual_seed(0)
    draws, ess = hidden_draws(model, row, 4000, proposals=40000)
    shares = torch.stack([(draws[:, 0, 0] == h).double().mean() for h in range(3)])
    assert torch.allclose(shares, exact, atol=0.03), (shares, exact)
    assert ess.item() < 40000  # importance weights over the hole: not the exact shortcut
    probs = hidden_probabilities(model, row, proposals=40000)
    assert probs.shape == (1, 3) and torch.allclose(probs[0], exact, atol=0.01), (probs, exact)
    full = row.clone()
    full[0, 0] = 1.0  # a present: the exact shortcut, against its brute-force conditional
    terms = []
    for h in range(3):
        full[0, 1] = h
        u = model.standardize(full)
        terms.append(model.decoder(model.nodes(full.new_zeros(1, 1, 0), u)).log_prob(u)[0, 0])
    full[0, 1] = math.nan
    exact = torch.softmax(torch.stack(terms), 0)
    assert torch.allclose(hidden_probabilities(model, full)[0], exact, atol=1e-10)


def test_too_many_joint_states_keep_the_hidden_nodes_continuous():
    from sirenvae.api import summed_hidden, summed_notice

    split = LatentSplit(GRAPH, ["h"])
    many = {"h": Variable("categorical", tuple(str(i) for i in range(1100)))}
    x = torch.zeros(4, 4)
    assert summed_hidden(split, x, many, "true")[3] == ()
    assert "are continuous latents" in summed_notice(many, "true")
    few = {"h": Variable("categorical", ("p", "q", "r"))}
    assert summed_hidden(split, x, few, "true")[3] == ("h",)


def test_evaluation_chunks_count_every_joint_state_with_or_without_a_latent():
    from sirenvae.objectives import chunk_rows, eval_chunk

    hidden = [f"h{i}" for i in range(8)]  # 256 joint states
    bn = BayesianNetwork({h: [] for h in hidden} | {f"x{i}": [hidden[i], hidden[i - 1]] for i in range(8)})
    model = build_model(LatentSplit(bn, [], allow_empty=True), types=dict.fromkeys(bn.nodes, "binary"),
                        summed=tuple(hidden))  # fmt: skip
    x = (torch.rand(40, len(model.observed)) < 0.5).float()
    x[:, [model.observed.index(h) for h in hidden]] = math.nan
    exact = chunk_rows(model, 200, x)  # only the summed holes: one proposal per row
    assert exact * 256 <= max(eval_chunk(model), 64 * 256) and exact >= 8
    x[0, model.observed.index("x0")] = math.nan  # another hole: every sample at every state
    assert chunk_rows(model, 200, x) * 200 * 256 <= max(eval_chunk(model), 200 * 256)


def test_summed_nodes_come_from_the_table_not_from_options_or_a_settings_file(tmp_path):
    split = LatentSplit(GRAPH, ["h"])
    x = torch.tensor([[0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0]] * 8)
    variables = {v: Variable("binary", ("0", "1")) for v in ("a", "x", "y", "w")}
    quick = {"max_epochs": 1, "progress": False}
    with pytest.raises(ValueError, match="summed is not an option"):
        fit_rows(split, x, settings="paper", options=quick | {"summed": ("x",)}, variables=variables)
    stated = variables | {"h": Variable("categorical", ("p", "q", "r"))}
    fit_rows(split, x, settings="paper", options=quick, variables=stated, out=tmp_path / "run")
    # its settings on a graph that states no levels for h: h stays a continuous latent
    again = fit_rows(split, x, settings=tmp_path / "run" / "model.json", options=quick, variables=variables)
    assert again.model.summed == () and again.model.latent == ("h",)


def test_hidden_probabilities_with_a_continuous_latent_match_a_grid_over_it():
    from sirenvae.imputation import hidden_probabilities

    model = _latent_model()
    row = torch.tensor([[math.nan, 1.5, 1.0]], dtype=torch.float64)  # z's posterior away from q's start
    grid = torch.linspace(-9, 9, 6001, dtype=torch.float64).view(-1, 1, 1)
    exact = torch.softmax(torch.logsumexp(_by_hand(model, row, grid)[:, :, 0], 1), 0)
    torch.manual_seed(0)
    assert torch.allclose(hidden_probabilities(model, row, proposals=20000)[0], exact, atol=0.005)


def test_compare_sums_the_stated_hidden_node_for_true_only(tmp_path, monkeypatch):
    import sirenvae.comparison as comparison
    from sirenvae.api import compare

    seen = {}
    deep_fold = comparison._deep_fold

    def spy(split, train, test, variant, fixed, fit_config, *args):
        seen[variant] = (split.latent, fixed.get("summed", ()), fit_config.lr, train.shape[1])
        return deep_fold(split, train, test, variant, fixed, fit_config, *args)

    monkeypatch.setattr(comparison, "_deep_fold", spy)
    graph = {"nodes": [{"name": "h", "latent": True, "levels": ["lo", "mid", "hi"], "parents": ["a"]},
                       {"name": "a"}, {"name": "x", "parents": ["h", "a"]}, {"name": "y", "parents": ["h"]},
                       {"name": "w"}]}  # fmt: skip
    (tmp_path / "g.json").write_text(json.dumps(graph))
    with pytest.warns(UserWarning):
        result = compare(str(tmp_path / "g.json"), _data(60, 5), models=("true", "vae"), outer_folds=2,
                         folds=2, max_candidates=1, max_epochs=3, progress=False)  # fmt: skip
    assert seen["true"] == ((), ("h",), EXACT_LR, 5) and seen["vae"] == (("h",), (), LR, 4)
    assert np.isfinite(result.per_row[["true", "vae"]].to_numpy()).all()


def test_the_tables_candidate_exists_only_where_hidden_nodes_are_summed():
    from sirenvae.selection import resolve_candidates

    names = [c.name for c, _ in resolve_candidates("true", {}, None, ("x",))[0]]
    assert names == ["linear", "linear-t", "flow", "flow-t"]
    names = [c.name for c, _ in resolve_candidates("true", {"summed": ("h",)}, None, ("x",))[0]]
    assert names[-2:] == ["tables", "tables-smooth"]
    # a head prior fixed by the user makes the two one candidate
    fixed = {"summed": ("h",), "head_prior": 5.0}
    chosen, notices = resolve_candidates("true", fixed, None, ("x",))
    assert [c.name for c, _ in chosen][
        -1
    ] == "tables" and "'tables-smooth' is the same as 'tables'" in notices[-1]


def test_learned_tables_train_by_the_exact_gradient_and_the_prior_reads_them():
    model = _model("linear", summed_tables=True, head_prior=2.0)
    x = _every_row(model)
    model.set_standardization(x)
    learned = model.decoder.learned
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss = -(iwae(model, x[:5], 1).mean() + model.summed_nodes.log_prior(model))
    loss.backward()
    assert learned.logits.grad is not None and learned.logits.grad.abs().sum() > 0
    # a table cell that no parent configuration of its node reaches gets no gradient
    for t, configs in enumerate(learned.configs):
        assert not learned.logits.grad[t, configs:].any()
        assert not learned.logits.grad[t, :, learned._levels[t] :].any()
    assert set(before) >= {"decoder.learned.logits"}
    # the prior alone pulls every table towards uniform: at uniform tables its gradient vanishes
    assert learned.logits.std() > 0.5  # the tables start apart (uniform ones are a saddle point)
    with torch.no_grad():
        learned.logits.zero_()
    model.zero_grad()
    (-model.summed_nodes.log_prior(model)).backward()
    assert torch.allclose(learned.logits.grad, torch.zeros_like(learned.logits), atol=1e-12)


def test_the_search_on_an_exact_model_says_its_fold_scores_are_exact():
    from sirenvae.pipeline import TrainOptions
    from sirenvae.selection import SelectionSettings, select
    from sirenvae.training import FitConfig

    config = ModelConfig(types=TYPES, summed=("h",))
    x = _every_row(_model()).float().repeat(2, 1)
    split = LatentSplit(GRAPH, [], allow_empty=True)
    fixed = {"types": config.types, "summed": ("h",)}
    settings = SelectionSettings(folds=2, max_candidates=1, classical=False)
    tiny, options = FitConfig(max_epochs=2, batch_size=16), TrainOptions(warmup_steps=0)
    out = select(split, x, "true", fixed=fixed, fit_config=tiny, options=options, settings=settings)
    assert "held-out exact NLL;" in out.rule and "IWAE" not in out.rule
    bn = BayesianNetwork({"z": [], "a": ["z"], "h": ["a"], "x": ["h", "a"], "y": ["h"], "w": []})
    out = select(
        LatentSplit(bn, ["z"]), x, "true", fixed=fixed, fit_config=tiny, options=options, settings=settings
    )
    assert "held-out IWAE NLL (K = 100)" in out.rule  # a continuous latent: importance sampled


def test_an_exact_model_keeps_the_best_of_its_restarts_and_each_restart_resumes(tmp_path):
    from sirenvae.pipeline import TrainOptions, train_model
    from sirenvae.training import FitConfig

    split = LatentSplit(GRAPH, [], allow_empty=True)
    config = ModelConfig(types=TYPES, summed=("h",), summed_tables=True)
    x = _every_row(_model()).float().repeat(3, 1)
    fit, options = FitConfig(max_epochs=4, batch_size=16, seed=5), TrainOptions(warmup_steps=0)
    alone = [
        train_model(split, x, model_config=config, fit_config=replace(fit, seed=s), options=options)[1]
        for s in (5, 6, 7)
    ]
    objectives = [h.best_valid_loss for h in alone]
    model, history = train_model(split, x, model_config=config, fit_config=fit, options=options, restarts=3)
    assert history.best_valid_loss == min(objectives)  # each restart is the fit at its seed
    # with a run directory: the best restart's model, every objective recorded, the restarts gone
    out = tmp_path / "run"
    train_model(split, x, model_config=config, fit_config=fit, options=options, restarts=3, out=out)
    meta = json.loads((out / "model.json").read_text())
    assert meta["restarts"]["objectives"] == pytest.approx(objectives)
    assert meta["restarts"]["chosen"] == 1 + objectives.index(min(objectives))
    assert meta["fit"]["seed"] == 5 and not (out / "restarts").exists()
    # a run killed after its first restart goes on from it (no "already holds a trained model")
    again = tmp_path / "again"
    train_model(split, x, model_config=config, fit_config=fit, options=options, out=again / "restarts" / "1")
    _, h = train_model(split, x, model_config=config, fit_config=fit, options=options, restarts=3, out=again,
                       resume=True)  # fmt: skip
    assert h.best_valid_loss == min(objectives)
    assert json.loads((again / "model.json").read_text())["restarts"]["objectives"] == pytest.approx(
        objectives
    )
    # a model with a continuous latent trains once whatever restarts says
    bn = BayesianNetwork({"z": [], "a": ["z"], "h": ["a"], "x": ["h", "a"], "y": ["h"], "w": []})
    _, once = train_model(LatentSplit(bn, ["z"]), x, model_config=config, fit_config=fit, options=options,
                          restarts=3)  # fmt: skip
    assert len(once.valid_loss) == 4

"""Mixed tables in and out: types inferred or stated, levels fixed and recorded, labels round-tripped."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import sirenvae
from sirenvae.cli import app
from sirenvae.data import DataError, read_frame
from sirenvae.graph import BayesianNetwork
from sirenvae.variables import Variable, parse_types

GRAPH = BayesianNetwork(
    {
        "region": [],
        "h": ["region"],
        "s": ["h"],
        "smoker": ["s"],
        "visits": ["h", "smoker"],
        "bp": ["h", "smoker"],
    }
)
FAST = dict(
    settings="paper", max_epochs=3, warmup_steps=0, prior_blocks=1, encoder_blocks=1, conditioning="parents"
)


def _frame(n=60, seed=0):
    rng = np.random.default_rng(seed)
    region = rng.choice(["north", "south", "east"], n)
    h = rng.normal(size=n) + (region == "east")
    s = 0.7 * h + 0.5 * rng.normal(size=n)
    smoker = np.where(rng.random(n) < 1 / (1 + np.exp(-s)), "yes", "no")
    visits = rng.poisson(np.exp(0.3 + 0.4 * h))
    bp = 120 + 8 * h + 5 * (smoker == "yes") + 4 * rng.normal(size=n)
    return pd.DataFrame({"region": region, "smoker": smoker, "visits": visits, "bp": bp.round(1)})


def _read(df, **kw):
    return read_frame(df, GRAPH, training=True, allow_missing=True, **kw)


def test_types_are_inferred_with_a_notice_and_never_silently_gaussian():
    df = _frame()
    df["flag"] = [True, False] * 30
    df["grade"] = np.arange(60) % 4
    g = BayesianNetwork({**{v: list(GRAPH.parents(v)) for v in GRAPH.nodes}, "flag": ["s"], "grade": ["s"]})
    table = read_frame(df, g, training=True)
    v = table.variables
    assert v["region"] == Variable("categorical", ("east", "north", "south"))
    assert v["smoker"] == Variable("binary", ("no", "yes"))  # 1 reads as true
    assert v["flag"].kind == "binary" and v["flag"].levels[1] == "True"
    assert v["grade"].kind == "continuous" and v["bp"].kind == "continuous"
    text = " | ".join(table.notices)
    assert "'region' is text: modelled as categorical with 3 levels" in text
    assert "'smoker' has 2 distinct values: modelled as binary, 1 = 'yes'" in text
    assert "'grade' has 4 distinct integers" in text and "--types grade=count" in text
    col = list(table.split.observed).index("region")
    assert table.x[:, col].tolist() == [("east", "north", "south").index(r) for r in df.region]


def test_a_positive_skewed_column_gets_a_lognormal_notice_and_a_symmetric_one_none():
    df = _frame()
    g = np.random.default_rng(3)
    n = len(df)
    df["price"] = np.exp(g.normal(3.0, 0.8, n))  # log-normal: skewed, symmetric on the log scale
    df["height"] = g.normal(170.0, 8.0, n)  # positive but symmetric
    net = BayesianNetwork(
        {**{v: list(GRAPH.parents(v)) for v in GRAPH.nodes}, "price": ["s"], "height": ["s"]}
    )
    table = read_frame(df, net, training=True)
    text = " | ".join(table.notices)
    assert "'price' is positive and right-skewed" in text and "--types price=lognormal" in text
    assert table.variables["price"].kind == "continuous"  # a notice, never a silent change
    assert "'height'" not in text


def test_the_binary_one_is_deterministic():
    g = BayesianNetwork({"z": [], "a": ["z"], "b": ["z"], "c": ["z"]})
    df = pd.DataFrame(
        {"a": [1, 2, 1, 2], "b": ["On", "off", "on", "Off"], "c": ["red", "blue", "red", "red"]}
    )
    v = read_frame(df, g, training=True).variables
    assert v["a"].levels == ("1", "2") and v["a"].numeric  # the larger number
    assert v["b"].levels == ("off", "On")  # the word that reads as true; first spellings kept
    assert v["c"].levels == ("blue", "red")  # no such word: the later sorted level


def test_stated_types_override_inference_and_bad_cells_are_one_line():
    df = _frame()
    coded = df.assign(smoker=(df.smoker == "yes").astype(int))
    table = _read(coded, types=parse_types("visits=count,smoker=normal"))
    assert table.variables["visits"].kind == "negbin" and table.variables["smoker"].kind == "normal"
    assert not any("smoker" in n for n in table.notices)  # asked for: no binary notice
    with pytest.raises(DataError, match="column 'smoker': non-numeric value 'no'"):
        _read(df, types={"smoker": "normal"})  # text is no number, whatever it is declared
    with pytest.raises(DataError, match=r"row 2 \(position 2\), column 'visits': -1 is not a count"):
        _read(df.assign(visits=[0, 1, -1] + [2] * 57), types={"visits": "negbin"})
    with pytest.raises(DataError, match=r"column 'bp': 0 is not positive"):
        _read(df.assign(bp=[0.0] + [1.0] * 59), types={"bp": "lognormal"})
    with pytest.raises(DataError, match="declared binary but has 3 levels"):
        _read(df, types={"region": "binary"})
    # training cells outside a graph's declared levels: an error, not 'unseen' cells fitted at 0.001
    declared = {"region": ["north", "south", "West"]}
    with pytest.raises(
        DataError, match=r"column 'region' holds 'east' \(\d+ training cell\(s\)\), not among"
    ):
        _read(df, types={"region": "categorical"}, levels=declared)
    assert _read(df, types={"region": "categorical"}, levels={"region": ["EAST", "north", "south", "west"]})
    with pytest.raises(DataError, match=r"column 'smoker' holds 'no' .*\('yes', 'maybe'\)"):
        _read(df, types={"smoker": "binary"}, levels={"smoker": ["yes", "maybe"]})
    with pytest.raises(DataError, match="latent node\\(s\\) 'h' are given a type without levels"):
        _read(df, types={"h": "count"})
    assert _read(df, types={"h": "binary"}).hidden == {"h": Variable("binary", ("0", "1"))}  # summed
    with pytest.raises(ValueError, match="unknown type 'bool3' for 'x'"):
        parse_types("x=bool3")


def test_an_id_like_text_column_is_refused_with_the_way_out():
    df = _frame().assign(bp=[f"p{i}" for i in range(60)])
    with pytest.raises(DataError, match="like row IDs: pass --id-column bp"):
        _read(df)


def test_unseen_levels_get_a_small_probability_or_are_refused():
    table = _read(_frame())
    later = _frame(5, seed=1).assign(region=["north", "west", "south", "west", "east"])
    seen = read_frame(later, table.split, variables=table.variables)
    col = list(table.split.observed).index("region")
    assert (
        seen.x[:, col].tolist() == [1, 3, 2, 3, 0]
        and "unseen in training in column(s) region (2 cells)" in seen.notices[0]
    )
    strict = {
        **table.variables,
        "region": Variable("categorical", table.variables["region"].levels, strict=True),
    }
    with pytest.raises(DataError, match="row 'r2'.*'west' is not a level of this categorical column"):
        read_frame(later.set_axis(["r1", "r2", "r3", "r4", "r5"]), table.split, variables=strict)
    with pytest.raises(DataError, match="'maybe' is not a level of this binary .* --types smoker="):
        read_frame(later.assign(smoker=["maybe"] * 5), table.split, variables=table.variables)


def test_labels_round_trip_through_the_python_api(tmp_path):
    df = _frame(80)
    fitted = sirenvae.fit(GRAPH, df, out=tmp_path / "run", types={"visits": "count"}, **FAST)
    again = sirenvae.load(tmp_path / "run")
    assert again.variables == fitted.variables and again.variables["smoker"].levels == ("no", "yes")
    assert again.model.config.types == {"region": "categorical:3", "smoker": "binary", "visits": "negbin"}
    s = again.sample(50, latents=False)
    assert set(s.smoker) <= {"no", "yes"} and set(s.region) <= {"north", "south", "east"}
    assert s.visits.dtype == "Int64" and (s.visits >= 0).all()
    holey = df.head(6).copy().astype(object)
    holey.loc[[0, 2], "smoker"] = None
    holey.loc[[1], "region"] = np.nan
    holey.loc[[3], "region"] = "West"  # unseen: written back as given
    holey.loc[[4], "smoker"] = "NA"  # a missing token, not NaN: a hole all the same
    filled = again.impute(holey)
    assert filled.smoker.isin(["no", "yes"]).all() and filled.region.iloc[3] == "West"
    present = holey.notna() & (holey != "NA")
    for c in ("smoker", "region", "bp"):
        assert (filled[c][present[c]].astype(str) == holey[c][present[c]].astype(str)).all()
    draws = again.impute(holey, m=3)
    assert draws.loc[1, "region"].isin(["north", "south", "east"]).all()
    nll = -again.log_prob(df.head(10))
    assert np.isfinite(nll).all()
    effect = again.effect("bp", {"smoker": "yes"}, {"smoker": "no"}, n=500, allow_unidentified=True)
    with pytest.raises(ValueError, match="'visits' is a count, so its value must be a non-negative integer"):
        again.sample(3, do={"visits": 2.5}, allow_unidentified=True)
    flags = df.head(6).assign(smoker=df.smoker.head(6) == "yes")  # bools in, bools out
    flagged = sirenvae.fit(GRAPH, df.assign(smoker=df.smoker == "yes"), **FAST)
    assert flagged.impute(flags).smoker.tolist() == flags.smoker.tolist()
    assert set(flagged.sample(20).smoker) <= {True, False} and flagged.variables["smoker"].boolean
    assert np.isfinite(effect["effect"])
    with pytest.raises(ValueError, match="'perhaps' is not a level of the binary node 'smoker'"):
        again.effect("bp", {"smoker": "perhaps"}, n=10)
    with pytest.raises(ValueError, match="reaches the discrete node\\(s\\) visits"):
        again.counterfactual(df.head(2), {"smoker": "yes"}, n=3)
    cf = again.counterfactual(df.head(2), {"bp": 150.0}, n=3)  # reaches no discrete node
    holey_train = df.astype(object)
    holey_train.loc[::7, "smoker"] = None  # a binary parent of visits and bp
    with pytest.warns(UserWarning, match="the discrete column\\(s\\) smoker have holes and children"):
        refit = sirenvae.fit(GRAPH, holey_train, types={"visits": "count"}, **FAST)
    assert np.isfinite(refit.log_prob(holey_train.head(8), importance_samples=10)).all()
    assert (cf.smoker.to_numpy().reshape(2, 3) == df.smoker.head(2).to_numpy()[:, None]).all()


def test_cli_fit_types_and_labels_round_trip(tmp_path):
    graph = tmp_path / "g.json"
    doc = {"name": "g", "nodes": [{"name": v, "parents": list(GRAPH.parents(v))} for v in GRAPH.nodes]}
    doc["nodes"][0]["levels"] = ["north", "south", "east", "west"]  # declared levels, in that order
    graph.write_text(json.dumps(doc))
    train = tmp_path / "train.csv"
    _frame(80).to_csv(train, index=False)
    run = tmp_path / "run"
    runner = CliRunner()
    args = ["fit", "--graph", str(graph), "--data", str(train), "--out", str(run), "--settings", "paper",
            "--epochs", "3", "--no-progress", "--set", "conditioning=parents",
            "--types", "visits=count"]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "modelled as binary, 1 = 'yes'" in res.output
    meta = json.loads((run / "model.json").read_text())
    assert meta["variables"]["region"]["levels"] == ["north", "south", "east", "west"]
    assert meta["variables"]["visits"] == {"type": "negbin"}
    out = tmp_path / "s.csv"
    res = runner.invoke(app, ["sample", str(run), "-n", "20", "-o", str(out)])
    assert res.exit_code == 0, res.output
    s = pd.read_csv(out)
    assert set(s.smoker) <= {"no", "yes"} and s.visits.dtype == np.int64
    res = runner.invoke(app, ["evaluate", str(run), "--data", str(out)])  # sample's output reads back
    assert res.exit_code == 0, res.output
    assert "oracle" not in res.output  # known for a shipped network only: no empty column
    query = ["--target", "bp", "--do", "smoker=YES", "--vs", "smoker=no", "-n", "20", "--allow-unidentified"]
    res = runner.invoke(app, ["effect", str(run), *query])
    assert res.exit_code == 0, res.output
    assert "E[bp | do(smoker=yes)] - E[bp | do(smoker=no)]" in res.output  # a label as the model spells it
    cf = tmp_path / "cf.csv"
    res = runner.invoke(
        app, ["counterfactual", str(run), "--data", str(train), "--do", "bp=150", "-n", "2", "-o", str(cf)]
    )
    assert res.exit_code == 0, res.output
    summary, given = pd.read_csv(cf), pd.read_csv(train)
    assert list(summary.statistic[:4]) == ["mean", "sd", "sample_1", "sample_2"] and summary.smoker.isna()[1]
    kept = summary[summary.statistic != "sd"].groupby("row").smoker.unique()
    assert all(list(kept[r + 1]) == [given.smoker[r]] for r in range(len(given)))  # not reached: as given
    res = runner.invoke(
        app,
        ["counterfactual", str(run), "--data", str(train), "--do", "smoker=yes", "-o", str(cf), "--force"],
    )
    assert res.exit_code == 2 and "reaches the discrete node(s) visits" in res.output
    holey, filled = tmp_path / "holey.csv", tmp_path / "filled.csv"
    given.assign(smoker=[None, *given.smoker[1:]], bp=[*given.bp[:-1], None]).to_csv(holey, index=False)
    res = runner.invoke(
        app, ["impute", str(run), "--data", str(holey), "-o", str(filled), "-k", "50", "--sd"]
    )
    assert res.exit_code == 0, res.output
    spread = pd.read_csv(filled)
    assert spread.smoker_sd.isna().all() and spread.region_sd.isna().all()  # no sd of a label
    assert spread.bp_sd.iloc[-1] > 0 and (spread.bp_sd.iloc[:-1] == 0).all()
    res = runner.invoke(app, args[:-2] + ["--allow-discrete", "--force"])
    assert res.exit_code == 2 and "--allow-discrete is gone" in res.output


def test_discrete_networks_sample_their_cpts_and_the_oracle_enumerates_exactly():
    from sirenvae.networks import DiscreteNetwork, load_network, oracle_nll

    doc = {
        "name": "tiny",
        "nodes": [
            {"name": "a", "parents": [], "states": ["lo", "hi"], "cpt": [[0.3, 0.7]]},
            {"name": "b", "parents": ["a"], "states": ["x", "y", "z"],
             "cpt": [[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]]},
            {"name": "c", "parents": ["a", "b"], "states": ["no", "yes"],
             "cpt": [[0.9, 0.1], [0.5, 0.5], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6], [0.05, 0.95]]},
        ],
    }  # fmt: skip
    net = DiscreteNetwork.from_json(doc)
    cpt = {v["name"]: np.array(v["cpt"]) for v in doc["nodes"]}
    rows = net.sample(60_000, seed=0).numpy().astype(int)
    joint = np.zeros((2, 3, 2))
    np.add.at(joint, (rows[:, 0], rows[:, 1], rows[:, 2]), 1)
    truth = cpt["a"][0][:, None, None] * cpt["b"][:, :, None] * cpt["c"].reshape(2, 3, 2)
    assert np.abs(joint / len(rows) - truth).max() < 0.01
    # b hidden: log p(a, c) by brute force over b's three states
    x = np.array([[0, 0], [1, 1], [0, 1]], dtype=float)
    brute = np.log([sum(truth[a, b, c] for b in range(3)) for a, c in x.astype(int)])
    got = net.log_prob(torch.tensor(x), ["a", "c"]).numpy()
    assert np.allclose(got, brute)
    assert oracle_nll(net, torch.tensor(x), ["a", "c"]) == pytest.approx(-brute.mean())
    alarm = load_network("alarm")
    assert len(alarm.graph) == 37 and [len(alarm.states[v]) for v in ("HR", "VENTLUNG", "ARTCO2")] == [
        3,
        4,
        3,
    ]
    assert alarm.citation.startswith("I. A. Beinlich")
    child = load_network("child")
    assert np.prod([len(child.states[v]) for v in ("Disease", "LungParench", "CardiacMixing")]) == 72


def test_a_bif_file_declares_its_states(tmp_path):
    from sirenvae.graph_io import declared_types

    bif = tmp_path / "two.bif"
    bif.write_text(
        "network two {\n}\n"
        "variable smoke {\n  type discrete [ 2 ] { yes, no };\n}\n"
        "variable cough {\n  type discrete [ 3 ] { none, some, much };\n}\n"
        "probability ( smoke ) {\n  table 0.3, 0.7 ;\n}\n"
        "probability ( cough | smoke ) {\n  (yes) 0.2, 0.3, 0.5;\n  (no) 0.6, 0.3, 0.1;\n}\n"
    )
    types, levels = declared_types(bif)
    assert types == {"smoke": "binary", "cough": "categorical"}
    assert levels == {"smoke": ["yes", "no"], "cough": ["none", "some", "much"]}


def test_the_run_remembers_its_id_column(tmp_path):
    train = tmp_path / "train.csv"
    _frame(40).assign(patient=[f"p{i}" for i in range(40)]).to_csv(train, index=False)
    graph = tmp_path / "g.json"
    graph.write_text(
        json.dumps({"nodes": [{"name": v, "parents": list(GRAPH.parents(v))} for v in GRAPH.nodes]})
    )
    run_dir = tmp_path / "run"
    runner = CliRunner()
    fit = ["fit", "--graph", str(graph), "--data", str(train), "--out", str(run_dir), "--settings", "paper",
           "--epochs", "2", "--no-progress", "--id-column", "patient"]  # fmt: skip
    assert runner.invoke(app, fit).exit_code == 0
    rows = tmp_path / "rows.csv"
    res = runner.invoke(
        app, ["evaluate", str(run_dir), "--data", str(train), "--per-row", str(rows), "-k", "5"]
    )
    assert res.exit_code == 0, res.output
    assert "column 'patient' holds row IDs, as when the run was fitted" in res.output
    per_row = pd.read_csv(rows)
    assert list(per_row.columns[:2]) == ["row", "patient"] and per_row.patient.tolist()[:2] == ["p0", "p1"]


def test_one_candidate_with_nothing_to_compare_is_fitted_without_cross_validation(tmp_path):
    quick = dict(max_candidates=1, max_epochs=2, warmup_steps=0)
    mixed = sirenvae.fit(GRAPH, _frame(60), types={"visits": "count"}, out=tmp_path / "mixed", **quick)
    assert mixed.selection is None and not (tmp_path / "mixed" / "selection.csv").exists()
    settings = sirenvae.load(tmp_path / "mixed").settings
    assert settings["settings"] == "auto" and settings["chosen"] == "linear"
    assert "one candidate (linear)" in settings["rule"] and "without cross-validation" in settings["rule"]
    assert "non-Gaussian columns: region, smoker, visits" in settings["rule"]
    # the linear candidate's settings, as a search would have fitted them
    linear = sirenvae.candidates.candidates_for("true")[0].options
    assert all(getattr(mixed.model.config, k) == v for k, v in linear.items() if k != "types")
    # continuous rows with holes: nothing to choose either; folds would score it beside the EM Gaussian
    rng = np.random.default_rng(0)
    a = rng.normal(size=40)
    holey = pd.DataFrame({"a": a, "b": a + rng.normal(size=40)})
    holey.loc[::5, "b"] = np.nan
    chain = BayesianNetwork({"a": [], "z": ["a"], "b": ["z"]})
    fitted = sirenvae.fit(chain, holey, **quick)
    assert fitted.selection is None and "rows with holes" in fitted.settings["rule"]
    assert "--folds K" in fitted.settings["rule"]
    # asked-for folds mean a held-out score is wanted: the search runs, the EM Gaussian beside it
    scored = sirenvae.fit(chain, holey, folds=2, workers=1, **quick)
    assert scored.selection is not None and set(scored.selection.fold) == {1, 2}
    assert set(scored.selection.candidate) == {"linear", "em"}


def test_labels_that_differ_in_case_alone_are_one_level_and_said_so():
    df = _frame(40).astype({"smoker": object, "region": object})
    df.loc[:4, "smoker"] = df.smoker[:5].str.capitalize()  # "Yes", "No" beside "yes", "no"
    df.loc[:2, "region"] = " " + df.region[:3] + " "  # whitespace alone: stripped, nothing to say
    table = _read(df)
    (said,) = [n for n in table.notices if "regardless of case" in n]
    assert "column 'smoker': 'No' and 'no'; 'Yes' and 'yes' are read as one level" in said
    assert table.variables["smoker"].levels == ("no", "yes")  # the commonest spelling, not the first
    codes = table.x[:, list(table.split.observed).index("smoker")].numpy()
    assert set(np.unique(codes)) == {0.0, 1.0}  # two levels, not four
    assert not any("'region'" in n and "case" in n for n in table.notices)


def test_type_hints_follow_what_a_column_looks_like_not_only_that_it_is_whole():
    """Dollars (whole, positive, skewed) get the log-normal hint, not 'count'; a whole column
    with zeros gets 'count'; ages and blood pressures (whole, symmetric, no zeros) get none."""
    df = _frame()
    g = np.random.default_rng(4)
    n = len(df)
    df["income"] = np.round(np.exp(g.normal(10.5, 0.6, n)))
    df["visits"] = g.poisson(2.0, n) + (np.arange(n) % 7 == 0) * 9
    df["age"] = np.round(g.normal(50.0, 12.0, n))
    net = BayesianNetwork(
        {**{v: list(GRAPH.parents(v)) for v in GRAPH.nodes}, **dict.fromkeys(df.columns[-3:], ["s"])}
    )
    text = " | ".join(read_frame(df, net, training=True).notices)
    assert "'income' is positive and right-skewed" in text and "income=count" not in text
    assert "'visits' holds only whole numbers >= 0" in text and "--types visits=count" in text
    assert "'age'" not in text


def test_numbers_with_separators_are_named_as_such_not_offered_as_missing_tokens(tmp_path):
    df = _frame()
    df["bp"] = df["bp"].round(1).astype(object)
    df.loc[3, "bp"] = "45,000"
    with pytest.raises(
        DataError, match=r"'45,000', which looks like a number with thousands separators"
    ) as e:
        read_frame(df, GRAPH, training=True, allow_missing=True)
    assert "--missing" not in str(e.value)
    df.loc[3, "bp"] = "12,5"
    with pytest.raises(DataError, match=r"'12,5', which looks like a number with a decimal comma"):
        read_frame(df, GRAPH, training=True, allow_missing=True)
    df["bp"] = [f"{1000 + 37 * i:,}" for i in range(len(df))]  # every cell: a column error
    with pytest.raises(DataError, match=r"column 'bp' holds numbers written with thousands separators"):
        read_frame(df, GRAPH, training=True)


def test_samples_below_zero_of_a_column_that_never_was_are_pointed_out(tmp_path):
    from sirenvae.variables import negative_notice, nonnegative_columns

    g = np.random.default_rng(0)
    x = np.stack(
        [
            g.poisson(1.0, 40).astype(float),
            np.round(np.exp(g.normal(10.0, 1.0, 40))),  # dollars
            g.normal(0.0, 1.0, 40),
            np.abs(g.normal(0.5, 0.1, 40)),  # a share, not skewed
        ],
        1,
    )
    x[3, 3] = np.nan
    kept = nonnegative_columns(x, ["visits", "income", "score", "share"], {})
    assert list(kept) == ["visits", "income", "share"]
    assert kept["visits"]["whole"] and kept["visits"]["min"] == 0 and kept["income"]["skewed"]
    assert not kept["share"]["whole"] and not kept["share"]["skewed"]
    assert negative_notice(kept, {"visits": [1.0, 2.0], "income": [5.0], "share": [0.1]}) is None
    said = negative_notice(kept, {"visits": [-1.0, 2.0], "income": [-5.0] + [5.0] * 3, "share": [-0.1]})
    assert said == (
        "samples below 0 of column(s) whose training values are all >= 0: 'visits' in 50.0%, 'income' in "
        "25.0%, 'share' in 100.0%; they are modelled with unbounded continuous noise (refit with --types "
        "visits=count,income=lognormal if that is what they are)"
    )
    fitted = sirenvae.fit(GRAPH, _frame(80), out=tmp_path / "run", **FAST)  # visits: continuous
    assert fitted.meta["nonnegative"]["visits"]["whole"]
    with pytest.warns(UserWarning, match=r"'visits' in .*types=\{'visits': 'count'\}"):
        s = fitted.sample(2000, latents=False, seed=1)
    assert (s.visits < 0).any()


def test_a_pandas_categorical_states_its_levels_in_their_order():
    df = _frame()
    df["region"] = pd.Categorical(df.region, categories=["north", "south", "east"])
    df["grade"] = pd.Categorical(np.arange(len(df)) % 3 + 1)  # numbers, but stated categorical
    net = BayesianNetwork({**{v: list(GRAPH.parents(v)) for v in GRAPH.nodes}, "grade": ["s"]})
    table = read_frame(df, net, training=True)
    assert table.variables["region"].levels == ("north", "south", "east")  # not sorted
    assert table.variables["grade"].kind == "categorical" and table.variables["grade"].levels == (
        "1",
        "2",
        "3",
    )
    col = list(table.split.observed).index("region")
    assert table.x[:, col].tolist() == [["north", "south", "east"].index(r) for r in df.region]
    two = df.assign(region=pd.Categorical(np.where(df.region == "east", "yes", "no")))
    assert read_frame(two, net, training=True).variables["region"] == Variable("binary", ("no", "yes"))

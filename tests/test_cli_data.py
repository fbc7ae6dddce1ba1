"""The CLI on a user's own graph and CSV: validation of every data file, latent nodes, ID columns."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from helpers import small_network
from sirenvae import graph_io
from test_cli import error_line, run

FAST = ["--epochs", "2", "--no-progress", "--settings", "paper"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small graph (z1, z2 latent; x1, x2, x3 observed), its samples and a run fitted on them."""
    d = tmp_path_factory.mktemp("small")
    net = small_network()
    graph_io.to_json(net.graph, d / "g.json")
    frame = pd.DataFrame(net.sample(120, seed=0).numpy(), columns=list(net.graph.nodes))
    frame.to_csv(d / "all.csv", index=False)
    frame[["x1", "x2", "x3"]].to_csv(d / "obs.csv", index=False)
    result = run("fit", "--graph", d / "g.json", "--data", d / "obs.csv", "--out", d / "run", *FAST)
    assert result.exit_code == 0, result.output
    return d


def edited(files, tmp_path, name, **changes):
    """``obs.csv`` with some cells replaced: ``column=(row index, text)``."""
    frame = pd.read_csv(files / "obs.csv").astype(object)
    for column, (i, text) in changes.items():
        frame.loc[i, column] = text
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def test_every_command_names_the_cell_that_overflows(files, tmp_path):
    path = edited(files, tmp_path, "big.csv", x2=(2, "1e300"))
    expected = "big.csv: row 3 (line 4), column 'x2': 1e+300 overflows float32"

    def commands(path):
        return [
            ["fit", "--graph", files / "g.json", "--data", path, "--out", tmp_path / "o", *FAST],
            ["evaluate", files / "run", "--data", path, "-k", 2],
            ["posterior", files / "run", "--data", path, "-n", 2, "-o", tmp_path / "p.csv"],
        ]

    for args in commands(path):
        r = run(*args)
        assert r.exit_code == 2, (args, r.output)
        assert expected in error_line(r), args
    assert not (tmp_path / "p.csv").exists() and not (tmp_path / "o").exists()
    # non-finite and non-numeric cells are named the same way by evaluate and posterior
    path = edited(files, tmp_path, "inf.csv", x3=(4, "inf"))
    for args in commands(path)[1:]:
        r = run(*args)
        assert r.exit_code == 2 and "row 5 (line 6), column 'x3': non-finite value 'inf'" in error_line(r)


def test_fit_names_its_latent_nodes_and_suggests_near_misses(files, tmp_path):
    obs = pd.read_csv(files / "obs.csv")
    # a forgotten column becomes a latent node, and fit says so even without a progress bar
    obs[["x1", "x2"]].to_csv(tmp_path / "two.csv", index=False)
    r = run(
        "fit", "--graph", files / "g.json", "--data", tmp_path / "two.csv", "--out", tmp_path / "a", *FAST
    )
    assert r.exit_code == 0, r.output
    assert "latent nodes (3, nodes without a column): z1, z2, x3" in r.stderr
    # a typo in the edge list is caught against the unused column
    edges = tmp_path / "edges.csv"
    edges.write_text("parent,child\nz1,z2\nz1,x1\nz2,x2\nz2,xthree\nx1,xthree\n")
    obs.rename(columns={"x3": "xThree"}).to_csv(tmp_path / "typo.csv", index=False)
    r = run("fit", "--graph", edges, "--data", tmp_path / "typo.csv", "--out", tmp_path / "b", *FAST)
    assert r.exit_code == 2
    assert "is column 'xThree' node 'xthree'?" in error_line(r)
    obs.rename(columns={"x3": "xtree"}).to_csv(tmp_path / "typo.csv", index=False)
    r = run("fit", "--graph", edges, "--data", tmp_path / "typo.csv", "--out", tmp_path / "b", *FAST)
    assert "is column 'xtree' node 'xthree'?" in error_line(r)


def test_fit_ignores_latent_columns_and_named_columns_only(files, tmp_path):
    graph = files / "g.json"
    # the output of `sample` has every node: with --latent its latent columns are dropped
    out = tmp_path / "a"
    r = run("fit", "--graph", graph, "--data", files / "all.csv", "--latent", "z1,z2", "--out", out, *FAST)
    assert r.exit_code == 0, r.output
    assert "note: ignoring column(s) z1, z2 of all.csv: they are latent nodes" in r.stderr
    assert "latent nodes (2, from --latent): z1, z2" in r.stderr
    # other columns are errors unless ignored by name
    frame = pd.read_csv(files / "obs.csv").assign(site=3.0, batch=1.0)
    frame.to_csv(tmp_path / "extra.csv", index=False)
    r = run("fit", "--graph", graph, "--data", tmp_path / "extra.csv", "--out", tmp_path / "b", *FAST)
    assert r.exit_code == 2
    line = error_line(r)
    assert "column 'site' matches no node" in line and "--ignore-columns site,batch" in line
    r = run(*r_args(graph, tmp_path / "extra.csv", tmp_path / "b"), "--ignore-columns", "site, batch")
    assert r.exit_code == 0, r.output
    assert "latent nodes (2, nodes without a column): z1, z2" in r.stderr
    r = run(
        "evaluate",
        tmp_path / "b",
        "--data",
        tmp_path / "extra.csv",
        "-k",
        2,
        "--ignore-columns",
        "site,batch",
    )
    assert r.exit_code == 0, r.output
    r = run(*r_args(graph, tmp_path / "extra.csv", tmp_path / "c"), "--ignore-columns", "site,nope")
    assert r.exit_code == 2 and "no column 'nope' to ignore" in error_line(r)


def r_args(graph, data, out):
    return ["fit", "--graph", graph, "--data", data, "--out", out, *FAST]


def test_fit_refuses_constant_and_binary_columns(files, tmp_path):
    frame = pd.read_csv(files / "obs.csv")
    frame.assign(x2=4.25).to_csv(tmp_path / "const.csv", index=False)
    r = run(*r_args(files / "g.json", tmp_path / "const.csv", tmp_path / "a"))
    assert r.exit_code == 2 and "constant or near-constant column(s) 'x2' (sd 0 around 4.25)" in error_line(r)
    assert not (tmp_path / "a").exists()
    binary = frame.assign(x3=(frame.x3 > 2.5).astype(int), x1=frame.x1.round().clip(-3, 3))
    binary.to_csv(tmp_path / "binary.csv", index=False)
    r = run(*r_args(files / "g.json", tmp_path / "binary.csv", tmp_path / "b"))
    assert r.exit_code == 0, r.output
    assert "column 'x3' has 2 distinct values: modelled as binary, 1 = '1'" in r.stderr
    assert "'x1' has 6 distinct integers: modelled as continuous; pass --types x1=count" in r.stderr
    assert json.loads((tmp_path / "b" / "model.json").read_text())["model"]["types"] == {"x3": "binary"}
    r = run(*r_args(files / "g.json", tmp_path / "binary.csv", tmp_path / "c"), "--allow-discrete")
    assert r.exit_code == 2 and "--allow-discrete is gone" in error_line(r)
    r = run(*r_args(files / "g.json", tmp_path / "binary.csv", tmp_path / "c"), "--types", "x3=normal")
    assert r.exit_code == 0 and "binary" not in r.stderr, r.output
    note = " ".join(r.stderr.split())
    assert "note: column 'x1' has 6 distinct integers: modelled as continuous" in note  # -0 is 0
    # evaluation data may be anything finite
    r = run("evaluate", files / "run", "--data", tmp_path / "const.csv", "-k", 2, "--json")
    assert r.exit_code == 0, r.output


def test_excel_files_with_ids_and_spaced_latent_lists(files, tmp_path):
    frame = pd.read_csv(files / "all.csv")
    frame.insert(0, "patient", [f"p{i:03d}" for i in range(len(frame))])
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + frame.to_csv(index=False).encode())
    run_dir = tmp_path / "run"
    r = run(*r_args(files / "g.json", path, run_dir), "--latent", "z1, z2 ", "--id-column", "patient")
    assert r.exit_code == 0, r.output
    assert "latent nodes (2, from --latent): z1, z2" in r.stderr
    new = frame.drop(columns=["z1", "z2"]).iloc[:5]
    new.to_csv(tmp_path / "new.csv", index=False)
    out = tmp_path / "post.csv"
    r = run(
        "posterior", run_dir, "--data", tmp_path / "new.csv", "-n", 2, "-o", out, "--id-column", "patient"
    )
    assert r.exit_code == 0, r.output
    post = pd.read_csv(out)
    assert list(post.columns) == ["row", "patient", "statistic", "z1", "z2"]
    assert list(post.patient[post.statistic == "mean"]) == ["p000", "p001", "p002", "p003", "p004"]
    r = run("evaluate", run_dir, "--data", tmp_path / "new.csv", "-k", 2, "--id-column", "patient", "--json")
    assert r.exit_code == 0, r.output
    r = run("evaluate", run_dir, "--data", tmp_path / "new.csv", "-k", 2)  # the run remembers its IDs
    assert r.exit_code == 0 and "column 'patient' holds row IDs, as when the run was fitted" in r.stderr
    r = run("posterior", run_dir, "--data", tmp_path / "new.csv", "-o", out, "--force", "--id-column", "z1")
    assert r.exit_code == 2 and "--id-column 'z1' would clash" in error_line(r)
    new.rename(columns={"patient": "row"}).to_csv(tmp_path / "rows.csv", index=False)
    r = run(
        "posterior",
        run_dir,
        "--data",
        tmp_path / "rows.csv",
        "-n",
        1,
        "-o",
        tmp_path / "p2.csv",
        "--id-column",
        "row",
    )
    assert r.exit_code == 0, r.output
    post = pd.read_csv(tmp_path / "p2.csv")
    assert list(post.columns) == ["row", "statistic", "z1", "z2"] and post.row.iloc[-1] == "p004"


def test_evaluate_and_posterior_read_sample_output(files, tmp_path):
    """The output of `sample` has a column for every node: the latent ones are ignored with a note."""
    samples = tmp_path / "samples.csv"
    r = run("sample", files / "run", "-n", 30, "-o", samples)
    assert r.exit_code == 0, r.output
    assert list(pd.read_csv(samples).columns) == ["z1", "z2", "x1", "x2", "x3"]
    r = run("evaluate", files / "run", "--data", samples, "-k", 4, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["rows"] == 30  # the note goes to stderr, the JSON stays clean
    assert "note: ignoring column(s) z1, z2 of samples.csv: they are latent nodes" in r.stderr
    # the same numbers as on the observed columns alone, in any order
    pd.read_csv(samples)[["x3", "x1", "x2"]].to_csv(tmp_path / "obs.csv", index=False)
    alone = run("evaluate", files / "run", "--data", tmp_path / "obs.csv", "-k", 4, "--json")
    assert json.loads(alone.stdout)["nll"] == pytest.approx(json.loads(r.stdout)["nll"], rel=1e-6)
    out = tmp_path / "post.csv"
    r = run("posterior", files / "run", "--data", samples, "-n", 2, "-o", out)
    assert r.exit_code == 0, r.output
    assert "note: ignoring column(s) z1, z2 of samples.csv: they are latent nodes" in r.stderr
    post = pd.read_csv(out)
    assert list(post.columns) == ["row", "statistic", "z1", "z2"] and len(post) == 30 * 4
    # other unknown columns are still errors
    pd.read_csv(samples).assign(site=1.0).to_csv(tmp_path / "site.csv", index=False)
    r = run("evaluate", files / "run", "--data", tmp_path / "site.csv", "-k", 4)
    assert r.exit_code == 2 and "column 'site' matches no node" in error_line(r)


def test_evaluate_per_row_carries_row_numbers_and_ids(files, tmp_path):
    frame = pd.read_csv(files / "obs.csv").iloc[:6]
    frame.to_csv(tmp_path / "new.csv", index=False)
    rows = tmp_path / "rows.csv"
    r = run("evaluate", files / "run", "--data", tmp_path / "new.csv", "-k", 4, "--per-row", rows)
    assert r.exit_code == 0, r.output
    plain = pd.read_csv(rows)
    assert list(plain.columns) == ["row", "nll", "neg_elbo", "ess", "missing"]
    assert list(plain.row) == [1, 2, 3, 4, 5, 6]
    # with --id-column the IDs follow the row numbers, in the order of the file
    frame.insert(2, "patient", [f"p{i}" for i in (5, 3, 9, 1, 7, 2)])
    frame.to_csv(tmp_path / "ids.csv", index=False)
    args = ["evaluate", files / "run", "--data", tmp_path / "ids.csv", "-k", 4, "--id-column", "patient"]
    r = run(*args, "--per-row", tmp_path / "ids-rows.csv")
    assert r.exit_code == 0, r.output
    with_ids = pd.read_csv(tmp_path / "ids-rows.csv")
    assert list(with_ids.columns) == ["row", "patient", "nll", "neg_elbo", "ess", "missing"]
    assert list(with_ids.patient) == ["p5", "p3", "p9", "p1", "p7", "p2"]
    pd.testing.assert_frame_equal(with_ids.drop(columns="patient"), plain)
    # an ID column named row replaces the row numbers; one named like a result column is refused
    frame.rename(columns={"patient": "row"}).to_csv(tmp_path / "row.csv", index=False)
    r = run(*args[:3], tmp_path / "row.csv", "-k", 4, "--id-column", "row", "--per-row", tmp_path / "r.csv")
    assert r.exit_code == 0, r.output
    assert list(pd.read_csv(tmp_path / "r.csv").columns) == ["row", "nll", "neg_elbo", "ess", "missing"]
    assert pd.read_csv(tmp_path / "r.csv").row.iloc[0] == "p5"
    frame.rename(columns={"patient": "nll"}).to_csv(tmp_path / "nll.csv", index=False)
    r = run(*args[:3], tmp_path / "nll.csv", "-k", 4, "--id-column", "nll", "--per-row", tmp_path / "n.csv")
    assert r.exit_code == 2 and "--id-column 'nll' would clash" in error_line(r)


def test_ordinary_names_are_not_called_typos(tmp_path):
    """The notice on latent nodes named like a column: one edit, and not a family of names."""
    edges = tmp_path / "g.csv"
    edges.write_text("parent,child\nblight,height\nblight,leaf\nx1,x2\nx2,leaf\nsmokng,leaf\n")
    g = np.random.default_rng(0)
    pd.DataFrame(g.normal(size=(40, 3)), columns=["height", "leaf", "x1"]).to_csv(
        tmp_path / "d.csv", index=False
    )
    r = run("fit", "--graph", edges, "--data", tmp_path / "d.csv", "--out", tmp_path / "run", *FAST)
    assert r.exit_code == 0, r.output
    assert "latent nodes (3, nodes without a column): blight, x2, smokng" in r.stderr
    assert "typo" not in r.stderr
    pd.DataFrame(g.normal(size=(40, 3)), columns=["height", "leaf", "smoking"]).to_csv(
        tmp_path / "d.csv", index=False
    )
    edges.write_text("parent,child\nblight,height\nsmoking,leaf\nsmokng,leaf\n")
    r = run("fit", "--graph", edges, "--data", tmp_path / "d.csv", "--out", tmp_path / "run2", *FAST)
    assert r.exit_code == 0, r.output
    note = " ".join(r.stderr.split())
    assert (
        "latent node 'smokng' is named like column 'smoking'" in note
        and "'blight'" not in note.split("latent nodes")[0]
    )


def test_errors_point_to_the_option_that_fixes_them(files, tmp_path):
    frame = pd.read_csv(files / "obs.csv").assign(plot="p")
    frame.to_csv(tmp_path / "ids.csv", index=False)
    r = run("evaluate", files / "run", "--data", tmp_path / "ids.csv", "-k", 2)
    line = error_line(r)
    assert "pass --ignore-columns plot (or --id-column NAME for a column of row IDs)" in line
    # training data may leave an observed node out by naming it latent too; new data read it as holes
    r = run(*r_args(files / "g.json", files / "obs.csv", tmp_path / "a"), "--latent", "z1")
    assert "node(s) without a column: z2; add the column(s), or add them to the latent nodes (--latent)" in (
        error_line(r)
    )
    pd.read_csv(files / "obs.csv").drop(columns="x2").to_csv(tmp_path / "no-x2.csv", index=False)
    r = run("evaluate", files / "run", "--data", tmp_path / "no-x2.csv", "-k", 2)  # x2 missing in every row
    assert r.exit_code == 0
    assert (
        "warning: no column for observed node(s) x2: read as missing in every row (an NLL scores" in r.output
    )


HOLES = {"x1": (3, ""), "x3": (10, "NA"), "x2": (7, "?")}
#: The notice on ``HOLES`` (one cell of 120 in each column).
HOLES_NOTE = (
    "note: missing cells: x1 0.8%, x2 0.8%, x3 0.8% (of 120 rows); they are treated as missing at random"
)


def test_holes_are_read_where_they_can_be(files, tmp_path):
    path = edited(files, tmp_path, "holes.csv", **HOLES)
    # '?' is a hole only when named
    r = run("evaluate", files / "run", "--data", path, "-k", 2)
    assert r.exit_code == 2 and error_line(r).endswith(
        "holes.csv: row 8 (line 9), column 'x2': non-numeric value '?'; "
        "if it marks a missing cell, pass --missing '?'"
    )
    r = run("evaluate", files / "run", "--data", path, "-k", 2, "--missing", "?", "--json")
    assert HOLES_NOTE in r.stderr and "error:" not in r.output, r.output
    # posterior resamples importance samples of p(z | present cells); compare reads holes (test_compare)
    path = edited(files, tmp_path, "one.csv", x1=(3, ""))
    r = run("posterior", files / "run", "--data", path, "-n", 2, "-o", tmp_path / "p.csv")
    assert r.exit_code == 0 and "rows with holes: resampled" in r.stderr, r.output
    lowest = float(re.search(r"effective sample size per row (\S+) to", r.stderr).group(1))
    if lowest != 10:  # printed rounded: 9.6 reads 10
        assert (lowest < 10) == ("have an effective sample size below 10" in r.stderr), r.stderr
    post = pd.read_csv(tmp_path / "p.csv")
    assert len(post) == 120 * 4 and np.isfinite(post[["z1", "z2"]].to_numpy()).all()
    # --missing is for a --data CSV
    r = run(
        "fit", "--network", "ecoli70", "--train-size", 10, "--missing", "?", "--out", tmp_path / "o", *FAST
    )
    assert r.exit_code == 2 and "--missing and --types apply to a --data CSV" in error_line(r)


def test_fit_refuses_empty_columns_and_rows_and_names_them(files, tmp_path):
    graph = files / "g.json"
    frame = pd.read_csv(files / "obs.csv").astype(object)
    frame["x2"] = "NA"
    frame.to_csv(tmp_path / "col.csv", index=False)
    r = run(*r_args(graph, tmp_path / "col.csv", tmp_path / "a"))
    assert r.exit_code == 2 and error_line(r).endswith(
        "col.csv: column 'x2' has every cell missing: declare its node latent (--latent) or drop the column"
    )
    frame = pd.read_csv(files / "obs.csv").astype(object)
    frame.loc[5, :] = ["", "nan", "-"]
    frame.to_csv(tmp_path / "row.csv", index=False)
    r = run(*r_args(graph, tmp_path / "row.csv", tmp_path / "a"), "--missing", "-")
    assert r.exit_code == 2 and error_line(r).endswith(
        "row.csv: row 6 (line 7) has every observed cell missing: it holds no data; drop the row"
    )
    # training checks look at the present cells only
    frame = pd.read_csv(files / "obs.csv").astype(object)
    frame.loc[::2, "x2"] = ""
    frame.loc[1::2, "x2"] = "4.25"
    frame.to_csv(tmp_path / "const.csv", index=False)
    r = run(*r_args(graph, tmp_path / "const.csv", tmp_path / "a"))
    assert r.exit_code == 2 and "constant or near-constant column(s) 'x2' (sd 0 around 4.25)" in error_line(r)
    assert not (tmp_path / "a").exists()


def test_fit_reads_holes_and_reports_them(files, tmp_path):
    path = edited(files, tmp_path, "holes.csv", **HOLES)
    r = run(*r_args(files / "g.json", path, tmp_path / "a"), "--missing", "?", "--epochs", "1")
    # the notice of the fraction missing per column, before training
    assert HOLES_NOTE in r.stderr and "latent nodes (2, nodes without a column): z1, z2" in r.stderr
    assert "non-numeric" not in r.output and "every cell" not in r.output


def test_fit_and_evaluate_with_holes_end_to_end(files, tmp_path):
    path = edited(files, tmp_path, "holes.csv", **HOLES)
    r = run(*r_args(files / "g.json", path, tmp_path / "a"), "--missing", "?", "--epochs", "1")
    assert r.exit_code == 0, r.output
    per_row = tmp_path / "rows.csv"
    args = ["-k", 2, "--missing", "?", "--json", "--per-row", per_row]
    r = run("evaluate", tmp_path / "a", "--data", path, *args)
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["rows"] == 120 and np.isfinite(result["nll"])
    rows = pd.read_csv(per_row)
    holes = pd.read_csv(path, dtype=str, keep_default_na=False)[["x1", "x2", "x3"]]
    counted = holes.isin(["", "?", "NA"]).sum(1).to_numpy()
    assert counted.sum() == len(HOLES)
    np.testing.assert_array_equal(rows["missing"].to_numpy(), counted)
    assert result["missing"] == pytest.approx(counted.sum() / holes.size)
    assert ((rows["ess"] >= 1 - 1e-9) & (rows["ess"] <= 3 + 1e-9)).all()  # K = 2 and 1 prior draw


def test_the_help_of_missing_states_the_assumption():
    for command in ("fit", "evaluate", "impute", "posterior", "counterfactual", "compare"):
        text = " ".join(run(command, "--help").output.split())
        assert "--missing" in text and "empty cells, NA, N/A and NaN always do" in text
        assert "Holes are treated as missing at random (ignorable): data missing not at random" in text
        assert "are out of scope" in text


def test_evaluate_warns_when_holey_rows_rest_on_few_draws(files, tmp_path):
    path = edited(files, tmp_path, "holes.csv", **HOLES)
    r = run("evaluate", files / "run", "--data", path, "-k", 2, "--missing", "?", "--json")
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["low_ess_rows"] == 3  # K = 2: no row can reach 10
    assert "warning: 3 row(s) with holes have an effective sample size below 10" in r.stderr
    assert "refit with --train-masking (it saw no holes)" in r.stderr


def test_latent_nodes_declared_in_the_graph_file_act_as_latent(files, tmp_path):
    """A node the JSON graph declares latent is latent even when the CSV has its column (dropped with
    a notice); one left undeclared and without a column is an error naming it."""
    doc = json.loads((files / "g.json").read_text())
    doc["latent"] = ["z1", "z2", "x1"]
    (tmp_path / "lat.json").write_text(json.dumps(doc))
    r = run(
        "fit", "--graph", tmp_path / "lat.json", "--data", files / "obs.csv", "--out", tmp_path / "r", *FAST
    )
    assert r.exit_code == 0, r.output
    assert "ignoring column(s) x1 of obs.csv: they are latent nodes" in r.stderr
    doc["latent"] = ["z1"]
    (tmp_path / "few.json").write_text(json.dumps(doc))
    r = run(
        "fit", "--graph", tmp_path / "few.json", "--data", files / "obs.csv", "--out", tmp_path / "s", *FAST
    )
    assert r.exit_code == 2 and "observed node(s) without a column: z2" in error_line(r)


def test_a_graph_file_given_as_data_and_an_infinite_cell_are_named_plainly(files, tmp_path):
    r = run(*r_args(files / "g.json", files / "g.json", tmp_path / "r"))
    assert "g.json is a graph file (.json); the data are a CSV of rows" in error_line(r)
    frame = pd.read_csv(files / "obs.csv").astype({"x1": object})
    frame.loc[3, "x1"] = "inf"
    frame.to_csv(tmp_path / "inf.csv", index=False)
    line = error_line(run(*r_args(files / "g.json", tmp_path / "inf.csv", tmp_path / "r")))
    assert "non-finite value 'inf'" in line and "categorical" not in line


def test_a_run_remembers_its_ignored_columns(files, tmp_path):
    frame = pd.read_csv(files / "obs.csv").assign(plot="p", batch=1)
    frame.to_csv(tmp_path / "extra.csv", index=False)
    r = run(
        *r_args(files / "g.json", tmp_path / "extra.csv", tmp_path / "r"), "--ignore-columns", "plot,batch"
    )
    assert r.exit_code == 0, r.output
    frame.drop(columns="batch").to_csv(tmp_path / "new.csv", index=False)  # one of them left out: fine
    r = run("evaluate", tmp_path / "r", "--data", tmp_path / "new.csv", "-k", 2)
    assert r.exit_code == 0 and "ignoring column(s) plot, as when the run was fitted" in r.output, r.output

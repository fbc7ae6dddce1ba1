"""Pictures and per-run records: `sirenvae graph`, history.csv + training.png, evaluate --per-row."""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from sirenvae.cli import app
from sirenvae.graph import BayesianNetwork, LatentSplit
from sirenvae.plots import graph_figure, layered_layout

runner = CliRunner()
PNG = b"\x89PNG\r\n\x1a\n"


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def error_line(result):
    text = (result.stderr if result.stderr else result.output).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    assert result.exit_code == 2
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("pics")
    (d / "g.csv").write_text("parent,child\nz,a\nz,b\na,b\nb,w\nw,c\n")
    g = np.random.default_rng(0)
    z = g.normal(size=80)
    a = 2 * z + 0.5 * g.normal(size=80)
    b = z - a + 0.5 * g.normal(size=80)
    c = 3 * np.tanh(b) + 0.5 * g.normal(size=80)
    pd.DataFrame({"a": a, "b": b, "c": c}).to_csv(d / "data.csv", index=False)
    return d


@pytest.fixture(scope="module")
def fitted(files):
    out = files / "run"
    r = run("fit", "--graph", files / "g.csv", "--data", files / "data.csv", "--out", out, "--epochs", 6)
    assert r.exit_code == 0, r.output
    return out


def test_graph_command_draws_and_never_overwrites(files, tmp_path):
    out = tmp_path / "graph.png"
    r = run("graph", "--graph", files / "g.csv", "--latent", "z, w", "-o", out)
    assert r.exit_code == 0, r.output
    assert "2 latent: z, w" in r.stderr and out.read_bytes().startswith(PNG)
    before = out.read_bytes()
    r = run("graph", "--network", "ecoli70", "-o", out)
    assert "already exists; pass --force" in error_line(r) and out.read_bytes() == before
    r = run("graph", "--network", "ecoli70", "-o", out, "--force")
    assert r.exit_code == 0, r.output
    assert "22 latent" in r.stderr and out.read_bytes() != before and out.read_bytes().startswith(PNG)
    svg, pdf = tmp_path / "g.svg", tmp_path / "g.pdf"
    assert run("graph", "--graph", files / "g.csv", "--latent", "z", "-o", svg).exit_code == 0
    assert "<svg" in svg.read_text()
    declared = tmp_path / "declared.json"  # a JSON graph's "latent" list acts as --latent, as in fit
    declared.write_text(json.dumps({"nodes": {"z": [], "x": ["z"], "y": ["z", "x"]}, "latent": ["z"]}))
    r = run("graph", "--graph", declared, "-o", tmp_path / "declared.png")
    assert r.exit_code == 0 and "1 latent: z" in r.stderr and "no observed descendant" not in r.stderr, (
        r.output
    )
    blind = {"nodes": {"z": [], "x": ["z"], "d": ["z"]}, "latent": ["z", "d"]}  # d: a latent leaf
    declared.write_text(json.dumps(blind))
    r = run("graph", "--graph", declared, "-o", tmp_path / "blind.png")
    assert r.exit_code == 0 and "latent node(s) d have no observed descendant" in r.stderr, r.output
    r = run("graph", "--graph", files / "g.csv", "-o", pdf)  # no latent set: the graph alone
    assert r.exit_code == 0 and "--latent" in r.stderr and pdf.read_bytes().startswith(b"%PDF")
    cases = [
        (["--graph", files / "g.csv", "-o", tmp_path / "g.jpg"], "must end in .png, .svg, .pdf"),
        (["--graph", files / "g.csv", "-o", tmp_path], "is a directory"),
        (["--graph", files / "g.csv", "-o", tmp_path / "no" / "g.png"], "does not exist"),
        (["-o", tmp_path / "x.png"], "exactly one of --network"),
        (["--graph", files / "g.csv", "--latent", "zz", "-o", tmp_path / "x.png"], "unknown node 'zz'"),
        (["--graph", files / "nope.csv", "-o", tmp_path / "x.png"], "not found"),
    ]
    for args, match in cases:
        assert match in error_line(run("graph", *args)), args
    assert not (tmp_path / "x.png").exists()


def test_layout_puts_parents_above_children():
    bn = BayesianNetwork({"z": [], "a": ["z"], "b": ["z", "a"], "w": ["b"], "c": ["w"], "d": []})
    pos = layered_layout(bn)
    assert all(pos[p][1] > pos[c][1] for p, c in bn.edges)
    assert len(set(pos.values())) == len(bn)  # no two nodes on one spot
    inv_pos = layered_layout(bn, first=LatentSplit(bn, ["z", "w"]).observed)
    assert {pos[1] for v, pos in inv_pos.items() if v not in ("z", "w")} == {0.0}


def test_run_directory_has_history_and_training_curve(fitted):
    history = pd.read_csv(fitted / "history.csv")
    saved = json.loads((fitted / "model.json").read_text())["history"]
    assert list(history.columns) == ["epoch", "train_loss", "valid_loss"]
    assert list(history.epoch) == list(range(6))
    np.testing.assert_allclose(history.train_loss, saved["train_loss"])
    np.testing.assert_allclose(history.valid_loss, saved["valid_loss"])
    assert (fitted / "training.png").read_bytes().startswith(PNG)


def test_evaluate_per_row(fitted, files, tmp_path):
    rows = tmp_path / "rows.csv"
    r = run("evaluate", fitted, "--data", files / "data.csv", "-k", 8, "--json", "--per-row", rows)
    assert r.exit_code == 0, r.output
    metrics = json.loads(r.stdout)  # stdout stays pure JSON
    per_row = pd.read_csv(rows)
    assert list(per_row.columns) == ["row", "nll", "neg_elbo", "ess", "missing"]
    assert list(per_row.row) == list(range(1, 81))
    assert per_row.nll.mean() == pytest.approx(metrics["nll"], rel=1e-5)
    assert per_row.neg_elbo.mean() == pytest.approx(metrics["neg_elbo"], rel=1e-5)
    assert per_row.nll.mean() <= per_row.neg_elbo.mean()
    before = rows.read_bytes()
    r = run("evaluate", fitted, "--data", files / "data.csv", "-k", 8, "--per-row", rows)
    assert "already exists" in error_line(r) and rows.read_bytes() == before
    r = run("evaluate", fitted, "--data", files / "data.csv", "-k", 2, "--per-row", files / "data.csv")
    assert "is also the input --data" in error_line(r)
    r = run("evaluate", fitted, "--data", files / "data.csv", "-k", 2, "--per-row", tmp_path)
    assert "is a directory" in error_line(r)
    table = tmp_path / "table.csv"
    r = run("evaluate", fitted, "--data", files / "data.csv", "-k", 2, "--per-row", table)
    assert r.exit_code == 0 and "each of the 80 rows" in r.stderr and len(pd.read_csv(table)) == 80


def test_a_large_graph_is_drawn_as_a_bounded_overview():
    from sirenvae.plots import LABELLED_NODES, graph_figure

    # 600 nodes, one wide layer of 300 roots: laid out in one row it would be ~1,000 inches wide
    names = [f"v{i}" for i in range(600)]
    parents = {v: sorted({names[i - 300], names[(7 * i + 1) % 300]}) for i, v in enumerate(names) if i >= 300}
    bn = BayesianNetwork({v: parents.get(v, []) for v in names})
    assert len(bn) > LABELLED_NODES
    fig = graph_figure(LatentSplit(bn, names[:300:3]))
    width, height = fig.get_size_inches()
    assert width <= 20 and height <= 14
    for ax in fig.axes:
        assert not ax.texts  # no labels
        xs = ax.collections[1].get_offsets()[:, 0]
        assert xs.max() - xs.min() < 60  # the wide layer is folded into rows
    shaded = fig.axes[0].collections[1].get_facecolors()
    assert len({tuple(c) for c in shaded}) == 2  # latent and observed told apart


def test_graph_of_a_run_or_of_a_csv_header(fitted, files, tmp_path):
    # the latent nodes of a run, or the nodes without a column, as fit infers them: z and w here
    from_run, from_csv = tmp_path / "run.png", tmp_path / "csv.png"
    r = run("graph", "--run", fitted, "-o", from_run)
    assert r.exit_code == 0 and "2 latent: z, w" in r.stderr, r.output
    r = run("graph", "--graph", files / "g.csv", "--data", files / "data.csv", "-o", from_csv)
    assert r.exit_code == 0 and "2 latent: z, w" in r.stderr, r.output
    assert from_run.read_bytes() == from_csv.read_bytes()
    cases = [
        (["--run", fitted, "--latent", "z"], "--run draws the run's own latent nodes"),
        (["--run", fitted, "--graph", files / "g.csv"], "exactly one of"),
        (["--network", "ecoli70", "--data", files / "data.csv"], "--data names the observed nodes"),
        (["--graph", files / "g.csv", "--data", files / "g.csv"], "no column of its header names a node"),
        (["--graph", files / "g.csv", "--data", tmp_path / "none.csv"], "no such file"),
        (["--run", tmp_path], "model.json"),
    ]
    for args, match in cases:
        assert match in error_line(run("graph", *args, "-o", tmp_path / "x.png")), args
    assert not (tmp_path / "x.png").exists()


def test_summed_hidden_nodes_have_their_own_colour_and_no_inverse():
    from sirenvae.plots import graph_figure

    bn = BayesianNetwork({"h": [], "z": [], "x": ["h", "z"], "y": ["z"]})
    split = LatentSplit(bn, ["h", "z"])

    def labels(fig):
        return [t.get_text() for t in fig.legends[0].get_texts()]

    both = graph_figure(split, summed=("h",))
    assert len(both.axes) == 2 and labels(both) == ["latent", "summed out", "observed"]
    assert "h" in [t.get_text() for t in both.axes[1].texts]  # an input of the encoder, not inferred
    alone = graph_figure(LatentSplit(bn, ["h"]), summed=("h",))
    assert len(alone.axes) == 1 and labels(alone) == ["summed out", "observed"]  # no encoder to draw
    plain = graph_figure(split)
    assert len(plain.axes) == 2 and labels(plain) == ["latent", "observed"]


def test_the_inverse_folds_its_observed_layer_to_the_networks_width():
    """A chain read by one latent: the network is one node wide, the inverse's observed layer 20;
    folded into rows of 8, the figure is not three times as wide as tall."""
    nodes = {"z": [], "x0": ["z"], **{f"x{i}": [f"x{i - 1}", "z"] for i in range(1, 20)}}
    fig = graph_figure(LatentSplit(BayesianNetwork(nodes), ["z"]))
    width, height = fig.get_size_inches()
    assert width < height
    rows = {round(t.get_position()[1], 3) for t in fig.axes[1].texts if t.get_text().startswith("x")}
    assert len(rows) == 3  # 8 + 8 + 4


def test_the_training_curve_names_a_loss_that_is_not_the_elbo():
    from sirenvae.plots import training_figure
    from sirenvae.training import History

    history = History(train_loss=[3.0, 2.0, 1.5], best_epoch=2, stopped="done")
    labels = [t.get_text() for t in training_figure(history).axes[0].get_legend().get_texts()]
    assert labels[0] == "training loss (-ELBO, β-weighted in warm-up)"
    exact = training_figure(history, train_label="training loss (exact NLL + head prior, per row)")
    assert exact.axes[0].get_legend().get_texts()[0].get_text().startswith("training loss (exact NLL")

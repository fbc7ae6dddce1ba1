import json
import math

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from sirenvae.cli import app

runner = CliRunner()
FAST = ["--epochs", "3", "--no-progress", "--settings", "paper"]


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def error_line(result):
    """The one ``error: ...`` line, the last of standard error (notes printed before it may precede it)."""
    text = (result.stderr if result.stderr else result.output).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], text
    assert "Traceback" not in result.output
    return lines[-1]


@pytest.fixture(scope="module")
def ecoli_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "true"
    result = run("fit", "--network", "ecoli70", "--train-size", 92, "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def observed_csv(ecoli_run, tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "obs.csv"
    samples = tmp_path_factory.mktemp("data") / "samples.csv"
    result = run("sample", ecoli_run, "-n", 12, "-o", samples)
    assert result.exit_code == 0, result.output
    from sirenvae.networks import load_network

    g = load_network("ecoli70").graph
    assert "wrote 12 samples of 46 nodes" in result.stderr and not result.stdout
    drawn = pd.read_csv(samples)
    assert list(drawn.columns) == list(g.nodes) and len(drawn) == 12
    assert np.isfinite(drawn.to_numpy()).all() and (drawn.std() > 0).all()
    pd.read_csv(samples)[list(g.leaves())].to_csv(path, index=False)
    return path


def test_happy_path(ecoli_run, observed_csv, tmp_path):
    result = run("evaluate", ecoli_run, "--test-size", 200, "-k", 20, "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["nll"] >= metrics["oracle_nll"] - 1
    assert metrics["nll"] <= metrics["neg_elbo"] + 1e-6 + 0.5
    table = run("evaluate", ecoli_run, "--data", observed_csv, "-k", 5)
    assert table.exit_code == 0 and "oracle NLL" in table.stdout
    out = tmp_path / "post.csv"
    result = run("posterior", ecoli_run, "--data", observed_csv, "-n", 4, "-o", out)
    assert result.exit_code == 0, result.output
    post = pd.read_csv(out)
    assert len(post) == 12 * 6 and list(post.columns[:2]) == ["row", "statistic"]
    assert set(post["statistic"]) == {"mean", "sd", "sample_1", "sample_2", "sample_3", "sample_4"}
    first = post[post.row == 1].set_index("statistic")
    samples_ = first.loc[[f"sample_{i}" for i in range(1, 5)]]
    assert (first.loc["mean"] - samples_.mean()).abs().max() < 1e-4
    result = run("networks")
    assert result.exit_code == 0 and "ecoli70" in result.stdout


def test_resume_of_a_finished_run_is_a_no_op(ecoli_run):
    files = {p.name: p.read_bytes() for p in ecoli_run.iterdir()}
    history = json.loads((ecoli_run / "model.json").read_text())["history"]
    result = run("fit", "--network", "ecoli70", "--train-size", 92, "--out", ecoli_run, "--resume", *FAST)
    assert result.exit_code == 0, result.output
    assert {p.name: p.read_bytes() for p in ecoli_run.iterdir()} == files  # nothing trained or rewritten
    # it reports the finished run's own history
    printed = " ".join(result.stdout.split())  # undo the console's line wrapping
    assert history["stopped"] == "reached max_epochs=3" and len(history["train_loss"]) == 3
    assert (
        f": 3 epochs (reached max_epochs=3), best validation -ELBO {history['best_valid_loss']:.3f} "
        f"at epoch {history['best_epoch']}; model in" in printed
    )


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_graph_errors(tmp_path, observed_csv):
    cyc = write(tmp_path, "cyc.csv", "parent,child\na,b\nb,c\nc,a\n")
    assert "cycle: " in error_line(
        r := run("fit", "--graph", cyc, "--data", observed_csv, "--out", tmp_path / "o")
    )
    assert r.exit_code == 2
    broken = write(tmp_path, "g.json", '{"nodes": [')
    r = run("fit", "--graph", broken, "--data", observed_csv, "--out", tmp_path / "o")
    assert r.exit_code == 2 and "not valid JSON" in error_line(r)
    r = run("fit", "--graph", tmp_path / "nope.json", "--data", observed_csv, "--out", tmp_path / "o")
    assert r.exit_code == 2 and "not found" in error_line(r)


def test_option_errors(tmp_path):
    cases = [
        (["fit", "--network", "ecoli70", "--train-size", 10, "--latent", "foo"], "unknown node 'foo'"),
        (["fit", "--network", "nope", "--train-size", 10], "unknown network 'nope'"),
        (["fit", "--train-size", 10], "exactly one of --network"),
        (["fit", "--network", "ecoli70"], "exactly one of --data"),
        (["fit", "--network", "ecoli70", "--train-size", 1], "at least 2"),
        (["fit", "--network", "ecoli70", "--train-size", 10, "--model", "big"], "unknown --model 'big'"),
        (["fit", "--network", "ecoli70", "--train-size", 10, "--latent", "lacA,lacA"], "twice"),
    ]
    for args, match in cases:
        r = run(*args, "--out", tmp_path / "o", *FAST)
        assert r.exit_code == 2, (args, r.output)
        assert match in error_line(r), (args, r.output)


def test_data_errors(tmp_path, ecoli_run, observed_csv):
    df = pd.read_csv(observed_csv).astype(object)
    variants = {
        "nomatch.csv": (df.assign(foo=1), "matches no node"),
        "null.csv": (df.copy().assign(**{df.columns[2]: ["NULL"] + list(df.iloc[1:, 2])}), "non-numeric"),
        "inf.csv": (df.copy().assign(**{df.columns[1]: list(df.iloc[:-1, 1]) + ["-inf"]}), "non-finite"),
        "text.csv": (df.copy().assign(**{df.columns[0]: ["x"] * len(df)}), "non-numeric"),
    }
    for name, (frame, match) in variants.items():
        path = tmp_path / name
        frame.to_csv(path, index=False)
        r = run("evaluate", ecoli_run, "--data", path, "-k", 2)
        assert r.exit_code == 2, (name, r.output)
        line = error_line(r)
        assert match in line and name in line, (name, line)
        if name in ("null.csv", "text.csv"):
            assert "row 1" in line and "column" in line
    # an absent column is missing in every row: the present ones are scored
    df.drop(columns=df.columns[0]).to_csv(tmp_path / "absent.csv", index=False)
    r = run("evaluate", ecoli_run, "--data", tmp_path / "absent.csv", "-k", 2, "--json")
    assert r.exit_code == 0 and f"no column for observed node(s) {df.columns[0]}" in r.output
    # a NaN cell is a hole: evaluate integrates it out, with the oracle's marginal of the present cells
    holey = df.copy().assign(**{df.columns[2]: ["nan"] + list(df.iloc[1:, 2])})
    holey.to_csv(tmp_path / "nan.csv", index=False)
    r = run("evaluate", ecoli_run, "--data", tmp_path / "nan.csv", "-k", 2, "--json")
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert math.isfinite(result["nll"]) and math.isfinite(result["oracle_nll"])
    # a column of a latent node (as `sample` writes) is ignored with a note, not an error
    df.assign(cspG=0.0).to_csv(tmp_path / "latent.csv", index=False)
    r = run("evaluate", ecoli_run, "--data", tmp_path / "latent.csv", "-k", 2)
    assert r.exit_code == 0 and "ignoring column(s) cspG of latent.csv: they are latent nodes" in r.stderr
    one = tmp_path / "one.csv"
    df.iloc[:1].to_csv(one, index=False)
    from sirenvae import graph_io
    from sirenvae.networks import load_network

    g = load_network("ecoli70").graph
    graph = tmp_path / "g.json"
    graph_io.to_json(g, graph)
    r = run("fit", "--graph", graph, "--data", one, "--out", tmp_path / "o", *FAST)
    assert r.exit_code == 2 and "at least 2 needed" in error_line(r)


def test_checkpoint_errors(tmp_path, ecoli_run):
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(ecoli_run, run_dir)
    meta = json.loads((run_dir / "model.json").read_text())
    tensors = run_dir / meta["tensors"]
    tensors.write_bytes(tensors.read_bytes()[:100])
    r = run("evaluate", run_dir, "--test-size", 5)
    assert r.exit_code == 2 and "corrupted or truncated" in error_line(r)
    (run_dir / "model.json").write_text(json.dumps(meta | {"sirenvae_version": "7.0.0"}))
    r = run("sample", run_dir, "-n", 3, "-o", tmp_path / "s.csv")
    assert r.exit_code == 2 and "written by sirenvae 7.0.0" in error_line(r)
    (run_dir / "model.json").write_text("{")
    r = run("posterior", run_dir, "--data", tmp_path / "x.csv", "-o", tmp_path / "p.csv")
    assert r.exit_code == 2 and "truncated or corrupted" in error_line(r)
    r = run("evaluate", tmp_path / "nowhere", "--test-size", 5)
    assert r.exit_code == 2 and "no checkpoint model.json" in error_line(r)
    r = run("fit", "--network", "ecoli70", "--train-size", 92, "--out", ecoli_run, *FAST)
    assert r.exit_code == 2 and "already holds a trained model" in error_line(r)
    r = run("sample", ecoli_run, "-n", 0, "-o", tmp_path / "s.csv")
    assert r.exit_code == 2 and "-n must be positive" in error_line(r)
    r = run("sample", ecoli_run, "-n", 3, "-o", tmp_path / "no" / "s.csv")
    assert r.exit_code == 2 and "does not exist" in error_line(r)


def test_without_o_the_csv_goes_to_standard_output(ecoli_run, observed_csv, tmp_path):
    import io

    from sirenvae.networks import load_network

    nodes = list(load_network("ecoli70").graph.nodes)
    drawn = run("sample", ecoli_run, "-n", 4, "--seed", 3)
    assert drawn.exit_code == 0 and "to standard output" in drawn.stderr
    filed = run("sample", ecoli_run, "-n", 4, "--seed", 3, "-o", tmp_path / "s.csv")
    assert filed.exit_code == 0 and not filed.stdout
    table = pd.read_csv(io.StringIO(drawn.stdout))
    assert list(table.columns) == nodes and table.equals(pd.read_csv(tmp_path / "s.csv"))
    post = run("posterior", ecoli_run, "--data", observed_csv, "-n", 3)
    assert post.exit_code == 0, post.output
    summary = pd.read_csv(io.StringIO(post.stdout))
    assert len(summary) == 12 * 5 and set(summary["statistic"]) == {
        "mean",
        "sd",
        *(f"sample_{i}" for i in (1, 2, 3)),
    }


def test_fit_sets_model_options_and_refuses_bad_ones(tmp_path):
    out = tmp_path / "lin"
    opts = ["--set", "conditioning=parents", "--set", "affine=true", "--set", "prior_blocks=0"]
    opts += ["--set", "encoder_blocks=0", "--set", "decoder_mean=linear", "--set", "likelihood=studentt"]
    result = run("fit", "--network", "ecoli70", "--train-size", 92, "--out", out, *FAST, *opts)
    assert result.exit_code == 0, result.output
    model = json.loads((out / "model.json").read_text())["model"]
    assert (model["conditioning"], model["affine"], model["prior_blocks"]) == ("parents", True, 0)
    assert (model["decoder_mean"], model["likelihood"]) == ("linear", "studentt")
    sampled = run("sample", out, "-n", 5, "-o", tmp_path / "s.csv")
    assert sampled.exit_code == 0, sampled.output
    base = ["fit", "--network", "ecoli70", "--train-size", 92, "--out", tmp_path / "x", *FAST]
    for bad, message in [
        ("wings=2", "unknown option 'wings' in --set"),
        ("lr=0.1", "--set lr: give it as --lr"),
        ("affine=maybe", "--set affine=maybe: expected true or false"),
        ("prior_blocks=two", "--set prior_blocks=two: expected a whole number"),
        ("conditioning=children", "conditioning must be one of ancestors, parents"),
        ("affine", "--set takes key=value"),
    ]:
        assert message in error_line(run(*base, "--set", bad)), bad

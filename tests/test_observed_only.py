"""A graph whose every node has a column: the true model is a model of the observed nodes alone."""

import json
import math

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from sirenvae.cli import app

runner = CliRunner()
LINEAR = ["conditioning=parents", "affine=true", "prior_blocks=0", "encoder_blocks=0", "decoder_mean=linear"]


def _chain(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    b = 1.5 * a + 0.5 * rng.normal(size=n)
    c = -0.8 * b + 0.3 * rng.normal(size=n)
    return pd.DataFrame({"a": a, "b": b, "c": c})


def _ols_nll(train: pd.DataFrame, test: pd.DataFrame) -> float:
    """The linear-Gaussian BN a -> b -> c fitted by least squares, its NLL per row on ``test``."""
    total = 0.0
    for child, parents in (("a", []), ("b", ["a"]), ("c", ["b"])):
        design = np.column_stack([np.ones(len(train)), *(train[p] for p in parents)])
        coef, *_ = np.linalg.lstsq(design, train[child], rcond=None)
        var = np.mean((train[child] - design @ coef) ** 2)
        fitted = np.column_stack([np.ones(len(test)), *(test[p] for p in parents)]) @ coef
        total += np.mean(0.5 * (test[child] - fitted) ** 2 / var + 0.5 * math.log(2 * math.pi * var))
    return total


def test_a_fully_observed_graph_fits_the_bn_and_refuses_what_needs_latents(tmp_path):
    graph = tmp_path / "g.json"
    graph.write_text(json.dumps({"nodes": [{"name": "a"}, {"name": "b", "parents": ["a"]},
                                           {"name": "c", "parents": ["b"]}]}))  # fmt: skip
    train, test = _chain(200, 0), _chain(2000, 1)
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    run = tmp_path / "run"
    sets = [arg for kv in LINEAR for arg in ("--set", kv)]
    data = str(tmp_path / "train.csv")
    args = ["--settings", "paper", "--no-progress", *sets]
    r = runner.invoke(app, ["fit", "--graph", str(graph), "--data", data, "--out", str(run), *args])
    assert r.exit_code == 0, r.output
    assert "latent nodes (0" in r.output and json.loads((run / "model.json").read_text())["latent"] == []
    r = runner.invoke(app, ["evaluate", str(run), "--data", str(tmp_path / "test.csv"), "-k", "2"])
    assert r.exit_code == 0, r.output
    nll = float(next(line for line in r.output.splitlines() if "true" in line).split("│")[2])
    assert "oracle" not in r.output  # known for a shipped network only: no empty column
    assert abs(nll - _ols_nll(train, test)) < 0.05  # the likelihood is exact: no bound to loosen
    r = runner.invoke(
        app, ["posterior", str(run), "--data", str(tmp_path / "test.csv"), "-o", str(tmp_path / "p.csv")]
    )
    assert r.exit_code == 2 and "has no latent node" in r.output
    r = runner.invoke(app, ["effect", str(run), "--target", "c", "--do", "a=1", "--vs", "a=0", "-n", "2000"])
    assert r.exit_code == 0 and "identified" in r.output, r.output
    effect = float(r.output.split("=")[3].split()[0])
    assert abs(effect - 1.5 * -0.8) < 0.1
    r = runner.invoke(app, ["fit", "--graph", str(graph), "--data", str(tmp_path / "train.csv"),
                            "--out", str(tmp_path / "vae"), "--model", "vae", "--no-progress"])  # fmt: skip
    assert r.exit_code == 2 and "differs from 'true' in its latents alone" in r.output
    quick = ["--outer-folds", "2", "--max-candidates", "1", "--epochs", "3", "--no-progress"]
    r = runner.invoke(
        app, ["compare", "--graph", str(graph), "--data", data, "-o", str(tmp_path / "c.csv"), *quick]
    )
    assert r.exit_code == 0, r.output
    assert "fc, vae left out: the graph has no latent node" in r.output
    assert list(pd.read_csv(tmp_path / "c.csv").model) == ["true", "fa", "lw"]

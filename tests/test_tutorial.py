"""docs/tutorial.md runs as written: its bash and python blocks in order, in a fresh directory.

Bash blocks run in a subprocess (``set -euo pipefail``) whose ``sirenvae`` is this Python's
``python -m sirenvae`` on this checkout's sources; python blocks run in one shared namespace with
the same directory as working directory. Then the files the tutorial promises are checked.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sirenvae.experiments.runner import torch_threads

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "docs" / "tutorial.md"
BLOCKS = re.findall(r"^```(bash|python|text)\n(.*?)^```$", TUTORIAL.read_text(), re.S | re.M)
NODES = ["sun", "water", "vigor", "blight", "height", "leaf_area", "spots", "harvest"]


def environment(tmp_path: Path) -> dict:
    """PATH with a ``sirenvae`` that runs this checkout, then this Python's own bin directory."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "sirenvae"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m sirenvae "$@"\n')
    shim.chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(ROOT / "src"), env.get("PYTHONPATH")] if p)
    env["COLUMNS"] = "100"  # rich wraps its lines to the terminal width
    return env


def test_tutorial_covers_every_command():
    code = "\n".join(c for lang, c in BLOCKS if lang == "bash")
    for command in ("graph", "fit", "evaluate", "posterior", "sample", "impute"):
        assert f"sirenvae {command} " in code, command
    assert "--per-row" in code and "--id-column" in code
    python = "\n".join(c for lang, c in BLOCKS if lang == "python")
    assert "sirenvae.load(" in python and "sirenvae.fit(" in python
    text = " ".join(TUTORIAL.read_text().split())
    assert "identified only up to sign, scale and monotone maps" in text
    assert "--threads" in text and "log" in text


def test_tutorial_runs(tmp_path, monkeypatch):
    env = environment(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    namespace: dict = {"__name__": "tutorial"}
    outputs = []  # (code, output) of each bash block
    with torch_threads(1):
        for i, (lang, code) in enumerate(BLOCKS):
            if lang == "bash":
                r = subprocess.run(
                    ["bash", "-c", "set -euo pipefail\n" + code],
                    cwd=work,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                assert r.returncode == 0, f"block {i} failed:\n{code}\n{r.stdout}\n{r.stderr}"
                outputs.append((code, r.stdout + r.stderr))
            elif lang == "python":
                exec(compile(code, f"{TUTORIAL}, block {i}", "exec"), namespace)
    said = " ".join(" ".join(out.split()) for _, out in outputs)

    # the pictures
    for picture in (work / "graph.png", work / "run" / "training.png"):
        assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and picture.stat().st_size > 10_000
    assert "drew 8 nodes (2 latent: vigor, blight) and the faithful inverse to graph.png" in said
    # the data and the run
    assert list(pd.read_csv(work / "train.csv").columns) == [
        "plot", "sun", "water", "height", "leaf_area", "spots", "harvest"
    ]  # fmt: skip
    assert "latent nodes (2, nodes without a column): vigor, blight" in said
    history = pd.read_csv(work / "run" / "history.csv")
    assert list(history.columns) == ["epoch", "train_loss", "valid_loss"] and len(history) == 40
    assert history.valid_loss.iloc[-1] < history.valid_loss.iloc[0] - 1  # it learnt something
    # evaluation, per row with the IDs, and the posterior with them
    rows = pd.read_csv(work / "rows.csv")
    assert list(rows.columns) == ["row", "plot", "nll", "neg_elbo", "ess", "missing"]
    assert list(rows.row) == list(range(1, 101)) and rows["plot"].iloc[0] == "P500"
    assert np.isfinite(rows[["nll", "neg_elbo", "ess"]].to_numpy()).all() and (rows.missing == 0).all()
    # holes: evaluated on the present cells, filled without touching the others
    holey, filled = pd.read_csv(work / "holey.csv"), pd.read_csv(work / "filled.csv")
    assert "of cells missing" in said and "imputed 45 missing cell(s)" in said
    assert list(filled.columns[:7]) == list(holey.columns) and not filled.isna().any().any()
    for column in holey.columns:
        kept = holey[column].notna()
        assert (filled.loc[kept, column] == holey.loc[kept, column]).all(), column
    assert (filled.loc[holey.height.isna(), "height_sd"] > 0).all()
    assert (filled.loc[holey.height.notna(), "height_sd"] == 0).all()
    post = pd.read_csv(work / "posterior.csv")
    assert list(post.columns) == ["row", "plot", "statistic", "vigor", "blight"] and len(post) == 100 * 52
    samples = pd.read_csv(work / "samples.csv")
    assert list(samples.columns) == NODES and len(samples) == 1000
    assert "note: ignoring column(s) vigor, blight of samples.csv: they are latent nodes" in said
    # the Python API: the claims the tutorial makes about its numbers
    assert namespace["log_p"].index.equals(namespace["new"].index)
    assert namespace["log_p"].mean() >= -namespace["neg_elbo"].mean() - 0.05  # IWAE above the ELBO
    correlation = namespace["means"].corrwith(namespace["hidden"])
    assert (correlation.abs() > 0.8).all(), correlation
    assert list(namespace["samples"].columns) == NODES
    assert namespace["quick"].latent == ("vigor", "blight")
    # the mixed table: types decided and said, labels in and out
    assert "column 'smoker' has 2 distinct values: modelled as binary, 1 = 'yes'" in said
    assert "one candidate (linear) and no classical model to score beside it" in said
    meta = json.loads((work / "clinic" / "model.json").read_text())
    assert meta["variables"]["region"]["levels"] == ["north", "south", "east"]
    assert meta["model"]["types"] == {"region": "categorical:3", "smoker": "binary", "visits": "negbin",
                                      "income": "lognormal"}  # fmt: skip
    drawn = pd.read_csv(work / "clinic_samples.csv")
    assert set(drawn.smoker) <= {"yes", "no"} and set(drawn.region) <= {"north", "south", "east"}
    assert drawn.visits.dtype == np.int64 and (drawn.visits >= 0).all() and (drawn.income > 0).all()
    holey, filled = pd.read_csv(work / "clinic_holey.csv"), pd.read_csv(work / "clinic_filled.csv")
    assert filled.smoker.isin(["yes", "no"]).all() and not filled.isna().any().any()
    kept = holey.smoker.notna()
    assert (filled.smoker[kept] == holey.smoker[kept]).all()
    assert "P(smoker | do(region=east)) against do(region=north)" in said and "smoker = yes:" in said


@pytest.mark.parametrize("lang", ["bash", "python"])
def test_blocks_are_found(lang):
    assert sum(1 for kind, _ in BLOCKS if kind == lang) >= 3

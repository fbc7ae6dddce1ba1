"""What each flag means and where each line goes: results on standard output, notes on standard error.

``--force`` only overwrites an output file; ``--allow-unidentified`` answers a causal query that is
not identified. Results (tables, ``--json``) are all of standard output; notes, progress and
"wrote ..." lines go to standard error; neither is wrapped at 80 columns when not on a terminal.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from helpers import small_network
from sirenvae import graph_io
from test_cli import error_line, run

ROOT = Path(__file__).resolve().parents[1]
UNIDENTIFIED = ["--do", "z1=q0.9"]  # an intervention on a latent: never identified


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A parent-conditioned run on the small graph (z1, z2 latent) fitted as a user's default fit
    (settings chosen on the rows), with its rows with (all.csv) and without (obs.csv) the latents.
    """
    d = tmp_path_factory.mktemp("streams")
    net = small_network()
    graph_io.to_json(net.graph, d / "g.json")
    frame = pd.DataFrame(net.sample(120, seed=0).numpy(), columns=list(net.graph.nodes))
    frame.to_csv(d / "all.csv", index=False)
    frame[["x1", "x2", "x3"]].to_csv(d / "obs.csv", index=False)
    search = ["--max-candidates", 1, "--folds", 2, "--workers", 1]
    fit = run(
        "fit", "--graph", d / "g.json", "--data", d / "obs.csv", "--out", d / "run",
        "--epochs", 2, "--no-progress", *search, "--set", "conditioning=parents",
    )  # fmt: skip
    assert fit.exit_code == 0, fit.output
    return SimpleNamespace(dir=d, run=d / "run", fit=fit)


def test_force_only_overwrites_and_allow_unidentified_answers(small, tmp_path):
    out = tmp_path / "do.csv"
    sample = ["sample", small.run, "-n", 5, *UNIDENTIFIED, "-o", out]
    line = error_line(r := run(*sample))
    assert r.exit_code == 2 and "not identified" in line and "pass --allow-unidentified" in line
    assert "allow_unidentified=True" not in line and not out.exists()
    # --force no longer answers it, and the refusal names the flag that does
    line = error_line(r := run(*sample, "--force"))
    assert r.exit_code == 2 and "pass --allow-unidentified" in line and "--force only overwrites" in line
    assert not out.exists()
    r = run(*sample, "--allow-unidentified")
    assert r.exit_code == 0, r.output
    assert "model-dependent: not identified" in r.stderr and len(pd.read_csv(out)) == 5
    # --allow-unidentified does not overwrite; --force still does, with or without a query
    line = error_line(r := run(*sample, "--allow-unidentified"))
    assert r.exit_code == 2 and "already exists; pass --force to overwrite it" in line
    r = run("sample", small.run, "-n", 7, *UNIDENTIFIED, "-o", out, "--allow-unidentified", "--force")
    assert r.exit_code == 0 and len(pd.read_csv(out)) == 7, r.output
    r = run("sample", small.run, "-n", 3, "--do", "x3=0", "-o", out, "--force")  # x3 has no children
    assert r.exit_code == 0 and "identified" in r.stderr and len(pd.read_csv(out)) == 3, r.output
    r = run("sample", small.run, "-n", 4, "-o", out, "--force")
    assert r.exit_code == 0 and len(pd.read_csv(out)) == 4, r.output
    line = error_line(r := run("sample", small.run, "-n", 4, "-o", out, "--force", "--allow-unidentified"))
    assert r.exit_code == 2 and "--allow-unidentified applies to a causal query" in line


def test_effect_answers_unidentified_queries_with_allow_unidentified_only(small):
    effect = ["effect", small.run, "--target", "x3", *UNIDENTIFIED, "-n", 50]
    line = error_line(r := run(*effect))
    assert r.exit_code == 2 and "pass --allow-unidentified" in line
    # effect writes no file: its --force of old is refused and names the flag to use
    line = error_line(r := run(*effect, "--force"))
    assert r.exit_code == 2 and "--allow-unidentified" in line
    assert "--force" not in run("effect", "--help").output
    r = run(*effect, "--allow-unidentified", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["causal"] == "model-dependent"  # the JSON alone on standard output
    assert "note: latent values are in the model's own units" in r.stderr
    r = run(*effect, "--allow-unidentified")
    assert r.exit_code == 0 and "model-dependent" in r.stdout and "model's own units" in r.stderr


def test_results_go_to_stdout_and_notes_to_stderr(small, tmp_path):
    # fit: the settings search's table, its verdict and the final line are the result
    assert "CV NLL" in small.fit.stdout and "nats per row" in small.fit.stdout
    assert "done in " in small.fit.stdout and "latent nodes" not in small.fit.stdout
    assert "latent nodes (2, nodes without a column): z1, z2" in small.fit.stderr
    # --json: standard output parses as JSON (nothing else is on it); the notes are on stderr
    rows = tmp_path / "rows.csv"
    r = run("evaluate", small.run, "--data", small.dir / "all.csv", "-k", 2, "--json", "--per-row", rows)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["rows"] == 120
    assert "note: ignoring column(s) z1, z2 of all.csv" in r.stderr and f"to {rows}" in r.stderr
    r = run("evaluate", small.run, "--data", small.dir / "obs.csv", "-k", 2)
    assert r.exit_code == 0 and "-ELBO" in r.stdout and not r.stderr, r.output
    # commands whose result is a file print only notes
    for args, said in [
        (["sample", small.run, "-n", 3, "-o", tmp_path / "s.csv"], "wrote 3 samples"),
        (["posterior", small.run, "--data", small.dir / "all.csv", "-n", 2, "-o", tmp_path / "p.csv"],
         "wrote posterior summaries"),
        (["counterfactual", small.run, "--data", small.dir / "obs.csv", "--do", "x1=0", "-n", 2,
          "-o", tmp_path / "cf.csv"], "wrote counterfactual summaries"),
    ]:  # fmt: skip
        r = run(*args)
        assert r.exit_code == 0, (args, r.output)
        assert r.stdout == "" and said in r.stderr, (args, r.stdout)


def test_long_paths_and_table_rows_are_not_wrapped_when_captured(small, tmp_path):
    deep = tmp_path / ("a-directory-with-a-rather-long-name-" * 3) / ("and-one-more-level-" * 3)
    deep.mkdir(parents=True)
    shutil.copytree(small.run, deep / "run")
    r = run("evaluate", deep / "run", "--data", small.dir / "obs.csv", "-k", 2)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"{deep / 'run'}: 120 rows"), r.stdout  # the table's title, whole
    assert len({len(line) for line in lines[1:-1]}) == 1, r.stdout  # every row of the table is one line
    assert lines[-1].startswith("NLL (IWAE) and -ELBO: nats per row") and lines[-1].endswith("same rows only")
    # a separate process writing into pipes, as in a CI log (no COLUMNS to lean on)
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(ROOT / "src"), env.get("PYTHONPATH")] if p)
    out = deep / "samples.csv"
    p = subprocess.run(
        [sys.executable, "-m", "sirenvae", "sample", deep / "run", "-n", "3", "-o", out],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert p.stdout == "" and f"wrote 3 samples of 5 nodes to {out}\n" in p.stderr, p.stderr

"""Settings chosen on the user's rows (``--settings auto``): folds, rules, racing, resume, workers."""

import contextlib
import json
import os
import re
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import sirenvae
from sirenvae import parallel
from sirenvae import selection as S
from sirenvae.candidates import CANDIDATES
from sirenvae.graph import BayesianNetwork, LatentSplit
from sirenvae.pipeline import TrainOptions
from sirenvae.training import FitConfig

BN = BayesianNetwork({"z": [], "a": ["z"], "b": ["z", "a"], "c": ["b"], "d": ["z"]})
SPLIT = LatentSplit(BN, ["z"])
TINY = FitConfig(max_epochs=3, batch_size=16, seed=0)
NO_WARMUP = TrainOptions(warmup_steps=0)


def rows(n: int, seed: int = 0) -> torch.Tensor:
    g = np.random.default_rng(seed)
    z = g.normal(size=n)
    a = 2 * z + 0.5 * g.normal(size=n)
    b = z - a + 0.5 * g.normal(size=n)
    c = 3 * b + g.normal(size=n)
    d = z + 0.3 * g.normal(size=n)
    cols = {"a": a, "b": b, "c": c, "d": d}
    return torch.as_tensor(np.stack([cols[v] for v in SPLIT.observed], 1), dtype=torch.float32)


def run(x, **settings):
    kw = {k: settings.pop(k) for k in ("fixed", "directory") if k in settings}
    return S.select(
        SPLIT, x, "true", fit_config=TINY, options=NO_WARMUP, settings=S.SelectionSettings(**settings), **kw
    )


def test_the_rule_for_k_and_the_fewest_rows():
    assert [S.default_folds(n) for n in (10, 99, 100, 5000)] == [5, 5, 3, 3]
    assert S.min_rows(5) == 10 and S.min_rows(3) == 12
    with pytest.raises(S.SelectionError, match="at least 10 rows for 5-fold.*got 9.*--settings paper"):
        run(rows(9))


def test_folds_partition_the_rows_and_depend_on_the_seed_only():
    parts = S.fold_indices(23, 5, seed=4)
    together = np.sort(np.concatenate(parts))
    assert together.tolist() == list(range(23)) and {len(p) for p in parts} == {4, 5}
    assert all((a == b).all() for a, b in zip(parts, S.fold_indices(23, 5, seed=4), strict=True))
    assert any((a != b).any() for a, b in zip(parts, S.fold_indices(23, 5, seed=5), strict=True))


def test_every_structured_candidate_is_parent_conditioned_and_the_lists_have_one_size():
    # the same budget for every variant; `tables` exists only where hidden nodes are summed (true)
    assert len({len(S.resolve_candidates(v)[0]) for v in CANDIDATES}) == 1
    for variant in ("true", "fc", "ind"):
        configs, _ = S.resolve_candidates(variant)
        assert all(c.conditioning == "parents" and c.affine for _, c in configs)
        assert configs[0][1].prior_blocks == 0 and configs[0][1].decoder_mean == "linear"  # simplest first


def test_fixed_fields_are_set_in_every_candidate_and_duplicates_are_tried_once():
    fixed = {"prior_blocks": 0, "encoder_blocks": 0, "decoder_mean": "linear"}
    configs, notices = S.resolve_candidates("true", fixed)
    assert [c.name for c, _ in configs] == ["linear", "linear-t"]
    assert all(c.prior_blocks == 0 and c.decoder_mean == "linear" for _, c in configs)
    assert any("'flow' is the same as 'linear'" in n for n in notices)
    # a fixed field that makes a candidate invalid leaves it out, with a notice
    configs, notices = S.resolve_candidates("true", {"affine": False})
    assert [c.name for c, _ in configs] == ["flow", "flow-t"] and len(notices) == 2
    with pytest.raises(S.SelectionError, match="no candidate"):
        S.resolve_candidates("true", {"affine": False, "prior_blocks": 0})
    assert len(S.resolve_candidates("vae", max_candidates=2)[0]) == 2


def summary(*scores):
    return [{"candidate": f"c{i}", "status": "ok", "cv_nll": m, "se": se} for i, (m, se) in enumerate(scores)]


def test_few_rows_prefer_the_simplest_candidate_within_one_standard_error():
    s = summary((10.4, 0.5), (10.0, 0.5), (10.2, 0.1))
    assert S.choose(s, n=30)[0] == 0  # 10.4 <= 10.0 + 0.5: the simplest within one se
    assert S.choose(s, n=40)[0] == 1  # enough rows: the best
    assert S.choose(summary((10.6, 0.5), (10.0, 0.5)), n=30)[0] == 1
    s[1]["status"] = "failed"
    assert S.choose(s, n=60)[0] == 2


def test_few_rows_take_a_flexible_choice_in_its_student_t_form():
    names = ("linear", "linear-t", "flow", "flow-t")
    s = summary((4.0, 0.2), (4.0, 0.2), (3.2, 0.3), (3.4, 0.3))
    for row, name in zip(s, names, strict=True):
        row["candidate"] = name
    pick, rule = S.choose(s, n=16)
    assert names[pick] == "flow-t" and "flow taken in its Student-t form (flow-t)" in rule
    assert names[S.choose(s, n=40)[0]] == "flow"  # enough rows: the best as it is
    s[3]["status"] = "failed"  # no finished t form: the choice stands
    assert names[S.choose(s, n=16)[0]] == "flow"
    s[3]["status"] = "ok"
    s[2]["cv_nll"], s[3]["cv_nll"] = 3.8, 3.9  # linear within one se: it keeps its Gaussian noise
    assert names[S.choose(s, n=16)[0]] == "linear"
    vae = summary((4.0, 0.1), (4.1, 0.1), (3.0, 0.1), (3.5, 0.1))
    for row, name in zip(vae, ("linear", "linear-t", "mlp", "mlp-t"), strict=True):
        row["candidate"] = name
    assert vae[S.choose(vae, n=30)[0]]["candidate"] == "mlp-t"


def test_racing_stops_a_candidate_that_trails_by_more_than_two_standard_errors():
    g = np.random.default_rng(0)
    parts = [np.arange(i * 20, (i + 1) * 20) for i in range(2)]
    base = g.normal(10, 3, size=40)
    results = {}
    for c, shift in enumerate([0.0, 0.05, 1.0]):  # the paired noise is small: 1 nat is many se
        values = base + shift + g.normal(0, 0.2, size=40)
        for f, held in enumerate(parts):
            results[c, f] = {"status": "ok", "nll": values[held].tolist()}
    live = {0: "ok", 1: "ok", 2: "ok"}
    S._race(results, live, parts, race_se=2.0, done=2)
    assert live == {0: "ok", 1: "ok", 2: "stopped after 2 folds"}


def test_select_scores_every_row_once_and_the_classical_models_on_the_same_folds():
    x = rows(50)
    out = run(x, max_candidates=2)
    assert out.folds == 5 and out.rows == 50
    table = pd.DataFrame(out.table)
    for name, group in table.groupby("candidate"):
        assert group["rows"].sum() == 50 if len(group) == 5 else True, name
    assert {"fa", "lw"} <= set(table.candidate)
    assert set(out.per_row) >= {"fa", "lw"} and all(np.isfinite(v).all() for v in out.per_row.values())
    chosen = next(r for r in out.candidates if r.get("chosen"))
    assert chosen["candidate"] == out.chosen and chosen["status"] == "ok"
    # the candidate's CV NLL is the mean of its held-out rows' NLL
    assert np.isclose(chosen["cv_nll"], out.per_row[out.chosen].mean())
    assert out.config.conditioning == "parents"
    # every other model is compared with the chosen one on the same rows (paired)
    for row in out.classical:
        assert np.isclose(row["vs_chosen"], (out.per_row[row["candidate"]] - out.per_row[out.chosen]).mean())
    for row in out.candidates:
        if row["candidate"] != out.chosen and row["status"] == "ok":
            d = out.per_row[row["candidate"]] - out.per_row[out.chosen]
            assert np.isclose(row["vs_chosen"], d.mean()) and np.isclose(
                row["vs_se"], d.std(ddof=1) / 50**0.5
            )


def test_the_outcome_does_not_depend_on_the_workers():
    x = rows(40, seed=1)
    one, two = run(x, workers=1), run(x, workers=2)
    assert one.chosen == two.chosen
    a, b = pd.DataFrame(one.table), pd.DataFrame(two.table)
    key = ["candidate", "fold"]
    a, b = a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a.drop(columns="seconds"), b.drop(columns="seconds"))
    assert [r["status"] for r in one.candidates] == [r["status"] for r in two.candidates]


def test_a_killed_search_resumes_from_its_finished_folds(tmp_path, monkeypatch):
    x = rows(30)
    first = run(x, max_candidates=2, directory=tmp_path)
    files = sorted((tmp_path / "selection").glob("*.json"))
    assert len(files) == 10
    files[3].unlink()  # as if killed before this fold finished
    calls = []
    real = parallel.fit_fold
    monkeypatch.setattr(parallel, "fit_fold", lambda task: calls.append(task) or real(task))
    again = run(x, max_candidates=2, directory=tmp_path)
    assert len(calls) == 1
    assert again.chosen == first.chosen
    assert [r["cv_nll"] for r in again.candidates] == [r["cv_nll"] for r in first.candidates]
    # other training settings are another search: nothing is reused
    calls.clear()
    S.select(
        SPLIT, x, "true", fit_config=FitConfig(max_epochs=2, batch_size=16), options=NO_WARMUP,
        settings=S.SelectionSettings(max_candidates=1), directory=tmp_path,
    )  # fmt: skip
    assert len(calls) == 5


def test_api_fit_auto_records_how_the_settings_were_chosen(tmp_path):
    df = pd.DataFrame(rows(30).numpy(), columns=list(SPLIT.observed))
    m = sirenvae.fit(BN, df, out=tmp_path / "run", max_epochs=3, warmup_steps=0, max_candidates=2)
    assert m.settings["settings"] == "auto" and m.search.chosen == m.settings["chosen"]
    sel = m.selection
    assert list(sel.columns) == ["candidate", "fold", "rows", "nll", "epochs", "seconds", "status"]
    assert set(sel.candidate) >= {"linear", "fa", "lw"}
    on_disk = pd.read_csv(tmp_path / "run" / "selection.csv")
    assert len(on_disk) == len(sel)
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    assert meta["settings"]["chosen"] in {"linear", "linear-t"}
    assert meta["model"]["conditioning"] == "parents"
    loaded = sirenvae.load(tmp_path / "run")
    assert loaded.selection.equals(sel)
    # an unfinished search is not replaced silently
    with pytest.raises(ValueError, match="already holds a run"):
        sirenvae.fit(BN, df, out=tmp_path / "run", max_epochs=3, warmup_steps=0, max_candidates=2)


def test_paper_and_a_settings_file(tmp_path):
    df = pd.DataFrame(rows(20).numpy(), columns=list(SPLIT.observed))
    paper = sirenvae.fit(BN, df, settings="paper", max_epochs=2, warmup_steps=0)
    assert paper.selection is None and paper.settings == {"settings": "paper"}
    assert paper.model.config.conditioning == "ancestors"
    path = tmp_path / "chosen.json"
    path.write_text(json.dumps({"conditioning": "parents", "affine": True, "prior_blocks": 0}))
    m = sirenvae.fit(BN, df, settings=path, max_epochs=2, warmup_steps=0)
    assert m.model.config.prior_blocks == 0 and m.settings["settings"] == "file"
    path.write_text(json.dumps({"model": {"variant": "vae"}}))
    with pytest.raises(ValueError, match="settings of model 'vae', not 'true'"):
        sirenvae.fit(BN, df, settings=path, max_epochs=2)
    path.write_text(json.dumps({"no_such_option": 1}))
    with pytest.raises(ValueError, match="unknown model option.*no_such_option"):
        sirenvae.fit(BN, df, settings=path, max_epochs=2)


def test_large_graphs_try_fewer_candidates_and_say_so():
    assert S.large_graph_candidates(100, None) == (None, None)
    most, notice = S.large_graph_candidates(S.LARGE_GRAPH, None)
    assert most == 2 and f"{S.LARGE_GRAPH} nodes" in notice and "--max-candidates" in notice
    assert S.large_graph_candidates(5000, 3) == (3, None)  # the user's bound wins


def test_cli_fit_chooses_by_default_and_prints_the_candidates_beside_the_classical_floor(tmp_path):
    from sirenvae.graph_io import to_dict
    from test_cli import error_line
    from test_cli import run as cli

    (tmp_path / "g.json").write_text(json.dumps(to_dict(BN)))
    pd.DataFrame(rows(30).numpy(), columns=list(SPLIT.observed)).to_csv(tmp_path / "d.csv", index=False)
    base = ["fit", "--graph", tmp_path / "g.json", "--data", tmp_path / "d.csv", "--epochs", 2]
    r = cli(*base, "--out", tmp_path / "run", "--max-candidates", 2, "--workers", 1)
    assert r.exit_code == 0, r.output
    said = " ".join(r.stdout.split())
    assert "(chosen)" in said and "factor analysis" in said and "Ledoit-Wolf" in said
    assert "fewer than 40 rows" in said and "nats per row" in said
    frame = pd.read_csv(tmp_path / "run" / "selection.csv")
    assert len(frame[frame.candidate == "linear"]) == 5
    # a settings search resumes; its options belong to auto only
    again = cli(*base, "--out", tmp_path / "run", "--max-candidates", 2, "--resume")
    assert again.exit_code == 0, again.output
    bad = cli(*base, "--out", tmp_path / "p", "--settings", "paper", "--folds", 3)
    assert bad.exit_code == 2 and "apply to --settings auto" in error_line(bad)
    few = pd.read_csv(tmp_path / "d.csv").head(8)
    few.to_csv(tmp_path / "few.csv", index=False)
    bad = cli("fit", "--graph", tmp_path / "g.json", "--data", tmp_path / "few.csv", "--out", tmp_path / "f")
    assert bad.exit_code == 2 and "needs at least 10 rows" in error_line(bad)


#: Ray on loopback only: a cluster started here, a driver that connects to 127.0.0.1 (Ray would
#: otherwise swap a loopback address for the machine's outward one) with the cluster's token.
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token"}


@pytest.fixture
def ray_head():
    """A Ray cluster of its own on the loopback address (``ray start --head``), stopped afterwards
    (its processes only: a sweep's Ray elsewhere on the machine is left alone).
    """
    import shutil
    import socket
    import subprocess
    import sys
    import tempfile

    pytest.importorskip("ray")
    ray_bin = shutil.which("ray", path=str(Path(sys.executable).parent))
    if ray_bin is None:
        pytest.skip("no ray command beside this Python")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths live below it
    env = dict(os.environ, **RAY_ENV)
    start = [ray_bin, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port)]
    start += ["--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", temp]
    try:
        started = subprocess.run(start, capture_output=True, text=True, env=env, timeout=120)
        assert started.returncode == 0, started.stderr[-2000:]
        yield f"127.0.0.1:{port}"
    finally:
        for pid in _cluster_processes(temp):  # this cluster's processes only, not another Ray's
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


def _cluster_processes(temp: str) -> set[int]:
    """The processes of the Ray cluster whose temporary directory is ``temp``: those naming it on
    their command line, and their descendants (agents and workers rename themselves).
    """
    parent = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                line = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
                parent[int(proc.name)] = (int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]), line)
    ours = {pid for pid, (_, line) in parent.items() if temp.encode() in line}
    while True:
        more = {pid for pid, (ppid, _) in parent.items() if ppid in ours} - ours
        if not more:
            return ours
        ours |= more


DRIVER = """
import json, sys
sys.path.insert(0, {tests!r})
from test_selection import rows, run
out = run(rows(30, seed=2), max_candidates=2, address={address!r}, workers=2)
print(json.dumps({{"chosen": out.chosen, "cv": [r.get("cv_nll") for r in out.candidates]}}))
"""


@pytest.mark.slow
def test_the_search_runs_on_a_ray_cluster_it_did_not_start_with_the_same_outcome(ray_head):
    import subprocess
    import sys

    local = run(rows(30, seed=2), max_candidates=2)
    code = DRIVER.format(tests=str(Path(__file__).parent), address=ray_head)
    env = dict(os.environ, **RAY_ENV)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    remote = json.loads(r.stdout.strip().splitlines()[-1])
    assert remote == {"chosen": local.chosen, "cv": [r.get("cv_nll") for r in local.candidates]}


def test_an_unreachable_ray_cluster_is_one_clear_error():
    import socket

    pytest.importorskip("ray")
    with socket.socket() as s:  # a loopback port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ValueError, match=f"cannot reach the Ray cluster at --address 127.0.0.1:{port}"):
        run(rows(12), max_candidates=1, address=f"127.0.0.1:{port}")


def test_force_replaces_a_search_and_keeps_the_new_one_resumable(tmp_path):
    df = pd.DataFrame(rows(30).numpy(), columns=list(SPLIT.observed))
    kw = {"out": tmp_path / "run", "max_epochs": 2, "warmup_steps": 0, "max_candidates": 1}
    sirenvae.fit(BN, df, **kw)
    old = sorted(p.name for p in (tmp_path / "run" / "selection").glob("*.json"))
    from sirenvae.api import fit_rows
    from sirenvae.data import read_frame

    table = read_frame(df, BN, training=True)
    fit_rows(table.split, table.x, options={"max_epochs": 2, "warmup_steps": 0, "lr": 1e-3},
             search={"max_candidates": 1}, out=tmp_path / "run", overwrite=True)  # fmt: skip
    new = sorted(p.name for p in (tmp_path / "run" / "selection").glob("*.json"))
    assert len(new) == 5 and not set(new) & set(old)  # the old folds are gone, the new ones kept
    assert (tmp_path / "run" / "model.json").exists() and (tmp_path / "run" / "selection.csv").exists()


def fake_pool(fits, prefer):
    """A stand-in for :class:`sirenvae.parallel.Pool` whose fits are ``fits(key, task)`` and that
    finishes first the running fit that ``prefer`` picks (another completion order than fold order).
    """

    class FakePool:
        def __init__(self, payload, workers, address, device=None):
            self.workers, self.running, self.done = workers, {}, {}

        @property
        def free(self):
            return len(self.running) < self.workers

        def submit(self, key, task):
            handle = object()
            self.running[handle], self.done[handle] = key, fits(key, task)

        def wait(self):
            handle = prefer(self.running)
            return [(self.running.pop(handle), self.done.pop(handle))]

        def close(self):
            pass

    return FakePool


def test_racing_and_failures_are_decided_fold_by_fold_whatever_the_order_fits_finish_in(monkeypatch):
    level = {0: 3.0, 1: 1.0, 2: 2.0}  # candidate 1 leads, then diverges on the last fold

    def fits(key, task):
        c, f = key
        if key == (1, 2):
            return {"status": "diverged", "error": "loss is NaN", "seconds": 0}
        held = np.asarray(task["held"])
        return {"status": "ok", "nll": (level[c] + 0.01 * np.sin(held)).tolist(), "epochs": 1, "seconds": 0}

    late_failure_first = lambda running: next(  # noqa: E731
        (h for h, key in running.items() if key == (1, 2)), next(iter(running))
    )
    outcomes = []
    for workers in (1, 9):
        monkeypatch.setattr(S, "Pool", fake_pool(fits, late_failure_first))
        settings = S.SelectionSettings(folds=3, max_candidates=3, workers=workers, classical=False)
        out = S.select(SPLIT, rows(60), "true", fit_config=TINY, options=NO_WARMUP, settings=settings)
        outcomes.append((out.chosen, [c["status"] for c in out.candidates]))
    assert outcomes[0] == outcomes[1]
    # the leader's failure at the last fold brings back the candidates raced out against it
    assert outcomes[0][0] == "flow" and outcomes[0][1][1].startswith("diverged")


def test_the_time_budget_finishes_the_leader_even_when_racing_stopped_the_first(monkeypatch):
    level = {0: 3.0, 1: 1.0}

    def fits(key, task):
        held = np.asarray(task["held"])
        nll = level[key[0]] + 0.01 * np.sin(held)
        return {"status": "ok", "nll": nll.tolist(), "epochs": 1, "seconds": 0}

    monkeypatch.setattr(S, "Pool", fake_pool(fits, lambda running: next(iter(running))))
    clock = iter(range(0, 10_000, 1))
    monkeypatch.setattr(S.time, "perf_counter", lambda: float(next(clock)))
    settings = S.SelectionSettings(max_candidates=2, workers=1, classical=False, time_budget=10)
    out = S.select(SPLIT, rows(60), "true", fit_config=TINY, options=NO_WARMUP, settings=settings)
    assert out.chosen == "linear-t"
    assert out.candidates[0]["status"] == "stopped after 2 folds"


def test_the_resume_cache_belongs_to_one_graph_and_latent_set(tmp_path, monkeypatch):
    x = rows(30)
    run(x, max_candidates=1, directory=tmp_path)
    calls = []
    real = parallel.fit_fold
    monkeypatch.setattr(parallel, "fit_fold", lambda task: calls.append(task) or real(task))
    other = BayesianNetwork({"z": [], "a": ["z"], "b": ["z"], "c": ["b", "a"], "d": ["z"]})
    S.select(
        LatentSplit(other, ["z"]), x, "true", fit_config=TINY, options=NO_WARMUP,
        settings=S.SelectionSettings(max_candidates=1), directory=tmp_path,
    )  # fmt: skip
    assert len(calls) == 5  # nothing of the first graph's search was reused


def test_a_search_killed_before_its_final_fit_resumes_and_a_resumed_run_keeps_its_settings(
    tmp_path, monkeypatch
):
    from sirenvae.api import fit_rows

    x, out = rows(30), tmp_path / "run"
    options = {"max_epochs": 2, "warmup_steps": 0}
    # killed during the search: only the finished folds are there
    S.select(SPLIT, x, "true", fit_config=FitConfig(max_epochs=2), options=NO_WARMUP,
             settings=S.SelectionSettings(max_candidates=2), directory=out)  # fmt: skip
    assert not (out / "checkpoint.json").exists()
    monkeypatch.setattr(parallel, "fit_fold", lambda task: pytest.fail("a finished fold was fitted again"))
    fitted = fit_rows(SPLIT, x, options=options, search={"max_candidates": 2}, out=out, resume=True)
    assert fitted.settings["settings"] == "auto" and (out / "model.json").exists()
    # resumed with another learning rate (as a diverged run is told to): no new search, same settings
    again = fit_rows(SPLIT, x, options=options | {"lr": 1e-3}, out=out, resume=True)
    assert again.settings["chosen"] == fitted.settings["chosen"]
    with pytest.raises(ValueError, match="nothing to resume"):
        fit_rows(SPLIT, x, options=options, out=tmp_path / "empty", resume=True)


def test_a_fold_that_blew_up_is_flagged_beside_its_candidate(monkeypatch):
    """A candidate with one fold far above its others (a fit that blew up on some held-out rows)
    carries the fold and its score, which fit prints in the status column."""

    def fits(key, task):
        c, f = key
        held = np.asarray(task["held"])
        level = 2509.0 if key == (2, 1) else 3.0 + c
        return {"status": "ok", "nll": (level + 0.01 * np.sin(held)).tolist(), "epochs": 1, "seconds": 0}

    monkeypatch.setattr(S, "Pool", fake_pool(fits, lambda running: next(iter(running))))
    settings = S.SelectionSettings(folds=3, max_candidates=3, workers=1, classical=False, race_se=1e9)
    out = S.select(SPLIT, rows(60), "true", fit_config=TINY, options=NO_WARMUP, settings=settings)
    flagged = {c["candidate"]: c.get("far_off") for c in out.candidates}
    assert flagged["linear"] is None and flagged["linear-t"] is None
    assert flagged["flow"][0] == 2 and abs(flagged["flow"][1] - 2509.0) < 0.1


def test_progress_marks_folds_run_ahead_of_the_racing_frontier_and_says_who_stopped(monkeypatch):
    level = {0: 3.0, 1: 1.0}  # candidate 0 trails by far

    def fits(key, task):
        held = np.asarray(task["held"])
        return {
            "status": "ok",
            "nll": (level[key[0]] + 0.01 * np.sin(held)).tolist(),
            "epochs": 1,
            "seconds": 0,
        }

    # candidate 0's folds finish first: its third before candidate 1's second
    monkeypatch.setattr(S, "Pool", fake_pool(fits, lambda running: min(running, key=lambda h: running[h][0])))
    lines = []
    settings = S.SelectionSettings(max_candidates=2, workers=2, classical=False)
    out = S.select(
        SPLIT, rows(60), "true", fit_config=TINY, options=NO_WARMUP, settings=settings, progress=lines.append
    )
    assert out.candidates[0]["status"] == "stopped after 2 folds"
    assert not any("provisional" in line for line in lines if line.startswith("linear fold 2/5"))
    ahead = [line for line in lines if line.startswith("linear fold 3/5")]
    assert ahead and "provisional" in ahead[0] and "best with every fold done" not in ahead[0]
    counts = [
        int(m.group(1)) for line in lines if (m := re.search(r"\[(\d+) of at most 10 fits, \d+ s\]$", line))
    ]
    assert counts == list(range(1, len(counts) + 1)) and len(counts) >= 7  # every fold line: fits done so far
    assert any(
        line.startswith("linear stopped after 2 folds: more than 2 paired standard errors") for line in lines
    )

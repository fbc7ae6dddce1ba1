import dataclasses
import functools
import json

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from sirenvae.baselines import BASELINES, ClassicalConfig, fit_classical
from sirenvae.cli import app
from sirenvae.experiments.grids import grid
from sirenvae.experiments.protocol import PAPER_TABLE1, TABLE_ORDER, RunConfig
from sirenvae.experiments.runner import _execute, load_results, run_one, run_sweep
from sirenvae.models import VARIANTS, ModelConfig


def test_grids_are_the_papers():
    t1 = grid("table1")
    assert len(t1) == 3 * 7 * 2 * 3
    assert {c.dataset for c in t1} == {"magic-niab", "arth150", "magic-irri"}
    assert {c.train_factor for c in t1} == {2, 100}
    f3 = grid("figure3", seeds=2)
    assert {c.train_factor for c in f3} == {1, 2, 5, 10, 20, 50, 100} and len(f3) == 7 * 7 * 2
    nl = grid("figure3nl", seeds=1)
    assert {c.dataset for c in nl} == {"arithmetic-circuit"} and len(nl) == 7 * 7
    assert len({c.run_id for c in t1}) == len(t1)
    for c in (t1[0], next(c for c in t1 if c.model == "fa")):
        assert RunConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
        assert c.digest() == RunConfig.from_dict(c.to_dict()).digest()
    assert isinstance(RunConfig.from_dict(t1[-1].to_dict()).model_config, ClassicalConfig)
    assert len(PAPER_TABLE1) == 24
    with pytest.raises(ValueError, match="unknown experiment"):
        grid("table2")


def test_options_that_act_on_holes_only_leave_complete_row_digests_unchanged():
    """hole_proposal and mask_scale change nothing without mask_inputs: finished results stay valid."""
    run = next(c for c in grid("table1") if c.model == "true")
    legacy = dataclasses.replace(run.model_config, hole_proposal=False, mask_scale=False)
    assert run.digest() == dataclasses.replace(run, model_config=legacy).digest()
    holey = dataclasses.replace(run.model_config, mask_inputs=True)
    with_holes = dataclasses.replace(run, model_config=holey)
    assert (
        with_holes.digest()
        != dataclasses.replace(run, model_config=dataclasses.replace(holey, hole_proposal=False)).digest()
    )


def test_options_of_summed_nodes_and_count_tables_leave_continuous_digests_unchanged():
    """head_prior and its form act only with summed nodes; a result written before count tables
    existed (its hash without ``discrete_tables``) still matches a model of continuous columns.
    """
    run = next(c for c in grid("table1") if c.model == "true")
    legacy = dataclasses.replace(run.model_config, head_prior=1.0, head_prior_form="configuration")
    assert run.digest() == dataclasses.replace(run, model_config=legacy).digest()
    summed = dataclasses.replace(run.model_config, summed=("h",), types={"h": "categorical:3"})
    other = dataclasses.replace(summed, head_prior=1.0)
    assert dataclasses.replace(run, model_config=summed).digest() != (
        dataclasses.replace(run, model_config=other).digest()
    )
    before_tables = dataclasses.replace(run.model_config, discrete_tables=False)  # hashed as then
    assert dataclasses.replace(run, model_config=before_tables).digest() in run.digests()
    assert run.digest(tables_inert=True) != run.digest()  # both hashes are accepted, neither alone
    typed_config = dataclasses.replace(run.model_config, types={"a": "binary"})
    typed = dataclasses.replace(run, model_config=typed_config)
    assert typed.digests() == {typed.digest()}  # with a discrete column the tables act


def test_the_table_keeps_runs_of_factors_outside_the_default_cells(tmp_path):
    from sirenvae.cli.experiments import _factors_in

    (tmp_path / "runs").mkdir()
    run = next(c for c in grid("table1", factors=(10,)) if c.model == "fa")
    doc = {"run_id": run.run_id, "digest": run.digest(), "status": "ok", "config": run.to_dict()}
    (tmp_path / "runs" / f"{run.run_id}.json").write_text(json.dumps(doc))
    assert _factors_in(tmp_path, "table1") == (2, 10, 100)
    every = grid("table1", factors=_factors_in(tmp_path, "table1"))
    assert [d["run_id"] for d in load_results(tmp_path, every)] == [run.run_id]
    assert load_results(tmp_path, grid("table1")) == []  # the default cells alone would drop it


def test_table_order_is_the_variants_in_the_papers_order_then_the_classical_baselines():
    assert TABLE_ORDER[: len(VARIANTS)] == tuple(sorted(VARIANTS, key=TABLE_ORDER.index))
    assert TABLE_ORDER[len(VARIANTS) :] == BASELINES and not set(BASELINES) & set(VARIANTS)
    assert sorted(TABLE_ORDER) == sorted(VARIANTS + BASELINES) and len(TABLE_ORDER) == len(set(TABLE_ORDER))
    assert [c.model for c in grid("figure3", seeds=1, factors=(1,))] == list(TABLE_ORDER)


def test_a_classical_run_fits_no_vae_and_records_its_choice():
    from sirenvae.data import default_latent_rule, latent_split, sample_splits
    from sirenvae.networks import load_network

    fa, lw = grid("table1", quick=True, datasets=("magic-irri",), models=("fa", "lw"), factors=(2,))
    doc = run_one(fa)
    assert doc["status"] == "ok" and doc["epochs"] == 0 and doc["config"]["model_config"]["baseline"] == "fa"
    m = doc["metrics"]
    assert m["neg_elbo"] == m["nll"] and np.isfinite(m["re"])
    assert 1 <= doc["fit"]["k"] <= doc["fit"]["k_max"] <= 4  # magic-irri: 5 observed columns
    # the same number as the baseline fitted by hand on the same split
    net = load_network("magic-irri")
    splits = sample_splits(
        net, latent_split(net.graph, default_latent_rule("magic-irri")), train_size=128, test_size=200, seed=0
    )
    by_hand = fit_classical("fa", splits.train, seed=0)
    assert m["nll"] == pytest.approx(-by_hand.log_prob(splits.test.double()).mean().item())
    assert doc["oracle"]["method"] == "exact" and m["nll"] > doc["oracle_nll"] - 0.2
    lw_doc = run_one(lw)
    assert lw_doc["metrics"]["re"] is None and "shrinkage" in lw_doc["fit"]


def test_run_one_leaves_the_callers_thread_count_alone():
    config = grid("figure3", quick=True, models=("vae",), factors=(1,))[0]
    before = torch.get_num_threads()
    wanted = 2 if before == 1 else before  # a count run_one's single thread would change
    torch.set_num_threads(wanted)
    try:
        result = run_one(config)
        assert result["status"] == "ok" and np.isfinite(result["metrics"]["nll"])
        assert torch.get_num_threads() == wanted
        with pytest.raises(ValueError, match="unknown network"):
            run_one(dataclasses.replace(config, dataset="nope"))
        assert torch.get_num_threads() == wanted
    finally:
        torch.set_num_threads(before)


def test_quick_table1_end_to_end(tmp_path):
    # one of the three datasets at both sizes keeps this test short; the grid's size is tested above
    args = ["reproduce", "table1", "--quick", "--no-ray", "--out", str(tmp_path)]
    args += ["--datasets", "magic-irri"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(tmp_path / "table1.csv")
    assert len(frame) == 14 and np.isfinite(frame[["nll", "neg_elbo"]].to_numpy()).all()
    assert set(frame.model) == {"vae", "ind", "fc", "true", "vae-maf", "fa", "lw"}
    assert frame.re.isna().tolist() == (frame.model == "lw").tolist()  # Ledoit-Wolf has no latents
    assert (frame[frame.model == "fa"].k >= 1).all()
    # a bound is a bound: the IWAE NLL is below the negative ELBO on average
    assert (frame.nll <= frame.neg_elbo + 0.05).all()
    md = (tmp_path / "table1.md").read_text()
    assert "10.83 ± 0.64" in md and "SIReN-VAE true" in md  # the paper's value sits beside ours
    assert "| magic-irri | 2·\\|G\\| = 128 | Ledoit–Wolf | 1 |" in md and "| factor analysis |" in md
    assert "their −ELBO is their exact NLL" in md
    sweep = json.loads((tmp_path / "sweep.json").read_text())
    assert sweep["runs"] == 14 and sweep["failed"] == {} and "machine" in sweep
    # started again, it skips every finished run
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "14 already finished" in again.output
    # a sweep of a subset keeps the other finished runs in the table
    subset = CliRunner().invoke(app, [*args, "--models", "fa"])
    assert subset.exit_code == 0 and "2 already finished" in subset.output
    assert len(pd.read_csv(tmp_path / "table1.csv")) == 14


def test_quick_figure3_subset(tmp_path):
    args = [
        "reproduce",
        "figure3",
        "--quick",
        "--no-ray",
        "--out",
        str(tmp_path),
        "--models",
        "vae,true",
        "--factors",
        "1,5",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "figure3.png").stat().st_size > 10_000
    frame = pd.read_csv(tmp_path / "figure3.csv")
    assert sorted(set(frame.train_rows)) == [46, 230] and len(frame) == 4


def test_quick_nonlinear_figure3(tmp_path):
    args = ["reproduce", "figure3", "--network", "arithmetic-circuit", "--quick", "--no-ray"]
    args += ["--out", str(tmp_path), "--models", "true,fa,lw", "--factors", "2,10"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "figure3nl: 6 runs" in result.output
    assert (tmp_path / "figure3.png").stat().st_size > 10_000
    frame = pd.read_csv(tmp_path / "figure3.csv")
    assert sorted(set(frame.train_rows)) == [16, 80] and len(frame) == 6
    assert (frame.oracle_method == "monte-carlo").all() and (frame.oracle_se > 0).all()
    assert frame.oracle_nll.nunique() == 1  # one test set, one seeded estimate
    # no model beats the truth on the same test rows
    assert (frame.nll > frame.oracle_nll).all()
    md = (tmp_path / "figure3.md").read_text()
    assert "oracle NLL (MC estimate)" in md and "Monte-Carlo (importance-sampling) estimate" in md
    doc = json.loads(next((tmp_path / "runs").glob("figure3nl-*-fa-x2-s0.json")).read_text())
    assert doc["oracle"]["method"] == "monte-carlo" and doc["fit"]["k"] == 1
    # a run that blew up stays in the table and is named on the plot, whose y-axis keeps the rest readable
    from sirenvae.experiments import report

    results = load_results(tmp_path)
    blown = json.loads(json.dumps(next(r for r in results if r["config"]["model"] == "true")))
    blown["config"]["seed"], blown["metrics"]["neg_elbo"] = 1, 18_146.0
    del blown["oracle"]  # results written before the oracle record read as exact
    (tmp_path / "blown").mkdir()
    report.figure3([*results, blown], tmp_path / "blown")
    mean = (next(r for r in results if r["run_id"] == blown["run_id"])["metrics"]["neg_elbo"] + 18_146) / 2
    assert f"| {mean:.2f} ± " in (tmp_path / "blown" / "figure3.md").read_text()
    frame = pd.read_csv(tmp_path / "blown" / "figure3.csv")
    assert frame.oracle_method.tolist().count("exact") == 1
    # the experiment's own name runs the same grid: everything is already there
    again = CliRunner().invoke(app, ["reproduce", "figure3nl", *args[4:]])
    assert again.exit_code == 0 and "6 already finished" in again.output


def flaky(config: dict) -> dict:
    """Fails once per run id (a marker file survives the retry), and always for one run."""
    import os
    from pathlib import Path

    marker = Path(os.environ["SIRENVAE_TEST_MARKERS"]) / config["model"]
    if config["model"] == "fc":
        raise RuntimeError("this run always fails")
    if not marker.exists():
        marker.write_text("failed once")
        raise RuntimeError("transient failure")
    return _execute(config)


def tiny_grid():
    return grid("figure3", quick=True, models=("vae", "true", "fc", "ind"), factors=(1,))


def test_sequential_retry_and_report(tmp_path, monkeypatch):
    monkeypatch.setenv("SIRENVAE_TEST_MARKERS", str(tmp_path))
    res = run_sweep(tiny_grid(), tmp_path / "out", use_ray=False, execute=flaky)
    assert sorted(res.completed) == sorted(c.run_id for c in tiny_grid() if c.model != "fc")
    (failed,) = res.failed
    assert "fc" in failed and "always fails" in res.failed[failed]
    doc = json.loads((tmp_path / "out" / "runs" / f"{failed}.failed.json").read_text())
    assert doc["attempts"] == 2


def test_ray_sweep_interrupted_and_resumed_equals_sequential(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    import sys

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    configs = tiny_grid()
    monkeypatch.setenv("SIRENVAE_TEST_MARKERS", str(tmp_path))
    try:
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": {"SIRENVAE_TEST_MARKERS": str(tmp_path)}},
        )
        first = run_sweep(configs, tmp_path / "ray", use_ray=True, stop_after=1, execute=flaky)
        assert first.interrupted and len(first.completed) >= 1
        # a partial, as `sirenvae search` passes (Ray's decorator refuses anything but functions)
        second = run_sweep(configs, tmp_path / "ray", use_ray=True, execute=functools.partial(flaky))
    finally:
        ray.shutdown()
    assert set(first.completed).isdisjoint(second.completed)
    assert set(second.skipped) == set(first.completed)
    assert len(second.failed) == 1 and "fc" in next(iter(second.failed))
    ray_results = {r["run_id"]: r for r in load_results(tmp_path / "ray", configs)}
    assert len(ray_results) == 3  # no result lost or duplicated; fc is reported, not stored
    seq = run_sweep([c for c in configs if c.model != "fc"], tmp_path / "seq", use_ray=False)
    assert len(seq.completed) == 3
    for r in load_results(tmp_path / "seq", configs):
        assert ray_results[r["run_id"]]["metrics"] == r["metrics"]


def test_reproduce_errors(tmp_path):
    r = CliRunner().invoke(app, ["reproduce", "table9", "--no-ray", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "unknown experiment 'table9'" in r.output
    r = CliRunner().invoke(
        app, ["reproduce", "table1", "--quick", "--no-ray", "--models", "gan", "--out", str(tmp_path)]
    )
    assert r.exit_code == 2 and "unknown model 'gan'" in r.output

    r = CliRunner().invoke(
        app, ["reproduce", "table1", "--no-ray", "--network", "ecoli70", "--out", str(tmp_path)]
    )
    assert r.exit_code == 2 and "--network applies to figure3" in r.output
    r = CliRunner().invoke(
        app, ["reproduce", "figure3", "--no-ray", "--network", "nope", "--out", str(tmp_path)]
    )
    assert r.exit_code == 2 and "unknown --network 'nope'" in r.output


def test_the_ablation_varies_the_flow_alone(tmp_path):
    from sirenvae.experiments.ablation import ABLATION

    runs = grid("ablation")
    assert len(runs) == len(ABLATION) * 2 * 2 and len({r.run_id for r in runs}) == len(runs)
    paper = ModelConfig(variant="true").to_dict()
    flow = {"conditioning", "encoder_conditioning", "affine", "prior_blocks", "encoder_blocks"}
    for r in runs:
        changed = {k for k, v in r.model_config.to_dict().items() if paper[k] != v}
        assert changed <= flow and r.model == "true" and r.seed == 0
    with pytest.raises(ValueError, match="takes no models"):
        grid("ablation", models=("vae",))
    args = ["reproduce", "ablation", "--quick", "--no-ray", "--out", str(tmp_path), "--datasets", "ecoli70"]
    result = CliRunner().invoke(app, [*args, "--factors", "2"])
    assert result.exit_code == 0, result.output
    md = (tmp_path / "ablation.md").read_text()
    assert all(f"| {label} |" in md for label in ABLATION) and "| oracle |" in md

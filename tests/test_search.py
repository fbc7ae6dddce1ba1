import dataclasses
import json
import math

import pytest
import torch
from typer.testing import CliRunner

from sirenvae.cli import app
from sirenvae.data import default_latent_rule, latent_split, sample_splits
from sirenvae.experiments import search as S
from sirenvae.experiments.grids import grid
from sirenvae.experiments.protocol import EXPERIMENTS, MODEL_CONFIGS, QUICK
from sirenvae.experiments.runner import run_sweep
from sirenvae.models import VARIANTS, ModelConfig
from sirenvae.networks import load_network
from sirenvae.training import TrainingError

TINY = {
    "vae": {"lr": [1e-3, 1e-2], "vae_hidden": [16, 32]},
    "true": {"lr": [1e-3, 1e-2], "prior_blocks": [1, 2]},
}


@pytest.fixture
def fake_trials(monkeypatch):
    """Replaces training by a deterministic score of the point; records the rows each trial saw."""
    seen = []

    def trial(model, split, train, valid, point, settings, seed, device=None):
        seen.append({"model": model, "train": train, "valid": valid, "point": point, "seed": seed})
        return {"val_nll": 10.0 - 100 * point.get("lr", 3e-3) + point.get("prior_blocks", 2)}

    monkeypatch.setattr(S, "_trial", trial)
    return seen


def rows(x: torch.Tensor) -> set[tuple]:
    return {tuple(r) for r in x.tolist()}


@pytest.mark.parametrize("dataset", ["ecoli70", "arithmetic-circuit"])
def test_tuning_rows_are_never_evaluation_rows(dataset, fake_trials):
    evaluation_seeds = {c.seed for e in EXPERIMENTS for c in grid(e)}
    assert max(evaluation_seeds) < S.TUNING_SEED
    with pytest.raises(ValueError, match="seeds must lie in"):
        grid("table1", seeds=S.TUNING_SEED + 1)
    settings = S.SearchSettings(trials=2, draws=2, valid_rows=500, schedule=QUICK)
    (cell,) = S.cells(settings=settings, datasets=[dataset], factors=[2], models=["vae"])
    doc = S.search_cell(cell)
    assert doc["tuning_seeds"] == [S.TUNING_SEED, S.TUNING_SEED + 1]
    assert not set(doc["tuning_seeds"]) & evaluation_seeds
    tuning = set().union(*(rows(t["train"]) | rows(t["valid"]) for t in fake_trials))
    assert len(tuning) == 2 * (cell.factor * len(load_network(dataset).graph) + 500)  # two fresh draws
    net = load_network(dataset)
    split = latent_split(net.graph, default_latent_rule(dataset))
    for seed in sorted(evaluation_seeds):
        for factor in (2, 100):
            ev = sample_splits(net, split, train_size=factor * len(net.graph), test_size=2000, seed=seed)
            assert not tuning & rows(ev.test) and not tuning & rows(ev.train)


def test_every_model_gets_the_same_number_of_trials(fake_trials, monkeypatch):
    toy = S.Classical(fields=frozenset({"k"}), score=lambda train, valid, p: float(p["k"]))
    monkeypatch.setitem(S.CLASSICAL, "toy", toy)
    monkeypatch.setitem(S.SPACES, "toy", {"k": list(range(1, 11))})
    settings = S.SearchSettings(trials=5, valid_rows=50, schedule=QUICK)
    cells = S.cells(
        settings=settings, datasets=["arithmetic-circuit"], factors=[2], models=[*S.SEARCHED_MODELS, "toy"]
    )
    counts = {}
    for cell in cells:
        points = S.candidates(cell.model, cell.space, 5, schedule=QUICK)
        assert len({json.dumps(p, sort_keys=True) for p in points}) == 5  # distinct
        counts[cell.model] = len(S.search_cell(cell)["trials"])
    assert set(counts.values()) == {5}, counts
    # trial 0 of a deep model is the paper's setting; the random points never repeat it
    assert S.candidates("true", cells[0].space, 5)[0] == {}
    # then the designed points, the same decoder choices for every model
    assert S.candidates("true", S.resolve_space("true"), 5)[1:] == [
        dict(sorted(p.items())) for p in S.DESIGNS["true"]
    ]
    assert S.candidates("vae", S.resolve_space("vae"), 5)[1:] == S.DESIGNS["vae"]
    assert set(S.SEARCHED_MODELS) == set(VARIANTS)  # factor analysis and Ledoit-Wolf choose their own
    every = S.candidates("vae", {"lr": [1e-3, 3e-3], "vae_hidden": [0, 16]}, 10)
    assert every[0] == {} and len(every) == 4  # a small space is searched whole, the paper point once


def test_a_typo_in_a_space_is_a_clear_error_and_every_shipped_field_is_searched():
    with pytest.raises(ValueError, match="unknown search field 'prior_blok' for model 'true'"):
        S.resolve_space("true", {"prior_blok": [1, 2]})
    # an unknown name is refused even beside known ones: nothing is silently skipped
    with pytest.raises(ValueError, match="unknown search field 'not_yet_a_field'"):
        S.resolve_space("true", {"not_yet_a_field": [1, 2], "lr": [1e-3]})
    for bad in ({"test_size": [10]}, {"variant": ["fc"]}):
        with pytest.raises(ValueError, match="unknown search field"):
            S.resolve_space("vae", bad)
    with pytest.raises(ValueError, match="non-empty list"):
        S.resolve_space("vae", {"lr": []})
    with pytest.raises(ValueError, match="unknown model 'gan'"):
        S.resolve_space("gan", {"lr": [1e-3]})
    # every field of every shipped space is a ModelConfig or Schedule field, kept with all its values
    have = {f.name for f in dataclasses.fields(ModelConfig)} | set(S.SCHEDULE_FIELDS)
    for model, space in S.SPACES.items():
        assert set(space) <= have, (model, set(space) - have)
        assert S.resolve_space(model, space) == {k: list(v) for k, v in space.items()}


def test_combinations_the_configuration_refuses_are_never_tried(monkeypatch):
    settings = S._settings

    def strict(model, point, schedule):  # as ModelConfig refuses 0 blocks without the affine step
        if point.get("vae_hidden") == 0 and point.get("lr", 3e-3) != 1e-2:
            raise ValueError("vae_hidden 0 needs lr 0.01")
        return settings(model, point, schedule)

    monkeypatch.setattr(S, "_settings", strict)
    space = S.resolve_space("vae", {"vae_hidden": [0, 16], "lr": [1e-3, 1e-2]})  # 0 is valid with 1e-2
    points = S.candidates("vae", space, 10)
    assert len(points) == 4 and {"vae_hidden": 0, "lr": 1e-3} not in points
    with pytest.raises(ValueError, match="value 0 is refused"):
        S.resolve_space("vae", {"vae_hidden": [0, 16], "lr": [1e-3]})


def test_failed_trials_score_inf_and_are_kept(monkeypatch):
    def trial(model, split, train, valid, point, settings, seed, device=None):
        if point.get("lr") == 1e-2:
            raise TrainingError("non-finite loss at epoch 3")
        if point.get("vae_hidden") == 16:
            raise RuntimeError("singular matrix\nsecond line")
        return {"val_nll": 5.0 if point else 6.0}

    monkeypatch.setattr(S, "_trial", trial)
    settings = S.SearchSettings(trials=5, valid_rows=20, schedule=QUICK)
    (cell,) = S.cells(
        settings=settings, datasets=["arithmetic-circuit"], factors=[2], models=["vae"], spaces=TINY
    )
    doc = S.search_cell(cell)
    status = {t["status"] for t in doc["trials"]}
    assert {"diverged", "failed", "ok"} <= status
    for t in doc["trials"]:
        assert (t["val_nll"] is None) == (t["status"] != "ok")
        assert t["status"] != "failed" or t["error"] == "RuntimeError: singular matrix"
    best = min((t for t in doc["trials"] if t["val_nll"] is not None), key=lambda t: t["val_nll"])
    assert doc["chosen"]["trial"] == best["trial"] and doc["chosen"]["val_nll"] == best["val_nll"]
    monkeypatch.setattr(S, "_trial", lambda *a: {"val_nll": math.nan})
    with pytest.raises(RuntimeError, match="every trial of vae failed"):
        S.search_cell(cell)


def test_resume_skips_finished_cells(tmp_path, fake_trials):
    settings = S.SearchSettings(trials=2, valid_rows=20, schedule=QUICK)
    cells = S.cells(
        settings=settings, datasets=["arithmetic-circuit"], factors=[2, 100], models=["vae", "true"]
    )
    first = run_sweep(cells, tmp_path, use_ray=False, execute=S._execute_cell)
    assert len(first.completed) == 4 and not first.failed
    done = len(fake_trials)
    again = run_sweep(cells, tmp_path, use_ray=False, execute=S._execute_cell)
    assert sorted(again.skipped) == sorted(c.run_id for c in cells) and len(fake_trials) == done
    more = [dataclasses.replace(c, settings=dataclasses.replace(settings, trials=3)) for c in cells[:1]]
    third = run_sweep(more, tmp_path, use_ray=False, execute=S._execute_cell)
    assert third.completed == [cells[0].run_id]  # another configuration is searched again


def test_chosen_round_trips_into_the_grid(tmp_path, fake_trials):
    settings = S.SearchSettings(trials=5, valid_rows=20, schedule=QUICK)
    cells = S.cells(
        settings=settings, datasets=["ecoli70"], factors=[2, 100], models=["vae", "true"], spaces=TINY
    )
    run_sweep(cells, tmp_path, use_ray=False, execute=S._execute_cell)
    path = S.write_chosen(tmp_path, settings)
    choices = S.load_chosen(path)
    assert len(choices) == 4 and all(len(e["trials"]) == 5 for e in choices.values())
    # the fake score favours lr 1e-2 and few blocks
    assert choices[("ecoli70", 2, "true")]["params"] == {"lr": 1e-2, "prior_blocks": 1}
    runs = grid("figure3", quick=True, models=("vae", "true"), settings="searched", chosen=path)
    assert len(runs) == len(grid("figure3", quick=True, models=("vae", "true")))
    for run in runs:
        nearest = 2 if run.train_factor <= 10 else 100
        entry = choices[("ecoli70", nearest, run.model)]
        assert run.model_config == ModelConfig.from_dict(entry["model_config"])
        assert run.schedule == dataclasses.replace(QUICK, **entry["schedule"]) and run.schedule.lr == 1e-2
        assert run.to_dict()["model_config"] == entry["model_config"]  # written into every result
    # the classical baselines keep their own choice (factor analysis: k by its CV)
    classical = grid("figure3", quick=True, models=("fa", "lw"), settings="searched", chosen=path)
    assert classical == grid("figure3", quick=True, models=("fa", "lw"))
    paper = grid("figure3", quick=True, models=("true",))
    assert all(r.model_config == MODEL_CONFIGS["true"] for r in paper)
    with pytest.raises(FileNotFoundError, match="sirenvae search"):
        grid("table1", settings="searched", chosen=tmp_path / "nothing.json")
    with pytest.raises(ValueError, match="no searched settings for vae on magic-niab"):
        grid("table1", settings="searched", chosen=path, models=("vae",))
    with pytest.raises(ValueError, match="unknown settings"):
        grid("table1", settings="tuned")


def test_kfold_uses_every_row_once_for_validation(fake_trials):
    net = load_network("arithmetic-circuit")
    split = latent_split(net.graph, default_latent_rule("arithmetic-circuit"))
    x = sample_splits(net, split, train_size=40, test_size=1).train
    settings = S.SearchSettings(trials=2, folds=4, schedule=QUICK)
    out = S.search_rows(split, x, "vae", space=TINY["vae"], settings=settings)
    assert len(out["trials"]) == 2 and out["chosen"]["trial"] in (0, 1)
    first = fake_trials[:4]
    held = [r for t in first for r in rows(t["valid"])]
    assert len(held) == 40 and set(held) == rows(x)
    for t in first:
        assert not rows(t["train"]) & rows(t["valid"]) and len(t["train"]) + len(t["valid"]) == 40
    with pytest.raises(ValueError, match="folds"):
        S.search_rows(split, x, "vae", settings=S.SearchSettings(folds=0))
    with pytest.raises(ValueError, match="4 folds need at least 8 rows"):
        S.search_rows(split, x[:5], "vae", space=TINY["vae"], settings=settings)


def test_an_unsearched_size_takes_the_nearest_searched_factor():
    entry = {"model_config": ModelConfig(variant="fc").to_dict(), "schedule": {}}
    choices = {("d", 2, "fc"): entry, ("d", 100, "fc"): entry | {"schedule": {"lr": 0.1}}}
    lrs = {f: S.searched_settings(choices, "d", f, "fc", QUICK)[1].lr for f in (1, 2, 5, 10, 20, 50, 100)}
    assert lrs == {1: QUICK.lr, 2: QUICK.lr, 5: QUICK.lr, 10: QUICK.lr, 20: 0.1, 50: 0.1, 100: 0.1}


def test_quick_search_command_then_reproduce_with_its_choices(tmp_path):
    out = tmp_path / "search"
    args = ["search", "--quick", "--no-ray", "--datasets", "arithmetic-circuit", "--factors", "2"]
    args += ["--models", "vae,true", "--out", str(out)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "chosen.json").read_text())
    assert {e["model"] for e in doc["choices"]} == {"vae", "true"}
    assert all(len(e["trials"]) == 2 and e["trials"][0]["params"] == {} for e in doc["choices"])
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "2 already finished" in again.output
    runs = tmp_path / "runs"
    r = CliRunner().invoke(
        app,
        [
            "reproduce",
            "table1",
            "--quick",
            "--no-ray",
            "--settings",
            "searched",
            "--chosen",
            str(out / "chosen.json"),
        ]
        + ["--datasets", "arithmetic-circuit", "--factors", "2", "--models", "true", "--out", str(runs)],
    )
    assert r.exit_code == 0, r.output
    (result,) = [json.loads(p.read_text()) for p in (runs / "runs").glob("*.json")]
    entry = next(e for e in doc["choices"] if e["model"] == "true")
    assert result["config"]["model_config"] == entry["model_config"]
    bad = CliRunner().invoke(app, ["search", "--quick", "--no-ray", "--models", "gan", "--out", str(out)])
    assert bad.exit_code == 2 and "unknown model 'gan'" in bad.output


def test_the_shipped_choices_are_the_committed_search():
    """The package ships the committed search's chosen.json; the demo and `--settings searched` read it."""
    from pathlib import Path

    from sirenvae.experiments.chosen import DEFAULT_CHOSEN

    committed = Path(__file__).parents[1] / "docs" / "results" / "search" / "chosen.json"
    assert DEFAULT_CHOSEN.exists() and DEFAULT_CHOSEN.read_text() == committed.read_text()
    choices = S.load_chosen()
    assert {("ecoli70", 2, "true"), ("ecoli70", 2, "vae")} <= set(choices)
    assert all(len(e["trials"]) == 5 for e in choices.values())

"""Does the graph help (``sirenvae compare``): nested CV keeps every choice away from the scored rows."""

import math
import re

import numpy as np
import pandas as pd
import pytest
import torch

import sirenvae
from helpers import small_network
from sirenvae import comparison as C
from sirenvae import graph_io, pipeline, selection
from sirenvae.graph import LatentSplit
from sirenvae.pipeline import TrainOptions
from sirenvae.training import FitConfig
from test_cli import error_line, run

NET = small_network()
SPLIT = LatentSplit(NET.graph, ["z1", "z2"])
TINY = {"fit_config": FitConfig(max_epochs=2, batch_size=16), "options": TrainOptions(warmup_steps=0)}
ROWS, OUTER, INNER = 24, 3, 2


def rows(n: int, seed: int = 0) -> torch.Tensor:
    samples = NET.sample(n, seed=seed)
    return samples[:, [NET.graph.index(v) for v in SPLIT.observed]].float()


@pytest.fixture(scope="module")
def spied():
    """One comparison of true and vae on 24 rows in 3 outer folds (2 inner), with every ``select`` and
    ``train_model`` call recorded as the row indices it received.
    """
    x = rows(ROWS)
    index = {tuple(r.tolist()): i for i, r in enumerate(x)}
    assert len(index) == ROWS

    def seen(t):
        return frozenset(index[tuple(r.tolist())] for r in t)

    calls = []
    real_select, real_train = selection.select, pipeline.train_model

    def select(split, x, variant, **kw):
        calls.append(("select", variant, seen(x)))
        return real_select(split, x, variant, **kw)

    def train_model(split, train, **kw):
        calls.append(("train", kw["model_config"].variant, seen(train)))
        return real_train(split, train, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(selection, "select", select)
        mp.setattr(pipeline, "train_model", train_model)
        result = C.compare(
            SPLIT,
            x,
            models=("true", "vae"),
            outer_folds=OUTER,
            search={"max_candidates": 2, "folds": INNER},
            **TINY,
        )
    return result, calls


def test_every_row_gets_exactly_one_out_of_fold_nll_per_model(spied):
    result, _ = spied
    assert result.models == ("true", "vae", "fa", "lw") and not result.failed
    assert list(result.per_row.columns) == list(result.models) and len(result.per_row) == ROWS
    assert np.isfinite(result.per_row.to_numpy()).all()
    parts = selection.fold_indices(ROWS, OUTER, 0)
    for f, held in enumerate(parts):
        assert (result.outer_fold[held] == f + 1).all()
    assert sorted(np.bincount(result.outer_fold)[1:]) == sorted(len(p) for p in parts)
    assert [(c["fold"], c["model"]) for c in result.choices] == [
        (f, m) for f in range(1, OUTER + 1) for m in ("true", "vae")
    ]
    # each fold's mean held-out NLL is the mean of its rows in the table
    for c in result.choices:
        assert c["nll"] == pytest.approx(result.per_row[c["model"]][result.outer_fold == c["fold"]].mean())


def test_no_choice_and_no_fit_sees_the_outer_held_out_rows(spied):
    """Settings are chosen on inner folds only, so a model with more candidates gains nothing on the
    scored rows: every search gets exactly the outer training rows, every fit a subset of them.
    """
    _, calls = spied
    parts = selection.fold_indices(ROWS, OUTER, 0)
    searches = [i for i, c in enumerate(calls) if c[0] == "select"]
    assert [calls[i][1] for i in searches] == ["true", "vae"] * OUTER
    for j, i in enumerate(searches):
        held = set(parts[j // 2].tolist())
        training = set(range(ROWS)) - held
        assert calls[i][2] == training
        end = searches[j + 1] if j + 1 < len(searches) else len(calls)
        fits = calls[i + 1 : end]
        assert len(fits) == 2 * INNER + 1  # 2 candidates x inner folds, then the refit
        assert all(seen <= training for _, _, seen in fits)
        assert fits[-1][2] == training  # the refit: all outer training rows


def test_standard_errors_follow_the_per_row_table(spied):
    result, _ = spied
    frame = result.frame().set_index("model")
    table = result.per_row
    assert list(result.frame().columns[:5]) == ["model", "nll", "se", "diff_vs_true", "diff_se"]
    for m in result.models:
        d = table[m] - table["true"]
        assert frame.loc[m, "nll"] == pytest.approx(table[m].mean())
        assert frame.loc[m, "se"] == pytest.approx(table[m].std(ddof=1) / math.sqrt(ROWS))
        assert frame.loc[m, "diff_vs_true"] == pytest.approx(d.mean())
        assert frame.loc[m, "diff_se"] == pytest.approx(d.std(ddof=1) / math.sqrt(ROWS))
    assert frame.loc["true", "diff_se"] == 0 and frame.loc["vae", "uses_graph"] == False  # noqa: E712
    for m in ("true", "vae"):  # the candidate chosen in each outer fold, counted: "linear (3); flow (1)"
        counts = [int(p.rsplit("(", 1)[1].rstrip(")")) for p in frame.loc[m, "settings"].split("; ")]
        assert sum(counts) == OUTER


def test_the_sentence_says_improves_only_beyond_two_paired_standard_errors():
    better = C.verdict(1.0, 0.2, "vae", 50)
    assert better.startswith("The graph improves held-out likelihood by 1.000 ± 0.200 nats per row")
    assert "(vae)" in better
    for gain in (0.4, 0.3, 0.0, -0.4):  # within 2 se (0.4 itself is not beyond)
        unclear = C.verdict(gain, 0.2, "vae", 50)
        assert "not clearly improve" in unclear and "too few rows" in unclear and "improves" not in unclear
    worse = C.verdict(-1.0, 0.2, "factor analysis", 50)
    assert "does not improve" in worse and "better by 1.000" in worse and "wrong graph" in worse


def synthetic(**columns) -> C.Comparison:
    per_row = pd.DataFrame(columns)
    return C.Comparison(tuple(per_row.columns), per_row, np.arange(len(per_row)) % 2 + 1)


def test_the_sentence_weighs_true_against_the_best_model_without_the_graph():
    g = np.random.default_rng(0)
    base = g.normal(10, 2, size=40)
    # fc (which uses the graph) is best of all; the best without it is lw, 0.5 nats behind true
    r = synthetic(true=base, fc=base - 1, vae=base + 2, fa=base + 1, lw=base + 0.5 + 0.1 * g.normal(size=40))
    assert r.best_without == "lw"
    gain, se = r.paired("lw")
    assert gain > 2 * se and r.sentence.startswith(C.verdict(gain, se, "Ledoit-Wolf", 40))
    assert "improves" in r.sentence
    # and says that another graph variant beat true clearly
    assert r.sentence.endswith(" fc (the graph with its latents fully connected) beats true by 1.000 ± 0.000 "
                               "nats per row: the graph's edges among the latent nodes may be too strict "
                               "for these rows.")  # fmt: skip
    close = synthetic(true=base, fc=base - 0.01 + g.normal(size=40), vae=base + 2, fa=base + 1, lw=base + 1)
    assert "beats true" not in close.sentence  # within noise: nothing to say
    noisy = synthetic(true=base, vae=base + 0.05 + g.normal(size=40), fa=base + 5, lw=base + 5)
    assert noisy.best_without == "vae" and "not clearly" in noisy.sentence
    failed = synthetic(true=base, vae=base)
    failed.failed["true"] = "outer fold 1/2: TrainingError: non-finite loss"
    assert failed.sentence.startswith("No answer: true has no held-out score")


def test_too_few_rows_and_bad_models_are_refused_before_any_fit():
    assert C.min_rows(5) == 13 and C.min_rows(2) == 20 and C.min_rows(3, inner_folds=2) == 24

    def accepted(n: int, k: int) -> bool:  # two held-out rows per outer fold, enough training rows in each
        train = n - math.ceil(n / k)
        return n >= 2 * k and train >= selection.min_rows(selection.default_folds(train))

    for k in (2, 3, 5, 10, 40):
        assert C.min_rows(k) == next(n for n in range(2, 1000) if accepted(n, k))
    with pytest.raises(C.ComparisonError, match="5 outer folds needs at least 13 rows, got 12.*10 rows"):
        C.compare(SPLIT, rows(12), **TINY)
    with pytest.raises(C.ComparisonError, match="must include true"):
        C.compare(SPLIT, rows(30), models=("vae",), **TINY)
    with pytest.raises(C.ComparisonError, match="unknown model.*'tru'"):
        C.compare(SPLIT, rows(30), models=("tru", "vae"), **TINY)


def test_the_python_api_reads_a_dataframe_by_column_name():
    frame = pd.DataFrame(rows(20).numpy(), columns=list(SPLIT.observed))[["x3", "x1", "x2"]]
    result = sirenvae.compare(
        NET.graph, frame, models=["true"], outer_folds=2, epochs=2, warmup_steps=0, max_candidates=1
    )
    assert result.models == ("true", "fa", "lw") and result.per_row.shape == (20, 3)
    assert list(result.frame().model) == ["true", "fa", "lw"]
    with pytest.raises(ValueError, match="unknown option"):
        sirenvae.compare(NET.graph, frame, epoch=2)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("compare")
    graph_io.to_json(NET.graph, d / "g.json")
    pd.DataFrame(rows(20).numpy(), columns=list(SPLIT.observed)).to_csv(d / "obs.csv", index=False)
    pd.DataFrame(rows(12).numpy(), columns=list(SPLIT.observed)).to_csv(d / "few.csv", index=False)
    return d


FAST = ["--models", "true", "--epochs", "2", "--max-candidates", "1", "--set", "warmup_steps=0"]


def test_the_cli_writes_the_table_and_the_picture(files, tmp_path):
    out, picture = tmp_path / "cmp.csv", tmp_path / "cmp.png"
    args = ["compare", "--graph", files / "g.json", "--data", files / "obs.csv", *FAST]
    bounded = ["--outer-folds", 2, "--workers", 1, "--time-budget", 600]  # each inner search's bound
    result = run(*args, *bounded, "-o", out, "--plot", picture)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert list(table.model) == ["true", "fa", "lw"]
    assert list(table.columns[:5]) == ["model", "nll", "se", "diff_vs_true", "diff_se"]
    assert np.isfinite(table[["nll", "se", "diff_vs_true", "diff_se"]].to_numpy()).all()
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and picture.stat().st_size > 10_000
    said = " ".join(result.stdout.split())
    assert "held-out likelihood" in said and "the best model without it" in said
    assert "outer fold 2/2" in " ".join(result.stderr.split())  # progress: a line per model and fold
    assert re.search(r"outer fold 1/2 done after \d+ s; about \d+ s to go", result.stderr)
    again = run(*args, "--outer-folds", 2, "-o", out)
    assert again.exit_code == 2 and "already exists" in error_line(again)
    bad = run(*args, "--outer-folds", 2, "--time-budget", -1, "-o", tmp_path / "bad.csv")
    assert bad.exit_code == 2 and "time_budget must be positive seconds, got -1" in error_line(bad)


def test_the_cli_refuses_too_few_rows_saying_how_many_are_needed(files, tmp_path):
    result = run("compare", "--graph", files / "g.json", "--data", files / "few.csv", *FAST, "-o",
                 tmp_path / "c.csv")  # fmt: skip
    assert result.exit_code == 2
    line = error_line(result)
    assert "needs at least 13 rows, got 12" in line and "10 rows for the inner 5-fold" in line
    result = run("compare", "--graph", files / "g.json", "--data", files / "obs.csv", "--models", "vae",
                 "-o", tmp_path / "c.csv")  # fmt: skip
    assert result.exit_code == 2 and "must include true" in error_line(result)
    assert not (tmp_path / "c.csv").exists()


def test_holey_rows_are_compared_against_a_gaussian_fitted_by_em(tmp_path):
    """With missing cells the classical side is ``em`` (fa and lw need every cell); the deep fits see
    the holes through their presence bits, and the CLI reads the holes."""
    x = rows(20)
    x[torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) < 0.15] = math.nan
    x[x.isnan().all(1), 0] = 1.0
    frame = pd.DataFrame(x.numpy(), columns=list(SPLIT.observed))
    result = sirenvae.compare(
        NET.graph, frame, models=["true"], outer_folds=2, epochs=2, warmup_steps=0, max_candidates=1
    )
    assert result.models == ("true", "em") and not result.failed
    assert any(n.startswith("true chose linear in every outer fold") for n in result.notices)
    assert np.isfinite(result.per_row.to_numpy()).all()
    graph_io.to_json(NET.graph, tmp_path / "g.json")
    frame.to_csv(tmp_path / "holey.csv", index=False)
    out = tmp_path / "c.csv"
    r = run("compare", "--graph", tmp_path / "g.json", "--data", tmp_path / "holey.csv", "-o", out,
            "--outer-folds", "2", *FAST)  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "em: a Gaussian fitted by EM" in r.output
    assert list(pd.read_csv(out).model) == ["true", "em"]


def test_a_classical_model_left_out_is_a_notice_not_an_empty_row(tmp_path):
    x = rows(20)
    x[:, 0] = (x[:, 0] > x[:, 0].median()).float()  # a binary column: no Gaussian models it
    x[torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) < 0.15] = math.nan
    x[x.isnan().all(1), 1] = 1.0
    graph_io.to_json(NET.graph, tmp_path / "g.json")
    pd.DataFrame(x.numpy(), columns=list(SPLIT.observed)).to_csv(tmp_path / "holey.csv", index=False)
    out = tmp_path / "c.csv"
    r = run("compare", "--graph", tmp_path / "g.json", "--data", tmp_path / "holey.csv", "-o", out,
            "--outer-folds", "2", "--models", "true", *FAST)  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "em is left out of the verdict" in r.output and "em: a Gaussian" not in r.output
    assert not any(line.lstrip("│┃ ").startswith("em ") for line in r.output.splitlines())
    assert list(pd.read_csv(out).model) == ["true", "em"]  # the file keeps the row, empty

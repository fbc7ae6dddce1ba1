"""A settings search per (dataset, training size, model) that never sees an evaluation row.

Each cell trains ``trials`` settings of one model, the same number for every model: the paper's
setting (trial 0), then the model's designed points (:data:`~sirenvae.experiments.spaces.DESIGNS`),
then distinct random points of its space (:data:`SPACES`, declared as data; the whole space when it
is smaller). Trials train exactly as evaluation runs do
(:func:`~sirenvae.experiments.runner.train_run`, the same :class:`Schedule`), on tuning data:

- Fresh draws (shipped networks): ``n = factor·|G|`` training rows and ``valid_rows`` validation rows
  drawn with the tuning seeds ``1000 + r``. Evaluation uses seeds 0, 1, 2, whose training and test
  draws come from other generator seeds (:func:`sirenvae.data.sample_splits`), so no evaluation row is
  ever trained on or scored here.
- k-fold cross-validation within the training rows (``folds = k``), for a user's own data where no
  fresh draws exist (:func:`search_rows`).

A trial's score is its validation NLL (IWAE with ``valid_samples`` importance samples, nats per row);
one that diverges or fails scores +inf and is recorded with its error. The best trial of a cell is its
choice (ties: the earlier trial). Cells run as tasks of :func:`~sirenvae.experiments.runner.run_sweep`
(Ray or in-process, one thread each; resumable: ``runs/<cell>.json`` is kept while it matches the
cell's digest), and :func:`write_chosen` gathers the choices into ``chosen.json``, which
``grids.grid(..., settings="searched")`` reads (:mod:`sirenvae.experiments.chosen`). A training size
that was not searched takes the choice of the nearest searched factor on a log scale (Figure 3: 1, 5
and 10 take factor 2's choice; 20 and 50 take factor 100's).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from sirenvae.experiments.chosen import DEFAULT_CHOSEN, FORMAT, load_chosen, searched_settings
from sirenvae.experiments.protocol import (
    FULL,
    MODEL_CONFIGS,
    QUICK,
    SEARCHED,
    TUNING_SEED,
    Schedule,
)
from sirenvae.experiments.spaces import DESIGNS, SCHEDULE_FIELDS, SEARCHED_MODELS, SPACES
from sirenvae.files import atomic_write_text
from sirenvae.models import VARIANTS, ModelConfig

__all__ = [
    "CLASSICAL", "DEFAULT_CHOSEN", "DESIGNS", "SPACES", "TUNING_SEED", "Classical", "SearchCell",
    "SearchSettings", "candidates", "cells", "load_chosen", "resolve_space", "search_cell", "search_rows",
    "searched_settings", "write_chosen",
]  # fmt: skip

#: The cells searched by default: Table 1, Figure 3 (ecoli70) and the arithmetic circuit.
SEARCH_DATASETS = ("magic-niab", "arth150", "magic-irri", "ecoli70", "arithmetic-circuit")
SEARCH_FACTORS = (2, 100)


@dataclass(frozen=True)
class Classical:
    """The hook for a model that is no :class:`ModelConfig` variant (e.g. factor analysis).

    ``score(train, valid, params)`` fits the model on ``train`` with ``params`` (a point of its space
    in :data:`SPACES`, names from ``fields``) and returns the mean NLL of ``valid`` (nats per row).
    Register one as ``CLASSICAL["fa"] = Classical(...)`` with ``SPACES["fa"] = {...}``: it then gets
    the same number of trials as every deep model (all of its space when that is smaller).
    """

    fields: frozenset[str]
    score: Callable[..., float]


CLASSICAL: dict[str, Classical] = {}


@dataclass(frozen=True, kw_only=True)
class SearchSettings:
    """How every cell of a search is run (part of each cell's digest).

    Attributes:
        trials: Settings tried per cell, the same for every model (trial 0 is the paper's); with 5,
            the committed search at 2·|G| (25 cells) took 21 minutes on 2 cores (docs/results.md).
        valid_rows: Fresh validation rows per tuning draw.
        valid_samples: Importance samples ``K`` of the validation NLL.
        draws: Tuning draws (seeds ``TUNING_SEED + r``) a trial's score averages over.
        folds: ``0``: score on fresh rows; ``k ≥ 2``: k-fold cross-validation within the tuning rows.
        seed: Seeds the choice of random points.
        schedule: The training schedule the trials (and the evaluation runs) use.
    """

    trials: int = 5
    valid_rows: int = 1000
    valid_samples: int = 100
    draws: int = 1
    folds: int = 0
    seed: int = 0
    schedule: Schedule = SEARCHED

    def __post_init__(self) -> None:
        for name in ("trials", "draws", "valid_rows", "valid_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.folds == 1 or self.folds < 0:
            raise ValueError(f"folds must be 0 (fresh validation rows) or at least 2, got {self.folds}")


QUICK_SEARCH = SearchSettings(trials=2, valid_rows=100, valid_samples=10, schedule=QUICK)
_MODEL_FIELDS = frozenset(f.name for f in fields(ModelConfig)) - {"variant"}


def resolve_space(model: str, space: Mapping[str, Sequence] | None = None) -> dict[str, list]:
    """The fields of ``space`` (default ``SPACES[model]``) that apply now, their values checked.

    A name that is no field of the model's configuration or training schedule, or a value the
    configuration refuses, is a ``ValueError`` naming it.
    """
    if model in CLASSICAL:
        known = set(CLASSICAL[model].fields)
    elif model in VARIANTS:
        known = _MODEL_FIELDS | set(SCHEDULE_FIELDS)
    else:
        raise ValueError(f"unknown model {model!r}; choose from {', '.join(VARIANTS + tuple(CLASSICAL))}")
    if space is None and model not in SPACES:
        raise ValueError(f"no search space for model {model!r}; spaces exist for {', '.join(SPACES)}")
    space = SPACES[model] if space is None else space
    out = {}
    for name, values in space.items():
        if name not in known:
            raise ValueError(
                f"unknown search field {name!r} for model {model!r}; it is no ModelConfig or Schedule "
                f"training field (known: {', '.join(sorted(known))})"
            )
        if isinstance(values, str | bytes) or not isinstance(values, Sequence) or not values:
            raise ValueError(f"search field {name!r} of {model!r} needs a non-empty list of values")
        out[name] = list(values)
    for name, values in out.items() if model in VARIANTS else ():
        for v in values:
            # a value may need another field's (blocks 0 needs the affine step): refused only alone
            # and beside every other value of the space
            why = _refusal(model, {name: v})
            others = ({name: v, k: w} for k in out if k != name for w in out[k])
            if why and all(_refusal(model, point) for point in others):
                raise ValueError(f"search field {name!r} of {model!r}: value {v!r} is refused ({why})")
    return out


def _refusal(model: str, point: Mapping, schedule: Schedule = FULL) -> str | None:
    """Why :class:`ModelConfig` refuses a point of a deep model's space (``None``: it accepts it)."""
    try:
        _settings(model, point, schedule)
    except (TypeError, ValueError) as e:
        return str(e)
    return None


def _settings(model: str, point: Mapping, schedule: Schedule) -> tuple[ModelConfig, Schedule]:
    """The model configuration and schedule of a point of the model's space."""
    model_part = {k: v for k, v in point.items() if k not in SCHEDULE_FIELDS}
    schedule_part = {k: v for k, v in point.items() if k in SCHEDULE_FIELDS}
    return replace(MODEL_CONFIGS[model], **model_part), replace(schedule, **schedule_part)


def candidates(
    model: str, space: Mapping[str, Sequence], trials: int, seed: int = 0, schedule: Schedule = FULL
) -> list[dict]:
    """The points a cell tries: the paper's setting ``{}`` first (deep models), then the model's
    designed points (restricted to the fields of ``space``), then distinct random points of ``space``
    that the configuration accepts, ``trials`` in all (fewer only when the space holds fewer).

    The points depend on the model, ``space``, ``trials`` and ``seed`` only, so every dataset and
    size of a model tries the same settings.
    """
    names = sorted(space)
    sizes = [len(space[k]) for k in names]
    total = math.prod(sizes)
    rng = random.Random(seed + zlib.crc32(model.encode()))
    paper = {}
    if model in VARIANTS:
        base = asdict(MODEL_CONFIGS[model]) | asdict(schedule)
        paper = {k: base[k] for k in names}
    out = [{}] if model in VARIANTS else []
    for point in DESIGNS.get(model, []) if space is not None else []:
        point = {k: v for k, v in point.items() if k in space}
        if len(out) < trials and point not in out and _refusal(model, point, schedule) is None:
            out.append(dict(sorted(point.items())))
    seen = set()
    while len(out) < trials and len(seen) < total:
        index = rng.randrange(total)
        if index in seen:
            continue
        seen.add(index)
        point = {}
        for name, size in zip(reversed(names), reversed(sizes), strict=True):
            index, i = divmod(index, size)
            point[name] = space[name][i]
        point = dict(sorted(point.items()))
        if (
            point != paper
            and point not in out
            and (model in CLASSICAL or _refusal(model, point, schedule) is None)
        ):
            out.append(point)
    return out


@dataclass(frozen=True, kw_only=True)
class SearchCell:
    """One (dataset, training-size factor, model) of a search: a task of ``run_sweep``."""

    dataset: str
    factor: int
    model: str
    space: dict[str, list] = field(default_factory=dict)
    settings: SearchSettings = field(default_factory=SearchSettings)

    @property
    def run_id(self) -> str:
        return f"search-{self.dataset}-{self.model}-x{self.factor}"

    def to_dict(self) -> dict:
        return asdict(self) | {"format": FORMAT}

    @classmethod
    def from_dict(cls, d: dict) -> SearchCell:
        d = {k: v for k, v in d.items() if k != "format"}
        s = dict(d["settings"])
        s["schedule"] = Schedule(**s["schedule"])
        return cls(**d | {"settings": SearchSettings(**s)})

    def digest(self) -> str:
        """A hash of everything that determines the cell's outcome (to refuse stale files on resume)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def digests(self) -> set[str]:
        """The hashes a finished cell may carry (the runner's resume check): :meth:`digest`."""
        return {self.digest()}


def cells(
    *,
    quick: bool = False,
    settings: SearchSettings | None = None,
    datasets: Sequence[str] | None = None,
    factors: Sequence[int] | None = None,
    models: Sequence[str] | None = None,
    spaces: Mapping[str, Mapping[str, Sequence]] | None = None,
) -> list[SearchCell]:
    """The cells of a search (default: :data:`SEARCH_DATASETS` x factors 2, 100 x every model),
    the largest training sets first so that the longest tasks start early.
    """
    settings = settings or (QUICK_SEARCH if quick else SearchSettings())
    models = tuple(models or SEARCHED_MODELS)
    resolved = {m: resolve_space(m, (spaces or {}).get(m)) for m in models}
    out = [
        SearchCell(dataset=d, factor=f, model=m, space=resolved[m], settings=settings)
        for d in datasets or SEARCH_DATASETS
        for f in factors or SEARCH_FACTORS
        for m in models
    ]
    return sorted(out, key=lambda c: -c.factor)


def _trial(
    model: str, split, train, valid, point: dict, settings: SearchSettings, seed: int, device=None
) -> dict:
    """Trains one setting on ``train`` (on ``device``, default the CPU) and scores it on ``valid``:
    ``val_nll`` and training facts.
    """
    import torch

    from sirenvae.experiments.runner import train_run
    from sirenvae.objectives import evaluate

    start = time.perf_counter()
    if model in CLASSICAL:
        nll = CLASSICAL[model].score(train, valid, point)
        return {"val_nll": float(nll), "train_seconds": time.perf_counter() - start}
    model_config, schedule = _settings(model, point, settings.schedule)
    trained, history = train_run(split, train, model_config, schedule, seed, device=device)
    middle = time.perf_counter()
    torch.manual_seed(seed)
    valid = valid.to(trained.loc.device)
    nll = evaluate(trained, valid, importance_samples=settings.valid_samples)["nll"]
    facts = {"epochs": len(history.train_loss), "stopped": history.stopped, "train_seconds": middle - start}
    return {"val_nll": nll, **facts, "eval_seconds": time.perf_counter() - middle}


def _kfold(fit: Callable[..., dict], x, folds: int, seed: int) -> dict:
    """Mean held-out NLL per row over ``folds`` folds of the rows of ``x`` (a seeded partition)."""
    import torch

    parts = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed)).tensor_split(folds)
    total, seconds = 0.0, 0.0
    for k, held in enumerate(parts):
        r = fit(x[torch.cat([p for j, p in enumerate(parts) if j != k])], x[held])
        total += r["val_nll"] * len(held)
        seconds += r.get("train_seconds", 0.0) + r.get("eval_seconds", 0.0)
    return {"val_nll": total / x.shape[0], "folds": folds, "train_seconds": seconds}


def _check_folds(folds: int, n: int) -> None:
    if folds and n < 2 * folds:
        raise ValueError(f"{folds} folds need at least {2 * folds} rows, got {n}")


def _score(model: str, split, point: dict, s: SearchSettings, draws: list[tuple], device=None) -> dict:
    """A point's validation NLL averaged over tuning draws ``(train, valid, seed)``; with ``s.folds``,
    by k-fold cross-validation within ``train`` instead (``valid`` unused).
    """
    rows = []
    for train, valid, seed in draws:

        def fit(a, b, seed=seed):
            return _trial(model, split, a, b, point, s, seed, device)

        rows.append(_kfold(fit, train, s.folds, seed) if s.folds else fit(train, valid))
    if len(rows) == 1:
        return rows[0]
    return {"val_nll": sum(r["val_nll"] for r in rows) / len(rows), "draws": [r["val_nll"] for r in rows]}


def _search(
    model: str, split, points: list[dict], s: SearchSettings, draws: list[tuple], device=None
) -> dict:
    """Scores every point (a failure scores +inf, recorded as ``val_nll: null``); the trial table and
    the choice: the best trial's ModelConfig, schedule overrides and params.
    """
    from sirenvae.training import TrainingError

    table = []
    for i, point in enumerate(points):
        row = {"trial": i, "params": point}
        try:
            row |= _score(model, split, point, s, draws, device)
            row["status"] = "ok" if math.isfinite(row["val_nll"]) else "non-finite"
        except TrainingError as e:
            row |= {"status": "diverged", "error": str(e).splitlines()[0]}
        except Exception as e:  # noqa: BLE001 - a failed setting is a result of the search, kept
            row |= {"status": "failed", "error": f"{type(e).__name__}: {e}".splitlines()[0]}
        if row["status"] != "ok":
            row["val_nll"] = None
        table.append(row)
    scores = [math.inf if r["val_nll"] is None else r["val_nll"] for r in table]
    best = min(range(len(scores)), key=scores.__getitem__)
    if math.isinf(scores[best]):
        raise RuntimeError(f"every trial of {model} failed; the first: {table[0].get('error')}")
    point = points[best]
    config = None if model in CLASSICAL else _settings(model, point, s.schedule)[0].to_dict()
    overrides = {k: v for k, v in point.items() if k in SCHEDULE_FIELDS}
    chosen = {"model_config": config, "schedule": overrides, "params": point, "trial": best}
    return {"chosen": chosen | {"val_nll": scores[best]}, "trials": table}


def search_cell(cell: SearchCell, device: str | None = None) -> dict:
    """Runs one cell's trials on its tuning draws (deep models on ``device``, default the CPU); the
    cell's result record (no files written).
    """
    from sirenvae.experiments.runner import draw_data

    start = time.perf_counter()
    s = cell.settings
    seeds = [TUNING_SEED + r for r in range(s.draws)]
    draws = []
    for seed in seeds:
        _, d = draw_data(cell.dataset, cell.factor, s.valid_rows, seed)
        split, n = d.split, d.train.shape[0]
        draws.append((d.train, d.test, seed))
    _check_folds(s.folds, n)
    points = candidates(cell.model, cell.space, s.trials, s.seed, s.schedule)
    result = _search(cell.model, split, points, s, draws, device)
    return {
        "run_id": cell.run_id,
        "digest": cell.digest(),
        "status": "ok",
        "config": cell.to_dict(),
        "train_rows": n,
        "tuning_seeds": seeds,
        **result,
        "seconds": time.perf_counter() - start,
    }


def write_chosen(out: str | Path, settings: SearchSettings) -> Path:
    """Gathers the finished cells in ``out/runs`` that were searched with ``settings`` into
    ``out/chosen.json``: one entry per (dataset, factor, model) with its chosen ModelConfig, schedule
    overrides and trial table.
    """
    out = Path(out)
    want = asdict(settings)
    docs = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("search-*.json"))]
    entries = [
        {k: d["config"][k] for k in ("dataset", "factor", "model", "space")}
        | d["chosen"]
        | {"trials": d["trials"]}
        for d in docs
        if d.get("status") == "ok" and d["config"].get("settings") == want
    ]
    path = out / "chosen.json"
    atomic_write_text(path, json.dumps({"format": FORMAT, "settings": want, "choices": entries}, indent=1))
    return path


def search_rows(
    split,
    x,
    model: str,
    *,
    space: Mapping[str, Sequence] | None = None,
    settings: SearchSettings | None = None,
) -> dict:
    """Chooses ``model``'s settings on your own rows ``x`` (observed nodes in topological order) by
    k-fold cross-validation (``settings.folds``, default 5): ``{"chosen": ..., "trials": [...]}``.
    """
    settings = settings or SearchSettings(folds=5)
    if not settings.folds:
        raise ValueError("search_rows has no fresh rows to score on: set settings.folds to 2 or more")
    _check_folds(settings.folds, x.shape[0])
    points = candidates(model, resolve_space(model, space), settings.trials, settings.seed, settings.schedule)
    return _search(model, split, points, settings, [(x, None, settings.seed)])


def _execute_cell(config: dict, threads: int = 1, device: str | None = None) -> dict:
    """Module-level entry point for workers (Ray pickles it by reference)."""
    from sirenvae.experiments.runner import torch_threads

    with torch_threads(threads):
        return search_cell(SearchCell.from_dict(config), device)

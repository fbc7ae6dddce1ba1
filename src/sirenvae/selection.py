r"""Settings chosen on the user's own rows (``--settings auto``): k-fold cross-validation.

A user has a graph and ``n`` rows, no generator and no tuning draws. :func:`select` tries the fixed
candidates of the variant (:mod:`sirenvae.candidates`) by k-fold cross-validation within those rows:

- **Folds**: ``k = 5`` below 100 rows and ``k = 3`` from 100 rows on (:func:`default_folds`), one
  seeded partition of the rows shared by every candidate and the classical models.
- **Training**: each candidate is trained on ``k - 1`` folds exactly as the final fit is
  (:func:`~sirenvae.pipeline.train_model` with the same optimiser settings, its early-stopping split
  carved from those folds, standardisation fitted on them) and scores each held-out row by its IWAE
  NLL (``K = 100``). Rows are held out once, so every candidate has one out-of-fold NLL per row.
- **Ranking**: the mean out-of-fold NLL; its standard error is the rows' standard deviation over
  :math:`\sqrt n`. With fewer than 40 rows the choice is the simplest candidate (the earliest in the
  list) within one standard error of the best, and a flexible one (``flow``, ``mlp``) in its
  Student-t form (``flow-t``, ``mlp-t``); otherwise the best.
- **Racing**: from the second fold on (40 rows or more), a candidate whose paired per-row difference
  to the current best, over the folds every remaining candidate has finished, exceeds 2 standard
  errors stops there. Decisions wait for whole folds, so they do not depend on how many workers ran
  or in which order the fits finished; every recorded score is an honest held-out one.
- **Classical floor**: factor analysis (its number of factors by its own CV on the training folds)
  and a Ledoit-Wolf Gaussian are scored on the same folds, for comparison only.

Folds run in parallel in worker processes (``workers``, one torch thread each) or as Ray tasks
(``address``), with the data prepared once per worker. With ``directory``, every finished fold is
kept as a small JSON file under ``directory/selection/``, so a killed search resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from sirenvae.candidates import STUDENT_T_FORM, Candidate, candidates_for
from sirenvae.files import atomic_write_text
from sirenvae.graph import LatentSplit
from sirenvae.models import ModelConfig
from sirenvae.models.summed import only_holes_at
from sirenvae.parallel import Pool
from sirenvae.version import __version__

__all__ = [
    "FEW_ROWS",
    "SETTINGS",
    "Selection",
    "SelectionError",
    "SelectionSettings",
    "choose",
    "classical_models",
    "classical_nll",
    "default_folds",
    "large_graph_candidates",
    "mean_se",
    "min_rows",
    "resolve_candidates",
    "select",
]

#: ``--settings``: chosen on the rows, the paper's fixed setting, or a JSON file of settings.
SETTINGS = ("auto", "paper")
#: Below this many rows the choice prefers the simplest candidate within one standard error.
FEW_ROWS = 40
#: Rows a fold's training part needs (so that an early-stopping row can be carved from it).
MIN_FOLD_TRAIN = 8
#: ``folds.json`` and the per-fold result files carry this format number.
FORMAT = 1


class SelectionError(ValueError):
    """The settings search cannot run on these rows (too few rows, every candidate failed, ...)."""


def default_folds(n: int) -> int:
    """The rule for ``k``: 5 folds below 100 rows, 3 from 100 rows on."""
    return 5 if n < 100 else 3


def min_rows(folds: int) -> int:
    """The fewest rows ``folds``-fold cross-validation accepts."""
    return max(2 * folds, math.ceil(MIN_FOLD_TRAIN * folds / (folds - 1)))


@dataclass(frozen=True, kw_only=True)
class SelectionSettings:
    """How :func:`select` runs.

    Attributes:
        folds: ``k`` (default: :func:`default_folds` of the rows).
        importance_samples: ``K`` of the held-out IWAE NLL.
        max_candidates: Try only the first this many candidates (the simplest ones).
        time_budget: Seconds after which only the leader (the most folds, then the best mean) starts
            new folds, so that it finishes; the others are reported as unfinished. Unlike every other option,
            this one can make the outcome depend on the machine's speed.
        workers: Parallel fits (processes, one torch thread each); ``1`` runs in this process.
        address: A Ray cluster's address: the fits run there as Ray tasks instead.
        race_after: Folds before racing may stop a trailing candidate.
        race_se: A candidate trailing the best by more than this many standard errors stops.
        classical: Also score factor analysis and Ledoit-Wolf on the same folds.
        seed: Seeds the folds (and every fit, as the final fit is seeded).
    """

    folds: int | None = None
    importance_samples: int = 100
    max_candidates: int | None = None
    time_budget: float | None = None
    workers: int = 1
    address: str | None = None
    race_after: int = 2
    race_se: float = 2.0
    classical: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.folds is not None and self.folds < 2:
            raise SelectionError(f"folds must be at least 2, got {self.folds}")
        if self.importance_samples < 1:
            raise SelectionError(f"importance_samples must be positive, got {self.importance_samples}")
        if self.max_candidates is not None and self.max_candidates < 1:
            raise SelectionError(f"max_candidates must be at least 1, got {self.max_candidates}")
        if self.time_budget is not None and not self.time_budget > 0:
            raise SelectionError(f"time_budget must be positive seconds, got {self.time_budget}")
        if self.workers < 1:
            raise SelectionError(f"workers must be at least 1, got {self.workers}")


@dataclass
class Selection:
    """The outcome of :func:`select`.

    Attributes:
        variant: The model variant.
        chosen: The chosen candidate's name; ``config`` its :class:`ModelConfig`.
        folds, rows: ``k`` and the number of rows.
        rule: How the choice was made, in words.
        candidates: One dict per candidate: ``candidate``, ``options``, ``cv_nll``, ``se``,
            ``folds_done``, ``status`` (``ok``, ``stopped after j folds``, ``failed``, ...).
        classical: The same for ``fa`` and ``lw`` (empty when skipped), with ``notice`` if skipped.
        table: One dict per candidate x fold: ``candidate``, ``fold``, ``rows``, ``nll``,
            ``epochs``, ``seconds``, ``status`` (``selection.csv``).
        per_row: Each finished candidate's out-of-fold NLL per row (for paired comparisons).
        seconds: Wall time of the search.
    """

    variant: str
    chosen: str
    config: ModelConfig
    folds: int
    rows: int
    rule: str
    candidates: list[dict]
    classical: list[dict]
    table: list[dict]
    per_row: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    seconds: float = 0.0
    notices: list[str] = field(default_factory=list)

    def frame(self):
        """``selection.csv`` as a DataFrame: one row per candidate (and classical model) and fold."""
        import pandas as pd

        return pd.DataFrame(self.table, columns=list(TABLE_COLUMNS))

    def to_meta(self) -> dict:
        """What ``model.json`` records of the search."""
        return {
            "settings": "auto",
            "variant": self.variant,
            "chosen": self.chosen,
            "folds": self.folds,
            "rows": self.rows,
            "rule": self.rule,
            "candidates": self.candidates,
            "classical": self.classical,
            "seconds": self.seconds,
            "notices": self.notices,
        }


#: The columns of ``selection.csv``.
TABLE_COLUMNS = ("candidate", "fold", "rows", "nll", "epochs", "seconds", "status")


#: The options of the prior and encoder (and of the hole proposal, which reads the latents): inert in
#: a model whose hidden nodes are all summed.
LATENT_OPTIONS: tuple[str, ...] = (
    "prior_blocks", "encoder_blocks", "conditioning", "encoder_conditioning", "affine", "hidden_per_set",
    "kappa", "mask_inputs", "hole_proposal", "mask_scale",
)  # fmt: skip


def resolve_candidates(
    variant: str,
    fixed: dict | None = None,
    max_candidates: int | None = None,
    observed: Sequence[str] = (),
    latent: bool = True,
) -> tuple[list[tuple[Candidate, ModelConfig]], list[str]]:
    """The candidates of ``variant`` with the fields of ``fixed`` set in every one (``--set``):
    ``[(candidate, config)]`` without duplicates (a candidate made identical to an earlier one is
    tried once; with every one of the ``observed`` nodes given its own type, the continuous
    ``likelihood`` makes no difference, and without a continuous ``latent`` (every hidden node
    summed) neither do :data:`LATENT_OPTIONS`), and notices for the candidates dropped. A
    candidate with ``summed_tables`` exists only where ``fixed`` sums hidden nodes.
    """
    fixed = dict(fixed or {})
    no_noise = bool(observed) and set(observed) <= set(fixed.get("types") or ())  # every column typed
    out, notices, seen = [], [], {}  # {key: (name, config)} of the candidates kept
    summed = bool(fixed.get("summed"))
    for cand in [c for c in candidates_for(variant) if summed or not c.options.get("summed_tables")][
        :max_candidates
    ]:
        options = cand.options | fixed
        try:
            config = ModelConfig(variant=variant, **options)
        except (TypeError, ValueError) as e:
            notices.append(f"candidate {cand.name!r} is left out: with the fixed options it is invalid ({e})")
            continue
        fields = config.to_dict()
        if no_noise:
            fields["likelihood"] = None  # no node takes it
        if not latent:
            fields.update(dict.fromkeys(LATENT_OPTIONS))
        key = json.dumps(fields, sort_keys=True)
        if key in seen:
            notices.append(
                f"candidate {cand.name!r} is the same as {seen[key][0]!r} {_why_same(config, seen[key][1])}"
            )
            continue
        seen[key] = cand.name, config
        out.append((Candidate(cand.name, options), config))
    if not out:
        raise SelectionError(f"no candidate of {variant} is valid with the fixed options: {notices[0]}")
    if no_noise:
        t_named = [c.name for c, config in out if config.likelihood == "studentt"]
        if t_named:
            notices.append(
                f"no column is continuous, so {', '.join(map(repr, t_named))} take(s) no Student-t noise "
                "here: each differs from the others in its decoder alone"
            )
    return out, notices


def _why_same(config: ModelConfig, other: ModelConfig) -> str:
    """Why two candidates' configurations make the same model: the fields they differ in do not apply."""
    a, b = config.to_dict(), other.to_dict()
    differ = {k for k in a if a[k] != b.get(k)}
    if not differ or not differ <= {"likelihood", *LATENT_OPTIONS}:
        return "with the fixed options"
    reasons = (
        ["no column is continuous, so the noise family does not apply"] if "likelihood" in differ else []
    )
    if differ - {"likelihood"}:
        reasons.append("every hidden node is summed out, so no option of the latents applies")
    return f"here ({'; '.join(reasons)})"


#: A fold whose held-out NLL is this many nats per row above the median of the candidate's folds is
#: flagged in the table (a fit that blew up on some held-out rows).
FAR_OFF = 10.0

#: From this many nodes, ``auto`` tries only the two simplest candidates unless told otherwise; from
#: :data:`HUGE_GRAPH` on it fits the simplest one without cross-validation (a fold of a graph that
#: size takes minutes to hours on a CPU).
LARGE_GRAPH = 500
HUGE_GRAPH = 2000


def large_graph_candidates(nodes: int, max_candidates: int | None) -> tuple[int | None, str | None]:
    """How many candidates ``auto`` tries on a graph of ``nodes`` nodes, and a notice saying so."""
    if max_candidates is not None or nodes < LARGE_GRAPH:
        return max_candidates, None
    return 2, (
        f"the graph has {nodes} nodes: auto tries the 2 simplest candidates only "
        "(--max-candidates N tries more, --settings paper none)"
    )


def fold_indices(n: int, folds: int, seed: int) -> list[np.ndarray]:
    """The held-out rows of each fold: a seeded permutation of ``range(n)`` cut into ``folds`` parts."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    return [np.sort(p) for p in np.array_split(perm, folds)]


# ---------------------------------------------------------------------- the search
def select(
    split: LatentSplit,
    x: Tensor,
    variant: str,
    *,
    fixed: dict | None = None,
    fit_config,
    options,
    settings: SelectionSettings | None = None,
    directory: str | Path | None = None,
    device: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> Selection:
    """Chooses the settings of ``variant`` on the rows ``x`` (observed nodes in topological order)
    by k-fold cross-validation (see the module's docstring); ``fixed`` holds ModelConfig fields set
    in every candidate, ``fit_config`` and ``options`` the training every fit gets (a
    :class:`~sirenvae.training.FitConfig` and :class:`~sirenvae.pipeline.TrainOptions`).
    """
    from sirenvae import graph_io
    from sirenvae.pipeline import data_fingerprint

    settings = settings or SelectionSettings(seed=fit_config.seed)
    start = time.perf_counter()
    n = int(x.shape[0])
    k = settings.folds or default_folds(n)
    if n < min_rows(k):
        raise SelectionError(
            f"--settings auto needs at least {min_rows(k)} rows for {k}-fold cross-validation, got {n}; "
            "give more rows or --settings paper (the fixed setting)"
        )
    most, notice = large_graph_candidates(len(split.graph), settings.max_candidates)
    chosen_list, notices = resolve_candidates(variant, fixed, most, split.observed, bool(split.latent))
    notices = ([notice] if notice else []) + notices
    parts = fold_indices(n, k, settings.seed)
    x_cpu = x.detach().cpu()
    fit_dict = fit_config.to_dict() | {"progress": False}
    opt_dict = asdict(options)
    graph = graph_io.to_dict(split.graph)
    cache = _Cache(directory, {"format": FORMAT, "data": data_fingerprint(x_cpu), "folds": k,
                               "seed": settings.seed, "fit": fit_dict, "options": opt_dict,
                               "K": settings.importance_samples, "graph": graph,
                               "latent": list(split.latent), "version": __version__})  # fmt: skip
    tasks = {}
    for c, (_, config) in enumerate(chosen_list):
        for f, held in enumerate(parts):
            tasks[c, f] = {
                "config": config.to_dict(),
                "fit": fit_dict,
                "options": opt_dict,
                "held": held.tolist(),
                "importance_samples": settings.importance_samples,
                "device": device,
            }
    results = {key: r for key in tasks if (r := cache.load(key, tasks[key])) is not None}
    names = [cand.name for cand, _ in chosen_list]
    racing = n >= FEW_ROWS and len(chosen_list) > 1
    live = {c: "ok" for c in range(len(chosen_list))}
    decided = -1

    def report(key, r):
        c, f = key
        if progress is None:
            return
        value = f"{np.mean(r['nll']):.3f}" if r.get("status") == "ok" else r.get("status")
        if live[c] != "ok":
            late, best = f" (not counted: {live[c]})", None
        elif racing and f >= settings.race_after and f > decided + 1:  # run early: counts if racing keeps it
            late, best = f" (provisional: racing decides once every candidate has fold {decided + 2})", None
        else:
            late, best = "", _best_so_far(results, live, parts, names)
        took = f"[{len(results)} of at most {len(tasks)} fits, {time.perf_counter() - start:.0f} s]"
        progress(
            f"{names[c]} fold {f + 1}/{k}: {value}{late}"
            + (f"  (best with every fold done: {best})" if best else "")
            + f"  {took}"
        )

    def decide() -> None:
        """Advances the decisions fold by fold, each once every remaining candidate has that fold: its
        failures, then racing. A result beyond the frontier (a fold started early on a free worker)
        waits for it, so the outcome does not depend on the workers or the order fits finish in.
        """
        nonlocal decided
        while decided + 1 < k:
            f = decided + 1
            alive = [c for c in live if live[c] == "ok"]
            if not all((c, f) in results for c in alive):
                return
            for c in alive:
                if results[c, f].get("status") != "ok":
                    bad = results[c, f]
                    live[c] = bad["status"] + (f": {bad['error']}" if bad.get("error") else "")
            if not any(v == "ok" for v in live.values()):  # the leader failed: the raced ones go on
                for c in live:
                    if live[c].startswith("stopped after"):
                        live[c] = "ok"
                if any(v == "ok" for v in live.values()):
                    continue
            decided = f
            if racing and f + 1 >= settings.race_after and f + 1 < k:
                before = [c for c in live if live[c] == "ok"]
                _race(results, live, parts[: f + 1], settings.race_se, f + 1)
                for c in before:
                    if live[c] != "ok" and progress is not None:
                        progress(
                            f"{names[c]} {live[c]}: more than {settings.race_se:g} paired standard errors "
                            "behind the best (folds it already ran beyond are not counted, so the choice "
                            "does not depend on --workers)"
                        )

    def pending() -> list[tuple[int, int]]:
        """The fits still to start, fold by fold, of the candidates still in the running; past the time
        budget only those of the leader (the best mean over its finished folds) so that one finishes.
        """
        todo = [(c, f) for f in range(k) for c in live if live[c] == "ok" and (c, f) not in results]
        todo = [key for key in todo if key not in pool.running.values()]
        if settings.time_budget is None or time.perf_counter() - start <= settings.time_budget:
            return todo
        alive = [c for c in live if live[c] == "ok"]
        lead = min(alive, key=lambda c: (-_folds_done(results, c, k), _partial_mean(results, c, k), c))
        for c in alive:
            if c != lead and any((c, f) not in results for f in range(k)):
                live[c] = "time budget"
        return [key for key in todo if key[0] == lead]

    decide()
    payload = {"graph": graph, "latent": list(split.latent), "x": x_cpu.numpy(), "token": uuid.uuid4().hex}
    if any(key not in results for key in tasks):
        pool = Pool(payload, settings.workers, settings.address, device)
        try:
            while True:
                todo = pending()
                while pool.free and todo:
                    key = todo.pop(0)
                    pool.submit(key, tasks[key])
                if not pool.running:
                    break
                for key, r in pool.wait():
                    results[key] = r
                    cache.save(key, tasks[key], r)
                    report(key, r)
                    decide()
        finally:
            pool.close()
    decide()
    for c in live:
        if live[c] == "ok" and not all(results.get((c, f), {}).get("status") == "ok" for f in range(k)):
            live[c] = "time budget"
    summed = [split.observed.index(v) for v in (fixed or {}).get("summed", ()) if v in split.observed]
    exact = not split.latent and only_holes_at(x_cpu, summed)  # no draw: every fold's NLL is exact
    return _outcome(
        variant, chosen_list, names, live, results, parts, n, k, x_cpu, settings, notices,
        time.perf_counter() - start, exact,
    )  # fmt: skip


def _folds_done(results: dict, c: int, k: int) -> int:
    return sum((c, f) in results for f in range(k))


def _partial_mean(results: dict, c: int, k: int) -> float:
    """Candidate ``c``'s mean held-out NLL over the folds it has finished (0 before any)."""
    values = [v for f in range(k) if (c, f) in results for v in results[c, f].get("nll", [])]
    return float(np.mean(values)) if values else 0.0


def _oof(results: dict, c: int, parts: Sequence[np.ndarray], n: int | None = None) -> np.ndarray:
    """Candidate ``c``'s out-of-fold NLL over the rows of ``parts`` (in the parts' order, or by row
    index when ``n`` is given).
    """
    if n is None:
        return np.concatenate([np.asarray(results[c, f]["nll"]) for f in range(len(parts))])
    out = np.full(n, np.nan)
    for f, held in enumerate(parts):
        out[held] = results[c, f]["nll"]
    return out


def _race(results: dict, live: dict, parts, race_se: float, done: int) -> None:
    """Stops each remaining candidate trailing the best by more than ``race_se`` paired standard
    errors over the first ``done`` folds.
    """
    alive = [c for c in live if live[c] == "ok"]
    scores = {c: _oof(results, c, parts) for c in alive}
    best = min(alive, key=lambda c: (scores[c].mean(), c))
    for c in alive:
        if c == best:
            continue
        d = scores[c] - scores[best]
        se = d.std(ddof=1) / math.sqrt(len(d)) if len(d) > 1 else math.inf
        if d.mean() > race_se * se:
            live[c] = f"stopped after {done} folds"


def _best_so_far(results: dict, live: dict, parts, names) -> str | None:
    k = len(parts)
    done = [c for c in live if live[c] == "ok" and all((c, f) in results for f in range(k))]
    if not done:
        return None
    means = {c: float(np.mean(_oof(results, c, parts))) for c in done}
    best = min(means, key=lambda c: (means[c], c))
    return f"{names[best]} {means[best]:.3f}"


def _outcome(variant, chosen_list, names, live, results, parts, n, k, x, settings, notices, seconds, exact):
    table, summary, per_row = [], [], {}
    for c, (cand, _) in enumerate(chosen_list):
        for f in _counted(results, c, k, live[c]):
            r = results[c, f]
            table.append(
                {
                    "candidate": cand.name,
                    "fold": f + 1,
                    "rows": len(parts[f]),
                    "nll": float(np.mean(r["nll"])) if r.get("status") == "ok" else math.nan,
                    "epochs": r.get("epochs"),
                    "seconds": round(r.get("seconds", 0.0), 3),
                    "status": r.get("status"),
                }
            )
        row = {"candidate": cand.name, "options": cand.options, "status": live[c]}
        done = [f for f in _counted(results, c, k, live[c]) if results[c, f].get("status") == "ok"]
        row["folds_done"] = len(done)
        fold_nll = {f + 1: float(np.mean(results[c, f]["nll"])) for f in done}
        if len(fold_nll) > 1:
            worst = max(fold_nll, key=fold_nll.__getitem__)
            if fold_nll[worst] > float(np.median(list(fold_nll.values()))) + FAR_OFF:
                row["far_off"] = (worst, fold_nll[worst])
        if live[c] == "ok":
            values = _oof(results, c, parts, n)
            per_row[cand.name] = values
            row["cv_nll"], row["se"] = mean_se(values)
        elif done:
            values = np.concatenate([np.asarray(results[c, f]["nll"]) for f in done])
            row["cv_nll"], row["se"] = mean_se(values)
        summary.append(row)
    if not any(row["status"] == "ok" for row in summary):
        first = next((row["status"] for row in summary), "no candidate")
        raise SelectionError(f"every candidate of {variant} failed on the folds; the first: {first}")
    pick, rule = choose(summary, n)
    _paired_to(summary, pick, results, parts, k, live)
    score = "exact NLL" if exact else f"IWAE NLL (K = {settings.importance_samples})"
    rule = f"{k}-fold CV on {n} rows, held-out {score}; {rule}"
    summary[pick]["chosen"] = True
    config = chosen_list[pick][1]
    mixed = [v for v in non_gaussian(config.types) if v not in config.summed]  # columns, not hidden nodes
    if settings.classical and mixed:
        notices.append(
            "the classical models are skipped: they are Gaussian, and these rows have non-Gaussian "
            f"columns ({', '.join(mixed[:6])}{', ...' if len(mixed) > 6 else ''})"
        )
    columns = ~x.isnan().all(0)  # not the summed nodes' (a training column is never all missing)
    floor = settings.classical and not mixed
    classical = _classical(x[:, columns], parts, settings, table, per_row) if floor else []
    if settings.classical and classical and "notice" in classical[0]:
        notices.append(classical.pop(0)["notice"])
    for row in classical:  # paired with the chosen candidate over every row
        row["vs_chosen"], row["vs_se"] = mean_se(per_row[row["candidate"]] - per_row[names[pick]])
    return Selection(
        variant=variant,
        chosen=names[pick],
        config=chosen_list[pick][1],
        folds=k,
        rows=n,
        rule=rule,
        candidates=summary,
        classical=classical,
        table=table,
        per_row=per_row,
        seconds=seconds,
        notices=notices,
    )


def _paired_to(summary: list[dict], pick: int, results: dict, parts, k: int, live: dict) -> None:
    """Each candidate's mean paired difference to the chosen one (``vs_chosen``, with ``vs_se``) over
    the rows of the folds it finished, so that a candidate stopped early is compared on its own
    folds, not by a mean over fewer rows.
    """
    for c, row in enumerate(summary):
        done = [f for f in _counted(results, c, k, live[c]) if results[c, f].get("status") == "ok"]
        if c == pick or not done:
            continue
        d = np.concatenate([np.asarray(results[c, f]["nll"]) - results[pick, f]["nll"] for f in done])
        row["vs_chosen"], row["vs_se"] = mean_se(d)


def choose(summary: Sequence[dict], n: int) -> tuple[int, str]:
    """The index of the chosen candidate among ``summary`` (dicts with ``status``, ``cv_nll``,
    ``se``, simplest first) and the rule in words: the lowest CV NLL, or with fewer than
    :data:`FEW_ROWS` rows the simplest candidate within one standard error of it, in its Student-t
    form where it is a flexible one that has such a form (:data:`~sirenvae.candidates.STUDENT_T_FORM`).
    """
    finished = [i for i, row in enumerate(summary) if row["status"] == "ok"]
    best = min(finished, key=lambda i: (summary[i]["cv_nll"], i))
    if n >= FEW_ROWS:
        return best, "the lowest mean held-out NLL"
    limit = summary[best]["cv_nll"] + summary[best]["se"]
    pick = next(i for i in finished if summary[i]["cv_nll"] <= limit)
    name = summary[best]["candidate"]
    rule = (
        f"fewer than {FEW_ROWS} rows, so the simplest candidate within one standard error "
        f"({summary[best]['se']:.3f}) of the best ({name})"
    )
    heavy = STUDENT_T_FORM.get(summary[pick]["candidate"])
    twin = next((i for i in finished if summary[i]["candidate"] == heavy), None)
    if twin is not None:
        rule += (
            f", {summary[pick]['candidate']} taken in its Student-t form ({heavy}): a flexible decoder fits "
            "so few rows closely, and heavy tails bound what a new row pays for it"
        )
        pick = twin
    return pick, rule


def mean_se(values: np.ndarray) -> tuple[float, float]:
    """The mean of per-row values and its standard error, sd / sqrt(n) (inf for a single value)."""
    se = values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else math.inf
    return float(values.mean()), float(se)


def _counted(results: dict, c: int, k: int, status: str) -> list[int]:
    """The folds of candidate ``c`` that count: all of a finished one, the first ``j`` of one stopped
    after ``j`` folds (a fold it had started beyond them is dropped), those up to a failure.
    """
    if status.startswith("stopped after"):
        return list(range(int(status.split()[2])))
    out = []
    for f in range(k):
        if (c, f) in results:
            out.append(f)
            if results[c, f].get("status") != "ok":
                break
    return out


#: The families of real-valued columns that the classical (Gaussian) models can score.
CONTINUOUS = ("normal", "studentt")


def non_gaussian(types: dict[str, str]) -> list[str]:
    """The columns of ``ModelConfig.types`` that no Gaussian (the classical models) can score."""
    return sorted(v for v, t in types.items() if t not in CONTINUOUS)


#: The classical models scored beside the candidates.
CLASSICAL_NAMES = {"fa": "factor analysis", "lw": "Ledoit-Wolf", "em": "Gaussian (EM)"}


def classical_models(x: Tensor) -> tuple[str, ...]:
    """The classical models that can score the rows ``x``: factor analysis and Ledoit-Wolf, or with
    missing cells a Gaussian fitted by EM (each scores the present cells exactly).
    """
    from sirenvae.baselines import BASELINES, HOLEY_BASELINES

    return HOLEY_BASELINES if bool(x.isnan().any()) else BASELINES


def classical_nll(name: str, train: Tensor, test: Tensor, seed: int) -> np.ndarray:
    """The exact NLL of each row of ``test`` under the classical model ``name`` fitted on ``train``."""
    from sirenvae.baselines import fit_classical

    model = fit_classical(name, train.double(), seed=seed)
    return -model.log_prob(test.double()).numpy()


def _classical(x: Tensor, parts, settings: SelectionSettings, table: list, per_row: dict) -> list[dict]:
    """The classical models (:func:`classical_models`) on the same folds: their rows of the table and
    summaries.
    """
    n = x.shape[0]
    out, rows = [], []
    names = classical_models(x)
    for name in names:
        values = np.full(n, np.nan)
        try:
            for f, held in enumerate(parts):
                mask = np.ones(n, dtype=bool)
                mask[held] = False
                start = time.perf_counter()
                values[held] = classical_nll(
                    name, x[torch.as_tensor(mask)], x[torch.as_tensor(held)], settings.seed
                )
                rows.append(
                    {
                        "candidate": name,
                        "fold": f + 1,
                        "rows": len(held),
                        "nll": float(values[held].mean()),
                        "epochs": None,
                        "seconds": round(time.perf_counter() - start, 3),
                        "status": "ok",
                    }
                )
        except Exception as e:  # noqa: BLE001 - the floor is a comparison, never a reason to stop
            for other in names:
                per_row.pop(other, None)
            return [{"notice": f"the classical models are skipped on these rows ({type(e).__name__}: {e})"}]
        per_row[name] = values
        mean, se = mean_se(values)
        out.append({"candidate": name, "cv_nll": mean, "se": se})
    table.extend(rows)  # all of them or none
    return out


class _Cache:
    """Finished folds kept in ``directory/selection/`` (one JSON file each), for ``--resume``."""

    def __init__(self, directory, common: dict) -> None:
        self.dir = None if directory is None else Path(directory) / "selection"
        self.common = common

    def _digest(self, task: dict) -> str:
        doc = json.dumps(
            self.common | {"task": {k: v for k, v in task.items() if k != "device"}}, sort_keys=True
        )
        return hashlib.sha256(doc.encode()).hexdigest()[:16]

    def load(self, key, task: dict) -> dict | None:
        if self.dir is None:
            return None
        path = self.dir / f"{self._digest(task)}.json"
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return doc.get("result") if isinstance(doc, dict) else None

    def save(self, key, task: dict, result: dict) -> None:
        if self.dir is None or result.get("status") == "failed":  # a crash may not happen again
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        doc = {"candidate": key[0], "fold": key[1] + 1, "config": task["config"], "result": result}
        atomic_write_text(self.dir / f"{self._digest(task)}.json", json.dumps(doc))

"""Run experiment grids: each run is a task (on Ray, or in this process), each result its own JSON.

A finished run writes ``runs/<run_id>.json`` atomically; a sweep started again skips every run whose
file exists and matches its configuration, so an interrupted sweep resumes. A run that raises is
retried once and then reported in ``runs/<run_id>.failed.json`` and in the sweep's summary, never
dropped. Each run uses one thread and its own seeds, so a result does not depend on where it ran.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from sirenvae.baselines import ClassicalConfig
from sirenvae.devices import torch_threads
from sirenvae.experiments.protocol import QUICK, RunConfig, Schedule, default_config
from sirenvae.files import atomic_write_text
from sirenvae.graph import LatentSplit
from sirenvae.models import ModelConfig
from sirenvae.models.vae import prior_draws
from sirenvae.version import __version__

if TYPE_CHECKING:
    from sirenvae.models import SIReNVAE
    from sirenvae.training import History

__all__ = ["SweepResult", "load_results", "run_one", "run_sweep", "torch_threads", "train_run"]

logger = logging.getLogger(__name__)


def run_one(config: RunConfig, threads: int = 1, device: str | None = None) -> dict:
    """Trains and evaluates one run on one thread (or ``threads``) and ``device`` (default: the CPU);
    returns its result record (no files written). The caller's number of torch threads is restored
    when it returns or raises. The device is not part of the run's configuration: a run's result
    does not depend on where it ran beyond round-off.
    """
    with torch_threads(threads):
        return _run_one(config, device)


def train_run(
    split: LatentSplit,
    train: Tensor,
    model_config: ModelConfig,
    schedule: Schedule,
    seed: int,
    *,
    progress: bool = False,
    device: str | torch.device | None = None,
) -> tuple[SIReNVAE, History]:
    """Trains a model on ``train`` as every experiment run does (``schedule``'s optimiser settings for
    ``len(train)`` rows, seeded by ``seed``); returns ``(model, history)``. The search trains its
    trials with this too, so a chosen setting is chosen for exactly the training it will get.
    """
    from sirenvae.pipeline import train_model

    fit_config, options = schedule_configs(schedule, train.shape[0], seed, progress=progress)
    return train_model(
        split, train, model_config=model_config, fit_config=fit_config, options=options, device=device
    )


def schedule_configs(schedule: Schedule, n: int, seed: int, *, progress: bool = False):
    """The :class:`~sirenvae.training.FitConfig` and :class:`~sirenvae.pipeline.TrainOptions` of
    ``schedule`` for ``n`` training rows, seeded by ``seed``.
    """
    from sirenvae.pipeline import TrainOptions
    from sirenvae.training import FitConfig

    max_epochs, patience = schedule.epochs(n)
    fit_config = FitConfig(
        lr=schedule.lr,
        batch_size=schedule.batch_size(n),
        max_epochs=max_epochs,
        patience=patience,
        seed=seed,
        progress=progress,
    )
    options = TrainOptions(
        valid_fraction=schedule.valid_fraction,
        warmup_steps=schedule.warmup_steps,
        valid_samples=schedule.valid_samples,
    )
    return fit_config, options


def draw_data(dataset: str, factor: int, test_size: int, seed: int):
    """A shipped network and a seeded draw of ``factor·|G|`` training rows and ``test_size`` others,
    with the dataset's latent rule: ``(network, splits)``, as every run and search trial uses them.
    """
    from sirenvae.data import default_latent_rule, latent_split, sample_splits
    from sirenvae.networks import load_network

    net = load_network(dataset)
    split = latent_split(net.graph, default_latent_rule(dataset))
    n = factor * len(net.graph)
    return net, sample_splits(net, split, train_size=n, test_size=test_size, seed=seed)


def _run_one(config: RunConfig, device: str | None = None) -> dict:
    start = time.perf_counter()
    s = config.schedule
    net, splits = draw_data(config.dataset, config.train_factor, s.test_size, config.seed)
    n = splits.train.shape[0]
    model_config = config.model_config or default_config(config.model)
    fit = _fit_classical if isinstance(model_config, ClassicalConfig) else _fit_deep
    doc, trained = fit(config, model_config, splits, device)
    truth = _oracle(net, config.dataset, splits.test, splits.observed)
    return {
        "run_id": config.run_id,
        "digest": config.digest(),
        "status": "ok",
        "config": config.to_dict(),
        "train_rows": n,
        **doc,
        **({"prior_draws": prior_draws(s.importance_samples)} if fit is _fit_deep else {}),  # defensive draws
        "oracle_nll": truth["nll"],
        "oracle": truth,
        "train_seconds": trained - start,
        "eval_seconds": time.perf_counter() - trained,
        "sirenvae_version": __version__,
        "host": platform.node(),
    }


def _fit_deep(config: RunConfig, model_config, splits, device: str | None = None) -> tuple[dict, float]:
    """Trains and evaluates a VAE; returns its part of the record and when training ended."""
    from sirenvae.objectives import evaluate

    s = config.schedule
    if config.auto:
        return _fit_auto(config, splits, device)
    model, history = train_run(splits.split, splits.train, model_config, s, config.seed, device=device)
    trained = time.perf_counter()
    torch.manual_seed(config.seed)
    metrics = evaluate(model, splits.test.to(model.loc.device), importance_samples=s.importance_samples)
    return {
        "metrics": {k: metrics[k] for k in ("nll", "neg_elbo", "re")},
        "epochs": len(history.train_loss),
        "best_epoch": history.best_epoch,
        "stopped": history.stopped,
    }, trained


def _fit_auto(config: RunConfig, splits, device: str | None = None) -> tuple[dict, float]:
    """The user's protocol: trained exactly as a default ``sirenvae fit`` is (the training defaults
    of :mod:`sirenvae.defaults`, not the schedule's steps), settings chosen by k-fold CV on the
    training rows only (:func:`sirenvae.selection.select`), the winner trained on all of them and
    tested. For the selection regret, every candidate is also trained on all training rows and tested
    (in hindsight; the chosen one's fit is the run's own).
    """
    from sirenvae.objectives import evaluate
    from sirenvae.pipeline import TrainOptions, train_model
    from sirenvae.selection import SelectionSettings, resolve_candidates, select
    from sirenvae.training import FitConfig

    s = config.schedule
    fit_config, options = FitConfig(seed=config.seed), TrainOptions()
    if s == QUICK:  # --quick checks the pipeline: a few epochs
        fit_config, options = (
            FitConfig(seed=config.seed, max_epochs=3, patience=3),
            TrainOptions(warmup_steps=10),
        )
    chosen = select(
        splits.split,
        splits.train,
        config.model,
        fit_config=fit_config,
        options=options,
        settings=SelectionSettings(seed=config.seed),
        device=device,
    )
    test = splits.test
    hindsight, own = {}, None
    for candidate, model_config in resolve_candidates(config.model)[0]:
        model, history = train_model(
            splits.split,
            splits.train,
            model_config=model_config,
            fit_config=fit_config,
            options=options,
            device=device,
        )
        torch.manual_seed(config.seed)
        metrics = evaluate(model, test.to(model.loc.device), importance_samples=s.importance_samples)
        hindsight[candidate.name] = {k: metrics[k] for k in ("nll", "neg_elbo", "re")}
        if candidate.name == chosen.chosen:
            own = (metrics, history, model_config)
    trained = time.perf_counter()
    metrics, history, model_config = own
    best = min(v["nll"] for v in hindsight.values())
    return {
        "metrics": {k: metrics[k] for k in ("nll", "neg_elbo", "re")},
        "epochs": len(history.train_loss),
        "best_epoch": history.best_epoch,
        "stopped": history.stopped,
        "chosen_config": model_config.to_dict(),
        "selection": chosen.to_meta(),
        "hindsight": hindsight,
        "regret": metrics["nll"] - best,
    }, trained


def _fit_classical(config: RunConfig, model_config, splits, device: str | None = None) -> tuple[dict, float]:
    """Fits a classical baseline on the training rows (no VAE) and scores it exactly: its NLL is the
    exact Gaussian one and, the ELBO with the exact posterior being the log-likelihood, so is its
    −ELBO; RE under the exact posterior (factor analysis) or ``None`` (Ledoit–Wolf).
    """
    from sirenvae.baselines import fit_classical

    model = fit_classical(model_config, splits.train, seed=config.seed)
    trained = time.perf_counter()
    nll = -model.log_prob(splits.test.double()).mean().item()
    re = model.reconstruction_error(splits.test.double())
    return {
        "metrics": {"nll": nll, "neg_elbo": nll, "re": None if re is None else re.mean().item()},
        "fit": model.fit,
        "epochs": 0,
        "best_epoch": None,
        "stopped": None,
    }, trained


_ORACLES: dict[tuple, dict] = {}


def _oracle(net, dataset: str, test, observed) -> dict:
    """The true network's NLL of the test rows (exact, or a seeded Monte-Carlo estimate), computed once
    per process for each test set: every model and size of a seed shares it.
    """
    from sirenvae.networks import oracle

    key = (dataset, tuple(observed), hashlib.sha256(test.numpy().tobytes()).hexdigest())
    if key not in _ORACLES:
        _ORACLES[key] = oracle(net, test, observed).to_dict()
    return dict(_ORACLES[key])


def _execute(config: dict, threads: int = 1, device: str | None = None) -> dict:
    """Module-level entry point for workers (Ray pickles it by reference)."""
    return run_one(RunConfig.from_dict(config), threads, device)


@dataclass
class SweepResult:
    """What a sweep did."""

    completed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    interrupted: bool = False


def _result_path(out: Path, run_id: str, failed: bool = False) -> Path:
    return out / "runs" / f"{run_id}{'.failed' if failed else ''}.json"


def _write_json(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(doc, indent=1))


def _is_done(out: Path, config: RunConfig) -> bool:
    path = _result_path(out, config.run_id)
    try:
        doc = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return False
    return doc.get("status") == "ok" and doc.get("digest") in config.digests()


def load_results(out: str | Path, configs: Sequence[RunConfig] | None = None) -> list[dict]:
    """The finished results in ``out`` (those of ``configs`` only, if given), in a stable order."""
    out = Path(out)
    wanted = None if configs is None else {c.run_id: c.digests() for c in configs}
    results = []
    for path in sorted((out / "runs").glob("*.json")):
        if path.name.endswith(".failed.json"):
            continue
        doc = json.loads(path.read_text())
        if wanted is None or doc.get("digest") in wanted.get(doc.get("run_id"), ()):
            results.append(doc)
    return results


def run_sweep(
    configs: Sequence[RunConfig],
    out: str | Path,
    *,
    use_ray: bool = True,
    address: str | None = None,
    workers: int = 2,
    retries: int = 1,
    stop_after: int | None = None,
    on_result: Callable[[dict], None] | None = None,
    execute: Callable[[dict], dict] = _execute,
    gpus_per_run: float = 0.0,
) -> SweepResult:
    """Runs every configuration not finished yet in ``out``.

    Arguments:
        configs: The runs.
        out: The sweep directory (``runs/`` holds one JSON per run).
        use_ray: Run each configuration as a Ray task (local instance, or ``address``).
        address: A Ray cluster address; a local instance with ``workers`` CPUs by default.
        workers: CPUs of the local Ray instance.
        retries: Extra attempts for a run that raised.
        stop_after: Stop once this many runs finished in this call (an interruption, for tests).
        on_result: Called with each new result.
        execute: The function a worker runs on a configuration's dict (tests inject faults here).
        gpus_per_run: The share of a GPU each Ray task asks for (Ray hides GPUs from tasks that ask
            for none, so runs on CUDA need it).
    """
    out = Path(out)
    start = time.perf_counter()
    result = SweepResult()
    pending = []
    for c in configs:
        if _is_done(out, c):
            result.skipped.append(c.run_id)
        else:
            pending.append(c)
    attempts = {c.run_id: 0 for c in pending}
    by_id = {c.run_id: c for c in pending}

    def record_outcome(run_id: str, doc: dict | None, error: str | None) -> bool:
        """Stores a result (``doc``) or a failure (``error``); returns ``retry``: whether the run
        failed and has attempts left, so that it is to be run again (nothing is stored then).
        """
        attempts[run_id] += 1
        if doc is not None:
            _write_json(_result_path(out, run_id), doc)
            _result_path(out, run_id, failed=True).unlink(missing_ok=True)
            result.completed.append(run_id)
            if on_result is not None:
                on_result(doc)
            return False
        if attempts[run_id] <= retries:
            logger.warning("run %s failed (attempt %d), retrying: %s", run_id, attempts[run_id], error)
            return True
        result.failed[run_id] = error or "unknown error"
        _write_json(
            _result_path(out, run_id, failed=True),
            {
                "run_id": run_id,
                "status": "failed",
                "attempts": attempts[run_id],
                "error": error,
                "config": by_id[run_id].to_dict(),
            },
        )
        return False

    def enough() -> bool:
        return stop_after is not None and len(result.completed) >= stop_after

    if not use_ray:
        for c in pending:
            while True:
                try:
                    doc, error = execute(c.to_dict()), None
                except Exception:  # noqa: BLE001 - any failure of a run is recorded, never lost
                    doc, error = None, traceback.format_exc(limit=3)
                retry = record_outcome(c.run_id, doc, error)
                if not retry:
                    break
            if enough():
                result.interrupted = c is not pending[-1]
                break
    elif pending:
        import ray

        if not ray.is_initialized():
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)

        def task(config: dict) -> dict:  # Ray takes functions, not partials or other callables
            return execute(config)

        remote = ray.remote(num_cpus=1, num_gpus=gpus_per_run, max_retries=0)(task)
        running = {remote.remote(c.to_dict()): c.run_id for c in pending}
        while running:
            ready, _ = ray.wait(list(running), num_returns=1)
            ref = ready[0]
            run_id = running.pop(ref)
            try:
                doc, error = ray.get(ref), None
            except Exception as e:  # noqa: BLE001 - a task's failure is recorded, never lost
                doc, error = None, f"{type(e).__name__}: {e}"[:2000]
            retry = record_outcome(run_id, doc, error)
            if retry:
                running[remote.remote(by_id[run_id].to_dict())] = run_id
            if enough() and running:
                for r in running:
                    ray.cancel(r, force=True)
                result.interrupted = True
                break
    result.seconds = time.perf_counter() - start
    return result


def machine() -> dict:
    """A description of this machine for the results' provenance."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "sirenvae": __version__,
    }

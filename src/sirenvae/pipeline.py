"""Train, save, load and evaluate SIReN-VAE models in a run directory (used by the CLI and sweeps).

A run directory holds ``checkpoint.json`` (+ tensors) while training, for ``resume``, and
``model.json`` (+ tensors) once training has finished: the best parameters, the configuration, the
graph, the latent set, the column order of the data and the package version. Its ``status`` is
``finished``, or ``diverged`` when training stopped on a non-finite loss: then it holds the best epoch
before that, loadable like any model, and ``resume`` continues from the last checkpoint (typically
with a lower learning rate; changed optimiser settings are recorded in the history).
The losses per epoch are in ``history.csv`` and, as a picture, in ``training.png``.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

from sirenvae import graph_io
from sirenvae.devices import resolve_device
from sirenvae.graph import GraphError, LatentSplit
from sirenvae.models import ModelConfig, SIReNVAE, build_model
from sirenvae.objectives import elbo, iwae, warmup_elbo
from sirenvae.plots import write_history
from sirenvae.training import (
    CheckpointError,
    FitConfig,
    History,
    TrainingError,
    fit,
    load_checkpoint,
    save_checkpoint,
    state_from_tensors,
    state_to_tensors,
)

__all__ = ["RunExists", "TrainOptions", "data_fingerprint", "load_model", "remove_run", "train_model"]


class RunExists(ValueError):
    """The output directory already holds a run; resume it or choose another directory."""


@dataclass(frozen=True, kw_only=True)
class TrainOptions:
    r"""How a model is trained, besides the optimiser settings of :class:`FitConfig`.

    Attributes:
        valid_fraction: Share of the training rows held out for early stopping (carved from the
            training budget, never extra data; none for a model whose hidden nodes are all summed:
            it stops when its training objective, exact, stalls).
        samples: Posterior samples per row in the training objective.
        objective: ``elbo`` or ``iwae`` (with ``samples`` importance samples).
        warmup_steps: Optimiser steps over which the weight of :math:`\log p(z) - \log q(z \mid x)`
            in the ELBO rises linearly from 0 to 1 (KL warm-up, Sonderby et al. 2016), which keeps
            the posterior from collapsing onto the prior early on. Validation always uses the
            full ELBO; early stopping acts no sooner than ``patience`` epochs after the warm-up ends,
            and the parameters kept are the best epoch's from its end on.
        valid_samples: Posterior samples per validation row. With more than one, the validation
            ELBO averages them and uses the same noise at every epoch (common random numbers), so
            that early stopping on a few rows compares epochs rather than draws; ``1`` is the
            single fresh draw of the first releases.
        train_masking: Hide this share of the present cells of every training batch (fresh at
            each step, never a row's last cell), so that a model trained on complete rows also
            meets holes well (its encoder reads them as the training mean); ``0`` (the default)
            trains on the cells as given.
    """

    valid_fraction: float = 0.1
    samples: int = 1
    objective: str = "elbo"
    warmup_steps: int = 500
    valid_samples: int = 1
    train_masking: float = 0.0

    def __post_init__(self) -> None:
        if self.objective not in ("elbo", "iwae"):
            raise ValueError(f"objective must be 'elbo' or 'iwae', got {self.objective!r}")
        if not 0 <= self.valid_fraction < 1:
            raise ValueError(f"valid_fraction must lie in [0, 1), got {self.valid_fraction}")
        if not 0 <= self.train_masking < 1:
            raise ValueError(f"train_masking must lie in [0, 1), got {self.train_masking}")
        if self.valid_samples < 1:
            raise ValueError(f"valid_samples must be at least 1, got {self.valid_samples}")


def hide_cells(x: Tensor, share: float) -> Tensor:
    """``x`` with a random ``share`` of its present cells set to NaN (missing), keeping at least one
    present cell in every row that has one.
    """
    present = ~x.isnan()
    hide = (torch.rand(x.shape, device=x.device) < share) & present
    lost = present.any(1) & ~(present & ~hide).any(1)
    if lost.any():  # give such rows back one present cell, the first
        first = present.float().argmax(1)
        hide[lost, first[lost]] = False
    return torch.where(hide, torch.nan, x)


def data_fingerprint(x: Tensor) -> str:
    """A short hash of a data tensor, to recognise the same training data on resume."""
    return hashlib.sha256(x.detach().cpu().double().contiguous().numpy().tobytes()).hexdigest()[:16]


#: The validation rows are drawn with a generator seeded apart from the training seed.
VALID_SEED_OFFSET = 7919

#: A run's checkpoint is written at most this often, after its last epoch and when training stops
#: on an error or an interrupt (then with the last finished epoch): a small model's epochs last a
#: few milliseconds and writing a checkpoint after each took about a tenth of a final fit.
CHECKPOINT_SECONDS = 10.0


def split_validation(x: Tensor, fraction: float, seed: int) -> tuple[Tensor, Tensor | None]:
    """Carves a validation split out of the training rows (at least one row each when possible)."""
    n = x.shape[0]
    n_valid = int(round(fraction * n))
    if fraction > 0 and n >= 4:
        n_valid = max(1, n_valid)
    if n_valid == 0:
        return x, None
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + VALID_SEED_OFFSET))
    return x[perm[n_valid:]], x[perm[:n_valid]]


def train_model(
    split: LatentSplit,
    train: Tensor,
    *,
    model_config: ModelConfig | None = None,
    fit_config: FitConfig | None = None,
    options: TrainOptions | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    extra_meta: dict | None = None,
    device: str | torch.device | None = None,
    restarts: int = 1,
) -> tuple[SIReNVAE, History]:
    """Builds and trains a model on ``train`` (observed nodes in topological order).

    With ``out``, a checkpoint is written every :data:`CHECKPOINT_SECONDS` (and after the last epoch,
    or the last finished one when training stops on an error or an interrupt) and the final model at
    the end; ``resume`` continues an interrupted run from its last checkpoint. An existing run is never
    overwritten unless ``overwrite`` (which removes its model and checkpoint before training).
    The model trains on ``device`` (default: the CPU) and is returned there; files always hold CPU
    tensors, so a run started on one device resumes on another. A model whose hidden nodes are all
    summed (an exact objective) trains ``restarts`` times, from seeds ``seed``, ``seed + 1``, ...,
    and keeps the lowest training objective (:func:`_best_restart`); other models train once.
    """
    device = resolve_device(device)
    model_config = model_config or ModelConfig()
    fit_config = fit_config or FitConfig()
    options = options or TrainOptions()
    # a model whose hidden nodes are all summed has an exact objective (a MAP fit, its prior the
    # regulariser): it trains on all rows and stops when that objective stalls (docs/results.md,
    # "Discrete hidden nodes": better than early stopping on 9 of 10 tuning draws)
    exact = bool(model_config.summed) and not split.latent
    if restarts > 1 and exact:
        return _best_restart(
            restarts, split, train, model_config=model_config, fit_config=fit_config, options=options,
            out=out, resume=resume, overwrite=overwrite, extra_meta=extra_meta, device=device,
        )  # fmt: skip
    if train.ndim != 2 or train.shape[0] < 2:
        raise ValueError(f"need at least 2 training rows, got {train.shape[0] if train.ndim == 2 else 0}")
    if train.isinf().any():
        raise ValueError("training data contain inf")
    summed = {split.observed.index(v) for v in model_config.summed}  # their columns are holes by design
    holes = train.isnan()[:, [i for i in range(train.shape[1]) if i not in summed]]
    if holes.all(0).any() or holes.all(1).any():
        raise ValueError("training data have a row or a column with every cell missing (NaN)")
    torch.manual_seed(fit_config.seed)
    model = build_model(split, model_config)
    if train.shape[1] != len(model.observed):
        raise ValueError(
            f"training data have {train.shape[1]} columns, the model {len(model.observed)} observed nodes"
        )
    part, valid = split_validation(train, 0.0 if exact else options.valid_fraction, fit_config.seed)
    model.to(device)
    part, valid = part.to(device), None if valid is None else valid.to(device)
    model.set_standardization(part)
    meta = {
        "model": model_config.to_dict(),
        "fit": fit_config.to_dict() | {"progress": False},
        "train_options": asdict(options),
        "graph": graph_io.to_dict(split.graph),
        "latent": list(model.latent),
        "observed": list(model.observed),
        "train_rows": int(train.shape[0]),
        "data_sha256": data_fingerprint(train),
        **(extra_meta or {}),
    }
    state = None
    if out is not None:
        out = Path(out)
        _claim(out, resume, overwrite)
        if resume:
            if (out / "model.json").exists():
                model, final = load_model(out, device=device)
                if final.get("status") != "diverged" and not _check_same_run(final, meta, out):
                    return model, History.from_dict(final["history"])
            if not (out / "checkpoint.json").exists():
                raise CheckpointError(f"nothing to resume in {out}: no checkpoint.json")
            tensors, saved = load_checkpoint(out, "checkpoint")
            changed = _check_same_run(saved, meta, out)
            state = state_from_tensors(tensors, saved)
            if changed:
                state.history.changes.append({"epoch": state.epochs, "changed": changed})

    steps_per_epoch = math.ceil(part.shape[0] / fit_config.batch_size)
    warmup = options.warmup_steps if options.objective == "elbo" and model.latent else 0
    rows = part.shape[0]
    smoothed = model.summed_nodes.smooths
    if warmup:
        # Patience counts from the end of the KL warm-up (while the KL weight rises the validation ELBO
        # can stall, and stopping at the warm-up's end left the latent part untrained), and the
        # parameters kept are the best of the full-ELBO epochs (earlier ones down-weight the KL term).
        warm_epochs = math.ceil(warmup / steps_per_epoch) + 1
        fit_config = replace(
            fit_config,
            min_epochs=max(fit_config.min_epochs, warm_epochs + fit_config.patience),
            best_from=max(fit_config.best_from, warm_epochs - 1),
        )
    steps_done = state.epochs * steps_per_epoch if state is not None else 0

    def loss(batch: Tensor) -> Tensor:
        value = objective(batch)
        if smoothed and model.training:  # the prior, a rows-th per row (a MAP fit over the rows)
            value = value - model.summed_nodes.log_prior(model) / rows
        return value

    def objective(batch: Tensor) -> Tensor:
        nonlocal steps_done
        if options.train_masking and model.training:
            batch = hide_cells(batch, options.train_masking)
        if options.objective == "iwae":
            return -iwae(model, batch, options.samples).mean()
        if not model.training or steps_done >= warmup:
            return -elbo(model, batch, options.samples).mean()
        steps_done += 1
        return -warmup_elbo(model, batch, steps_done / warmup, options.samples).mean()

    def valid_loss(batch: Tensor) -> Tensor:
        cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=cuda):  # manual_seed seeds every device: restore them all
            torch.manual_seed(fit_config.seed + VALID_SEED_OFFSET)
            return -elbo(model, batch, options.valid_samples).mean()

    written, pending = [-math.inf], []  # when the checkpoint was last written; the epoch not yet written

    def on_epoch(s) -> None:
        tensors, smeta = state_to_tensors(s)
        pending.clear()
        if s.history.stopped or time.monotonic() - written[0] >= CHECKPOINT_SECONDS:
            save_checkpoint(out, "checkpoint", tensors, meta | smeta)
            written[0] = time.monotonic()
        else:
            pending.append(({k: v.detach().clone() for k, v in tensors.items()}, smeta))  # smeta: new lists

    def flush() -> None:
        if pending:
            tensors, smeta = pending.pop()
            save_checkpoint(out, "checkpoint", tensors, meta | smeta)

    try:
        history = fit(
            model,
            loss,
            part,
            valid,
            fit_config,
            on_epoch=on_epoch if out is not None else None,
            resume=state,
            desc=f"fit {model_config.variant}",
            valid_loss=valid_loss if options.valid_samples > 1 else None,
        )
    except TrainingError as e:
        if out is None or e.history is None:
            raise
        raise _diverged(e, model, meta, out) from None
    finally:  # on an error or an interrupt, the last finished epoch is kept to --resume
        flush()
    if out is not None:
        meta |= {"status": "finished", "history": history.to_dict()}
        save_checkpoint(out, "model", model.state_dict(), meta)
        write_history(
            out, history, warmup_epochs=warmup / steps_per_epoch, title=_curve_title(meta, history),
            train_label=EXACT_LABEL if exact else "",
        )  # fmt: skip
    return model, history


def _claim(out: Path, resume: bool, overwrite: bool) -> None:
    """Readies a run directory for a fit: a file there, or a run neither resumed nor replaced
    (``overwrite`` removes it), is a :class:`RunExists`.
    """
    if out.exists() and not out.is_dir():
        raise RunExists(f"{out} is a file, not a run directory; choose another --out")
    if overwrite and not resume:
        remove_run(out)
    if (out / "model.json").exists() and not resume:
        raise RunExists(f"{out} already holds a trained model; choose another --out or pass --resume")
    if (out / "checkpoint.json").exists() and not resume:
        raise RunExists(
            f"{out} holds an unfinished run; pass --resume to continue it or choose another --out"
        )


#: The training loss of a model whose hidden nodes are all summed, as its picture names it.
EXACT_LABEL = "training loss (exact NLL + head prior, per row)"


def _best_restart(restarts: int, split, train, *, fit_config, out, resume, overwrite, **kw):
    """A model with an exact objective trained from ``restarts`` seeds, the lowest objective kept: its
    likelihood has local optima (a hidden node's states can settle into a poorer split of the rows),
    and the objective, exact, tells them apart as EM's log-likelihood does (docs/results.md, "Learned
    tables and restarts"). With ``out`` each restart is a run of its own in ``out/restarts/N`` (each
    resumes), and the best is written to ``out`` with every restart's objective; the restarts' files
    then go.
    """
    import json
    import shutil

    out = None if out is None else Path(out)
    if out is not None:
        _claim(out, resume, overwrite)
        if (out / "model.json").exists():  # finished: read back (resume)
            return train_model(split, train, fit_config=fit_config, out=out, resume=True, **kw)
    best, objectives = None, []
    for r in range(restarts):
        sub = None if out is None else out / "restarts" / str(r + 1)
        again = (
            sub is not None and resume and any((sub / f).exists() for f in ("model.json", "checkpoint.json"))
        )
        config = replace(fit_config, seed=fit_config.seed + r)
        model, history = train_model(split, train, fit_config=config, out=sub, resume=again, **kw)
        objectives.append(history.best_valid_loss)
        if best is None or history.best_valid_loss < best[1].best_valid_loss:
            best = (r, history, model)
    r, history, model = best
    if out is not None:
        meta = json.loads((out / "restarts" / str(r + 1) / "model.json").read_text())
        meta["fit"] = fit_config.to_dict() | {"progress": False}
        meta["restarts"] = {"chosen": r + 1, "seeds": [fit_config.seed + i for i in range(restarts)],
                            "objectives": objectives}  # fmt: skip
        save_checkpoint(out, "model", model.state_dict(), meta)
        title = f"{_curve_title(meta, history)}; restart {r + 1} of {restarts}, the lowest"
        write_history(out, history, title=title, train_label=EXACT_LABEL)
        shutil.rmtree(out / "restarts")
    return model, history


def _curve_title(meta: dict, history: History) -> str:
    """The title of a run's ``training.png``: model, data size and why training stopped."""
    return f"{meta['model']['variant']} on {meta['train_rows']} rows: {history.stopped}"


def _diverged(error: TrainingError, model: SIReNVAE, meta: dict, out: Path) -> TrainingError:
    """Saves the best epoch of a diverged run as its model (marked so); the error to raise."""
    history, lr = error.history, meta["fit"]["lr"]
    if history.best_epoch < 0:
        return TrainingError(
            f"{error} No epoch finished, so nothing was kept; run `sirenvae fit` again with a lower --lr"
        )
    again = f"to go on, run the same `sirenvae fit` with `--resume --lr {lr / 10:g}` (now {lr:g})"
    doc = meta | {"status": "diverged", "diverged_at_epoch": error.epoch, "history": history.to_dict()}
    save_checkpoint(out, "model", model.state_dict(), doc)
    return TrainingError(
        f"non-finite loss at epoch {error.epoch}. The model of its best epoch {history.best_epoch} is "
        f"saved in {out}, marked as diverged: `sirenvae evaluate {out}` and `sirenvae sample {out}` "
        f"load it; {again}",
        epoch=error.epoch,
        history=history,
    )


def remove_run(out: Path) -> None:
    """Removes a run directory's model and checkpoint files, its settings search (the finished folds
    in ``selection/`` and ``selection.csv``) and its unfinished restarts, and nothing else.
    """
    for name in ("model", "checkpoint"):
        (out / f"{name}.json").unlink(missing_ok=True)
        for tensors in out.glob(f"{name}-*.safetensors"):
            tensors.unlink()
    (out / "selection.csv").unlink(missing_ok=True)
    for fold in (out / "selection").glob("*.json"):
        fold.unlink()
    if (out / "selection").is_dir() and not any((out / "selection").iterdir()):
        (out / "selection").rmdir()
    if (out / "restarts").is_dir():  # the restarts of an exact model (runs of this run's own)
        import shutil

        shutil.rmtree(out / "restarts")


_RUN_KEYS = ("model", "fit", "train_options", "graph", "latent", "observed", "data_sha256")


#: optimiser settings that ``resume`` may change (recorded in the history)
RESUMABLE = ("lr", "max_epochs", "patience", "batch_size")


def _check_same_run(saved: dict, meta: dict, out: Path) -> dict:
    """Refuses another model, graph, latent set or data; returns the changed optimiser settings."""
    old, new = saved.get("fit") or {}, meta.get("fit") or {}
    changed = {k: [old.get(k), new.get(k)] for k in RESUMABLE if old.get(k) != new.get(k)}
    other = sorted(k for k in old.keys() | new.keys() if k not in RESUMABLE and old.get(k) != new.get(k))
    if other:
        raise CheckpointError(
            f"the run in {out} was started with another {', '.join(other)}; resume it with the same "
            f"settings (only {', '.join(RESUMABLE)} may change) or choose another --out"
        )
    saved = dict(saved)
    if isinstance(saved.get("model"), dict):  # options added since the run started, at their old value
        saved["model"] = ModelConfig.from_dict(saved["model"]).to_dict()
    if isinstance(saved.get("train_options"), dict):
        saved["train_options"] = asdict(TrainOptions(**saved["train_options"]))
    for key in _RUN_KEYS:
        if key != "fit" and saved.get(key) != meta.get(key):
            what = {"data_sha256": "training data", "graph": "graph", "latent": "latent set"}.get(key, key)
            raise CheckpointError(
                f"the run in {out} was started with another {what}; resume it with the same inputs "
                "or choose another --out"
            )
    return changed


def load_model(directory: str | Path, device: str | torch.device | None = None) -> tuple[SIReNVAE, dict]:
    """Loads a trained model and its metadata from a run directory, onto ``device`` (default: CPU)."""
    device = resolve_device(device)
    tensors, meta = load_checkpoint(directory, "model")
    try:
        graph = graph_io.from_dict(meta["graph"])
        config = ModelConfig.from_dict(meta["model"])
        model = build_model(LatentSplit(graph, meta["latent"], allow_empty=True), config)
    except (KeyError, TypeError, GraphError, ValueError) as e:
        raise CheckpointError(f"{directory}: the model description is unusable ({e})") from None
    if list(model.observed) != list(meta.get("observed", [])):
        raise CheckpointError(f"{directory}: observed columns do not match the graph and latent set")
    try:
        model.load_state_dict(tensors, strict=True)
    except (RuntimeError, ValueError) as e:
        first = str(e).splitlines()[0]
        raise CheckpointError(f"{directory}: the tensors do not fit the model ({first})") from None
    model.to(device).eval()
    return model, meta

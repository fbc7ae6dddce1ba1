"""Training: mini-batch Adam with early stopping on a validation split, resumable, no printing.

:func:`fit` trains any module given a loss of a batch. It returns a :class:`History`, restores the
parameters of the best validation epoch, and stops with :class:`TrainingError` on a non-finite loss
(keeping the last good parameters). After every epoch it can hand a :class:`TrainState` to a callback
(e.g. :func:`save_checkpoint`); passing that state back as ``resume`` continues the run exactly.

Checkpoints are safetensors plus JSON, never pickle. Every write goes to a temporary file that is
then renamed, and the JSON names (and hashes) the tensor file it belongs to, so a kill at any moment
leaves the previous consistent checkpoint in place.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sirenvae.defaults import BATCH_SIZE, LR, MAX_EPOCHS, PATIENCE
from sirenvae.files import atomic_write, atomic_write_text
from sirenvae.version import __version__

__all__ = [
    "CheckpointError",
    "FitConfig",
    "History",
    "TrainState",
    "TrainingError",
    "fit",
    "load_checkpoint",
    "save_checkpoint",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1


class TrainingError(RuntimeError):
    """Training could not go on (e.g. a non-finite loss); the model keeps its best state so far.

    ``epoch`` is the epoch that failed and ``history`` what :func:`fit` did up to it (when known).
    """

    def __init__(self, message: str, *, epoch: int | None = None, history: History | None = None):
        super().__init__(message)
        self.epoch = epoch
        self.history = history


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated, corrupted, or from another graph or version."""


@dataclass(frozen=True, kw_only=True)
class FitConfig:
    """Options of :func:`fit`; the defaults are those of every user-facing fit (``sirenvae.defaults``).

    Attributes:
        lr: Adam's learning rate.
        batch_size: Mini-batch size.
        max_epochs: The most passes over the training data.
        patience: Epochs without a better validation loss before stopping.
        min_epochs: Epochs before early stopping may act (e.g. the length of a warm-up).
        best_from: From this epoch on, only its own and later epochs' parameters are kept as the best
            (e.g. the end of a warm-up, whose earlier epochs optimise another objective); before it
            the best so far is kept, as a model to fall back on should training diverge.
        weight_decay: Adam's weight decay.
        grad_clip: Clip the gradient norm to this value (``None``: no clipping).
        seed: Seeds the shuffling and torch's generator (sampling in the loss).
        progress: Show a progress bar.
    """

    lr: float = LR
    batch_size: int = BATCH_SIZE
    max_epochs: int = MAX_EPOCHS
    patience: int = PATIENCE
    min_epochs: int = 0
    best_from: int = 0
    weight_decay: float = 0.0
    grad_clip: float | None = 10.0
    seed: int = 0
    progress: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class History:
    """What :func:`fit` did: losses per epoch, the best epoch, why it stopped, how long it took."""

    train_loss: list[float] = field(default_factory=list)
    valid_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    best_valid_loss: float = math.inf
    stopped: str = ""
    seconds: float = 0.0
    #: optimiser settings changed on resume: ``{"epoch": k, "changed": {name: [old, new]}}``
    changes: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["best_valid_loss"] = None if math.isinf(self.best_valid_loss) else self.best_valid_loss
        return d

    @classmethod
    def from_dict(cls, d: dict) -> History:
        d = dict(d)
        d["best_valid_loss"] = math.inf if d.get("best_valid_loss") is None else d["best_valid_loss"]
        return cls(**d)


@dataclass
class TrainState:
    """Everything needed to continue a run after ``epochs`` completed epochs."""

    epochs: int
    model: dict[str, Tensor]
    best: dict[str, Tensor]
    optimizer: dict[str, Any]
    history: History
    rng_shuffle: Tensor
    rng_torch: Tensor
    #: The CUDA generators' states, one per device (empty on a machine without CUDA): training on a
    #: GPU draws its noise there, so an exact resume needs them too.
    rng_cuda: list[Tensor] = field(default_factory=list)


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[Tensor]:
    return list(torch.randperm(n, generator=generator).split(batch_size))


def fit(
    module: nn.Module,
    loss: Callable[[Tensor], Tensor],
    train: Tensor,
    valid: Tensor | None = None,
    config: FitConfig | None = None,
    *,
    on_epoch: Callable[[TrainState], None] | None = None,
    resume: TrainState | None = None,
    desc: str = "epochs",
    valid_loss: Callable[[Tensor], Tensor] | None = None,
) -> History:
    """Minimises ``loss(batch)`` (a scalar) over ``module``'s parameters.

    Arguments:
        module: The model; its best parameters (by validation loss) are restored at the end.
        loss: Maps a batch of rows of ``train`` to a scalar loss.
        train: Training rows, shape ``(N, ...)``.
        valid: Validation rows for early stopping; without them the training loss is used.
        config: The options.
        on_epoch: Called with the training state after every epoch (e.g. to write a checkpoint).
        resume: A state from an earlier run of the same configuration, to continue from.
        desc: The progress bar's label (e.g. the model's name).
        valid_loss: The validation loss, if not ``loss`` (e.g. a less noisy estimate).
    """
    config = config or FitConfig()
    if train.shape[0] == 0:
        raise ValueError("no training rows")
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = _adam(params, config)
    history = History()
    best_state = _copy_state(module)
    first = 0
    if resume is not None:
        module.load_state_dict(resume.model)
        optimizer.load_state_dict(resume.optimizer)
        for group in optimizer.param_groups:  # the settings may have changed on resume
            group["lr"], group["weight_decay"] = config.lr, config.weight_decay
        best_state = _copy_state(resume.best)
        history = copy.deepcopy(resume.history)
        generator.set_state(resume.rng_shuffle)
        torch.set_rng_state(resume.rng_torch)
        if (
            resume.rng_cuda
            and torch.cuda.is_available()
            and len(resume.rng_cuda) == torch.cuda.device_count()
        ):
            torch.cuda.set_rng_state_all(resume.rng_cuda)
        first = resume.epochs
    start = time.perf_counter() - history.seconds
    bar = _progress(config.progress, _last_epoch(history, config), first, desc)
    epoch = first - 1
    try:
        if _patience_out(first - 1, history, config) or first >= config.max_epochs:
            history.stopped = history.stopped or "already finished"
        else:
            for epoch in range(first, config.max_epochs):
                _train_epoch(module, loss, train, config, generator, optimizer, params, history, best_state)
                module.eval()
                if valid is not None:
                    with torch.no_grad():
                        current = _mean_loss(valid_loss or loss, valid, config.batch_size * 8)
                    history.valid_loss.append(current)
                else:
                    current = history.train_loss[-1]
                if not math.isfinite(current):
                    module.load_state_dict(best_state)
                    raise TrainingError(
                        f"non-finite validation loss at epoch {epoch}; the model keeps the parameters "
                        f"of epoch {history.best_epoch}. Lower the learning rate (now {config.lr}).",
                        epoch=epoch,
                        history=history,
                    )
                if current < history.best_valid_loss or epoch == config.best_from:
                    history.best_valid_loss = current
                    history.best_epoch = epoch
                    best_state = _copy_state(module)
                history.seconds = time.perf_counter() - start
                if bar is not None:
                    bar.total = _last_epoch(history, config)
                    bar.update(1)
                    bar.set_postfix(train=f"{history.train_loss[-1]:.3f}", valid=f"{current:.3f}")
                stop = _patience_out(epoch, history, config)
                if stop:
                    history.stopped = f"no improvement for {config.patience} epochs"
                elif epoch + 1 == config.max_epochs:
                    history.stopped = f"reached max_epochs={config.max_epochs}"
                if on_epoch is not None:
                    on_epoch(
                        TrainState(
                            epoch + 1,
                            module.state_dict(),
                            best_state,
                            optimizer.state_dict(),
                            history,
                            generator.get_state(),
                            torch.get_rng_state(),
                            torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                        )
                    )
                if stop:
                    break
    finally:
        if bar is not None:
            bar.close()
        history.seconds = time.perf_counter() - start
    module.load_state_dict(best_state)
    module.eval()
    logger.info("fit: %s after %d epochs (best %d)", history.stopped, epoch + 1, history.best_epoch)
    return history


def _adam(params: list[Tensor], config: FitConfig) -> torch.optim.Adam:
    # the fused kernel is several times faster on many small tensors; not every build has it
    try:
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def _patience_out(epoch: int, history: History, config: FitConfig) -> bool:
    return epoch + 1 >= config.min_epochs and epoch - history.best_epoch >= config.patience


def _train_epoch(module, loss, train, config, generator, optimizer, params, history, best_state) -> None:
    module.train()
    total, count, skipped = 0.0, 0, 0
    for idx in _batches(train.shape[0], config.batch_size, generator):
        value = loss(train[idx])
        if not torch.isfinite(value):
            module.load_state_dict(best_state)
            raise TrainingError(
                f"non-finite loss ({value.item()}) at epoch {len(history.train_loss)}; the model keeps "
                f"the parameters of epoch {history.best_epoch}. Lower the learning rate (now {config.lr}) "
                "or standardise the data.",
                epoch=len(history.train_loss),
                history=history,
            )
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        if config.grad_clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
        if not torch.isfinite(norm):  # a NaN gradient would poison every parameter: skip the step
            skipped += 1
            continue
        optimizer.step()
        total += value.item() * idx.numel()
        count += idx.numel()
    if count == 0:
        module.load_state_dict(best_state)
        raise TrainingError(
            f"non-finite gradients in every step of epoch {len(history.train_loss)}; the model keeps the "
            f"parameters of epoch {history.best_epoch}. Lower the learning rate (now {config.lr}).",
            epoch=len(history.train_loss),
            history=history,
        )
    if skipped:
        logger.warning("skipped %d step(s) with non-finite gradients", skipped)
    history.train_loss.append(total / count)


def _copy_state(source: nn.Module | dict) -> dict[str, Tensor]:
    state = source.state_dict() if isinstance(source, nn.Module) else source
    return {k: v.detach().clone() for k, v in state.items()}


def _mean_loss(loss: Callable[[Tensor], Tensor], rows: Tensor, batch_size: int) -> float:
    total = 0.0
    for chunk in rows.split(batch_size):
        total += loss(chunk).item() * chunk.shape[0]
    return total / rows.shape[0]


def _last_epoch(history: History, config: FitConfig) -> int:
    """The epochs the run can last unless the validation loss improves (the bar's total)."""
    return min(config.max_epochs, max(config.min_epochs, history.best_epoch + config.patience + 1))


def _interactive() -> bool:
    return sys.stderr.isatty()


def _progress(enabled: bool, total: int, initial: int = 0, desc: str = "epochs"):
    """A bar on standard error on a terminal; elsewhere (a log file) a line every
    :data:`LOG_EVERY` seconds, as a bar's carriage returns would garble it.
    """
    if not enabled:
        return None
    if not _interactive():
        return _LogLines(total, initial, desc)
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, leave=False, unit="epoch", dynamic_ncols=True)


#: Seconds between the progress lines of a fit whose standard error is not a terminal.
LOG_EVERY = 60.0


class _LogLines:
    """The part of a tqdm bar that :func:`fit` uses, as a plain line on standard error now and then."""

    def __init__(self, total: int, initial: int, desc: str) -> None:
        self.total, self.n, self.desc = total, initial, desc
        self.start = self.last = time.perf_counter()
        self.postfix = ""

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, **values) -> None:
        self.postfix = ", ".join(f"{k} {v}" for k, v in values.items())
        now = time.perf_counter()
        if now - self.last >= LOG_EVERY:
            self.last = now
            print(f"{self.desc}: epoch {self.n} of at most {self.total}, {self.postfix} "
                  f"({now - self.start:.0f} s)", file=sys.stderr, flush=True)  # fmt: skip

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------- checkpoints
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_checkpoint(directory: str | Path, name: str, tensors: dict[str, Tensor], meta: dict) -> Path:
    """Writes ``{name}.json`` and the tensor file it names, atomically and in that order of safety.

    The tensors go to a new file named by their hash; the JSON is replaced only once that file is
    complete, and older tensor files of the same checkpoint are removed afterwards.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    flat = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    staging = directory / f".{name}.staging.safetensors"
    atomic_write(staging, lambda p: save_file(flat, str(p)))
    digest = _sha256(staging)
    tensor_file = directory / f"{name}-{digest[:12]}.safetensors"
    os.replace(staging, tensor_file)
    doc = {
        "format": "sirenvae",
        "format_version": FORMAT_VERSION,
        "sirenvae_version": __version__,
        "tensors": tensor_file.name,
        "sha256": digest,
        **meta,
    }
    atomic_write_text(directory / f"{name}.json", json.dumps(doc, indent=1))
    for old in directory.glob(f"{name}-*.safetensors"):
        if old.name != tensor_file.name:
            old.unlink(missing_ok=True)
    return directory / f"{name}.json"


def load_checkpoint(directory: str | Path, name: str) -> tuple[dict[str, Tensor], dict]:
    """Reads a checkpoint written by :func:`save_checkpoint`; returns ``(tensors, meta)``.

    Raises:
        CheckpointError: Missing, truncated or corrupted files, or another format or version.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    path = directory / f"{name}.json"
    if not path.exists():
        raise CheckpointError(f"no checkpoint {path.name} in {directory}")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is truncated or corrupted: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != "sirenvae":
        raise CheckpointError(f"{path} is not a sirenvae checkpoint")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {meta.get('format_version')}, this sirenvae reads format "
            f"{FORMAT_VERSION}"
        )
    written = str(meta.get("sirenvae_version", "?"))
    if written.split(".")[:2] != __version__.split(".")[:2]:
        raise CheckpointError(
            f"{path} was written by sirenvae {written}, this is {__version__}; "
            "retrain, or install the version that wrote it"
        )
    tensor_path = directory / str(meta.get("tensors", ""))
    if not tensor_path.is_file():
        raise CheckpointError(f"{path} names tensor file {tensor_path.name}, which is missing")
    if _sha256(tensor_path) != meta.get("sha256"):
        raise CheckpointError(
            f"{tensor_path} is corrupted or truncated (its hash does not match {path.name})"
        )
    try:
        tensors = load_file(str(tensor_path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{tensor_path} cannot be read: {e}") from None
    return tensors, meta


def state_to_tensors(state: TrainState) -> tuple[dict[str, Tensor], dict]:
    """Splits a :class:`TrainState` into tensors and JSON-able metadata."""
    tensors = {f"model.{k}": v for k, v in state.model.items()}
    tensors.update({f"best.{k}": v for k, v in state.best.items()})
    opt_meta: dict[str, Any] = {"param_groups": state.optimizer["param_groups"], "state": {}}
    for pid, st in state.optimizer["state"].items():
        opt_meta["state"][str(pid)] = []
        for key, value in st.items():
            tensors[f"optimizer.{pid}.{key}"] = torch.as_tensor(value)
            opt_meta["state"][str(pid)].append(key)
    tensors["rng.shuffle"] = state.rng_shuffle
    tensors["rng.torch"] = state.rng_torch
    tensors.update({f"rng.cuda.{i}": t for i, t in enumerate(state.rng_cuda)})
    return tensors, {"epochs": state.epochs, "history": state.history.to_dict(), "optimizer": opt_meta}


def state_from_tensors(tensors: dict[str, Tensor], meta: dict) -> TrainState:
    """The inverse of :func:`state_to_tensors`."""
    try:
        model = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
        opt = meta["optimizer"]
        state = {
            int(pid): {key: tensors[f"optimizer.{pid}.{key}"] for key in keys}
            for pid, keys in opt["state"].items()
        }
        return TrainState(
            int(meta["epochs"]),
            model,
            best,
            {"state": state, "param_groups": opt["param_groups"]},
            History.from_dict(meta["history"]),
            tensors["rng.shuffle"],
            tensors["rng.torch"],
            [tensors[f"rng.cuda.{i}"] for i in range(sum(k.startswith("rng.cuda.") for k in tensors))],
        )
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"training checkpoint is incomplete: {e}") from None

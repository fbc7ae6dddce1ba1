"""Training loops: mini-batch Adam with early stopping on a validation split; no printing.

:func:`fit` trains any module given a loss of a batch. It returns a :class:`History`, restores the
parameters of the best validation epoch, and stops with :class:`TrainingError` on a non-finite loss
(keeping the last good parameters).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

__all__ = ["FitConfig", "History", "TrainingError", "fit"]

logger = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    """Training could not go on (e.g. a non-finite loss); the model keeps its last good state."""


@dataclass(frozen=True, kw_only=True)
class FitConfig:
    """Options of :func:`fit`.

    Attributes:
        lr: Adam's learning rate.
        batch_size: Mini-batch size.
        max_epochs: The most passes over the training data.
        patience: Epochs without a better validation loss before stopping.
        weight_decay: Adam's weight decay.
        grad_clip: Clip the gradient norm to this value (``None``: no clipping).
        seed: Seeds the shuffling (and anything else drawn by torch during training).
        progress: Show a progress bar.
    """

    lr: float = 1e-3
    batch_size: int = 128
    max_epochs: int = 1000
    patience: int = 30
    weight_decay: float = 0.0
    grad_clip: float | None = 10.0
    seed: int = 0
    progress: bool = False


@dataclass
class History:
    """What :func:`fit` did: losses per epoch, the best epoch, why it stopped, how long it took."""

    train_loss: list[float] = field(default_factory=list)
    valid_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    best_valid_loss: float = math.inf
    stopped: str = ""
    seconds: float = 0.0


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[Tensor]:
    perm = torch.randperm(n, generator=generator)
    return list(perm.split(batch_size))


def fit(
    module: nn.Module,
    loss: Callable[[Tensor], Tensor],
    train: Tensor,
    valid: Tensor | None = None,
    config: FitConfig | None = None,
    *,
    on_epoch: Callable[[int, History], None] | None = None,
) -> History:
    """Minimises ``loss(batch)`` (a scalar) over ``module``'s parameters.

    Arguments:
        module: The model; its best parameters (by validation loss) are restored at the end.
        loss: Maps a batch of rows of ``train`` to a scalar loss.
        train: Training rows, shape ``(N, ...)``.
        valid: Validation rows for early stopping; without them the training loss is used.
        config: The options.
        on_epoch: Called after every epoch, e.g. to write a checkpoint.
    """
    config = config or FitConfig()
    if train.shape[0] == 0:
        raise ValueError("no training rows")
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    history = History()
    best_state = copy.deepcopy(module.state_dict())
    start = time.perf_counter()
    bar = _progress(config.progress, config.max_epochs)
    try:
        for epoch in range(config.max_epochs):
            module.train()
            total, count = 0.0, 0
            for idx in _batches(train.shape[0], config.batch_size, generator):
                value = loss(train[idx])
                if not torch.isfinite(value):
                    module.load_state_dict(best_state)
                    raise TrainingError(
                        f"non-finite loss ({value.item()}) at epoch {epoch}; the model keeps the "
                        f"parameters of epoch {history.best_epoch}. Lower the learning rate "
                        f"(now {config.lr}) or standardise the data."
                    )
                optimizer.zero_grad(set_to_none=True)
                value.backward()
                if config.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
                optimizer.step()
                total += value.item() * idx.numel()
                count += idx.numel()
            history.train_loss.append(total / count)
            module.eval()
            if valid is not None:
                with torch.no_grad():
                    current = _mean_loss(loss, valid, config.batch_size * 8)
                history.valid_loss.append(current)
            else:
                current = history.train_loss[-1]
            if current < history.best_valid_loss:
                history.best_valid_loss = current
                history.best_epoch = epoch
                best_state = copy.deepcopy(module.state_dict())
            if bar is not None:
                bar.update(1)
                bar.set_postfix(train=f"{history.train_loss[-1]:.3f}", valid=f"{current:.3f}")
            if on_epoch is not None:
                on_epoch(epoch, history)
            if epoch - history.best_epoch >= config.patience:
                history.stopped = f"no improvement for {config.patience} epochs"
                break
        else:
            history.stopped = f"reached max_epochs={config.max_epochs}"
    finally:
        if bar is not None:
            bar.close()
        history.seconds = time.perf_counter() - start
    module.load_state_dict(best_state)
    module.eval()
    logger.info("fit: %s after %d epochs (best %d)", history.stopped, epoch + 1, history.best_epoch)
    return history


def _mean_loss(loss: Callable[[Tensor], Tensor], rows: Tensor, batch_size: int) -> float:
    total = 0.0
    for chunk in rows.split(batch_size):
        total += loss(chunk).item() * chunk.shape[0]
    return total / rows.shape[0]


def _progress(enabled: bool, total: int):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="epochs", leave=False)

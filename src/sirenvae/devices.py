"""Where to compute: a device name checked against this machine before any work starts."""

from __future__ import annotations

import torch

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The torch device named by ``device`` (``None``: the CPU), checked to exist on this machine.

    An unknown name, or a CUDA or MPS device this machine lacks, is a :class:`ValueError` that says
    so in one line, instead of an error from deep inside torch at the first tensor moved there.
    """
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = "" if torch.version.cuda else " (this torch is a CPU-only build)"
            raise ValueError(f"device {device!r} asked for, but no CUDA device is available{build}")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise ValueError(f"device {device!r} asked for, but this machine has {count} CUDA device(s)")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"device {device!r} asked for, but MPS is not available on this machine")
    elif dev.type != "cpu":
        raise ValueError(f"device type {dev.type!r} is not supported; use cpu, cuda, cuda:N or mps")
    return dev

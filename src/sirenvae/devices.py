"""Where to compute: a device name checked against this machine before any work starts, and the
number of CPU threads.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["resolve_device", "torch_threads"]


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Runs the body with ``n`` torch threads (``None``: as they are) and restores the caller's count
    afterwards. One thread is the default of every user-facing call: on small graphs it is as fast as
    two on a quiet 2-core machine and several times faster on a busy one (``benchmarks/threads.py``).
    """
    if n is None:
        yield
        return
    if n < 1:
        raise ValueError(f"threads must be positive, got {n}")
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


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

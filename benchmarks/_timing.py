"""Timing helpers shared by the benchmarks."""

import statistics
import time


def timeit(fn, repeats: int, warmup: int = 2) -> float:
    return interleaved({"f": fn}, repeats, warmup)["f"]


def interleaved(fns: dict, repeats: int, warmup: int = 2) -> dict:
    """Median ms of each function, run round-robin so that every candidate sees the same machine
    state (thermal, allocator, other load): ratios between them are what we report."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: 1e3 * statistics.median(v) for k, v in times.items()}

"""Wall time of a short `fit` at 1 and 2 torch threads, on a quiet machine and beside a busy one.

The ecoli70 `true` model on 92 sampled rows for 30 epochs (what `sirenvae fit --network ecoli70
--train-size 92 --epochs 30` trains), timed in this process at each thread count, interleaved,
3 repeats, median. "busy" repeats the measurement while a second fit (torch's default threads) runs
over and over in a subprocess, as when two fits share a small machine. It chose the default of
`--threads` (see `sirenvae.cli.common.DEFAULT_THREADS`).
Run: `python benchmarks/threads.py [--repeats 3] [--epochs 30]`.

Measured on the 2-core development machine (torch 2.13 CPU, load average 2.3 from other work
before it started), median s:

    machine    1 thread  2 threads
    quiet          1.18       1.20
    busy           6.00      68.16
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import torch

from _timing import interleaved
from sirenvae.data import default_latent_rule, latent_split, sample_splits
from sirenvae.models import ModelConfig
from sirenvae.networks import load_network
from sirenvae.pipeline import train_model
from sirenvae.training import FitConfig


def short_fit(epochs: int) -> None:
    net = load_network("ecoli70")
    split = latent_split(net.graph, default_latent_rule("ecoli70"))
    x = sample_splits(net, split, train_size=92, test_size=0, seed=0).train
    config = FitConfig(lr=3e-3, batch_size=32, max_epochs=epochs, patience=1000, seed=0)
    train_model(split, x, model_config=ModelConfig(variant="true"), fit_config=config)


def at(threads: int, epochs: int):
    def run() -> None:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            short_fit(epochs)
        finally:
            torch.set_num_threads(previous)

    return run


def measure(counts: list[int], repeats: int, epochs: int) -> dict:
    fns = {n: at(n, epochs) for n in counts}
    return {n: ms / 1e3 for n, ms in interleaved(fns, repeats, warmup=1).items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--busy-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.busy_worker:
        while True:
            short_fit(args.epochs)
    counts = [1, 2]
    print(f"{os.cpu_count()} CPUs, torch {torch.__version__}, default {torch.get_num_threads()} threads")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    rows = {"quiet": measure(counts, args.repeats, args.epochs)}
    worker = subprocess.Popen([sys.executable, __file__, "--busy-worker", "--epochs", str(args.epochs)])
    try:
        time.sleep(5)  # let the second fit start training
        rows["busy"] = measure(counts, args.repeats, args.epochs)
    finally:
        worker.kill()
        worker.wait()
    print(f"\nfit of ecoli70 `true`, 92 rows, {args.epochs} epochs: median s of {args.repeats} (interleaved)")
    print(f"{'machine':8s} " + " ".join(f"{f'{n} thread' + ('s' if n > 1 else ''):>10s}" for n in counts))
    for name, times in rows.items():
        print(f"{name:8s} " + " ".join(f"{times[n]:10.2f}" for n in counts))


if __name__ == "__main__":
    main()

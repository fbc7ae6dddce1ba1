"""Evaluation cost: the IWAE NLL with K = 1,000 in cache-sized chunks against 200,000-sample chunks.

Untrained models (the cost does not depend on the weights), ecoli70 and arth150 under the SPEC's
latent rules, float32. Times are medians of interleaved repetitions; the ratio new / old is what we
report, and the time for 2,000 rows (a sweep's test set) is extrapolated from the rows timed.
Run: `make bench` or `python benchmarks/evaluation.py [--rows 200] [--repeats 3] [--threads 1]`.
"""

from __future__ import annotations

import argparse
import json

import torch

from _timing import interleaved
from sirenvae.data import default_latent_rule, latent_split, sample_splits
from sirenvae.models import build_model
from sirenvae.networks import load_network
from sirenvae.objectives import EVAL_CHUNK, evaluate

OLD_CHUNK = 200_000


def bench(name: str, variant: str, rows: int, repeats: int, k: int) -> dict:
    net = load_network(name)
    split = latent_split(net.graph, default_latent_rule(name))
    data = sample_splits(net, split, train_size=2 * len(net.graph), test_size=rows, seed=0)
    torch.manual_seed(0)
    model = build_model(split, variant=variant)
    model.set_standardization(data.train)
    model.eval()
    fns = {
        c: (lambda c=c: evaluate(model, data.test, importance_samples=k, chunk=c))
        for c in (OLD_CHUNK, EVAL_CHUNK)
    }
    ms = interleaved(fns, repeats, warmup=1)
    return {
        "network": name,
        "model": variant,
        "old_s_per_2000_rows": ms[OLD_CHUNK] / 1e3 * 2000 / rows,
        "new_s_per_2000_rows": ms[EVAL_CHUNK] / 1e3 * 2000 / rows,
        "ratio": ms[EVAL_CHUNK] / ms[OLD_CHUNK],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("-k", type=int, default=1000)
    parser.add_argument("--models", default="true,vae")
    parser.add_argument("--json", default=None, help="Write the rows to this file.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = [
        bench(name, variant, args.rows, args.repeats, args.k)
        for name in ("ecoli70", "arth150")
        for variant in args.models.split(",")
    ]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    print(f"\nK = {args.k}, {args.threads} thread(s), float32, chunk {OLD_CHUNK} -> {EVAL_CHUNK} samples")
    print("| network | model | old s / 2000 rows | new s / 2000 rows | new / old [<= 0.5] |")
    print("|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['network']} | {r['model']} | {r['old_s_per_2000_rows']:.1f} | "
            f"{r['new_s_per_2000_rows']:.1f} | {r['ratio']:.2f} |"
        )


if __name__ == "__main__":
    main()

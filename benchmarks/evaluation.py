"""Evaluation cost: the IWAE NLL with K = 1,000 in cache-sized chunks against 200,000-sample chunks,
and the cost of the defensive prior draws (K/10 of them, the default) against the plain bound.

Models: SIReN-VAE true with the paper's setting, ``true/flow`` (the ``flow`` candidate of ``auto``,
parent-conditioned) and the VAE. Untrained models (the cost does not depend on the weights),
ecoli70 and arth150 under their default latent rules, float32. Times are medians of interleaved
repetitions; the ratios new / old and defensive / new are what we report, and the time for 2,000
rows (a sweep's test set) is extrapolated from the rows timed.
Run: `make bench` or `python benchmarks/evaluation.py [--rows 200] [--repeats 3] [--threads 1]`.
"""

from __future__ import annotations

import argparse
import json

import torch

from _timing import interleaved
from sirenvae.data import default_latent_rule, latent_split, sample_splits
from sirenvae.models import ModelConfig, build_model
from sirenvae.networks import load_network
from sirenvae.objectives import EVAL_CHUNK, evaluate
from sirenvae.selection import resolve_candidates

OLD_CHUNK = 200_000


def bench(name: str, variant: str, rows: int, repeats: int, k: int) -> dict:
    net = load_network(name)
    split = latent_split(net.graph, default_latent_rule(name))
    data = sample_splits(net, split, train_size=2 * len(net.graph), test_size=rows, seed=0)
    torch.manual_seed(0)
    base, _, candidate = variant.partition("/")
    config = ModelConfig(variant=base)
    if candidate:
        config = {c.name: m for c, m in resolve_candidates(base)[0]}[candidate]
    model = build_model(split, config)
    model.set_standardization(data.train)
    model.eval()

    def run(chunk: int, defensive: float | None):
        return lambda: evaluate(model, data.test, importance_samples=k, chunk=chunk, defensive=defensive)

    fns = {"old": run(OLD_CHUNK, 0.0), "new": run(EVAL_CHUNK, 0.0), "defensive": run(EVAL_CHUNK, None)}
    ms = interleaved(fns, repeats, warmup=1)
    return {
        "network": name,
        "model": variant,
        "old_s_per_2000_rows": ms["old"] / 1e3 * 2000 / rows,
        "new_s_per_2000_rows": ms["new"] / 1e3 * 2000 / rows,
        "defensive_s_per_2000_rows": ms["defensive"] / 1e3 * 2000 / rows,
        "ratio": ms["new"] / ms["old"],
        "defensive_ratio": ms["defensive"] / ms["new"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("-k", type=int, default=1000)
    parser.add_argument("--models", default="true,true/flow,vae")
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
    print(
        "| network | model | old s / 2000 rows | new s / 2000 rows | new / old [<= 0.5] "
        "| defensive s | defensive / new |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['network']} | {r['model']} | {r['old_s_per_2000_rows']:.1f} | "
            f"{r['new_s_per_2000_rows']:.1f} | {r['ratio']:.2f} | {r['defensive_s_per_2000_rows']:.1f} | "
            f"{r['defensive_ratio']:.2f} |"
        )


if __name__ == "__main__":
    main()

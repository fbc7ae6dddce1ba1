"""Training-step and evaluation cost of SIReN-VAE (true structure) against the plain VAE.

Same batch size, ecoli70 and arth150 under their default latent rules, float32, 2 threads. Times are
medians of interleaved repetitions; the ratio true / vae is what we report.
Run: `make bench` or `python benchmarks/training.py [--batch 128] [--repeats 30]`.
"""

from __future__ import annotations

import argparse
import json

import torch

from _timing import interleaved
from sirenvae.data import default_latent_rule, latent_split, sample_splits
from sirenvae.models import ModelConfig, build_model
from sirenvae.networks import load_network
from sirenvae.objectives import elbo, log_weights

#: The SIReN-VAE configurations timed against the plain VAE: the paper's stack (the default) and the
#: parent-conditioned stack with the affine step, same depth.
CONFIGS = {"paper": {}, "parents-affine": {"conditioning": "parents", "affine": True}}


def bench(name: str, batch: int, repeats: int, eval_k: int, config: str = "paper") -> dict:
    net = load_network(name)
    latent = latent_split(net.graph, default_latent_rule(name))
    splits = sample_splits(net, latent, train_size=batch, test_size=200, seed=0)
    x = splits.train
    models, optims = {}, {}
    for variant in ("true", "vae"):
        torch.manual_seed(0)
        options = CONFIGS[config] if variant == "true" else {}
        m = build_model(latent, ModelConfig(variant=variant, **options))
        m.set_standardization(x)
        models[variant] = m
        optims[variant] = torch.optim.Adam(m.parameters(), lr=1e-3, fused=True)  # as fit() uses

    def step(v):
        def f():
            m, opt = models[v], optims[v]
            m.train()
            loss = -elbo(m, x).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

        return f

    def evaluate(v):
        def f():
            with torch.no_grad():
                log_weights(models[v], splits.test, eval_k)

        return f

    steps = interleaved({v: step(v) for v in models}, repeats)
    for m in models.values():
        m.eval()
    evals = interleaved({v: evaluate(v) for v in models}, max(3, repeats // 5))
    n_eval = splits.test.shape[0] * eval_k
    return {
        "network": name,
        "config": config,
        "latent": len(latent.latent),
        "observed": len(splits.observed),
        "batch": batch,
        "true_step_ms": steps["true"],
        "vae_step_ms": steps["vae"],
        "step_ratio": steps["true"] / steps["vae"],
        "true_eval_us_per_sample": 1e3 * evals["true"] / n_eval,
        "vae_eval_us_per_sample": 1e3 * evals["vae"] / n_eval,
        "eval_ratio": evals["true"] / evals["vae"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--networks", default="ecoli70,arth150")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--eval-k", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--configs", default="paper", help=f"SIReN-VAE configurations: {','.join(CONFIGS)}.")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = [
        bench(n, args.batch, args.repeats, args.eval_k, c)
        for c in args.configs.split(",")
        for n in args.networks.split(",")
    ]
    print(f"\nbatch {args.batch}, float32, {args.threads} threads, torch {torch.__version__}\n")
    print(
        "| network | true config | latents / observed | true step ms | vae step ms | ratio [<= 2] | "
        "true eval us/sample | vae eval us/sample | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['network']} | {r['config']} | {r['latent']} / {r['observed']} | {r['true_step_ms']:.2f} | "
            f"{r['vae_step_ms']:.2f} | {r['step_ratio']:.2f} | {r['true_eval_us_per_sample']:.2f} | "
            f"{r['vae_eval_us_per_sample']:.2f} | {r['eval_ratio']:.2f} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()

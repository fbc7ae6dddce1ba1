"""Scale of a whole SIReN-VAE: build, faithful inversion, peak memory and a training step on a large DAG.

The graph is MUNIN's structure (``--graph munin``, 1,041 nodes; see ``scale.py``) or a random DAG
(``--nodes``, about ``--parents`` parents each among the ``--window`` previous nodes, or among all
earlier ones with ``--window 0``). Every ``--latent-every``-th node in topological order is latent.
The model is ``build_model(split, variant="true")`` with the default configuration; its decoder is
block-sparse by default at this size (``--decoder dense`` forces the masked dense MLP, whose
weights grow with observed x nodes). A training step is one ELBO gradient and Adam update on a
standard normal batch (the step's cost does not depend on the values). Prints one JSON object.

Run: `python benchmarks/model_scale.py [--graph munin|random] [--nodes 10000] [--decoder auto|sparse|dense]`.

Keys: ``graph``, ``nodes``, ``edges``, ``latent``, ``inverse_edges``, ``threads``, ``batch``,
``decoder_sparse``; ``inversion_s`` (NaMI alone), ``build_s`` (``build_model``, the inversion
included), ``decoder_weights`` and ``stored_weights`` (parameters), ``step_s`` (median of
``--repeats`` training steps after one warm-up), ``elbo_finite``, ``baseline_mib`` (RSS before
building), ``peak_mib``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from scale import munin_dag, peak_mib, report
from sirenvae.graph import BayesianNetwork, LatentSplit
from sirenvae.inversion import faithful_inverse
from sirenvae.models import build_model
from sirenvae.objectives import elbo


def local_dag(n: int, parents: float, window: int, seed: int) -> torch.Tensor:
    """About ``parents`` (Poisson) distinct parents per node among the ``window`` previous nodes."""
    g = torch.Generator().manual_seed(seed)
    A = torch.zeros(n, n, dtype=torch.bool)
    for i in range(1, n):
        lo = max(0, i - window) if window else 0
        k = min(i - lo, int(torch.poisson(torch.tensor(float(parents)), generator=g).item()))
        if k:
            A[i, lo + torch.randperm(i - lo, generator=g)[:k]] = True
    return A


def split_of(A: torch.Tensor, every: int) -> LatentSplit:
    names = [f"v{i}" for i in range(A.shape[0])]
    rows, cols = torch.nonzero(A, as_tuple=True)
    parents: dict[str, list[str]] = {v: [] for v in names}
    for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
        parents[names[i]].append(names[j])
    bn = BayesianNetwork(parents)
    return LatentSplit(bn, [v for k, v in enumerate(bn.nodes) if k % every == 0])


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    A = munin_dag() if args.graph == "munin" else local_dag(args.nodes, args.parents, args.window, 0)
    split = split_of(A, args.latent_every)
    out: dict = {"graph": args.graph, "nodes": A.shape[0], "edges": int(A.count_nonzero())}
    out |= {"latent": len(split.latent), "threads": args.threads, "batch": args.batch}
    out["baseline_mib"] = peak_mib()
    t = time.perf_counter()
    H = faithful_inverse(split)
    out["inversion_s"] = time.perf_counter() - t
    out["inverse_edges"] = len(H.edges)
    layout = {"auto": None, "sparse": "block-sparse", "dense": "dense"}[args.decoder]
    t = time.perf_counter()
    model = build_model(split, variant="true")
    if layout is not None and model.decoder.layout != layout:
        model.decoder = type(model.decoder)(
            split.graph.adjacency()[split.observed_index()],
            model.config.decoder_hidden_per_set,
            model.config.hidden_layers,
            model.config.min_scale,
            mean=model.config.decoder_mean,
            likelihood=model.config.likelihood,
            layout=layout,
        )
    out["build_s"] = time.perf_counter() - t
    out["decoder_sparse"] = model.decoder.layout == "block-sparse"
    out["decoder_weights"] = sum(p.numel() for p in model.decoder.parameters())
    out["stored_weights"] = sum(p.numel() for p in model.parameters())
    x = torch.randn(args.batch, len(split.observed))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> float:
        opt.zero_grad()
        value = elbo(model, x).mean()
        (-value).backward()
        opt.step()
        return float(value.detach())

    out["elbo_finite"] = bool(torch.isfinite(torch.tensor(step())))
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    out["step_s"] = statistics.median(times)
    out["peak_mib"] = peak_mib()
    return out


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--graph", choices=["random", "munin"], default="munin")
    p.add_argument("--nodes", type=int, default=10_000)
    p.add_argument("--parents", type=float, default=2.0)
    p.add_argument("--window", type=int, default=50, help="parents among this many previous nodes (0: all)")
    p.add_argument("--latent-every", type=int, default=5)
    p.add_argument("--decoder", choices=["auto", "sparse", "dense"], default="auto")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", default=None, help="also write the JSON object to this file")
    args = p.parse_args()
    return report(run(args), args.json)


if __name__ == "__main__":
    main()

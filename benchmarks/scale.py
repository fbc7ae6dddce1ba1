"""Scale: a GRF on a random sparse DAG of 1,000 nodes (about 2 parents each), batch 256.

Builds the flow, runs forward + exact log-det and the inverse, and reports wall time and the
process's peak memory (max RSS, which includes the Python and torch runtime). Run:
`python benchmarks/scale.py [--nodes 1000] [--parents 2] [--batch 256] [--blocks 3]`.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from sirenvae.flows import GraphicalResidualFlow


def random_dag(n: int, parents: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    A = torch.zeros(n, n, dtype=torch.bool)
    for i in range(1, n):
        k = min(i, int(torch.poisson(torch.tensor(float(parents)), generator=g).item()))
        if k:
            A[i, torch.randperm(i, generator=g)[:k]] = True
    return A


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--parents", type=float, default=2.0)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--blocks", type=int, default=3)
    p.add_argument("--hidden-per-set", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    out: dict = {"nodes": args.nodes, "batch": args.batch, "blocks": args.blocks}
    A = random_dag(args.nodes, args.parents, 0)
    out["edges"] = int(A.sum())
    out["baseline_mib"] = peak_mib()

    t = time.perf_counter()
    flow = GraphicalResidualFlow(A, blocks=args.blocks, hidden_per_set=args.hidden_per_set)
    out["build_s"] = time.perf_counter() - t
    t = time.perf_counter()
    flow.eval()
    out["eval_sync_s"] = time.perf_counter() - t
    out["effective_weights"] = flow.effective_weights
    out["dense_weights"] = sum(p.numel() for p in flow.parameters())
    out["after_build_mib"] = peak_mib()

    z = torch.randn(args.batch, args.nodes)
    with torch.no_grad():
        t = time.perf_counter()
        y, ladj = flow().call_and_ladj(z)
        out["forward_logdet_s"] = time.perf_counter() - t
        t = time.perf_counter()
        y, ladj = flow().call_and_ladj(z)
        out["forward_logdet_warm_s"] = time.perf_counter() - t
        t = time.perf_counter()
        result = flow().solve(y, atol=1e-5)
        out["inverse_s"] = time.perf_counter() - t
    out["inverse_iterations"] = list(result.iterations)
    out["inverse_converged"] = result.converged
    out["round_trip_error"] = float((result.z - z).abs().max())
    out["ladj_finite"] = bool(torch.isfinite(ladj).all())
    out["peak_mib"] = peak_mib()
    for k, v in out.items():
        print(f"{k:>22}: {v:.3f}" if isinstance(v, float) else f"{k:>22}: {v}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()

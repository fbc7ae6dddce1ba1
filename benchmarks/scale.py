"""Scale: a GRF on a large sparse DAG, batch 256: build time, peak memory, forward + log-det, inverse.

The graph is a random DAG (``--nodes``, about ``--parents`` parents each among earlier nodes) or
MUNIN's structure (``--graph munin``: 1,041 nodes, 1,397 edges, read from the ``munin.bif.gz`` that
pgmpy ships; Andreassen et al., 1989, via the bnlearn repository). Reports wall times and the
process's peak memory (max RSS, which includes the Python and torch runtime) and prints one JSON
object with the keys below (stable, for ``make bench``). Run:
`python benchmarks/scale.py [--nodes 1000] [--graph random|munin] [--conditioning ancestors|parents]
[--affine] [--sparse auto|on|off] [--threads 2] [--json out.json]`.

Keys: ``graph``, ``nodes``, ``edges``, ``batch``, ``blocks``, ``conditioning``, ``affine``, ``sparse``
(the path used), ``threads``; ``build_s`` (constructing the flow), ``eval_sync_s`` (``.eval()``:
converging the power vectors), ``forward_logdet_s`` (first call, cold), ``forward_logdet_warm_s``
and ``inverse_s`` (``solve`` to atol 1e-5; medians of ``--repeats`` calls) with their process CPU
times ``forward_logdet_cpu_s`` and ``inverse_cpu_s`` (robust to a busy machine at 1 thread),
``inverse_iterations``, ``inverse_converged``,
``round_trip_error``, ``ladj_finite``, ``effective_weights``, ``stored_weights`` (parameters
stored), ``baseline_mib`` (RSS before building), ``after_build_mib``, ``peak_mib``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import resource
import statistics
import time
from pathlib import Path

import torch

from sirenvae.flows import GraphicalResidualFlow


def random_dag(n: int, parents: float, seed: int) -> torch.Tensor:
    """About ``parents`` (Poisson) distinct parents per node, uniformly among the earlier nodes."""
    g = torch.Generator().manual_seed(seed)
    A = torch.zeros(n, n, dtype=torch.bool)
    for i in range(1, n):
        k = min(i, int(torch.poisson(torch.tensor(float(parents)), generator=g).item()))
        if k:
            A[i, torch.randperm(i, generator=g)[:k]] = True
    return A


def munin_dag() -> torch.Tensor:
    """MUNIN's structure from the BIF file shipped with pgmpy (its ``probability (X | pa)`` lines)."""
    import importlib.util

    spec = importlib.util.find_spec("pgmpy")
    if spec is None or spec.origin is None:
        raise SystemExit("--graph munin needs pgmpy (pip install pgmpy), which ships munin.bif.gz")
    path = Path(spec.origin).parent / "utils" / "example_models" / "munin.bif.gz"
    text = gzip.open(path, "rt").read()
    families = re.findall(r"probability\s*\(\s*([^|)]+?)\s*(?:\|\s*([^)]*))?\)", text)
    index = {name.strip(): i for i, (name, _) in enumerate(families)}
    A = torch.zeros(len(index), len(index), dtype=torch.bool)
    for child, parents in families:
        for p in filter(None, (q.strip() for q in parents.split(","))):
            A[index[child.strip()], index[p]] = True
    return A


def timed(fn, repeats: int) -> tuple[float, float, object]:
    """Median wall time and median process CPU time of ``fn`` over ``repeats`` calls, and its value."""
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        value = fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu), value


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    A = munin_dag() if args.graph == "munin" else random_dag(args.nodes, args.parents, 0)
    out: dict = {"graph": args.graph, "nodes": A.shape[0], "edges": int(A.count_nonzero())}
    out |= {"batch": args.batch, "blocks": args.blocks, "conditioning": args.conditioning}
    out |= {"affine": args.affine, "threads": args.threads}
    out["baseline_mib"] = peak_mib()
    layout = {"auto": "auto", "on": "block-sparse", "off": "dense"}[args.sparse]

    t = time.perf_counter()
    flow = GraphicalResidualFlow(
        A,
        blocks=args.blocks,
        hidden_per_set=args.hidden_per_set,
        conditioning=args.conditioning,
        affine=args.affine,
        layout=layout,
    )
    out["build_s"] = time.perf_counter() - t
    out["sparse"] = flow.layout == "block-sparse"
    t = time.perf_counter()
    flow.eval()
    out["eval_sync_s"] = time.perf_counter() - t
    out["effective_weights"] = flow.effective_weights
    out["stored_weights"] = sum(p.numel() for p in flow.parameters())
    out["after_build_mib"] = peak_mib()

    z = torch.randn(args.batch, A.shape[0])
    with torch.no_grad():
        t = time.perf_counter()
        y, ladj = flow().call_and_ladj(z)
        out["forward_logdet_s"] = time.perf_counter() - t
        out["forward_logdet_warm_s"], out["forward_logdet_cpu_s"], (y, ladj) = timed(
            lambda: flow().call_and_ladj(z), args.repeats
        )
        out["inverse_s"], out["inverse_cpu_s"], result = timed(
            lambda: flow().solve(y, atol=1e-5), args.repeats
        )
    out["inverse_iterations"] = list(result.iterations)
    out["inverse_converged"] = result.converged
    out["round_trip_error"] = float((result.z - z).abs().max())
    out["ladj_finite"] = bool(torch.isfinite(ladj).all())
    out["peak_mib"] = peak_mib()
    return out


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--graph", choices=["random", "munin"], default="random")
    p.add_argument("--parents", type=float, default=2.0)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--blocks", type=int, default=3)
    p.add_argument("--hidden-per-set", type=int, default=4)
    p.add_argument("--conditioning", choices=["ancestors", "parents"], default="ancestors")
    p.add_argument("--affine", action="store_true")
    p.add_argument("--sparse", choices=["auto", "on", "off"], default="auto")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="median of this many warm calls")
    p.add_argument("--json", default=None, help="also write the JSON object to this file")
    args = p.parse_args()
    return report(run(args), args.json)


def report(out: dict, path: str | None) -> dict:
    """Prints the measurements, one per line, then as one JSON object (also written to ``path``)."""
    width = max(map(len, out))
    for k, v in out.items():
        print(f"# {k:>{width}}: {v:.3f}" if isinstance(v, float) else f"# {k:>{width}}: {v}")
    print(json.dumps(out))
    if path:
        Path(path).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()

"""What choosing the settings costs: wall time of `sirenvae fit` with `--settings auto` (the default:
the candidates by k-fold CV on the rows, then the final fit) over a `--settings paper` fit of the
same rows, both through the command line as a user runs them.

The two commands alternate (paper, auto, paper, auto, ...) in fresh processes and the medians are
compared; auto uses its default workers (the CPUs, one thread each), paper its default one thread.
The candidates are the frozen ones of :mod:`sirenvae.candidates`, the same as the NLL targets use.
Run: `make bench` or `python benchmarks/auto_cost.py [--networks ecoli70,arth150] [--repeats 2]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Training rows per network: 2·|G|, the size of the NLL targets.
ROWS = {"ecoli70": 92, "arth150": 214, "magic-niab": 88, "arithmetic-circuit": 80}


def fit_seconds(network: str, settings: str, out: Path, threads: int) -> float:
    cmd = [sys.executable, "-m", "sirenvae", "fit", "--network", network, "--train-size", str(ROWS[network])]
    cmd += ["--out", str(out), "--settings", settings, "--no-progress", "--threads", str(threads)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr[-1000:]}")
    return seconds


def bench(network: str, repeats: int, threads: int) -> dict:
    times: dict[str, list[float]] = {"paper": [], "auto": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            for settings in times:
                out = Path(tmp) / f"{settings}-{r}"
                times[settings].append(fit_seconds(network, settings, out, threads))
                print(f"  {network} {settings} #{r + 1}: {times[settings][-1]:.1f} s", flush=True)
    paper, auto = (statistics.median(times[k]) for k in ("paper", "auto"))
    return {
        "network": network,
        "rows": ROWS[network],
        "paper_s": paper,
        "auto_s": auto,
        "ratio_auto_vs_paper": auto / paper,
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "repeats": repeats,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--networks", default="ecoli70", help="comma-separated, from " + ", ".join(ROWS))
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch threads of the paper fit and the final fit")
    p.add_argument("--json", type=Path, help="write the rows here")
    args = p.parse_args()
    rows = [bench(n, args.repeats, args.threads) for n in args.networks.split(",")]
    for r in rows:
        print(
            f"{r['network']} ({r['rows']} rows, {r['cpus']} CPUs): paper {r['paper_s']:.1f} s, "
            f"auto {r['auto_s']:.1f} s, auto / paper {r['ratio_auto_vs_paper']:.2f}x"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

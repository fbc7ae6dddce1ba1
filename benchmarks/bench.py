"""`make bench`: every speed and scale row of the project in one table, against its target and the
committed baseline.

Each row comes from one of the benchmark scripts beside this one, run in its own process (so that
the peak memory of the scale rows is that process's): a ratio of two things timed in the same run,
interleaved (``_timing.interleaved``, medians), or, for the scale rows, a wall time or peak memory
with its target. A row more than 20 % worse than ``benchmarks/baseline.json`` is printed loudly
(``REGRESSION``); ``--strict`` then exits with status 1. ``--update-baseline`` writes the measured
values as the new baseline (commit it with the machine named).

Run: `make bench`, or `python benchmarks/bench.py [--quick] [--only flows,scale] [--json out.json]`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
BASELINE = HERE / "baseline.json"
#: A row this much worse than its baseline is a regression.
TOLERANCE = 1.2


@dataclass(frozen=True)
class Row:
    """One line of the table: ``key`` read from the rows of ``script`` where ``where`` matches."""

    name: str
    script: str
    key: str
    target: float | None  # None: reported beside the targets, with none of its own
    where: tuple[tuple[str, object], ...] = ()
    unit: str = "x"


ROWS = [
    Row(
        "GRF / zuko MAF log_prob, same effective weights, ecoli70",
        "flows",
        "ratio_log_prob_vs_zuko",
        0.8,
        (("network", "ecoli70"), ("match", "weights")),
    ),
    Row(
        "GRF / zuko MAF log_prob, zuko's default hidden sizes, ecoli70",
        "flows",
        "ratio_log_prob_vs_zuko",
        0.8,
        (("network", "ecoli70"), ("match", "default")),
    ),
    Row(
        "GRF / zuko MAF sampling, same effective weights, ecoli70",
        "flows",
        "ratio_sample_vs_zuko",
        0.4,
        (("network", "ecoli70"), ("match", "weights")),
    ),
    Row(
        "GRF / zuko MAF sampling, zuko's default hidden sizes, ecoli70",
        "flows",
        "ratio_sample_vs_zuko",
        0.4,
        (("network", "ecoli70"), ("match", "default")),
    ),
    Row(
        "forward + exact log-det / forward only, ecoli70",
        "flows",
        "ratio_logdet_overhead",
        1.25,
        (("network", "ecoli70"), ("match", "weights")),
    ),
    Row(
        "forward + exact log-det / forward only, arth150",
        "flows",
        "ratio_logdet_overhead",
        1.25,
        (("network", "arth150"), ("match", "weights")),
    ),
    Row(
        "SIReN-VAE true / VAE train step, batch 128, ecoli70",
        "training",
        "step_ratio",
        2.0,
        (("network", "ecoli70"), ("config", "paper")),
    ),
    Row(
        "SIReN-VAE true / VAE train step, batch 128, arth150",
        "training",
        "step_ratio",
        2.0,
        (("network", "arth150"), ("config", "paper")),
    ),
    Row(
        "  the same with the searched parents + affine prior, ecoli70",
        "training",
        "step_ratio",
        2.0,
        (("network", "ecoli70"), ("config", "parents-affine")),
    ),
    Row(
        "evaluation K = 1,000: chunked / one 200,000-sample chunk, ecoli70 true",
        "evaluation",
        "ratio",
        0.5,
        (("network", "ecoli70"), ("model", "true")),
    ),
    Row(
        "evaluation K = 1,000: chunked / one 200,000-sample chunk, arth150 true",
        "evaluation",
        "ratio",
        0.5,
        (("network", "arth150"), ("model", "true")),
    ),
    Row(
        "fit --settings auto / --settings paper, wall time, ecoli70 at 92 rows",
        "auto",
        "ratio_auto_vs_paper",
        5.0,
        (("network", "ecoli70"),),
    ),
    Row("1,000-node DAG: build", "scale1k", "build_s", 1.0, unit="s"),
    Row("1,000-node DAG: peak memory", "scale1k", "peak_mib", 0.4 * 1024, unit="MiB"),
    Row("1,000-node DAG: forward + log-det, batch 256", "scale1k", "forward_logdet_warm_s", 0.05, unit="s"),
    Row("1,000-node DAG: inverse to 1e-5, batch 256", "scale1k", "inverse_s", 0.1, unit="s"),
    Row("10,000-node DAG: build", "scale10k", "build_s", 20.0, unit="s"),
    Row("10,000-node DAG: peak memory", "scale10k", "peak_mib", 3 * 1024, unit="MiB"),
    Row("10,000-node DAG: forward + log-det, batch 256", "scale10k", "forward_logdet_warm_s", 2.0, unit="s"),
    Row("10,000-node DAG: inverse to 1e-5, batch 256", "scale10k", "inverse_s", 10.0, unit="s"),
    Row(
        "  parent-conditioned stack + affine, 1,000 nodes: fwd + log-det",
        "parents1k",
        "forward_logdet_warm_s",
        None,
        unit="s",
    ),
    Row(
        "  parent-conditioned stack + affine, 1,000 nodes: inverse", "parents1k", "inverse_s", None, unit="s"
    ),
    Row("  parent-conditioned stack + affine, 10,000 nodes: build", "parents10k", "build_s", None, unit="s"),
    Row(
        "  parent-conditioned stack + affine, 10,000 nodes: fwd + log-det",
        "parents10k",
        "forward_logdet_warm_s",
        None,
        unit="s",
    ),
    Row(
        "  parent-conditioned stack + affine, 10,000 nodes: inverse",
        "parents10k",
        "inverse_s",
        None,
        unit="s",
    ),
    Row(
        "  SIReN-VAE true, MUNIN structure (1,041 nodes, 209 latent): build",
        "model-munin",
        "build_s",
        None,
        unit="s",
    ),
    Row("  SIReN-VAE true, MUNIN structure: train step, batch 256", "model-munin", "step_s", None, unit="s"),
    Row("  SIReN-VAE true, MUNIN structure: peak memory", "model-munin", "peak_mib", None, unit="MiB"),
    Row("  SIReN-VAE true, 10,000-node DAG (2,000 latent): build", "model10k", "build_s", None, unit="s"),
    Row("  SIReN-VAE true, 10,000-node DAG: train step, batch 256", "model10k", "step_s", None, unit="s"),
    Row("  SIReN-VAE true, 10,000-node DAG: peak memory", "model10k", "peak_mib", None, unit="MiB"),
]

#: How each source is run; ``quick`` trades precision for time. The evaluation runs on one thread,
#: as every run of a sweep evaluates (one thread per worker).
SOURCES = {
    "flows": (["flows.py", "--match", "weights,default"], ["--repeats", "8"]),
    "training": (["training.py", "--configs", "paper,parents-affine"], ["--repeats", "8"]),
    "evaluation": (
        ["evaluation.py", "--models", "true", "--threads", "1"],
        ["--rows", "50", "--repeats", "1"],
    ),
    "scale1k": (["scale.py", "--nodes", "1000"], []),
    "scale10k": (["scale.py", "--nodes", "10000"], []),
    "parents1k": (["scale.py", "--nodes", "1000", "--conditioning", "parents", "--affine"], []),
    "parents10k": (
        ["scale.py", "--nodes", "10000", "--conditioning", "parents", "--affine", "--repeats", "1"],
        [],
    ),
    "model-munin": (["model_scale.py", "--graph", "munin"], []),
    "model10k": (["model_scale.py", "--graph", "random", "--nodes", "10000", "--repeats", "2"], []),
    "auto": (["auto_cost.py", "--networks", "ecoli70", "--repeats", "2"], ["--repeats", "1"]),
}


def run_source(name: str, threads: int, quick: bool) -> list[dict]:
    """Runs one benchmark script in a subprocess; its JSON rows (a list), or ``[]`` if it failed."""
    args, quick_args = SOURCES[name]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        cmd = [sys.executable, str(HERE / args[0]), *args[1:], "--json", str(out)]
        cmd += [] if "--threads" in args else ["--threads", str(threads)]
        cmd += quick_args if quick else []
        print(f"$ {' '.join(cmd[1:])}", flush=True)
        proc = subprocess.run(cmd, cwd=HERE, capture_output=True, text=True)
        if proc.returncode != 0 or not out.exists():
            print(f"  {name} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}", flush=True)
            return []
        rows = json.loads(out.read_text())
    return rows if isinstance(rows, list) else [rows]


#: Sources whose rows are single wall times or memory peaks, not interleaved ratios: run this many
#: times in fresh processes, each number the minimum (the least disturbed by the shared machine).
REPEAT_ABSOLUTE = {"scale1k": 3, "scale10k": 2}


def run_repeated(name: str, threads: int, quick: bool) -> list[dict]:
    runs = [run_source(name, threads, quick) for _ in range(1 if quick else REPEAT_ABSOLUTE.get(name, 1))]
    runs = [r for r in runs if r]
    if len(runs) < 2:
        return runs[0] if runs else []
    best = dict(runs[0][0])
    for other in runs[1:]:
        for k, v in other[0].items():
            if isinstance(v, float) and isinstance(best.get(k), float):
                best[k] = min(best[k], v)
    return [best]


def value(row: Row, results: dict[str, list[dict]]) -> float | None:
    for r in results.get(row.script, []):
        if all(r.get(k, v) == v for k, v in row.where) and r.get(row.key) is not None:
            return float(r[row.key])
    return None


def _fmt(x: float | None, row: Row) -> str:
    return "-" if x is None else f"{x:.3g} {row.unit}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--quick", action="store_true", help="Fewer repetitions: a smoke test, too noisy for the baseline."
    )
    p.add_argument("--only", default=None, help=f"Sources to run: {','.join(SOURCES)}.")
    p.add_argument("--json", default=None, help="Write the measured rows here.")
    p.add_argument("--update-baseline", action="store_true", help="Write the values to baseline.json.")
    p.add_argument("--strict", action="store_true", help="Exit 1 on a regression against the baseline.")
    args = p.parse_args()
    sources = args.only.split(",") if args.only else list(SOURCES)
    unknown = set(sources) - set(SOURCES)
    if unknown:
        p.error(f"unknown source(s) {', '.join(sorted(unknown))}; choose from {', '.join(SOURCES)}")
    results = {s: run_repeated(s, args.threads, args.quick) for s in sources}
    baseline = json.loads(BASELINE.read_text())["rows"] if BASELINE.exists() else {}
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    machine = f"{platform.node()}, {cpus} CPUs ({platform.machine()})"
    print(
        f"\n{args.threads} threads, float32, torch {torch.__version__}, CUDA: "
        f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}; {machine}\n"
    )
    print("| row | measured | target | baseline | |")
    print("|---|---|---|---|---|")
    measured, regressions = {}, []
    for row in ROWS:
        if row.script not in results:
            continue
        v = value(row, results)
        base = baseline.get(row.name)
        flag = ""
        if v is None:
            flag = "not measured"
        else:
            measured[row.name] = v
            flag = "reported" if row.target is None else "ok" if v <= row.target else "MISSES TARGET"
            if base is not None and v > TOLERANCE * base:
                misses = row.target is not None and v > row.target
                flag = f"REGRESSION ({v / base:.2f}x the baseline){' / misses' if misses else ''}"
                regressions.append(row.name)
        print(f"| {row.name} | {_fmt(v, row)} | {_fmt(row.target, row)} | {_fmt(base, row)} | {flag} |")
    if regressions:
        bar = "!" * 78
        print(f"\n{bar}\nREGRESSION against benchmarks/baseline.json (> {TOLERANCE:.1f}x) in:")
        for name in regressions:
            print(f"  - {name}")
        print(bar)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": measured, "raw": results}, indent=1))
    if args.update_baseline:
        rows = baseline | measured  # rows not run this time keep their baseline
        doc = {"machine": machine, "threads": args.threads, "torch": torch.__version__, "rows": rows}
        BASELINE.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {BASELINE}")
    if regressions and args.strict:
        sys.exit(1)


if __name__ == "__main__":
    main()

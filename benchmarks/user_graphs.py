"""A new user's first runs: graphs and data the project has never seen, through the CLI, default options.

For each seed two problems are simulated with numpy alone (nothing from the shipped networks):

- ``linear``: a linear-Gaussian SEM on 40 nodes (a random topological order, 0-3 parents among the
  earlier nodes, weights +-U(0.5, 1.5), noise sd U(0.3, 1.0), random means), 10 hidden nodes among
  those with a child, 80 training and 2,000 test rows. Its oracle NLL is exact: the Gaussian marginal
  N(mu_X, Sigma_XX) of the observed columns, in closed form.
- ``nonlinear``: 24 nodes, 9 hidden (nodes with a child), 48 training and 2,000 test rows; each node is
  a random mean plus, over its parents, w*tanh(p), w*(p^2 - 1)/sqrt(2) or w*sin(p) of the parent p
  standardised by constants of the SEM (from a 20,000-row pilot draw), plus Gaussian noise. No oracle
  (the 9-dimensional integral over the hidden nodes has no cheap, trustworthy estimate): left empty.

Each problem is written as a user would hand it over (``graph.json`` with the nodes in a shuffled
order, ``train.csv`` and ``test.csv`` with only the observed columns, so the hidden nodes are inferred
as latent) and fitted with ``sirenvae fit --graph graph.json --data train.csv --model {true,vae} --out
RUN`` (no other option; ``--quick`` adds ``--epochs 3``), then scored with ``sirenvae evaluate RUN
--data test.csv --json``. Factor analysis and Ledoit-Wolf (``sirenvae.baselines.fit_classical``) are
fitted on the same training rows. Run directories live in a temporary directory, never under ``--out``.

Run: ``python benchmarks/user_graphs.py [--seeds 3] [--first-seed 0] [--out docs/results/user-graphs]
[--quick]``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.stats import multivariate_normal

from sirenvae.baselines import fit_classical

SIRENVAE = str(Path(sys.executable).with_name("sirenvae"))
MODELS = ("true", "vae", "fa", "lw")
COLUMNS = ("problem", "seed", "model", "nll", "oracle", "fit_seconds", "eval_seconds", "chosen", "options")


@dataclass
class Problem:
    """A simulated problem: the graph, which nodes are hidden, the rows and (maybe) the oracle NLL."""

    name: str
    seed: int
    names: list[str]  # in topological order
    parents: dict[str, list[str]]
    hidden: list[str]
    train: np.ndarray  # (n, D) all nodes, topological order
    test: np.ndarray
    oracle: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def observed(self) -> list[str]:
        return sorted(n for n in self.names if n not in set(self.hidden))

    def columns(self, x: np.ndarray) -> np.ndarray:
        index = {n: i for i, n in enumerate(self.names)}
        return x[:, [index[n] for n in self.observed]]


def random_dag(rng: np.random.Generator, d: int, max_parents: int = 3) -> tuple[list[str], list[list[int]]]:
    """Node names (a shuffled labelling, so name order is not topological order) and, per node in
    topological order, the indices of its parents among the earlier nodes.
    """
    labels = rng.permutation(d)
    names = [f"v{int(k):02d}" for k in labels]
    parents = []
    for i in range(d):
        k = int(rng.integers(0, max_parents + 1)) if i > 0 else 0
        parents.append(sorted(rng.choice(i, size=min(k, i), replace=False).tolist()) if k else [])
    return names, parents


def with_children(parents: list[list[int]]) -> list[int]:
    return sorted({p for pa in parents for p in pa})


def pick_hidden(rng: np.random.Generator, parents: list[list[int]], k: int) -> list[int] | None:
    candidates = with_children(parents)
    if len(candidates) < k:
        return None
    return sorted(rng.choice(candidates, size=k, replace=False).tolist())


def linear_problem(
    seed: int, d: int = 40, hidden: int = 10, n_train: int = 80, n_test: int = 2000
) -> Problem:
    rng = np.random.default_rng([seed, 1])
    while True:
        names, pa = random_dag(rng, d)
        h = pick_hidden(rng, pa, hidden)
        if h is not None:
            break
    B = np.zeros((d, d))  # x = m + B x + s * eps, B strictly lower triangular in topological order
    for i, ps in enumerate(pa):
        for j in ps:
            B[i, j] = rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.5)
    s = rng.uniform(0.3, 1.0, size=d)
    m = rng.normal(0.0, 2.0, size=d)
    A = np.linalg.inv(np.eye(d) - B)
    mu, sigma = A @ m, (A * s**2) @ A.T

    def draw(n: int) -> np.ndarray:
        x = np.zeros((n, d))
        eps = rng.normal(size=(n, d))
        for i in range(d):
            x[:, i] = m[i] + x[:, pa[i]] @ B[i, pa[i]] + s[i] * eps[:, i]
        return x

    train, test = draw(n_train), draw(n_test)
    problem = Problem(
        "linear", seed, names, {names[i]: [names[j] for j in pa[i]] for i in range(d)},
        [names[i] for i in h], train, test,
    )  # fmt: skip
    index = {n: i for i, n in enumerate(names)}
    obs = [index[n] for n in problem.observed]
    lp = multivariate_normal(mu[obs], sigma[np.ix_(obs, obs)]).logpdf(problem.columns(test))
    problem.oracle = float(-np.mean(lp))
    sd = np.sqrt(np.diag(sigma)[obs])
    problem.notes.append(
        f"observed column sd from {sd.min():.2f} to {sd.max():.2f}; "
        f"{sum(map(len, pa))} edges; oracle exact (Gaussian marginal)"
    )
    return problem


def nonlinear_problem(
    seed: int, d: int = 24, hidden: int = 9, n_train: int = 48, n_test: int = 2000, pilot: int = 20_000
) -> Problem:
    rng = np.random.default_rng([seed, 2])
    while True:
        names, pa = random_dag(rng, d)
        h = pick_hidden(rng, pa, hidden)
        if h is not None:
            break
    funcs = {
        "tanh": np.tanh,
        "square": lambda z: (z**2 - 1.0) / math.sqrt(2.0),
        "sin": np.sin,
    }
    kinds = {(i, j): str(rng.choice(list(funcs))) for i, ps in enumerate(pa) for j in ps}
    w = {e: rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.5) for e in kinds}
    s = rng.uniform(0.3, 1.0, size=d)
    m = rng.normal(0.0, 2.0, size=d)
    centre, scale = np.zeros(d), np.ones(d)

    def draw(n: int, fix: bool = False) -> np.ndarray:
        x = np.zeros((n, d))
        eps = rng.normal(size=(n, d))
        for i in range(d):
            x[:, i] = m[i] + s[i] * eps[:, i]
            for j in pa[i]:
                x[:, i] += w[i, j] * funcs[kinds[i, j]]((x[:, j] - centre[j]) / scale[j])
            if fix:  # the SEM's standardising constants, fixed once from the pilot draw
                centre[i], scale[i] = x[:, i].mean(), x[:, i].std()
        return x

    draw(pilot, fix=True)
    train, test = draw(n_train), draw(n_test)
    problem = Problem(
        "nonlinear", seed, names, {names[i]: [names[j] for j in pa[i]] for i in range(d)},
        [names[i] for i in h], train, test,
    )  # fmt: skip
    counts = {k: sum(v == k for v in kinds.values()) for k in funcs}
    problem.notes.append(f"{len(kinds)} edges ({counts}); no oracle")
    return problem


def write_problem(problem: Problem, directory: Path, rng: np.random.Generator) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    order = rng.permutation(len(problem.names))  # a user lists nodes in any order
    nodes = [{"name": problem.names[i], "parents": problem.parents[problem.names[i]]} for i in order]
    (directory / "graph.json").write_text(json.dumps({"nodes": nodes}, indent=1))
    for part, x in (("train", problem.train), ("test", problem.test)):
        with open(directory / f"{part}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(problem.observed)
            writer.writerows([[f"{v:.10g}" for v in row] for row in problem.columns(x)])


def run(cmd: list[str], log: Path) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    log.write_text(f"$ {' '.join(cmd)}\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    if proc.returncode != 0:
        lines = [line for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
        error = next(
            (line for line in reversed(lines) if "error" in line.lower()), lines[-1] if lines else ""
        )
        raise RuntimeError(f"command failed (exit {proc.returncode}): {' '.join(cmd)}\n  {error}")
    return proc, seconds


def sirenvae_model(problem: Problem, model: str, directory: Path, quick: bool) -> dict:
    out = directory / f"run-{model}"
    fit = [SIRENVAE, "fit", "--graph", str(directory / "graph.json"), "--data", str(directory / "train.csv")]
    fit += ["--model", model, "--out", str(out)] + (["--epochs", "3"] if quick else [])
    proc, fit_seconds = run(fit, directory / f"fit-{model}.log")
    print(proc.stdout, flush=True)
    ev = [SIRENVAE, "evaluate", str(out), "--data", str(directory / "test.csv"), "--json"]
    proc, eval_seconds = run(ev, directory / f"evaluate-{model}.log")
    result = json.loads(proc.stdout)
    meta = json.loads((out / "model.json").read_text())
    settings = meta.get("settings") or {}
    return {
        "nll": float(result["nll"]),
        "fit_seconds": fit_seconds,
        "eval_seconds": eval_seconds,
        "chosen": settings.get("chosen", ""),
        "options": json.dumps(
            next((c["options"] for c in settings.get("candidates", []) if c.get("chosen")), {})
        ),
        "candidates": settings.get("candidates", []),
        "classical_cv": settings.get("classical", []),
        "rule": settings.get("rule", ""),
    }


def classical_model(problem: Problem, name: str) -> dict:
    x_train = torch.as_tensor(problem.columns(problem.train), dtype=torch.float64)
    x_test = torch.as_tensor(problem.columns(problem.test), dtype=torch.float64)
    start = time.perf_counter()
    model = fit_classical(name, x_train, seed=problem.seed)
    fit_seconds = time.perf_counter() - start
    nll = float(-model.log_prob(x_test).mean())
    chosen = f"k={model.fit['k']}" if name == "fa" else f"shrinkage={model.fit['shrinkage']:.3f}"
    return {"nll": nll, "fit_seconds": fit_seconds, "eval_seconds": 0.0, "chosen": chosen, "options": ""}


def fmt(v: float | None, digits: int = 3) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def report(rows: list[dict], details: list[dict], problems: list[Problem], args, commands: list[str]) -> str:
    lines = ["# A new user's graphs: default `sirenvae fit` on unseen simulated problems", ""]
    lines += [
        "Produced by `benchmarks/user_graphs.py` (see its docstring for the simulation). Every SIReN-VAE "
        "and VAE fit is `sirenvae fit --graph graph.json --data train.csv --model M --out RUN` with no "
        "other option" + (" but `--epochs 3` (**--quick**: not a result)" if args.quick else "") + "; "
        "scores are `sirenvae evaluate RUN --data test.csv --json` (IWAE NLL, K = 1000, 2,000 test rows, "
        "nats per row, lower is better). FA and LW: `sirenvae.baselines.fit_classical` on the training rows,"
        " exact NLL.",
        "",
        "## Mean test NLL",
        "",
    ]
    names = sorted({r["problem"] for r in rows}, key=["linear", "nonlinear"].index)
    seeds = sorted({r["seed"] for r in rows})
    header = "| problem | seeds | " + " | ".join(MODELS) + " | oracle |"
    lines += [header, "|" + "---|" * (len(MODELS) + 3)]
    for p in names:
        cells = []
        for m in MODELS:
            v = [r["nll"] for r in rows if r["problem"] == p and r["model"] == m]
            cells.append(f"{np.mean(v):.3f} ± {np.std(v, ddof=1):.3f}" if len(v) > 1 else fmt(np.mean(v)))
        o = [r["oracle"] for r in rows if r["problem"] == p and r["model"] == "true" and r["oracle"] != ""]
        lines.append(f"| {p} | {len(seeds)} | " + " | ".join(cells) + f" | {fmt(np.mean(o)) if o else '-'} |")
    lines += [
        "",
        "(mean ± standard deviation over seeds)",
        "",
        "## Paired differences, true − model, per seed",
        "",
    ]
    lines += ["Negative: SIReN-VAE true is better on that seed.", ""]
    others = [m for m in MODELS if m != "true"]
    lines += ["| problem | seed | " + " | ".join(f"true − {m}" for m in others) + " | true − oracle |"]
    lines += ["|" + "---|" * (len(others) + 3)]
    nll = {(r["problem"], r["seed"], r["model"]): r["nll"] for r in rows}
    oracle = {(r["problem"], r["seed"]): r["oracle"] for r in rows if r["model"] == "true"}
    for p in names:
        for s in seeds:
            d = [nll[p, s, "true"] - nll[p, s, m] for m in others]
            o = oracle[p, s]
            gap = fmt(nll[p, s, "true"] - o) if o != "" else "-"
            lines.append(f"| {p} | {s} | " + " | ".join(f"{v:+.3f}" for v in d) + f" | {gap} |")
        wins = [sum(nll[p, s, "true"] < nll[p, s, m] for s in seeds) for m in others]
        means = [np.mean([nll[p, s, "true"] - nll[p, s, m] for s in seeds]) for m in others]
        lines.append(
            f"| {p} | **mean (true better)** | "
            + " | ".join(f"{v:+.3f} ({w}/{len(seeds)})" for v, w in zip(means, wins, strict=True))
            + " | |"
        )
    lines += ["", "## Chosen settings and wall times", ""]
    lines += [
        "| problem | seed | model | chosen | fit s | evaluate s | NLL |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['problem']} | {r['seed']} | {r['model']} | {r['chosen']} | {fmt(r['fit_seconds'], 1)} "
            f"| {fmt(r['eval_seconds'], 1)} | {fmt(r['nll'])} |"
        )
    lines += ["", "## The settings search of each fit (CV NLL ± se on the training rows)", ""]
    for d in details:
        cands = "; ".join(
            f"{c['candidate']}{' (chosen)' if c.get('chosen') else ''} "
            + (f"{c['cv_nll']:.3f} ± {c['se']:.3f}" if "cv_nll" in c else "-")
            + ("" if c.get("status") == "ok" else f" [{c.get('status')}]")
            for c in d["candidates"]
        )
        classical = "; ".join(
            f"{c['candidate']} {c['cv_nll']:.3f} ± {c['se']:.3f}" for c in d["classical_cv"]
        )
        lines.append(f"- {d['problem']} seed {d['seed']} {d['model']}: {cands}; classical: {classical}")
    lines += ["", "## The problems", ""]
    for p in problems:
        lines.append(
            f"- {p.name} seed {p.seed}: {len(p.names)} nodes, hidden {', '.join(sorted(p.hidden))}; "
            f"{p.train.shape[0]} train / {p.test.shape[0]} test rows; {'; '.join(p.notes)}"
        )
    lines += ["", "## Machine and commands", ""]
    cpu = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
        platform.processor(),
    ) if os.path.exists("/proc/cpuinfo") else platform.processor()  # fmt: skip
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    lines += [
        f"- nproc: {nproc} ({cpu}); shared with other work, so wall times are indicative",
        f"- torch {torch.__version__}, numpy {np.__version__}, Python {platform.python_version()}, "
        f"{platform.platform()}",
        f"- benchmark: `{' '.join(commands[0])}`",
        f"- per problem and model M in true, vae: `{commands[1]}` then `{commands[2]}`",
        f"- total wall time: {args.total_seconds / 60:.1f} min",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="Seeds first-seed, first-seed + 1, ...")
    parser.add_argument("--out", type=Path, default=Path("docs/results/user-graphs"))
    parser.add_argument("--quick", action="store_true", help="Smoke run: --epochs 3 passed to fit.")
    parser.add_argument("--keep", action="store_true", help="Keep the temporary run directories.")
    args = parser.parse_args()
    start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="sirenvae-user-graphs-"))
    print(f"problems and runs in {tmp}", flush=True)
    rows, details, problems = [], [], []
    try:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for make in (linear_problem, nonlinear_problem):
                problem = make(seed)
                problems.append(problem)
                directory = tmp / f"{problem.name}-{seed}"
                write_problem(problem, directory, np.random.default_rng([seed, 3]))
                print(f"== {problem.name} seed {seed}: {'; '.join(problem.notes)}", flush=True)
                for model in MODELS:
                    if model in ("fa", "lw"):
                        r = classical_model(problem, model)
                    else:
                        r = sirenvae_model(problem, model, directory, args.quick)
                        details.append({"problem": problem.name, "seed": seed, "model": model} | r)
                    row = {"problem": problem.name, "seed": seed, "model": model}
                    row |= {"oracle": "" if problem.oracle is None else problem.oracle}
                    row |= {k: r[k] for k in ("nll", "fit_seconds", "eval_seconds", "chosen", "options")}
                    rows.append(row)
                    print(
                        f"   {model}: NLL {row['nll']:.3f} (oracle {fmt(problem.oracle) or '-'}), "
                        f"fit {row['fit_seconds']:.1f} s, chosen {row['chosen']}",
                        flush=True,
                    )
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    args.total_seconds = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "user-graphs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})
    commands = [
        ["python", "benchmarks/user_graphs.py", *sys.argv[1:]],
        "sirenvae fit --graph graph.json --data train.csv --model M --out RUN"
        + (" --epochs 3" if args.quick else ""),
        "sirenvae evaluate RUN --data test.csv --json",
    ]
    text = report(rows, details, problems, args, commands)
    (args.out / "user-graphs.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

"""The commands on the shipped networks and the paper: ``networks``, ``demo``, ``reproduce`` and ``search``.

``networks`` and ``demo`` print their tables (``demo --json`` its JSON) and ``demo`` its verdict on
standard output. ``reproduce`` and ``search`` write their results to files: what they print (what
runs, a line per finished run or cell, the summary, failures) is progress on standard error.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path

import typer
from rich.table import Table

from sirenvae.cli.common import (
    DEFAULT_THREADS,
    DEVICE_HELP,
    THREADS_HELP,
    UsageError,
    app,
    default_workers,
    note,
    one_of,
    print_table,
    say,
    split_list,
    torch_threads,
    user_errors,
)
from sirenvae.experiments.protocol import EXPERIMENTS, SETTINGS

__all__ = ["demo", "networks", "reproduce", "search"]

RUN_THREADS_HELP = "Torch threads of each run with --no-ray (default 1; Ray runs use 1)."


@app.command()
def networks() -> None:
    """List the shipped networks."""
    from sirenvae.data import default_latent_rule
    from sirenvae.networks import available_networks, load_network

    table = Table(title="shipped networks")
    for col in ("name", "nodes", "edges", "default latent rule"):
        table.add_column(col)
    for name in available_networks():
        g = load_network(name).graph
        rule = default_latent_rule(name)
        table.add_row(name, str(len(g)), str(len(g.edges)), rule if isinstance(rule, str) else ",".join(rule))
    print_table(table)


@app.command()
def demo(
    seed: int = typer.Option(0, help="Seed of data and training."),
    progress: bool = typer.Option(True, help="Show progress bars."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    threads: int = typer.Option(DEFAULT_THREADS, "--threads", help=THREADS_HELP),
    settings: str = typer.Option(
        "auto", "--settings", help="auto (chosen on the 92 training rows, as `fit` does), searched or paper."
    ),
    workers: int = typer.Option(None, "--workers", help="Parallel fits of the search (default: the CPUs)."),
) -> None:
    """Train SIReN-VAE (true structure) and a plain VAE on 92 samples of ecoli70 and compare them."""
    from sirenvae.experiments.demo import VAEDemoConfig, vae_demo

    with user_errors():
        if settings not in SETTINGS:
            raise UsageError(f"unknown --settings {settings!r}; choose {one_of(SETTINGS)}")
        config = VAEDemoConfig(seed=seed, settings=settings, workers=workers or default_workers())
    how = {
        "auto": "each model's settings chosen by 5-fold cross-validation on those rows alone",
        "searched": "settings chosen by the search on tuning draws",
        "paper": "the paper's fixed settings",
    }[settings]
    note(
        f"Training SIReN-VAE (true structure) and a plain VAE on {config.train_factor} x 46 = "
        f"{config.train_factor * 46} samples of ecoli70 ({how}); testing on {config.test_size} fresh "
        f"samples with K = {config.importance_samples} importance samples..."
    )
    start = time.perf_counter()
    with user_errors(), torch_threads(threads):
        result = vae_demo(config, progress=progress and not as_json)
    if as_json:
        print(json.dumps(result, indent=1))
        return
    table = Table(title="ecoli70, 92 training samples: test metrics (nats; lower is better)")
    for name in ("model", "settings", "NLL", "-ELBO", "RE", "oracle NLL", "seconds"):
        table.add_column(name, justify="right")
    for row in result["models"]:
        table.add_row(
            row["model"],
            row.get("chosen") or settings,
            f"{row['nll']:.3f}",
            f"{row['neg_elbo']:.3f}",
            f"{row['re']:.3f}",
            f"{result['oracle_nll']:.3f}",
            f"{row['train_seconds']:.1f}",
        )
    print_table(table)
    if "margin" in result:
        margin = result["margin"]
        verdict = "beats" if margin > 0 else "loses to"
        say(
            f"SIReN-VAE true {verdict} the VAE by {abs(margin):.3f} nats of test NLL, with {how}; "
            f"{time.perf_counter() - start:.0f} s in all."
        )


@app.command()
def reproduce(
    experiment: str = typer.Argument(..., help=f"{one_of(EXPERIMENTS)}."),
    quick: bool = typer.Option(False, "--quick", help="Tiny budgets, one seed: checks the pipeline."),
    seeds: int = typer.Option(None, "--seeds", help="Seeds per cell (default 3; the ablation 1)."),
    address: str = typer.Option(None, "--address", help="A Ray cluster address (default: a local instance)."),
    no_ray: bool = typer.Option(False, "--no-ray", help="Run sequentially in this process."),
    workers: int = typer.Option(2, "--workers", help="CPUs of the local Ray instance."),
    out: Path = typer.Option(None, "--out", help="Output directory (default: results/<experiment>[-quick])."),
    datasets: str = typer.Option(None, "--datasets", help="A subset of datasets, comma-separated."),
    network: str = typer.Option(
        None,
        "--network",
        help="Figure 3's network (default ecoli70); arithmetic-circuit gives the nonlinear Figure 3 "
        "(the experiment figure3nl).",
    ),
    models: str = typer.Option(None, "--models", help="A subset of models, comma-separated."),
    factors: str = typer.Option(None, "--factors", help="A subset of training-size factors, e.g. 2,100."),
    threads: int = typer.Option(None, "--threads", help=RUN_THREADS_HELP),
    settings: str = typer.Option(
        "paper",
        "--settings",
        help=f"{one_of(SETTINGS)}: fixed by hand, chosen by `sirenvae search` on tuning draws, or chosen "
        "by each run on its own training rows (k-fold CV, as `sirenvae fit` does by default).",
    ),
    chosen: Path = typer.Option(
        None, "--chosen", help="The search's chosen.json (default: the copy shipped in the package)."
    ),
    device: str = typer.Option("cpu", "--device", help=DEVICE_HELP + " Ray runs share a GPU by --workers."),
) -> None:
    """Run the paper's Table 1 or Figure 3 grid (resumable) and write its table and figure.

    Besides the paper's models, every table and figure has two classical baselines: factor analysis
    (k by cross-validation on the training rows) and a Ledoit–Wolf shrunk Gaussian.
    """
    import time

    from sirenvae.devices import resolve_device
    from sirenvae.experiments import report
    from sirenvae.experiments.ablation import ablation_table
    from sirenvae.experiments.grids import grid
    from sirenvae.experiments.runner import _execute, load_results, run_sweep

    with user_errors():
        device = resolve_device(device)
        if experiment not in EXPERIMENTS:
            raise UsageError(f"unknown experiment {experiment!r}; choose {one_of(EXPERIMENTS)}")
        _check_sweep_options(workers, threads, no_ray, out)
        experiment, datasets, default_out = _figure3_network(experiment, network, datasets)
        configs = grid(
            experiment,
            seeds=seeds,
            quick=quick,
            datasets=split_list(datasets),
            models=split_list(models),
            factors=_factors(factors),
            settings=settings,
            chosen=chosen,
        )
        _need_sklearn(configs)
        suffix = (f"-{settings}" if settings != "paper" else "") + ("-quick" if quick else "")
        out = out or Path("results") / (default_out + suffix)
        out.mkdir(parents=True, exist_ok=True)
        note(f"{experiment}: {len(configs)} runs -> {out} ({'sequential' if no_ray else 'Ray'})")
        start = time.perf_counter()

        def show(doc: dict) -> None:
            m = doc["metrics"]
            re = "-" if m["re"] is None else f"{m['re']:.3f}"
            k = f"  k {doc['fit']['k']}" if "k" in doc.get("fit", {}) else ""
            if "selection" in doc:
                k = f"  chose {doc['selection']['chosen']} (regret {doc['regret']:.3f})"
            note(
                f"  {doc['run_id']}: NLL {m['nll']:.3f}  -ELBO {m['neg_elbo']:.3f}  RE {re}{k}  "
                f"({doc['train_seconds'] + doc['eval_seconds']:.0f} s)"
            )

        result = run_sweep(
            configs,
            out,
            use_ray=not no_ray,
            address=address,
            workers=workers,
            on_result=show,
            execute=functools.partial(_execute, threads=threads or 1, device=str(device)),
            gpus_per_run=0.0 if device.type == "cpu" else 1 / workers,
        )
        # the table and figure show every finished run of the experiment in --out, not only this
        # sweep's subset (--datasets, --models, --factors; factors outside the default cells too);
        # with searched settings, those searched
        try:
            every = grid(
                experiment,
                seeds=seeds,
                quick=quick,
                datasets=None if experiment == "table1" else split_list(datasets),
                factors=_factors_in(out, experiment),
                settings=settings,
                chosen=chosen,
            )
        except ValueError:  # a chosen.json that covers this subset only
            every = configs
        results = load_results(out, every)
        writer = {"table1": report.table1, "ablation": ablation_table}.get(experiment, report.figure3)
        if results:
            writer(results, out)
        summary = _write_summary(out / "sweep.json", result, start, runs=len(configs))
    note(
        f"{len(result.completed)} runs done, {len(result.skipped)} already finished, "
        f"{len(result.failed)} failed; {summary['wall_seconds']:.0f} s; outputs in {out}"
    )
    _exit_on_failures(result)


def _write_summary(path: Path, result, start: float, **counts: int) -> dict:
    """The sweep's command, machine, wall time and outcome, written next to its results."""
    from sirenvae.experiments.runner import machine

    summary = {
        "command": "sirenvae " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "wall_seconds": time.perf_counter() - start,
        **counts,
        "completed_now": len(result.completed),
        "skipped_finished": len(result.skipped),
        "failed": result.failed,
    }
    path.write_text(json.dumps(summary, indent=1))
    return summary


def _exit_on_failures(result) -> None:
    """One line per failed run, then exit code 1 (the finished runs are kept)."""
    if result.failed:
        for run_id, error in result.failed.items():
            note(f"failed: {run_id}: {error.strip().splitlines()[-1]}")
        raise typer.Exit(1)


def _figure3_network(
    experiment: str, network: str | None, datasets: str | None
) -> tuple[str, str | None, str]:
    """``(experiment, datasets, default output name)`` of ``reproduce``: ``figure3 --network N`` is
    Figure 3 on N; on the arithmetic circuit it is the experiment ``figure3nl``.
    """
    if network is None:
        return experiment, datasets, experiment
    if not experiment.startswith("figure3"):
        raise UsageError(f"--network applies to figure3, not {experiment}; use --datasets")
    if datasets is not None:
        raise UsageError("give --network or --datasets, not both")
    from sirenvae.networks import available_networks

    if network not in available_networks():
        raise UsageError(f"unknown --network {network!r}; choose {one_of(available_networks())}")
    if network == "arithmetic-circuit":
        return "figure3nl", None, "figure3nl"
    if experiment == "figure3nl":
        raise UsageError("figure3nl is the arithmetic circuit's Figure 3; use figure3 --network for another")
    return "figure3", network, "figure3" if network == "ecoli70" else f"figure3-{network}"


def _need_sklearn(configs) -> None:
    """A clear error before any run when the grid has classical baselines and scikit-learn is absent."""
    from sirenvae.baselines import BASELINES

    if any(c.model in BASELINES for c in configs):
        try:
            import sklearn  # noqa: F401
        except ImportError:
            raise UsageError(
                "the classical baselines (fa, lw) need scikit-learn (a dependency of sirenvae): "
                "pip install scikit-learn, or leave them out with --models"
            ) from None


def _factors(factors: str | None) -> tuple[int, ...] | None:
    try:
        return tuple(int(f) for f in split_list(factors)) if factors else None
    except ValueError:
        raise UsageError(f"--factors takes whole numbers such as 2,100, got {factors!r}") from None


def _check_sweep_options(workers: int, threads: int | None, no_ray: bool, out: Path | None) -> None:
    """The checks every sweep command makes before it starts (one clear line per mistake)."""
    if workers < 1:
        raise UsageError(f"--workers must be positive, got {workers}")
    if threads is not None and not no_ray:
        raise UsageError("--threads applies with --no-ray; with Ray each run uses one thread per worker")
    if threads is not None and threads < 1:
        raise UsageError(f"--threads must be positive, got {threads}")
    if out is not None and out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; --out names the sweep's directory")
    if not no_ray:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UsageError(
                "Ray is not installed: pip install 'sirenvae[ray]', or run sequentially with --no-ray"
            ) from None


@app.command()
def search(
    quick: bool = typer.Option(False, "--quick", help="Tiny budgets and two trials: checks the pipeline."),
    trials: int = typer.Option(None, "--trials", help="Settings tried per cell, the same for every model."),
    folds: int = typer.Option(0, "--folds", help="k-fold CV within the tuning rows (0: fresh rows)."),
    address: str = typer.Option(None, "--address", help="A Ray cluster address (default: a local instance)."),
    no_ray: bool = typer.Option(False, "--no-ray", help="Run sequentially in this process."),
    workers: int = typer.Option(2, "--workers", help="CPUs of the local Ray instance."),
    out: Path = typer.Option(None, "--out", help="Output directory (default: results/search[-quick])."),
    datasets: str = typer.Option(None, "--datasets", help="A subset of datasets, comma-separated."),
    models: str = typer.Option(None, "--models", help="A subset of models, comma-separated."),
    factors: str = typer.Option(None, "--factors", help="Training-size factors to search (default 2,100)."),
    threads: int = typer.Option(None, "--threads", help=RUN_THREADS_HELP),
    device: str = typer.Option("cpu", "--device", help=DEVICE_HELP + " Ray runs share a GPU by --workers."),
) -> None:
    """Choose each model's settings per dataset and training size on tuning data only (resumable).

    Every model gets the same number of trials, trained like the evaluation runs on rows drawn with
    seeds 1000+ and scored by the validation NLL on fresh rows (or k-fold CV); writes one JSON per
    cell and chosen.json, which `reproduce --settings searched` reads.
    """
    import dataclasses
    import time

    from sirenvae.devices import resolve_device
    from sirenvae.experiments import search as S
    from sirenvae.experiments.runner import run_sweep

    with user_errors():
        device = resolve_device(device)
        _check_sweep_options(workers, threads, no_ray, out)
        settings = S.QUICK_SEARCH if quick else S.SearchSettings()
        if trials is not None or folds:
            settings = dataclasses.replace(
                settings, trials=settings.trials if trials is None else trials, folds=folds
            )
        cells = S.cells(
            settings=settings,
            datasets=split_list(datasets),
            models=split_list(models),
            factors=_factors(factors),
        )
        out = out or Path("results") / ("search-quick" if quick else "search")
        out.mkdir(parents=True, exist_ok=True)
        how = "sequential" if no_ray else "Ray"
        note(f"search: {len(cells)} cells x {settings.trials} trials -> {out} ({how})")
        start = time.perf_counter()

        def show(doc: dict) -> None:
            c, paper = doc["chosen"], doc["trials"][0]["val_nll"]
            note(
                f"  {doc['run_id']}: trial {c['trial']} of {len(doc['trials'])}, validation NLL "
                f"{c['val_nll']:.3f} (trial 0: {'failed' if paper is None else f'{paper:.3f}'}) "
                f"{c['params']} ({doc['seconds']:.0f} s)"
            )

        execute = functools.partial(S._execute_cell, threads=threads or 1, device=str(device))
        result = run_sweep(
            cells,
            out,
            use_ray=not no_ray,
            address=address,
            workers=workers,
            on_result=show,
            execute=execute,
            gpus_per_run=0.0 if device.type == "cpu" else 1 / workers,
        )
        chosen = S.write_chosen(out, settings)
        summary = _write_summary(out / "search.json", result, start, cells=len(cells))
    note(
        f"{len(result.completed)} cells searched, {len(result.skipped)} already finished, "
        f"{len(result.failed)} failed; {summary['wall_seconds']:.0f} s; choices in {chosen}"
    )
    _exit_on_failures(result)


def _factors_in(out: Path, experiment: str) -> tuple[int, ...]:
    """The experiment's default training-size factors and those of every run written in ``out``."""
    from sirenvae.experiments.protocol import DEFAULT_CELLS
    from sirenvae.experiments.runner import load_results

    found = {r["config"].get("train_factor") for r in load_results(out)}
    default = DEFAULT_CELLS[experiment][1] if experiment in DEFAULT_CELLS else ()
    return tuple(sorted(set(default) | {f for f in found if isinstance(f, int)}))

"""The ``sirenvae`` command line: parses, calls the library, prints. No maths here.

Every bad input ends with one line ``error: ...`` on standard error and exit code 2; a training run
that stops on a non-finite loss exits with code 1 and keeps its last good checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="sirenvae",
    help="Deep generative models that follow a known Bayesian network.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress.")) -> None:
    """Deep generative models that follow a known Bayesian network."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)


class UsageError(ValueError):
    """A combination of options that cannot work."""


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turns the library's input errors into one line and exit code 2."""
    from sirenvae.flows import ConvergenceError
    from sirenvae.training import TrainingError

    try:
        yield
    except TrainingError as e:
        err_console.print(f"error: training stopped: {e}", markup=False, highlight=False)
        raise typer.Exit(1) from None
    except (ValueError, ConvergenceError, FileNotFoundError, PermissionError) as e:
        message = " ".join(str(e).split())
        err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _parse_latent(latent: str | None):
    if latent is None:
        return None
    return latent if latent in ("leaves-observed", "roots-and-leaves-observed") else latent.split(",")


@app.command()
def fit(
    network: str = typer.Option(None, "--network", help="A shipped network (see `sirenvae networks`)."),
    graph: Path = typer.Option(None, "--graph", help="Your graph: .json, .csv (parent,child), .dot, .bif."),
    data: Path = typer.Option(None, "--data", help="Training data: CSV with a header of node names."),
    train_size: int = typer.Option(None, "--train-size", help="Sample this many rows from --network."),
    latent: str = typer.Option(
        None, "--latent", help="Latent nodes: a,b,c or a rule (leaves-observed, roots-and-leaves-observed)."
    ),
    model: str = typer.Option("true", "--model", help="true, fc, ind, vae or vae-maf."),
    seed: int = typer.Option(0, "--seed", help="Seed of data sampling and training."),
    out: Path = typer.Option(..., "--out", help="Run directory for checkpoints and the model."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in --out."),
    epochs: int = typer.Option(2000, "--epochs", help="The most epochs."),
    patience: int = typer.Option(50, "--patience", help="Epochs without improvement before stopping."),
    lr: float = typer.Option(3e-3, "--lr", help="Adam's learning rate."),
    batch_size: int = typer.Option(32, "--batch-size", help="Mini-batch size."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Train a model on a graph and data; writes checkpoints and the final model to --out."""
    from sirenvae.data import default_latent_rule, latent_set, read_csv, sample_splits
    from sirenvae.graph import read_graph
    from sirenvae.models import VARIANTS, ModelConfig
    from sirenvae.networks import load_network
    from sirenvae.pipeline import train_model
    from sirenvae.training import FitConfig

    with user_errors():
        if (network is None) == (graph is None):
            raise UsageError("give exactly one of --network NAME or --graph FILE")
        if (data is None) == (train_size is None):
            raise UsageError("give exactly one of --data CSV or --train-size N")
        if model not in VARIANTS:
            raise UsageError(f"unknown --model {model!r}; choose one of {', '.join(VARIANTS)}")
        if epochs < 1 or batch_size < 1 or not lr > 0:
            raise UsageError("--epochs, --batch-size and --lr must be positive")
        net = None
        if network is not None:
            net = load_network(network)
            bn = net.graph
        else:
            bn = read_graph(graph)
        extra = {"network": network, "seed": seed}
        if train_size is not None:
            if net is None:
                raise UsageError(
                    "--train-size samples from a shipped --network; with --graph give --data CSV"
                )
            if train_size < 2:
                raise UsageError(f"--train-size must be at least 2, got {train_size}")
            rule = _parse_latent(latent) or default_latent_rule(network)
            lat = latent_set(bn, rule)
            x = sample_splits(net, lat, train_size=train_size, test_size=0, seed=seed).train
            extra |= {"train_size": train_size, "data": "sampled"}
        else:
            rule = _parse_latent(latent)
            lat = latent_set(bn, rule) if rule is not None else None
            x, _, lat = read_csv(data, bn, lat, min_rows=2)
            extra |= {"train_size": int(x.shape[0]), "data": str(data)}
        if progress:
            console.print(
                f"training {model} on {len(bn)} nodes ({len(lat)} latent) with {x.shape[0]} rows -> {out}"
            )
        trained, history = train_model(
            bn,
            lat,
            x,
            model_config=ModelConfig(variant=model),
            fit_config=FitConfig(
                lr=lr,
                batch_size=batch_size,
                max_epochs=epochs,
                patience=patience,
                seed=seed,
                progress=progress,
            ),
            out=out,
            resume=resume,
            extra_meta=extra,
        )
    best = history.best_valid_loss
    console.print(
        f"done: {len(history.train_loss)} epochs ({history.stopped}), best validation -ELBO "
        f"{best:.3f} at epoch {history.best_epoch}; model in {out}"
    )


def _test_rows(meta: dict, model, data: Path | None, test_size: int | None):
    from sirenvae.data import read_csv, sample_splits
    from sirenvae.networks import load_network

    if (data is None) == (test_size is None):
        raise UsageError("give exactly one of --data CSV or --test-size N")
    net = load_network(meta["network"]) if meta.get("network") else None
    if test_size is not None:
        if net is None:
            raise UsageError("--test-size samples from the run's shipped network; this run used --graph")
        if test_size < 1:
            raise UsageError(f"--test-size must be positive, got {test_size}")
        x = sample_splits(net, model.latent, train_size=0, test_size=test_size, seed=meta.get("seed", 0)).test
    else:
        x, _, _ = read_csv(data, model.graph, model.latent)
    return x, net


@app.command()
def evaluate(
    run: Path = typer.Argument(..., help="A run directory written by `sirenvae fit`."),
    data: Path = typer.Option(None, "--data", help="Test data: CSV with the observed columns."),
    test_size: int = typer.Option(None, "--test-size", help="Fresh rows from the run's network."),
    importance_samples: int = typer.Option(1000, "--importance-samples", "-k", help="K of the IWAE NLL."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Print NLL (IWAE), negative ELBO, reconstruction error and, where known, the oracle NLL."""
    import torch

    from sirenvae.networks import LinearGaussianNetwork
    from sirenvae.objectives import evaluate as evaluate_model
    from sirenvae.pipeline import load_model

    with user_errors():
        if importance_samples < 1:
            raise UsageError(f"--importance-samples must be positive, got {importance_samples}")
        model, meta = load_model(run)
        x, net = _test_rows(meta, model, data, test_size)
        torch.manual_seed(meta.get("seed", 0))
        result = evaluate_model(model, x, importance_samples=importance_samples)
        if isinstance(net, LinearGaussianNetwork) and set(net.graph.nodes) == set(model.graph.nodes):
            result["oracle_nll"] = -net.log_prob(x.double(), model.observed).mean().item()
            result["gap"] = result["nll"] - result["oracle_nll"]
        result["model"] = meta["model"]["variant"]
    if as_json:
        print(json.dumps(result, indent=1))
        return
    table = Table(title=f"{run}: {result['rows']} rows, K = {importance_samples}")
    for name in ("model", "NLL", "-ELBO", "RE", "oracle NLL"):
        table.add_column(name, justify="right")
    oracle = f"{result['oracle_nll']:.3f}" if "oracle_nll" in result else "-"
    table.add_row(
        result["model"], f"{result['nll']:.3f}", f"{result['neg_elbo']:.3f}", f"{result['re']:.3f}", oracle
    )
    console.print(table)


@app.command()
def sample(
    run: Path = typer.Argument(..., help="A run directory written by `sirenvae fit`."),
    n: int = typer.Option(..., "-n", help="Number of samples."),
    output: Path = typer.Option(..., "-o", "--output", help="CSV file to write."),
    seed: int = typer.Option(0, "--seed", help="Seed."),
) -> None:
    """Draw joint samples of every node (latent and observed) into a CSV file."""
    import torch

    from sirenvae.data import write_csv
    from sirenvae.pipeline import load_model

    with user_errors():
        if n < 1:
            raise UsageError(f"-n must be positive, got {n}")
        _check_output(output)
        model, _ = load_model(run)
        torch.manual_seed(seed)
        z, x = model.sample(n)
        values = torch.empty(n, len(model.graph))
        values[:, [model.graph.index(v) for v in model.latent]] = z
        values[:, [model.graph.index(v) for v in model.observed]] = x
        write_csv(output, model.graph.nodes, values)
    console.print(f"wrote {n} samples of {len(model.graph)} nodes to {output}")


@app.command()
def posterior(
    run: Path = typer.Argument(..., help="A run directory written by `sirenvae fit`."),
    data: Path = typer.Option(..., "--data", help="CSV with the observed columns."),
    n: int = typer.Option(100, "-n", help="Posterior samples per row."),
    output: Path = typer.Option(..., "-o", "--output", help="CSV file to write."),
    seed: int = typer.Option(0, "--seed", help="Seed."),
) -> None:
    """Posterior mean, sd and samples of every latent for each data row.

    The CSV has columns ``row, statistic, <latents...>`` with statistic ``mean``, ``sd`` and
    ``sample_1`` ... ``sample_n`` for each input row (counted from 1).
    """
    import pandas as pd
    import torch

    from sirenvae.data import read_csv
    from sirenvae.pipeline import load_model

    with user_errors():
        if n < 1:
            raise UsageError(f"-n must be positive, got {n}")
        _check_output(output)
        model, _ = load_model(run)
        x, _, _ = read_csv(data, model.graph, model.latent)
        torch.manual_seed(seed)
        with torch.no_grad():
            z, _ = model.posterior(x, n)  # (n, N, Dz)
        mean, sd = z.mean(0), z.std(0) if n > 1 else torch.zeros_like(z[0])
        stats = ["mean", "sd"] + [f"sample_{i + 1}" for i in range(n)]
        blocks = torch.cat([mean[None], sd[None], z], 0).permute(1, 0, 2)  # (N, n + 2, Dz)
        frame = pd.DataFrame(blocks.reshape(-1, z.shape[-1]).numpy(), columns=list(model.latent))
        frame.insert(0, "statistic", stats * x.shape[0])
        frame.insert(0, "row", [r + 1 for r in range(x.shape[0]) for _ in stats])
        frame.to_csv(output, index=False)
    console.print(f"wrote posterior summaries and {n} samples for {x.shape[0]} rows to {output}")


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
    console.print(table)


@app.command()
def demo(
    seed: int = typer.Option(0, help="Seed of data and training."),
    progress: bool = typer.Option(True, help="Show progress bars."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Train SIReN-VAE (true structure) and a plain VAE on 92 samples of ecoli70 and compare them."""
    from sirenvae.experiments.demo import VAEDemoConfig, vae_demo

    config = VAEDemoConfig(seed=seed)
    if not as_json:
        console.print(
            f"Training SIReN-VAE (true structure) and a plain VAE on {config.train_factor} x 46 = "
            f"{config.train_factor * 46} samples of ecoli70; testing on {config.test_size} fresh samples "
            f"with K = {config.importance_samples} importance samples..."
        )
    with user_errors():
        result = vae_demo(config, progress=progress and not as_json)
    if as_json:
        print(json.dumps(result, indent=1))
        return
    table = Table(title="ecoli70, 92 training samples: test metrics (nats; lower is better)")
    for name in ("model", "NLL", "-ELBO", "RE", "oracle NLL", "train s"):
        table.add_column(name, justify="right")
    for row in result["models"]:
        table.add_row(
            row["model"],
            f"{row['nll']:.3f}",
            f"{row['neg_elbo']:.3f}",
            f"{row['re']:.3f}",
            f"{result['oracle_nll']:.3f}",
            f"{row['train_seconds']:.1f}",
        )
    console.print(table)


@app.command()
def reproduce(
    experiment: str = typer.Argument(..., help="table1 or figure3."),
    quick: bool = typer.Option(False, "--quick", help="Tiny budgets, one seed: checks the pipeline."),
    seeds: int = typer.Option(3, "--seeds", help="Seeds per cell."),
    address: str = typer.Option(None, "--address", help="A Ray cluster address (default: a local instance)."),
    no_ray: bool = typer.Option(False, "--no-ray", help="Run sequentially in this process."),
    workers: int = typer.Option(2, "--workers", help="CPUs of the local Ray instance."),
    out: Path = typer.Option(None, "--out", help="Output directory (default: results/<experiment>[-quick])."),
    datasets: str = typer.Option(None, "--datasets", help="A subset of datasets, comma-separated."),
    models: str = typer.Option(None, "--models", help="A subset of models, comma-separated."),
    factors: str = typer.Option(None, "--factors", help="A subset of training-size factors, e.g. 2,100."),
) -> None:
    """Run the paper's Table 1 or Figure 3 grid (resumable) and write its table and figure."""
    import time

    from sirenvae.experiments import report
    from sirenvae.experiments.registry import grid
    from sirenvae.experiments.runner import load_results, machine, run_sweep

    with user_errors():
        if experiment not in ("table1", "figure3"):
            raise UsageError(f"unknown experiment {experiment!r}; choose table1 or figure3")
        if workers < 1:
            raise UsageError(f"--workers must be positive, got {workers}")
        split = lambda v: tuple(x.strip() for x in v.split(",") if x.strip()) if v else None  # noqa: E731
        configs = grid(
            experiment,
            seeds=seeds,
            quick=quick,
            datasets=split(datasets),
            models=split(models),
            factors=tuple(int(f) for f in split(factors)) if factors else None,
        )
        if not no_ray:
            try:
                import ray  # noqa: F401
            except ImportError:
                raise UsageError(
                    "Ray is not installed: pip install 'sirenvae[ray]', or run sequentially with --no-ray"
                ) from None
        out = out or Path("results") / (experiment + ("-quick" if quick else ""))
        out.mkdir(parents=True, exist_ok=True)
        console.print(f"{experiment}: {len(configs)} runs -> {out} ({'sequential' if no_ray else 'Ray'})")
        start = time.perf_counter()

        def show(doc: dict) -> None:
            m = doc["metrics"]
            console.print(
                f"  {doc['run_id']}: NLL {m['nll']:.3f}  -ELBO {m['neg_elbo']:.3f}  RE {m['re']:.3f}  "
                f"({doc['train_seconds'] + doc['eval_seconds']:.0f} s)",
                highlight=False,
            )

        result = run_sweep(configs, out, use_ray=not no_ray, address=address, workers=workers, on_result=show)
        results = load_results(out, configs)
        writer = report.table1 if experiment == "table1" else report.figure3
        if results:
            writer(results, out)
        summary = {
            "command": "sirenvae " + " ".join(sys.argv[1:]),
            "machine": machine(),
            "wall_seconds": time.perf_counter() - start,
            "runs": len(configs),
            "completed_now": len(result.completed),
            "skipped_finished": len(result.skipped),
            "failed": result.failed,
        }
        (out / "sweep.json").write_text(json.dumps(summary, indent=1))
    console.print(
        f"{len(result.completed)} runs done, {len(result.skipped)} already finished, "
        f"{len(result.failed)} failed; {summary['wall_seconds']:.0f} s; outputs in {out}"
    )
    if result.failed:
        for run_id, error in result.failed.items():
            err_console.print(f"failed: {run_id}: {error.strip().splitlines()[-1]}", markup=False)
        raise typer.Exit(1)


def _check_output(path: Path) -> None:
    if not path.parent.exists():
        raise UsageError(f"cannot write {path}: directory {path.parent} does not exist")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())

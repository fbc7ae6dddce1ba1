"""The command ``compare``: does the graph help on these rows? (:mod:`sirenvae.comparison`).

Its table, the table's key and the sentence go to standard output; the notes, progress and the
"done ..., wrote ..." line to standard error.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table

from sirenvae.cli.common import (
    DEFAULT_THREADS,
    DEVICE_HELP,
    MISSING_HELP,
    STRICT_LEVELS_HELP,
    THREADS_HELP,
    TYPES_HELP,
    UsageError,
    app,
    check_output,
    check_row_source,
    default_workers,
    gone_allow_discrete,
    note,
    notice_line,
    print_table,
    say,
    split_list,
    torch_threads,
    training_options,
    training_rows,
    user_errors,
)
from sirenvae.defaults import BATCH_SIZE, LR, MAX_EPOCHS, PATIENCE

__all__ = ["compare"]


@app.command()
def compare(
    network: str = typer.Option(None, "--network", help="A shipped network (see `sirenvae networks`)."),
    graph: Path = typer.Option(None, "--graph", help="Your graph: .json, .csv (parent,child), .dot, .bif."),
    data: Path = typer.Option(None, "--data", help="The rows: CSV with a header of node names."),
    train_size: int = typer.Option(None, "--train-size", help="Sample this many rows from --network."),
    latent: str = typer.Option(
        None, "--latent", help="Latent nodes: a,b,c or a rule (leaves-observed, roots-and-leaves-observed)."
    ),
    models: str = typer.Option(
        "true,fc,vae",
        "--models",
        help="Deep models to compare, a,b (true among them); factor analysis and Ledoit-Wolf always are.",
    ),
    outer_folds: int = typer.Option(
        None, "--outer-folds", help="Outer folds k (default 5 below 100 rows, else 3)."
    ),
    folds: int = typer.Option(None, "--folds", help="Inner folds of each settings search (default as fit)."),
    max_candidates: int = typer.Option(
        None, "--max-candidates", help="Try only the first N candidates of each model (the simplest)."
    ),
    time_budget: float = typer.Option(
        None,
        "--time-budget",
        help="Seconds of each inner settings search after which only its leading candidate starts new "
        "folds (as in fit; the outer folds x models searches each get it).",
    ),
    output: Path = typer.Option(..., "-o", "--output", help="CSV file of the table (one row per model)."),
    plot: Path = typer.Option(None, "--plot", help="Picture of the comparison (.png, .svg or .pdf)."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing output files."),
    seed: int = typer.Option(0, "--seed", help="Seed of data sampling, the folds and training."),
    epochs: int = typer.Option(MAX_EPOCHS, "--epochs", help="The most epochs of every fit."),
    patience: int = typer.Option(PATIENCE, "--patience", help="Epochs without improvement before stopping."),
    lr: float | None = typer.Option(None, "--lr", help=f"Adam's learning rate [default: {LR}]."),
    batch_size: int = typer.Option(BATCH_SIZE, "--batch-size", help="Mini-batch size."),
    workers: int = typer.Option(
        None, "--workers", help="Parallel fits, one thread each (default: the CPUs, at most 8)."
    ),
    options: list[str] = typer.Option(
        None, "--set", help="A model or training option key=value for every fit, repeatable (as in fit)."
    ),
    ignore_columns: str = typer.Option(None, "--ignore-columns", help="CSV columns that are no node: a,b."),
    id_column: str = typer.Option(None, "--id-column", help="A CSV column of row IDs (no node)."),
    missing: str = typer.Option(None, "--missing", help=MISSING_HELP),
    types: str = typer.Option(None, "--types", help=TYPES_HELP),
    strict_levels: bool = typer.Option(False, "--strict-levels", help=STRICT_LEVELS_HELP),
    allow_discrete: bool = typer.Option(False, "--allow-discrete", hidden=True),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="A line per model and outer fold."),
    threads: int = typer.Option(DEFAULT_THREADS, "--threads", help=THREADS_HELP),
    device: str = typer.Option("cpu", "--device", help=DEVICE_HELP),
) -> None:
    """Does the graph help on these rows? Held-out likelihood by nested cross-validation.

    Each model's settings are chosen on the outer training rows only (inner folds, as fit's --settings
    auto), refitted on them and scored on the outer held-out rows (IWAE NLL, K = 100); factor analysis
    and Ledoit-Wolf (a Gaussian fitted by EM when the rows have missing cells) are fitted and scored
    on the same folds. The differences from true carry standard errors from per-row paired
    differences. Writes one row per model to -o and a picture to --plot. It costs about as much as
    `fit` times the models times the outer folds (9 fits by default): --models, --outer-folds and
    --max-candidates trade it down.
    """
    from sirenvae.api import _configs, summed_comparison
    from sirenvae.comparison import check_models
    from sirenvae.comparison import compare as nested
    from sirenvae.files import atomic_write
    from sirenvae.plots import FORMATS, save
    from sirenvae.variables import model_types

    with user_errors(), torch_threads(threads):
        check_row_source(network, graph, data, train_size)
        settings = training_options(
            options, "true", lr=lr, batch_size=batch_size, epochs=epochs, patience=patience, seed=seed,
            workers=workers,
        )  # fmt: skip
        if outer_folds is not None and outer_folds < 2:
            raise UsageError(f"--outer-folds must be at least 2, got {outer_folds}")
        inputs = [("--graph", graph), ("--data", data)]
        check_output(output, force=force, inputs=inputs)
        if plot is not None:
            if plot.suffix.lower() not in FORMATS:
                raise UsageError(f"--plot {plot} must end in {', '.join(FORMATS)}")
            if plot.resolve() == output.resolve():
                raise UsageError("--plot and -o name the same file; give two names")
            check_output(plot, force=force, inputs=inputs, option="--plot")
        chosen = check_models(split_list(models) or ())
        gone_allow_discrete(allow_discrete)
        split, x, notices, variables = training_rows(
            network, graph, data, train_size, latent, ignore_columns, id_column, seed, types,
            allow_missing=True, missing=missing, strict_levels=strict_levels,
        )  # fmt: skip
        for notice in notices:
            note(notice_line(notice))
        name = network if train_size is not None else data.name
        fixed, fit_config, train_options = _configs("true", settings)
        fixed["types"] = model_types({v: var for v, var in variables.items() if v in split.observed})
        if progress:
            from sirenvae.selection import classical_models, default_folds, non_gaussian

            mixed = non_gaussian(fixed["types"])
            classical = " and ".join(classical_models(x))
            floor = f" ({classical} skipped: Gaussian)" if mixed else f", {classical}"
            fits = (outer_folds or default_folds(x.shape[0])) * len(chosen)
            note(f"comparing {', '.join(chosen)}{floor} on {x.shape[0]} rows of {name} "
                 f"({len(split.latent)} latent node{'s' * (len(split.latent) != 1)}) by nested "
                 f"cross-validation: about {fits} times "
                 "what `fit` costs on these rows")  # fmt: skip
        start = time.perf_counter()
        result = nested(
            split,
            x,
            models=chosen,
            outer_folds=outer_folds,
            fit_config=fit_config,
            options=train_options,
            fixed=fixed,
            search={"folds": folds, "max_candidates": max_candidates, "time_budget": time_budget},
            seed=seed,
            workers=workers or default_workers(),
            device=device,
            progress=(lambda line: note(f"  {line}")) if progress else None,
            summed=summed_comparison(split, x, variables, fixed, fit_config, settings),
        )
        frame = result.frame()
        atomic_write(output, lambda tmp: frame.to_csv(tmp, index=False))
        if plot is not None:
            save(result.figure(title=name), plot)
    _print(result, frame)
    wrote = f"{output}" + (f" and {plot}" if plot is not None else "")
    note(f"done in {time.perf_counter() - start:.1f} s; wrote {wrote}")


def _print(result, frame) -> None:
    """The table (one row per model) and the sentence."""
    from sirenvae.comparison import LABELS

    table = Table(title=f"held-out NLL: {result.rows} rows, {result.folds} outer folds, nested CV")
    for column in ("model", "graph", "NLL", "± se", "vs true", "paired se", "settings"):
        table.add_column(column, justify="left" if column in ("model", "graph", "settings") else "right")

    def show(value: float, form: str) -> str:
        return "-" if value != value else format(value, form)  # NaN: a model left out (see the notes)

    shown = [m for m, nll in zip(frame.model, frame.nll, strict=True) if nll == nll or m not in LABELS]
    for row in frame[frame.model.isin(shown)].itertuples():  # a classical model left out: its notice says why
        diff = "-" if row.model == "true" else show(row.diff_vs_true, "+.3f")
        diff_se = "-" if row.model == "true" else show(row.diff_se, ".3f")
        table.add_row(
            row.model, "yes" if row.uses_graph else "no", show(row.nll, ".3f"), show(row.se, ".3f"), diff,
            diff_se, row.settings or "-",
        )  # fmt: skip
    print_table(table)
    classical = "".join(f"{m}: {LABELS[m]}; " for m in result.models if m in LABELS and m in shown)
    say(f"{classical}vs true: model - true in NLL (positive: true is better)")
    for notice in result.notices:
        note(notice_line(notice))
    say(result.sentence)

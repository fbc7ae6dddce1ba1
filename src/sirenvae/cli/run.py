"""The commands on one model: ``fit``, ``evaluate``, ``sample`` and ``posterior``.

On standard output, the results: ``fit``'s table of the settings search with its verdict and the
final fit's line, ``evaluate``'s table or ``--json``. On standard error, everything else: notes on
the data, the latent nodes, progress, the "wrote ..." lines of ``evaluate --per-row``, ``sample``
and ``posterior`` (whose results are their files).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import typer
from rich.table import Table

from sirenvae.cli.common import (
    DEFAULT_THREADS,
    DEVICE_HELP,
    MISSING_HELP,
    OUTPUT_HELP,
    STRICT_LEVELS_HELP,
    THREADS_HELP,
    TYPES_HELP,
    UsageError,
    app,
    check_output,
    check_row_source,
    check_run_out,
    default_workers,
    destination,
    gone_allow_discrete,
    note,
    notice_line,
    one_of,
    print_table,
    run_id_column,
    run_ignored,
    say,
    split_list,
    torch_threads,
    training_options,
    training_rows,
    user_errors,
    warn_if_diverged,
    write_row_summaries,
    write_table,
)
from sirenvae.defaults import BATCH_SIZE, EXACT_LR, LR, MAX_EPOCHS, PATIENCE
from sirenvae.models import VARIANTS

__all__ = ["evaluate", "fit", "posterior", "sample"]

#: ``fit`` names at most this many latent nodes; the run's ``model.json`` lists them all.
LATENT_SHOWN = 30


@app.command()
def fit(
    network: str = typer.Option(None, "--network", help="A shipped network (see `sirenvae networks`)."),
    graph: Path = typer.Option(None, "--graph", help="Your graph: .json, .csv (parent,child), .dot, .bif."),
    data: Path = typer.Option(None, "--data", help="Training data: CSV with a header of node names."),
    train_size: int = typer.Option(None, "--train-size", help="Sample this many rows from --network."),
    latent: str = typer.Option(
        None, "--latent", help="Latent nodes: a,b,c or a rule (leaves-observed, roots-and-leaves-observed)."
    ),
    model: str = typer.Option("true", "--model", help=f"{one_of(VARIANTS)}."),
    settings: str = typer.Option(
        "auto",
        "--settings",
        help="auto (default): the model's candidate settings are compared by k-fold cross-validation "
        "on your rows and the best is refitted on all of them; paper: the paper's fixed setting; or a "
        "JSON file (a run's model.json, a dict of model options, a chosen.json of `sirenvae search`).",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of data sampling, the folds and training."),
    out: Path = typer.Option(..., "--out", help="Run directory for checkpoints and the model."),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue an interrupted settings search or run in --out; --lr, --epochs, --patience and "
        "--batch-size may change for the final fit.",
    ),
    force: bool = typer.Option(False, "--force", help="Replace the run already in --out."),
    epochs: int = typer.Option(MAX_EPOCHS, "--epochs", help="The most epochs."),
    patience: int = typer.Option(PATIENCE, "--patience", help="Epochs without improvement before stopping."),
    lr: float | None = typer.Option(
        None, "--lr", help=f"Adam's learning rate [default: {LR}; {EXACT_LR} if all hidden nodes are summed]."
    ),
    batch_size: int = typer.Option(BATCH_SIZE, "--batch-size", help="Mini-batch size."),
    folds: int = typer.Option(None, "--folds", help="auto: folds k (default 5 below 100 rows, else 3)."),
    max_candidates: int = typer.Option(
        None,
        "--max-candidates",
        help="auto: try only the first N candidates (the simplest ones); a single one on rows that no "
        "classical model scores (mixed types, holes) is fitted without cross-validation.",
    ),
    time_budget: float = typer.Option(
        None,
        "--time-budget",
        help="auto: after this many seconds only the leading candidate starts new folds (so it finishes).",
    ),
    workers: int = typer.Option(
        None, "--workers", help="auto: parallel fits, one thread each (default: the CPUs, at most 8)."
    ),
    address: str = typer.Option(None, "--address", help="auto: run the fits on this Ray cluster."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress."),
    threads: int = typer.Option(DEFAULT_THREADS, "--threads", help=THREADS_HELP),
    device: str = typer.Option("cpu", "--device", help=DEVICE_HELP),
    ignore_columns: str = typer.Option(None, "--ignore-columns", help="CSV columns that are no node: a,b."),
    id_column: str = typer.Option(None, "--id-column", help="A CSV column of row IDs (no node)."),
    types: str = typer.Option(None, "--types", help=TYPES_HELP),
    strict_levels: bool = typer.Option(False, "--strict-levels", help=STRICT_LEVELS_HELP),
    allow_discrete: bool = typer.Option(False, "--allow-discrete", hidden=True),
    missing: str = typer.Option(None, "--missing", help=MISSING_HELP),
    train_masking: float = typer.Option(
        0.0,
        "--train-masking",
        help="Hide this share of present cells in each training batch (0: off), so "
        "the model also serves rows with holes.",
    ),  # fmt: skip
    options: list[str] = typer.Option(
        None,
        "--set",
        help="Any model or training option key=value, repeatable (with auto, fixed in every candidate): "
        "e.g. --set conditioning=parents --set affine=true --set decoder_mean=linear "
        "--set likelihood=studentt --set prior_blocks=0 --set warmup_steps=200 --set valid_fraction=0.2.",
    ),
) -> None:
    """Train a model on a graph and data; writes checkpoints and the final model to --out.

    By default (--settings auto) the settings are chosen on your rows: each candidate of the model is
    trained on k-1 folds exactly as the final fit is and scored by the held-out NLL, with factor
    analysis and a Ledoit-Wolf Gaussian on the same folds for comparison.
    """
    from sirenvae.api import fit_rows, summed_notice

    with user_errors(), torch_threads(threads):
        check_row_source(network, graph, data, train_size)
        if model not in VARIANTS:
            raise UsageError(f"unknown --model {model!r}; choose one of {', '.join(VARIANTS)}")
        train_options = training_options(
            options, model, lr=lr, batch_size=batch_size, epochs=epochs, patience=patience, seed=seed,
            workers=workers, progress=progress, **({"train_masking": train_masking} if train_masking else {}),
        )  # fmt: skip
        if settings not in ("auto", "paper") and not Path(settings).is_file():
            raise UsageError(f"--settings {settings!r}: give auto, paper or an existing JSON file")
        if settings != "auto" and (folds or max_candidates or time_budget or workers or address):
            raise UsageError(
                "--folds, --max-candidates, --time-budget, --workers and --address apply to --settings auto"
            )
        check_run_out(out, resume=resume, force=force, inputs=[("--graph", graph), ("--data", data)])
        gone_allow_discrete(allow_discrete)
        split, x, notices, variables = training_rows(
            network, graph, data, train_size, latent, ignore_columns, id_column, seed, types,
            allow_missing=True, missing=missing, strict_levels=strict_levels,
        )  # fmt: skip
        for notice in notices:
            note(notice_line(notice))
        bn = split.graph
        extra = {"network": network, "data": "sampled" if train_size is not None else str(data)}
        if id_column:
            extra["id_column"] = id_column
        if ignore_columns:
            extra["ignore_columns"] = list(split_list(ignore_columns))
        from sirenvae.graph_io import declared_latent

        declared = graph is not None and not latent and declared_latent(graph) is not None
        how = (
            "from --latent" if latent else "the graph file's" if declared else "nodes without a column"
            if data else "default rule"
        )  # fmt: skip
        shown = ", ".join(split.latent[:LATENT_SHOWN])
        if len(split.latent) > LATENT_SHOWN:
            shown += f", ... ({Path(out) / 'model.json'} lists them all once training ends)"
        note(f"latent nodes ({len(split.latent)}, {how}): {shown}")
        hidden = {v: variables[v] for v in split.latent if v in variables}
        if notice := summed_notice(hidden, model):
            note(notice_line(notice))
        if progress:
            what = "choosing its settings on the rows, then " if settings == "auto" else ""
            note(
                f"training {model} on {len(bn)} nodes ({len(split.latent)} latent) with {x.shape[0]} rows "
                f"({what}the final fit) -> {out}"
            )
        start = time.perf_counter()
        with _resumable(out):
            fitted = fit_rows(
                split,
                x,
                model=model,
                settings=settings,
                options=train_options,
                search={
                    "folds": folds,
                    "max_candidates": max_candidates,
                    "time_budget": time_budget,
                    "workers": workers or default_workers(),
                    "address": address,
                },
                out=out,
                resume=resume,
                overwrite=force,
                device=device,
                extra_meta=extra,
                report=_progress_line if progress else None,
                variables=variables,
            )
    if fitted.search is not None:
        _print_selection(fitted.search, out)
    elif not progress and not resume and fitted.settings.get("rule"):  # with progress, already said
        note(fitted.settings["rule"])
    history = fitted.history
    best = history.best_valid_loss
    what = "validation -ELBO" if history.valid_loss else "training loss (NLL + head prior, per row; all rows)"
    restarts = fitted.meta.get("restarts")
    of = ""
    if restarts:
        scores = ", ".join(f"{v:.3f}" for v in restarts["objectives"])
        of = f" (restart {restarts['chosen']} of {len(restarts['objectives'])}, the lowest of {scores})"
    say(
        f"done in {time.perf_counter() - start:.1f} s: {len(history.train_loss)} epochs ({history.stopped}), "
        f"best {what} {best:.3f} at epoch {history.best_epoch}{of}; model in {out}"
    )


@contextlib.contextmanager
def _resumable(out: Path) -> Iterator[None]:
    """A Ctrl-C during training says how to continue (the run keeps its last checkpoint)."""
    try:
        yield
    except KeyboardInterrupt:
        note(f"interrupted: {out} keeps what was trained; continue with the same command and --resume")
        raise typer.Exit(130) from None


def _progress_line(line: str) -> None:
    note(f"  {line}")


def _print_selection(selection, out: Path) -> None:
    """The candidates' CV NLL beside the classical models, and the verdict in one line: ``fit``'s
    result on standard output (its notes on standard error).
    """
    from sirenvae.selection import CLASSICAL_NAMES

    table = Table(title=f"settings of the {selection.variant} model: {selection.rule}")
    for name in ("candidate", "CV NLL", "± se", "vs chosen", "folds", "status"):
        table.add_column(name, justify="right" if name not in ("candidate", "status") else "left")
    for row in selection.candidates:
        nll = f"{row['cv_nll']:.3f}" if "cv_nll" in row else "-"
        se = f"{row['se']:.3f}" if "se" in row else "-"
        vs = f"{row['vs_chosen']:+.3f} ± {row['vs_se']:.3f}" if "vs_chosen" in row else "-"
        mark = " (chosen)" if row.get("chosen") else ""
        status = row["status"].split("; ")[0]  # the advice after it is for a final fit, not a fold
        if "far_off" in row:
            status += f"; fold {row['far_off'][0]} at {row['far_off'][1]:.1f}: blew up on some rows"
        table.add_row(row["candidate"] + mark, nll, se, vs, str(row["folds_done"]), status)
    for row in selection.classical:
        name, nll, se = CLASSICAL_NAMES[row["candidate"]], f"{row['cv_nll']:.3f}", f"{row['se']:.3f}"
        vs = f"{row['vs_chosen']:+.3f} ± {row['vs_se']:.3f}" if "vs_chosen" in row else "-"
        table.add_row(name, nll, se, vs, str(selection.folds), "ok")
    print_table(table)
    for notice in selection.notices:
        note(notice_line(notice))
    chosen = next(r for r in selection.candidates if r.get("chosen"))
    if selection.classical:
        floor = min(selection.classical, key=lambda r: r["cv_nll"])
        gap, se = -floor["vs_chosen"], floor["vs_se"]
        verdict = "better" if gap < 0 else "worse"
        say(
            f"{chosen['candidate']} is {abs(gap):.3f} ± {se:.3f} nats per row {verdict} than "
            f"{CLASSICAL_NAMES[floor['candidate']]} on the same folds (paired; the chosen candidate's "
            f"score is a little optimistic, `sirenvae compare` says it without that bias); "
            f"{selection.seconds:.1f} s of search, every counted fold's score in {out / 'selection.csv'}"
        )
    else:
        say(f"{selection.seconds:.1f} s of search, every counted fold's score in {out / 'selection.csv'}")


def _test_rows(
    meta: dict,
    model,
    data: Path | None,
    test_size: int | None,
    ignore_columns: str | None = None,
    id_column: str | None = None,
    missing: str | None = None,
):
    """The test rows (from ``--data`` or fresh samples of the run's network), that network and the
    rows' IDs (from ``--id-column``, else ``None``); a CSV's missing cells (and the comma-separated
    ``--missing`` tokens) are NaN.
    """
    from sirenvae.data import read_table, sample_splits
    from sirenvae.networks import load_network
    from sirenvae.variables import recorded

    if (data is None) == (test_size is None):
        raise UsageError("give exactly one of --data CSV or --test-size N")
    net = load_network(meta["network"]) if meta.get("network") else None
    if test_size is not None:
        if net is None:
            raise UsageError("--test-size samples from the run's shipped network; this run used --graph")
        if test_size < 1:
            raise UsageError(f"--test-size must be positive, got {test_size}")
        if ignore_columns or id_column or missing:
            raise UsageError("--ignore-columns, --id-column and --missing apply to a --data CSV")
        split = model.columns.on(net.graph)
        x = sample_splits(net, split, train_size=0, test_size=test_size, seed=meta.get("seed", 0)).test
    else:
        table = read_table(
            data,
            model.columns,
            ignore_columns=run_ignored(meta, ignore_columns, data),
            id_column=id_column,
            drop_latent_columns=True,
            allow_missing=True,
            missing=split_list(missing) or (),
            variables=recorded(meta),
        )
        for notice in table.notices:
            note(notice_line(notice))
        return table.x, net, table.ids
    return x, net, None


@app.command()
def evaluate(
    run: Path = typer.Argument(..., help="A run directory written by `sirenvae fit`."),
    data: Path = typer.Option(
        None,
        "--data",
        help="Test data: CSV with the observed columns (latent ones, as `sample` writes, ignored).",
    ),
    test_size: int = typer.Option(None, "--test-size", help="Fresh rows from the run's network."),
    importance_samples: int = typer.Option(1000, "--importance-samples", "-k", help="K of the IWAE NLL."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    threads: int = typer.Option(DEFAULT_THREADS, "--threads", help=THREADS_HELP),
    device: str = typer.Option("cpu", "--device", help=DEVICE_HELP),
    ignore_columns: str = typer.Option(None, "--ignore-columns", help="CSV columns that are no node: a,b."),
    id_column: str = typer.Option(None, "--id-column", help="A CSV column of row IDs (no node)."),
    per_row: Path = typer.Option(
        None,
        "--per-row",
        help="Also write a CSV: row (from 1), the --id-column, nll, neg_elbo, ess (of the importance "
        "weights) and missing (the row's holes).",
    ),
    missing: str = typer.Option(None, "--missing", help=MISSING_HELP),
) -> None:
    """Print NLL (IWAE), negative ELBO, reconstruction error and, where known, the oracle NLL."""
    import torch

    from sirenvae.models.summed import exact_rows
    from sirenvae.networks import oracle_nll
    from sirenvae.objectives import evaluate as evaluate_model
    from sirenvae.pipeline import load_model

    with user_errors(), torch_threads(threads):
        if importance_samples < 1:
            raise UsageError(f"--importance-samples must be positive, got {importance_samples}")
        if per_row is not None:
            check_output(per_row, run=run, inputs=[("--data", data)], option="--per-row")
        if per_row is not None and id_column in ("nll", "neg_elbo", "ess", "missing"):
            raise UsageError(f"--id-column {id_column!r} would clash with a column of --per-row; rename it")
        model, meta = load_model(run, device=device)
        warn_if_diverged(run, meta)
        if test_size is None:
            id_column = run_id_column(meta, id_column, data)
        x, net, ids = _test_rows(meta, model, data, test_size, ignore_columns, id_column, missing)
        torch.manual_seed(meta.get("seed", 0))
        wide = model.with_summed(x).to(model.loc.device)
        result = evaluate_model(
            model, wide, importance_samples=importance_samples, per_row=per_row is not None
        )
        # exact as proposal_parts decides it: no continuous latent, no hole but the summed nodes'
        exact = bool(model.summed) and exact_rows(model, wide)
        if per_row is not None:
            _write_per_row(per_row, result.pop("per_row"), id_column, ids)
        same_graph = net is not None and set(net.graph.nodes) == set(model.graph.nodes)
        oracle = oracle_nll(net, x, model.measured) if same_graph else None
        if oracle is not None:
            result["oracle_nll"] = oracle
            result["gap"] = result["nll"] - oracle
        result["model"] = meta["model"]["variant"]
        if result.get("low_ess_rows"):
            saw_holes = meta["model"].get("mask_inputs")
            fix = "raise -k" if saw_holes else "raise -k, or refit with --train-masking (it saw no holes)"
            note(
                f"warning: {result['low_ess_rows']} row(s) with holes have an effective sample size below "
                f"10 of K = {importance_samples}: their NLL rests on few draws; {fix}"
            )
    if as_json:
        print(json.dumps(result, indent=1))
    else:
        _print_metrics(run, result, None if exact else importance_samples)
    if per_row is not None:
        note(f"wrote the NLL, -ELBO, ESS and missing cells of each of the {result['rows']} rows to {per_row}")


def _print_metrics(run: Path, result: dict, importance_samples: int | None) -> None:
    """``evaluate``'s table: the model, NLL, -ELBO, RE and the oracle NLL where known
    (``importance_samples`` ``None``: an exact likelihood, every hidden node summed out).
    """
    holes = f", {100 * result['missing']:.1f}% of cells missing" if result.get("missing") else ""
    k = "exact: every hidden node summed out" if importance_samples is None else f"K = {importance_samples}"
    table = Table(title=f"{run}: {result['rows']} rows{holes}, {k}")
    oracle = [f"{result['oracle_nll']:.3f}"] if "oracle_nll" in result else []  # a shipped network's
    for name in ("model", "NLL", "-ELBO", "RE", "oracle NLL")[: 5 if oracle else 4]:
        table.add_column(name, justify="right")
    table.add_row(
        result["model"], f"{result['nll']:.3f}", f"{result['neg_elbo']:.3f}", f"{result['re']:.3f}", *oracle
    )
    print_table(table)
    say(
        f"NLL ({'IWAE' if importance_samples else 'exact'}) and -ELBO: nats per row, lower is better; "
        "RE: the reconstruction error per row, summed over the columns in their own units (squared error; "
        "Brier score of binary, misclassification of categorical columns), comparable between models on "
        "the same rows only"
    )


def _write_per_row(path: Path, values: dict, id_column: str | None, ids: tuple[str, ...] | None) -> None:
    """The per-row CSV of ``evaluate --per-row``: ``row`` (the data row, counted from 1 as in error
    messages), the ID column with ``--id-column`` (replacing ``row`` if so named), ``nll``, ``neg_elbo``,
    ``ess`` (the importance weights' effective sample size) and ``missing`` (the row's missing cells).
    """
    import pandas as pd

    from sirenvae.files import atomic_write

    frame = pd.DataFrame({"row": range(1, len(values["nll"]) + 1)})
    if ids is not None:
        frame[id_column or "id"] = list(ids)  # an unnamed index column: id
    for name, column in values.items():
        frame[name] = column.cpu().double().numpy()
    atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


@app.command()
def sample(
    run: Path = typer.Argument(..., help="A run directory written by `sirenvae fit`."),
    n: int = typer.Option(..., "-n", help="Number of samples."),
    output: Path | None = typer.Option(None, "-o", "--output", help=OUTPUT_HELP),
    seed: int = typer.Option(0, "--seed", help="Seed."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output file."),
    threads: int = typer.Option(DEFAULT_THREADS, "--threads", help=THREADS_HELP),
    device: str = typer.Option("cpu", "--device", help=DEVICE_HELP),
    do: list[str] = typer.Option(None, "--do", help="Sample under an intervention node=value (repeatable)."),
    allow_unidentified: bool = typer.Option(
        False,
        "--allow-unidentified",
        help="With --do: answer a query that is not identified from the observed variables "
        "(labelled model-dependent).",
    ),
) -> None:
    """Draw joint samples of every node (latent and observed) into a CSV file.

    With --do, samples of the model under the intervention (see `sirenvae effect --help`).
    """
    import pandas as pd
    import torch

    from sirenvae.data import DRAWN_FORMAT
    from sirenvae.pipeline import load_model
    from sirenvae.variables import decoder_frame, negative_notice, recorded

    with user_errors(), torch_threads(threads):
        if n < 1:
            raise UsageError(f"-n must be positive, got {n}")
        if allow_unidentified and not do:
            raise UsageError("--allow-unidentified applies to a causal query: give it with --do")
        check_output(output, force=force, run=run)
        if do:
            from sirenvae.cli.causal import sample_with_do

            return sample_with_do(run, n, output, seed, allow_unidentified, do, device, force=force)
        model, meta = load_model(run, device=device)
        warn_if_diverged(run, meta)
        torch.manual_seed(seed)
        z, x = model.sample(n)
        values = decoder_frame(
            list(model.graph.nodes), model.values(z, x).cpu().double().numpy(), recorded(meta)
        )
        write_table(output, lambda f: pd.DataFrame(values).to_csv(f, index=False, float_format=DRAWN_FORMAT))
    note(f"wrote {n} samples of {len(model.graph)} nodes to {destination(output)}")
    if below := negative_notice(meta.get("nonnegative") or {}, values):
        note(f"warning: {below}")


@app.command()
def posterior(
    run: Path = typer.Argument(..., help="A run directory written by `sirenvae fit`."),
    data: Path = typer.Option(
        ..., "--data", help="CSV with the observed columns (latent ones, as `sample` writes, ignored)."
    ),
    n: int = typer.Option(100, "-n", help="Posterior samples per row."),
    output: Path | None = typer.Option(None, "-o", "--output", help=OUTPUT_HELP),
    seed: int = typer.Option(0, "--seed", help="Seed."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output file."),
    ignore_columns: str = typer.Option(None, "--ignore-columns", help="CSV columns that are no node: a,b."),
    id_column: str = typer.Option(None, "--id-column", help="A CSV column of row IDs (no node)."),
    missing: str = typer.Option(None, "--missing", help=MISSING_HELP),
    threads: int = typer.Option(DEFAULT_THREADS, "--threads", help=THREADS_HELP),
    device: str = typer.Option("cpu", "--device", help=DEVICE_HELP),
) -> None:
    """Posterior mean, sd and samples of every latent for each data row.

    The CSV has columns row, statistic, <latents...> with statistic mean, sd and sample_1 ...
    sample_n for each input row (counted from 1); with --id-column the row's ID follows row (or
    replaces it, for an ID column named row). A hidden node with stated levels (summed out) gets a
    row P(label) per level (exact without continuous latents or holes), its most probable label in
    the mean row and no sd; its levels are learned up to a relabelling. A missing cell is not
    conditioned on: with holes in the table, each row's samples are resampled from max(10 n, 100)
    importance samples of p(latents | the row's present cells).
    """
    import torch

    from sirenvae.data import read_table
    from sirenvae.pipeline import load_model
    from sirenvae.variables import recorded

    with user_errors(), torch_threads(threads):
        if n < 1:
            raise UsageError(f"-n must be positive, got {n}")
        check_output(output, force=force, run=run, inputs=[("--data", data)])
        model, meta = load_model(run, device=device)
        warn_if_diverged(run, meta)
        id_column = run_id_column(meta, id_column, data)
        if id_column in ("statistic", *model.hidden):
            raise UsageError(f"--id-column {id_column!r} would clash with a column of the output; rename it")
        variables = recorded(meta)
        table = read_table(
            data,
            model.columns,
            ignore_columns=run_ignored(meta, ignore_columns, data),
            id_column=id_column,
            drop_latent_columns=True,
            allow_missing=True,
            missing=split_list(missing) or (),
            variables=variables,
        )
        x = table.x
        for notice in table.notices:
            note(notice_line(notice))
        torch.manual_seed(seed)
        if model.summed:  # every hidden node; a summed one's draws from its exact conditional, as labels
            from sirenvae.imputation import hidden_draws, hidden_probabilities

            wide = model.with_summed(x).to(model.loc.device)
            draws, _ = hidden_draws(model, wide, n)
            values = draws.cpu().double().permute(1, 0, 2)
            probs = hidden_probabilities(model, wide).cpu().double()
            sizes = [len(variables[v].levels) for v in model.summed]
            split_probs = dict(zip(model.summed, probs.split(sizes, -1), strict=True))
            write_row_summaries(output, values, model.hidden, table.ids, id_column, variables, split_probs)
            note(f"wrote posterior summaries and {n} samples for {x.shape[0]} rows to {destination(output)}")
            return
        with torch.no_grad():
            if x.isnan().any():
                from sirenvae.imputation import posterior_draws

                z, ess = posterior_draws(model, x.to(model.loc.device), n)
                from sirenvae.objectives import LOW_ESS, prior_draws

                S = max(10 * n, 100)
                note(f"rows with holes: resampled; effective sample size per row {ess.min():.0f} to "
                     f"{ess.max():.0f} of {S + prior_draws(S)} importance samples")  # fmt: skip
                if low := int((ess < LOW_ESS).sum()):
                    note(
                        f"warning: {low} row(s) have an effective sample size below {LOW_ESS:g}: their "
                        "samples repeat few proposals and their sd is too small (raise -n: it draws 10 n)"
                    )
            else:
                z, _ = model.posterior(x.to(model.loc.device), n)  # (n, N, Dz)
        write_row_summaries(output, z.cpu().permute(1, 0, 2), model.latent, table.ids, id_column)
    note(f"wrote posterior summaries and {n} samples for {x.shape[0]} rows to {destination(output)}")

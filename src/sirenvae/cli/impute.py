"""``sirenvae impute``: fill the missing cells of a table from a fitted model."""

from __future__ import annotations

from pathlib import Path

import typer

from sirenvae.cli.common import (
    DEFAULT_THREADS,
    DEVICE_HELP,
    MISSING_HELP,
    OUTPUT_HELP,
    THREADS_HELP,
    UsageError,
    app,
    check_output,
    destination,
    note,
    notice_line,
    run_id_column,
    run_ignored,
    split_list,
    torch_threads,
    user_errors,
    warn_if_diverged,
    write_table,
)

__all__ = ["impute"]


@app.command()
def impute(
    run: Path = typer.Argument(..., help="A run directory written by `sirenvae fit`."),
    data: Path = typer.Option(..., "--data", help="CSV with the observed columns, some cells missing."),
    output: Path | None = typer.Option(None, "-o", "--output", help=OUTPUT_HELP),
    m: int = typer.Option(0, "-m", help="Multiple imputation: this many completions per row (a long table)."),
    samples: int = typer.Option(1000, "-k", "--samples", help="Importance samples per row."),
    sd: bool = typer.Option(
        False,
        "--sd",
        help="Also write each imputed cell's sd (single imputation; empty for labelled columns).",
    ),
    quantiles: str = typer.Option(
        None,
        "--quantiles",
        help="Also write each imputed cell's weighted quantiles at these levels, e.g. 0.05,0.95: "
        "columns <name>_q0.05, ... (single imputation; empty for labelled columns).",
    ),
    missing: str = typer.Option(None, "--missing", help=MISSING_HELP),
    seed: int = typer.Option(0, "--seed", help="Seed."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output file."),
    ignore_columns: str = typer.Option(None, "--ignore-columns", help="CSV columns that are no node: a,b."),
    id_column: str = typer.Option(None, "--id-column", help="A CSV column of row IDs (no node)."),
    threads: int = typer.Option(DEFAULT_THREADS, "--threads", help=THREADS_HELP),
    device: str = typer.Option("cpu", "--device", help=DEVICE_HELP),
) -> None:
    """Fill the missing cells (empty, NA, N/A, NaN, --missing) of each row from the model.

    Single imputation (default): each hole at its conditional mean given the row's present cells,
    by self-normalised importance sampling; the CSV is the input's table with its holes filled
    (every column in the file's order, the columns that are no node as read), and with --sd a
    column <name>_sd per node (0 where present, empty for a labelled column). With -m M: M
    completions per row drawn from the model's conditional (sampling-importance-resampling), one
    line per completion, columns row, draw, <observed...>. Present cells are written unchanged.
    The effective sample size of each row's weights is summarised on standard error; rows below
    10 get a warning (a model trained on complete rows may never have seen such holes).
    """
    import pandas as pd
    import torch

    from sirenvae.data import read_table
    from sirenvae.imputation import impute as impute_rows
    from sirenvae.objectives import LOW_ESS
    from sirenvae.pipeline import load_model
    from sirenvae.variables import decoder_frame, recorded

    with user_errors(), torch_threads(threads):
        if m < 0 or samples < 1:
            raise UsageError(f"need -m >= 0 and -k >= 1, got -m {m}, -k {samples}")
        if sd and m:
            raise UsageError("--sd is for single imputation; with -m the completions show the spread")
        levels = _levels(quantiles)
        if levels and m:
            raise UsageError("--quantiles is for single imputation; with -m the completions show the spread")
        check_output(output, force=force, run=run, inputs=[("--data", data)])
        model, meta = load_model(run, device=device)
        warn_if_diverged(run, meta)
        id_column = run_id_column(meta, id_column, data)
        variables = recorded(meta)
        table = read_table(
            data, model.columns, ignore_columns=run_ignored(meta, ignore_columns, data), id_column=id_column,
            drop_latent_columns=True, allow_missing=True, missing=split_list(missing) or (),
            variables=variables, keep_text=True,
            dtype=torch.float64,
        )  # fmt: skip
        for notice in table.notices:
            note(notice_line(notice))
        x = table.x.to(model.loc.device)  # float64: present cells are written as read
        holes = int(x.isnan().sum())
        torch.manual_seed(seed)
        result = impute_rows(model, model.with_summed(x), samples=samples, m=m, quantiles=levels)
        if model.summed:  # the summed nodes' columns leave with the results
            keep = [model.observed.index(v) for v in model.measured]
            result = result.columns(keep)
        observed = list(model.measured)
        ids = {} if table.ids is None else {id_column or "id": list(table.ids)}  # an unnamed index: id
        if m:
            n = x.shape[0]
            values = result.draws.permute(1, 0, 2).reshape(-1, len(observed)).cpu().double().numpy()
            rows = [r for r in range(1, n + 1) for _ in range(m)]
            extra = {"row": rows, **{k: [v[r - 1] for r in rows] for k, v in ids.items()}}
            extra["draw"] = list(range(1, m + 1)) * n
            labelled = pd.DataFrame(decoder_frame(observed, values, variables, table.labels, m))
            frame = pd.concat([pd.DataFrame(extra), labelled], axis=1)
        else:
            mean = result.mean.cpu().double().numpy()
            frame = pd.DataFrame(decoder_frame(observed, mean, variables, table.labels))
            labelled = {c for c, var in variables.items() if var.labelled}

            def per_column(values, suffix: str) -> pd.DataFrame:  # no sd or quantile of a label
                blank = [None] * len(values)
                return pd.DataFrame(
                    {f"{c}{suffix}": blank if c in labelled else values[:, j] for j, c in enumerate(observed)}
                )

            extras = [per_column(result.sd.cpu().double().numpy(), "_sd")] if sd else []
            spans = result.quantiles.cpu().double().numpy() if levels else ()
            extras += [per_column(values, f"_q{q:g}") for q, values in zip(levels, spans, strict=True)]
            frame = pd.concat([_as_in_file(table.cells, frame), *extras], axis=1)
        written = frame.map(lambda v: format(v, ".10g") if isinstance(v, float) else v)  # not 17 digits
        write_table(output, lambda f: written.to_csv(f, index=False))
        holey = x.isnan().any(1)
        ess = result.ess[holey.to(result.ess.device)].cpu()
        if len(ess):
            low = int((ess < LOW_ESS).sum())
            note(
                f"effective sample size over the {len(ess)} rows with holes: median {ess.median():.1f}, "
                f"min {ess.min():.1f} (of {samples})"
            )
            if low:
                fix = (
                    "raise -k"
                    if meta["model"].get("mask_inputs")
                    else "raise -k, or refit with such holes in the data"
                )
                note(
                    f"warning: {low} row(s) have an effective sample size below {LOW_ESS:g}: their "
                    f"imputations rest on few proposals ({fix})"
                )
    labelled = any(var.labelled for var in variables.values())
    means = "the conditional means (most probable labels) for" if labelled else "the conditional means for"
    what = f"{m} completions of each of" if m else means
    note(f"imputed {holes} missing cell(s): wrote {what} {x.shape[0]} rows to {destination(output)}")


def _as_in_file(cells, filled):
    """The file's table (``cells`` as read) with the model's columns filled: every column in the
    file's order, the others (IDs, ignored columns) as read, so that the output can replace the file.
    """
    import pandas as pd

    return pd.DataFrame(
        {c: filled[c] if c in filled.columns else cells[c] for c in cells.columns}
        | {c: filled[c] for c in filled.columns if c not in cells.columns}
    )


def _levels(text: str | None) -> list[float]:
    """``--quantiles 0.05,0.95`` as levels, each strictly between 0 and 1."""
    levels = []
    for item in split_list(text) or ():
        try:
            q = float(item)
        except ValueError:
            raise UsageError(f"--quantiles takes levels like 0.05,0.95, got {item!r}") from None
        if not 0 < q < 1:
            raise UsageError(f"--quantiles levels must lie strictly between 0 and 1, got {item}")
        levels.append(q)
    return levels

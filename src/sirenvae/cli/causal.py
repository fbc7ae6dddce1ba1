"""The causal commands ``effect`` and ``counterfactual``, and ``sample --do`` (:func:`sample_with_do`).

A fitted SIReN-VAE with ``conditioning=parents`` is a structural causal model with hidden variables;
these commands ask it what happens under ``do(v = a)``. Interventional queries are checked for
identifiability from the observed variables first (:func:`sirenvae.identification.identify`): an
unidentified one is answered only with ``--allow-unidentified`` and labelled model-dependent;
counterfactuals always depend on the fitted model (and need no flag). ``--force`` only overwrites an
output file.

``effect`` prints its answer on standard output; the notes (extrapolation, latent units) and the
"wrote ..." lines of ``sample --do`` and ``counterfactual`` with their labels go to standard error.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

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
    say,
    split_list,
    torch_threads,
    user_errors,
    warn_if_diverged,
    write_row_summaries,
    write_table,
)

if TYPE_CHECKING:
    from sirenvae.fitted import FittedModel

__all__ = ["counterfactual", "effect", "parse_do", "sample_with_do"]

#: A Monte-Carlo standard error below this share of the effect is float round-off (an effect
#: linear in the intervened value, where the shared noise draws cancel).
EXACT_SE = 1e-6

DO_HELP = (
    "An intervention node=value, repeatable: raw units for observed nodes, the model's own units for "
    "latents, or qP for the P-quantile of the node's marginal under the model (e.g. --do z=q0.9)."
)
LATENT_UNITS = (
    "note: latent values are in the model's own units (a latent is identified only up to a "
    "reparametrisation); qP values are quantiles of its marginal under the model"
)


def parse_do(items: list[str] | None, option: str = "--do") -> dict[str, str]:
    """``--do v=1.5 --do z=q0.9`` as ``{"v": "1.5", "z": "q0.9"}`` (values are checked by the model)."""
    out: dict[str, str] = {}
    for item in items or ():
        node, sep, value = item.partition("=")
        node, value = node.strip(), value.strip()
        if not sep or not node or not value:
            raise UsageError(
                f"{option} takes node=value (e.g. {option} x=1.5 or {option} z=q0.9), got {item!r}"
            )
        if "=" in value:
            raise UsageError(
                f"{option} sets one node; repeat it for more ({option} a=1 {option} b=2), got {item!r}"
            )
        if node in out:
            raise UsageError(f"{option} sets node {node!r} twice")
        out[node] = value
    if not out:
        raise UsageError(f"give at least one {option} node=value")
    return out


def _load(run: Path, device: str = "cpu"):
    from sirenvae.api import load

    fitted = load(run, device=device)
    warn_if_diverged(run, fitted.meta)
    return fitted


ALLOW_HELP = "Answer a query that is not identified from the observed variables (labelled model-dependent)."


@contextlib.contextmanager
def unidentified_flag(force: bool) -> Iterator[None]:
    """The library's refusal of an unidentified query in the command line's words (the flag, not
    the keyword), and tells a user who gave ``--force`` that it only overwrites files.
    """
    try:
        yield
    except ValueError as e:
        message = " ".join(str(e).split())
        if "allow_unidentified=True" not in message:
            raise
        message = message.replace("allow_unidentified=True (--allow-unidentified)", "--allow-unidentified")
        if force:
            message += " (--force only overwrites an existing output file)"
        raise UsageError(message) from None


def sample_with_do(
    run: Path,
    n: int,
    output: Path | None,
    seed: int,
    allow_unidentified: bool,
    items: list[str],
    device: str = "cpu",
    *,
    force: bool = False,
) -> None:
    """``sirenvae sample RUN -n N --do v=a -o out.csv``: samples of the intervened model (``force``:
    the user's ``--force``, named in the refusal of an unidentified query).
    """
    from sirenvae.data import DRAWN_FORMAT, write_csv

    do = parse_do(items)
    fitted = _load(run, device)
    with unidentified_flag(force):
        frame = fitted.sample(n, seed=seed, do=do, allow_unidentified=allow_unidentified)
    write_table(
        output, lambda f: write_csv(f, list(frame.columns), frame.to_numpy(), float_format=DRAWN_FORMAT)
    )
    note(
        f"wrote {n} samples of {len(fitted.graph)} nodes under do({_show(do, fitted)}) "
        f"to {destination(output)}"
    )
    note(_verdict(frame.attrs["causal"], frame.attrs["reason"]))
    _extrapolation_notes(fitted, do)
    if set(do) & set(fitted.model.latent):
        note(LATENT_UNITS)


#: An observed intervention value this many training standard deviations from the training mean
#: or more gets a note: the answer extrapolates the fitted model beyond its data.
FAR_SD = 4.0


def _extrapolation_notes(fitted, *interventions: dict[str, str] | None) -> None:
    """A note per observed node set far outside its training data (numbers only; qP is in range)."""
    model = fitted.model
    if not model.config.standardize:
        return
    for do in interventions:
        for v, raw in (do or {}).items():
            try:
                a = float(raw)
            except ValueError:
                continue
            kind = fitted.variables[v].kind if v in fitted.variables else "continuous"
            if v in fitted.observed and kind in (
                "continuous",
                "normal",
                "studentt",
            ):  # loc, scale: its mean, sd
                i = model.observed.index(v)  # loc and scale follow the model's nodes
                mean, sd = model.loc[i].item(), model.scale[i].item()
                if abs(a - mean) >= FAR_SD * sd:
                    note(
                        f"note: {v}={raw} is {abs(a - mean) / sd:.0f} training sd from {v}'s training mean "
                        f"{mean:.3g} (sd {sd:.3g}): the answer extrapolates the fitted model"
                    )


def _verdict(label: str, reason: str) -> str:
    return reason if label == "identified" else f"{label}: {reason}"


def _show(do: dict[str, str], fitted: FittedModel | None = None) -> str:
    """``v=a, ...``, a label as the model spells its level (``Valley`` read as ``valley`` shows so)."""

    def label(v: str, a: str) -> str:
        var = fitted.variables.get(v) if fitted is not None else None
        if var is None or not var.labelled or var.numeric:
            return a
        return next((lv for lv in var.levels if lv.casefold() == a.casefold()), a)

    return ", ".join(f"{v}={label(v, a)}" for v, a in do.items())


@app.command()
def effect(
    run: Path = typer.Argument(..., help="A run directory written by `sirenvae fit`."),
    target: str = typer.Option(..., "--target", help="The node y whose mean is compared."),
    do: list[str] = typer.Option(None, "--do", help=DO_HELP),
    vs: list[str] = typer.Option(
        None, "--vs", help="The intervention compared against (same form as --do); none: no intervention."
    ),
    n: int = typer.Option(10_000, "-n", help="Monte-Carlo samples per intervention."),
    seed: int = typer.Option(0, "--seed", help="Seed."),
    allow_unidentified: bool = typer.Option(False, "--allow-unidentified", help=ALLOW_HELP),
    # effect writes no file: its --force of old (now --allow-unidentified) is refused, naming the flag
    force: bool = typer.Option(False, "--force", hidden=True),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    threads: int = typer.Option(DEFAULT_THREADS, "--threads", help=THREADS_HELP),
    device: str = typer.Option("cpu", "--device", help=DEVICE_HELP),
) -> None:
    """Average effect E[y | do(v=a)] - E[y | do(v=b)] with its Monte-Carlo standard error.

    Both interventions use the same noise draws (common random numbers). The query is checked for
    identifiability from the observed variables (the ID algorithm on the latent projection) first.
    """
    with user_errors(), torch_threads(threads):
        if force:
            raise UsageError(
                "effect writes no file, so --force has nothing to overwrite; to answer a query that is "
                "not identified, pass --allow-unidentified"
            )
        if n < 2:
            raise UsageError(f"-n must be at least 2, got {n}")
        do_a = parse_do(do)
        do_b = parse_do(vs, "--vs") if vs else None
        fitted = _load(run, device)
        with unidentified_flag(False):
            result = fitted.effect(target, do_a, do_b, n=n, seed=seed, allow_unidentified=allow_unidentified)
    result["do"], result["vs"] = do_a, do_b
    if as_json:
        print(json.dumps(result, indent=1))
    elif "levels" in result:
        against = f"do({_show(do_b, fitted)})" if do_b else "no intervention"
        say(
            f"P({target} | do({_show(do_a, fitted)})) against {against} (Monte-Carlo se, n = {n}; the fit's "
            "own uncertainty is not in it):"
        )
        for label, lv in result["levels"].items():
            say(
                f"  {target} = {label}: {lv['p_do']:.4f} vs {lv['p_vs']:.4f}, difference "
                f"{lv['effect']:+.4f} ± {lv['se']:.2g}"
            )
        say(f"  {_verdict(result['causal'], result['reason'])}")
    else:
        against = f"E[{target} | do({_show(do_b, fitted)})]" if do_b else f"E[{target}]"
        if result["se"] > EXACT_SE * max(1.0, abs(result["effect"])):
            error = f"± {result['se']:.2g} (Monte-Carlo se, n = {n}; the fit's own uncertainty is not in it)"
        else:  # linear in the intervened value: the shared noise draws cancel
            error = (
                f"(no Monte-Carlo error: the two interventions share their noise draws and it cancels in "
                f"this model; the fit's own uncertainty is not in it, n = {n})"
            )
        say(f"E[{target} | do({_show(do_a, fitted)})] - {against} = {result['effect']:.4g} {error}")
        verdict = _verdict(result["causal"], result["reason"])
        say(f"  means {result['mean_do']:.4g} and {result['mean_vs']:.4g}; {verdict}")
    _extrapolation_notes(fitted, do_a, do_b)
    if (set(do_a) | set(do_b or ())) & set(fitted.model.latent):
        note(LATENT_UNITS)


@app.command()
def counterfactual(
    run: Path = typer.Argument(..., help="A run directory written by `sirenvae fit`."),
    data: Path = typer.Option(..., "--data", help="CSV with the observed columns of the factual rows."),
    do: list[str] = typer.Option(None, "--do", help=DO_HELP),
    n: int = typer.Option(100, "-n", help="Counterfactual samples per row."),
    output: Path | None = typer.Option(None, "-o", "--output", help=OUTPUT_HELP),
    seed: int = typer.Option(0, "--seed", help="Seed."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output file."),
    ignore_columns: str = typer.Option(None, "--ignore-columns", help="CSV columns that are no node: a,b."),
    id_column: str = typer.Option(None, "--id-column", help="A CSV column of row IDs (no node)."),
    missing: str = typer.Option(None, "--missing", help=MISSING_HELP),
    allow_unidentified: bool = typer.Option(
        False,
        "--allow-unidentified",
        help="Answer through binary and categorical nodes too, under the inverse-CDF noise model.",
    ),
    threads: int = typer.Option(DEFAULT_THREADS, "--threads", help=THREADS_HELP),
    device: str = typer.Option("cpu", "--device", help=DEVICE_HELP),
) -> None:
    """What each row would have been had --do been set: abduction, action, prediction.

    The CSV has columns row, statistic, <every node...> with statistic mean, sd and sample_1 ...
    sample_n per input row (counted from 1); with --id-column the row's ID follows row (or replaces
    it, for an ID column named row). Counterfactuals depend on the fitted model and its posterior:
    they are not identified from data alone, and are always answered (labelled model-dependent).
    A missing cell is not conditioned on: it is drawn with the latents in the abduction.
    """
    import numpy as np
    import pandas as pd
    import torch

    from sirenvae.data import read_table
    from sirenvae.variables import decoder_frame, encode

    with user_errors(), torch_threads(threads):
        if n < 1:
            raise UsageError(f"-n must be positive, got {n}")
        check_output(output, force=force, run=run, inputs=[("--data", data)])
        do_items = parse_do(do)
        fitted = _load(run, device)
        id_column = run_id_column(fitted.meta, id_column, data)
        if id_column in ("statistic", *fitted.graph.nodes):
            raise UsageError(f"--id-column {id_column!r} would clash with a column of the output; rename it")
        table = read_table(
            data,
            fitted.model.columns,
            ignore_columns=run_ignored(fitted.meta, ignore_columns, data),
            id_column=id_column,
            drop_latent_columns=True,
            allow_missing=True,
            missing=split_list(missing) or (),
            variables=fitted.variables,
        )
        for notice in table.notices:
            note(notice_line(notice))
        rows = pd.DataFrame(
            decoder_frame(list(fitted.observed), table.x.cpu().double().numpy(), fitted.variables)
        )
        cf = fitted.counterfactual(rows, do_items, n, seed=seed, allow_unidentified=allow_unidentified)
        codes = cf.copy()
        for c, var in fitted.variables.items():  # labels back to codes, to summarise
            if var.labelled and c in codes:
                codes[c] = encode(cf[c], np.zeros(len(cf), bool), var)[0]
        values = torch.tensor(codes.to_numpy(dtype=float)).reshape(len(rows), n, -1)
        write_row_summaries(output, values, cf.columns, table.ids, id_column, fitted.variables)
    note(
        f"wrote counterfactual summaries and {n} sample{'s' if n > 1 else ''} under "
        f"do({_show(do_items, fitted)}) for {len(rows)} rows to {destination(output)}"
    )
    note("model-dependent: counterfactuals depend on the fitted model and its posterior, not on data alone")
    ess = cf.attrs["ess"]
    from sirenvae.objectives import prior_draws

    draws = max(10 * n, 100)
    note(
        f"abduction: effective sample size per row {ess.min():.0f} to {ess.max():.0f} of "
        f"{draws + prior_draws(draws)} draws ({draws} = max(10 n, 100) from the encoder, a tenth as many "
        "from the prior)"
    )
    _extrapolation_notes(fitted, do_items)
    if set(do_items) & set(fitted.model.latent):
        note(LATENT_UNITS)

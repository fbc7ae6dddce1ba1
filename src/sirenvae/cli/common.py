"""What every command shares: the typer app, the consoles, error handling and option parsing.

Every bad input ends with one line ``error: ...`` on standard error and exit code 2; a training run
that stops on a non-finite loss exits with code 1, keeps its last good checkpoint (to ``--resume``
with new optimiser settings) and saves its best epoch as a model marked ``diverged``.

Results (tables of numbers, ``--json``) go to standard output through :data:`console` and
:func:`say`; notes, warnings, progress and "wrote ..." lines go to standard error through
:data:`err_console` and :func:`note`, so ``sirenvae evaluate RUN --json > m.json`` holds JSON only.
The commands that write a CSV file (``sample``, ``posterior``, ``impute``, ``counterfactual``) write
it to standard output when ``-o`` is not given (:func:`write_table`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import typer
from rich.console import Console, ConsoleDimensions
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

__all__ = [
    "UsageError",
    "app",
    "check_output",
    "check_row_source",
    "check_run_out",
    "DEFAULT_THREADS",
    "MISSING_HELP",
    "OUTPUT_HELP",
    "THREADS_HELP",
    "torch_threads",
    "is_run_file",
    "console",
    "default_workers",
    "err_console",
    "note",
    "one_of",
    "parse_latent",
    "parse_options",
    "print_table",
    "say",
    "split_list",
    "training_options",
    "training_rows",
    "user_errors",
    "warn_if_diverged",
    "destination",
    "write_table",
]

app = typer.Typer(
    name="sirenvae",
    help="Deep generative models that follow a known Bayesian network.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # click's plain help: typer's rich panels show every flag as `--json <bool>`
    rich_markup_mode=None,
)

#: The width of a console that does not write to a terminal: wide enough that no line is wrapped.
UNWRAPPED = 10_000


class _Console(Console):
    """A rich console that wraps at the terminal's width on a terminal only: written to a file, a
    pipe, a CI log or a test's capture, each line stays whole (a table's rows, a long path), where
    rich would wrap at 80 columns (or ``COLUMNS``, or crop).
    """

    def _size(self) -> ConsoleDimensions:
        size = Console.size.fget(self)
        return size if _isatty(self.file) else ConsoleDimensions(UNWRAPPED, size.height)

    size = property(_size, Console.size.fset)


def _isatty(file) -> bool:
    try:
        return bool(file.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False


#: Results: standard output.
console = _Console()
#: Notes, warnings, progress and errors: standard error.
err_console = _Console(stderr=True)


def say(text: str) -> None:
    """A line of a command's result on standard output, as written (no markup, never wrapped)."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def note(text: str) -> None:
    """A note, warning, progress or "wrote ..." line on standard error, as written."""
    err_console.print(text, markup=False, highlight=False, soft_wrap=True)


def notice_line(notice: str) -> str:
    """A notice of the data layer as a line: ``warning:`` for a :class:`~sirenvae.data.Caution`."""
    return f"{'warning' if getattr(notice, 'caution', False) else 'note'}: {notice}"


def print_table(table: Table) -> None:
    """A table of results on standard output. A title wider than the table (a long run directory)
    stays one line, where rich would wrap it to the table's width.
    """
    title = table.title
    if isinstance(title, str) and len(title) > Measurement.get(console, console.options, table).maximum:
        table.title = Text(title, style="table.title", no_wrap=True, overflow="ignore")
    console.print(table, crop=False)


def _print_version(value: bool) -> None:
    if value:
        from sirenvae.version import __version__

        console.print(f"sirenvae {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def main(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress."),
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
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
        message = " ".join(str(e).split())
        err_console.print(
            f"error: training stopped: {message}", markup=False, highlight=False, soft_wrap=True
        )
        raise typer.Exit(1) from None
    except (ValueError, ConvergenceError, FileNotFoundError, PermissionError) as e:
        message = " ".join(str(e).split())
        err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


#: ``--threads`` when not given. benchmarks/threads.py measured a short ecoli70 fit on a 2-core
#: machine: one thread is as fast as two when the machine is quiet and much faster when another
#: process is busy, so small graphs train on one thread unless asked otherwise.
DEFAULT_THREADS = 1

THREADS_HELP = f"Torch threads for this command (default {DEFAULT_THREADS}: fastest for small graphs)."

DEVICE_HELP = "Where to compute: cpu (default), cuda, cuda:N or mps."

MISSING_HELP = (
    "More tokens that mark a missing cell, comma-separated (e.g. '?,-999'); empty cells, NA, N/A and "
    "NaN always do (any case). Holes are treated as missing at random (ignorable): data missing not "
    "at random (a cell's chance of being missing depends on its own unseen value) are out of scope."
)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Runs the body with ``n`` torch threads and restores the previous count afterwards."""
    from sirenvae.devices import torch_threads as threads

    if n < 1:
        raise UsageError(f"--threads must be positive, got {n}")
    with threads(n):
        yield


def default_workers() -> int:
    """Parallel fits of a settings search when not given: the CPUs this process may use, at most 8."""
    import os

    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


def one_of(names: Sequence[str]) -> str:
    """``"a, b or c"`` for help texts and messages."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def parse_latent(latent: str | None) -> str | None:
    """``--latent``: a rule name or comma-separated node names, passed on as given
    (:func:`sirenvae.data.latent_split` parses it and trims the names).
    """
    return latent


def split_list(value: str | None) -> tuple[str, ...] | None:
    """A comma-separated option as a tuple of its non-empty items (``None`` when not given)."""
    return tuple(x.strip() for x in value.split(",") if x.strip()) if value else None


#: The files ``fit`` writes into a run directory (besides hidden temporary files).
RUN_FILE = re.compile(r"(model|checkpoint)(\.json|-[0-9a-f]+\.safetensors)")


def is_run_file(path: Path) -> bool:
    """Whether ``path`` names one of a run directory's own files (its model or checkpoint)."""
    return RUN_FILE.fullmatch(path.name) is not None


#: The help of the ``-o`` option of a command that writes one CSV file.
OUTPUT_HELP = "CSV file to write (default: standard output)."


def destination(path: Path | None) -> str:
    """Where :func:`write_table` writes, as a note names it."""
    return "standard output" if path is None else str(path)


def write_table(path: Path | None, write: Callable) -> None:
    """A command's CSV result: ``write(file)`` to ``path`` atomically, or to standard output where
    ``path`` is ``None``; a reader that stops early (``| head``) is no error.
    """
    if path is not None:
        from sirenvae.files import atomic_write

        atomic_write(path, write)
        return
    try:
        write(sys.stdout)
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit


def check_output(
    path: Path | None,
    *,
    force: bool = False,
    inputs: Sequence[tuple[str, Path | None]] = (),
    run: Path | None = None,
    option: str = "-o",
) -> None:
    """Refuses, before any work is done, an output file that cannot or must not be written.

    An existing directory, a missing parent directory, a path equal to one of the ``inputs``
    (``(option, path)`` pairs), a path inside the run directory being read or one of any run's own
    files, and an existing file unless ``force``; standard output (``None``) always passes.
    """
    if path is None:
        return
    if path.is_dir():
        raise UsageError(
            f"{option} {path} is a directory; give the name of a file to write, e.g. {path / 'out.csv'}"
        )
    if not path.parent.is_dir():
        raise UsageError(
            f"cannot write {path}: directory {path.parent} does not exist; "
            f"create it or choose another {option}"
        )
    target = path.resolve()
    for name, source in inputs:
        if source is not None and source.exists() and target == source.resolve():
            raise UsageError(f"{option} {path} is also the input {name}; write to another file")
    if run is not None and target.is_relative_to(run.resolve()):
        raise UsageError(
            f"{option} {path} lies inside the run directory {run} that this command reads; write outside it"
        )
    if is_run_file(target):
        raise UsageError(f"{option} {path} would replace a run's own {path.name}; choose another file name")
    if path.exists() and not force:
        raise UsageError(f"{path} already exists; pass --force to overwrite it or choose another {option}")


def _status(run: Path) -> str | None:
    try:
        doc = json.loads((run / "model.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # loading the run says what is wrong with it
    return doc.get("status") if isinstance(doc, dict) else None


def warn_if_diverged(run: Path, meta: dict) -> None:
    """One line on standard error when a loaded model comes from a run that diverged."""
    if meta.get("status") == "diverged":
        err_console.print(
            f"warning: {run} holds the model of epoch {meta['history']['best_epoch']} of a run that "
            f"diverged (non-finite loss at epoch {meta.get('diverged_at_epoch')}); continue it with "
            f"`sirenvae fit ... --out {run} --resume --lr <lower>`",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


def check_run_out(
    out: Path, *, resume: bool, force: bool, inputs: Sequence[tuple[str, Path | None]] = ()
) -> None:
    """Refuses, before any work is done, a ``fit --out`` that cannot or must not be written.

    A regular file, an existing run without ``--resume`` or ``--force``, both of those options, and
    an input that is one of the run's own files (which ``--force`` or training would replace).
    """
    if out.exists() and not out.is_dir():
        raise UsageError(
            f"--out {out} is a file; --out names a run directory (a new one, or an earlier run to --resume)"
        )
    if resume and force:
        raise UsageError("--resume continues the run in --out and --force replaces it; give only one")
    for name, source in inputs:
        if source is not None and is_run_file(source) and source.resolve().parent == out.resolve():
            raise UsageError(
                f"the input {name} {source} is a file of the run in --out {out}; copy it elsewhere"
            )
    if resume or force:
        return
    if (out / "model.json").exists() and _status(out) == "diverged":
        raise UsageError(
            f"{out} holds a run that diverged; pass --resume (with a lower --lr) to continue it, "
            "--force to replace it, or choose another --out"
        )
    if (out / "model.json").exists():
        raise UsageError(
            f"{out} already holds a trained model; choose another --out, pass --resume to continue it, "
            "or --force to replace it"
        )
    if (out / "checkpoint.json").exists():
        raise UsageError(
            f"{out} holds an unfinished run; pass --resume to continue it, --force to replace it, "
            "or choose another --out"
        )


#: ``fit`` options with their own flag, which ``--set`` does not take.
OWN_FLAGS = {"lr": "--lr", "batch_size": "--batch-size", "max_epochs": "--epochs", "patience": "--patience",
             "seed": "--seed", "progress": "--progress", "train_masking": "--train-masking"}  # fmt: skip


def parse_options(items: list[str] | None, variant: str) -> dict:
    """The ``--set key=value`` options: any :class:`~sirenvae.models.ModelConfig`,
    :class:`~sirenvae.training.FitConfig` or :class:`~sirenvae.pipeline.TrainOptions` field, its
    value parsed by the field's type (an unknown key or a bad value is one line naming it).
    """
    import dataclasses

    from sirenvae.models import ModelConfig
    from sirenvae.pipeline import TrainOptions
    from sirenvae.training import FitConfig

    types = {
        f.name: f.default
        for cls in (ModelConfig, FitConfig, TrainOptions)
        for f in dataclasses.fields(cls)
        if f.name != "variant"
    }
    values: dict = {}
    for item in items or ():
        key, sep, raw = item.partition("=")
        key, raw = key.strip().replace("-", "_"), raw.strip()
        if not sep or not key or not raw:
            raise UsageError(f"--set takes key=value (e.g. --set conditioning=parents), got {item!r}")
        if key in OWN_FLAGS:
            raise UsageError(f"--set {key}: give it as {OWN_FLAGS[key]}")
        if key not in types:
            known = ", ".join(sorted(set(types) - set(OWN_FLAGS)))
            raise UsageError(f"unknown option {key!r} in --set; options: {known}")
        default = types[key]
        try:
            if isinstance(default, bool):
                if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                values[key] = raw.lower() in ("true", "1", "yes")
            elif default is None:  # an optional number (e.g. grad_clip): none or a number
                values[key] = None if raw.lower() in ("none", "off") else float(raw)
            else:
                values[key] = type(default)(raw)
        except ValueError:
            kind = {bool: "true or false", int: "a whole number", float: "a number"}.get(
                type(default), "text" if default is not None else "a number or none"
            )
            raise UsageError(f"--set {key}={raw}: expected {kind}") from None
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    try:
        ModelConfig(variant=variant, **{k: v for k, v in values.items() if k in model_fields})
    except ValueError as e:
        # with auto a field may be valid only beside a candidate's others (prior_blocks=0 needs
        # affine): the search says which candidates it leaves out
        if "blocks" not in str(e):
            raise UsageError(f"--set: {e}") from None
    return values


def check_row_source(network, graph, data, train_size) -> None:
    """Refuses, before any work, rows that would come from neither or both of the two sources."""
    if (network is None) == (graph is None):
        raise UsageError("give exactly one of --network NAME or --graph FILE")
    if (data is None) == (train_size is None):
        raise UsageError("give exactly one of --data CSV or --train-size N")


#: ``--types``: each column's type, where inference (from the training rows) should not decide.
TYPES_HELP = (
    "Column types, name=type,...: binary, categorical, count (negative binomial), poisson, lognormal, "
    "normal, studentt or continuous. Others are inferred: 2 values -> binary, text -> categorical."
)
STRICT_LEVELS_HELP = "Refuse a categorical level unseen in training (default: a small probability)."


def _header(data) -> list[str]:
    """The stripped column names of a CSV file (none where it cannot be read: reading it reports why)."""
    import csv

    try:
        with open(data, newline="", encoding="utf-8-sig") as f:
            return [c.strip() for c in next(csv.reader(f), [])]
    except (OSError, UnicodeDecodeError):
        return []


def run_id_column(meta: dict, id_column: str | None, data) -> str | None:
    """``--id-column``, or else the run's own (recorded by ``fit``) when the CSV has that column."""
    recorded = meta.get("id_column")
    if id_column is not None or not recorded or data is None:
        return id_column
    if recorded in _header(data):
        note(f"note: column {recorded!r} holds row IDs, as when the run was fitted (--id-column)")
        return recorded
    return None


def run_ignored(meta: dict, ignore_columns: str | None, data) -> tuple[str, ...]:
    """``--ignore-columns``, or else the run's own (recorded by ``fit``) that the CSV has."""
    given = split_list(ignore_columns)
    recorded = meta.get("ignore_columns") or []
    if given or not recorded or data is None:
        return given or ()
    header = _header(data)
    kept = tuple(c for c in recorded if c in header)
    if kept:
        note(f"note: ignoring column(s) {', '.join(kept)}, as when the run was fitted (--ignore-columns)")
    return kept


def gone_allow_discrete(given: bool) -> None:
    """``--allow-discrete`` went away when discrete columns got their own families."""
    if given:
        raise UsageError(
            "--allow-discrete is gone: a column with 2 values is now modelled as binary and text as "
            "categorical; pass --types NAME=normal to fit a column as continuous anyway"
        )


def training_options(items, model: str, *, lr: float | None, batch_size: int, epochs: int, patience: int,
                     seed: int, workers: int | None, **more) -> dict:  # fmt: skip
    """The training options of ``fit`` and ``compare``: ``--set`` (:func:`parse_options`) with the
    options that have their own flags; bad values are one line.
    """
    if epochs < 1 or batch_size < 1 or (lr is not None and not lr > 0):
        raise UsageError("--epochs, --batch-size and --lr must be positive")
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    flags = {"batch_size": batch_size, "max_epochs": epochs, "patience": patience, "seed": seed}
    return parse_options(items, model) | flags | ({} if lr is None else {"lr": lr}) | more


def training_rows(network, graph, data, train_size, latent, ignore_columns, id_column, seed, types=None,
                  *, allow_missing=False, missing=None, strict_levels=False):  # fmt: skip
    """The split, the rows, the table's notices and its columns' variables (with the hidden nodes'
    stated binary or categorical, see :attr:`sirenvae.data.Table.hidden`) as ``fit`` and ``compare``
    read them: sampled from a shipped network (``--train-size``) or a CSV on a graph or network
    (``--data``). With ``allow_missing`` a CSV's missing cells (and the comma-separated
    ``--missing`` tokens) are NaN; ``types`` is ``--types`` (``a=binary,b=count``).
    """
    from sirenvae.data import (
        default_latent_rule,
        latent_split,
        read_table,
        sample_splits,
        stated_split,
        stated_types,
    )
    from sirenvae.graph_io import read_graph
    from sirenvae.networks import DiscreteNetwork, load_network

    check_row_source(network, graph, data, train_size)
    if train_size is not None:
        if network is None:
            raise UsageError("--train-size samples from a shipped --network; with --graph give --data CSV")
        if train_size < 2:
            raise UsageError(f"--train-size must be at least 2, got {train_size}")
        if ignore_columns or id_column or missing or types:
            raise UsageError("--ignore-columns, --id-column, --missing and --types apply to a --data CSV")
        net = load_network(network)
        split = latent_split(net.graph, parse_latent(latent) or default_latent_rule(network))
        x = sample_splits(net, split, train_size=train_size, test_size=0, seed=seed).train
        return split, x, (), net.variables(net.graph.nodes) if isinstance(net, DiscreteNetwork) else {}
    net = load_network(network) if network is not None else None
    bn = net.graph if net is not None else read_graph(graph)
    try:
        declared, levels = stated_types(graph, net, types)
    except ValueError as e:
        raise UsageError(str(e)) from None
    table = read_table(
        data,
        stated_split(bn, parse_latent(latent), None if net is not None else graph),  # the file's "latent" too
        min_rows=2,
        ignore_columns=split_list(ignore_columns) or (),
        id_column=id_column,
        drop_latent_columns=True,
        training=True,
        allow_missing=allow_missing,
        missing=split_list(missing) or (),
        types=declared,
        levels=levels,
        strict_levels=strict_levels,
    )
    return table.split, table.x, table.notices, table.variables | table.hidden


def write_row_summaries(
    path: Path | None,
    values,
    columns: Sequence[str],
    ids,
    id_column: str | None,
    variables=None,
    probabilities=None,
) -> None:
    """The per-row CSV of ``posterior`` and ``counterfactual``: for each input row (``values`` is
    ``(rows, n, columns)``) its mean, sd and n samples, with columns ``row`` (from 1; replaced by an
    ``--id-column`` named row), the ID column if any, ``statistic`` and ``columns``. A binary or
    categorical column of ``variables`` is written as labels: its samples' labels, the most frequent
    one as the mean and no sd; with ``probabilities`` (column: ``(rows, levels)``) each level's
    probability on a row ``P(label)`` and the most probable label as the mean.
    """
    import pandas as pd
    import torch

    probabilities = dict(probabilities or {})
    named = list(dict.fromkeys(lv for c in probabilities for lv in variables[c].levels))
    rows, n = values.shape[0], values.shape[1]
    sd = values.std(1) if n > 1 else torch.zeros_like(values[:, 0])
    shares = torch.full((rows, len(named), values.shape[-1]), float("nan"), dtype=values.dtype)
    for c, p in probabilities.items():
        j = list(columns).index(c)
        shares[:, [named.index(lv) for lv in variables[c].levels], j] = p.to(shares)
    blocks = torch.cat([values.mean(1, keepdim=True), sd[:, None], shares, values], 1)  # (rows, m, D)
    stats = ["mean", "sd"] + [f"P({lv})" for lv in named] + [f"sample_{i + 1}" for i in range(n)]
    head = 2 + len(named)
    frame = pd.DataFrame(blocks.reshape(-1, values.shape[-1]).numpy(), columns=list(columns))
    for j, c in enumerate(columns):
        var = (variables or {}).get(c)
        if var is not None and var.kind in ("poisson", "negbin"):  # whole counts; the mean stays a mean
            col = frame[c].astype(object)
            is_sample = [s.startswith("sample_") for s in stats * rows]
            col[is_sample] = [int(round(v)) for v in frame[c][is_sample]]
            frame[c] = col
        if var is not None and var.labelled:
            labels = list(var.levels) + ["<unseen>"]
            codes = values[..., j].round().long().clamp(0, len(labels) - 1)  # (rows, n)
            mode = probabilities[c].argmax(-1) if c in probabilities else codes.mode(1).values
            m = len(stats)
            cells = [
                [labels[int(mode[r])], None] + frame[c].iloc[r * m + 2 : r * m + head].tolist()
                + [labels[int(k)] for k in codes[r]]
                for r in range(rows)
            ]  # fmt: skip
            frame[c] = [cell for block in cells for cell in block]
    frame.insert(0, "statistic", stats * rows)
    if ids is not None:
        frame.insert(0, id_column or "id", [i for i in ids for _ in stats])  # an unnamed index: id
    if id_column != "row":
        frame.insert(0, "row", [r + 1 for r in range(rows) for _ in stats])
    write_table(path, lambda f: frame.to_csv(f, index=False))

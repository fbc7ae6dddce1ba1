"""Tables and tensors: validation of CSV files and DataFrames (one set of checks for both). The latent
rules and seeded splits of the shipped networks live in :mod:`sirenvae.splits` (re-exported here).

Data are kept on their raw scale. Observed columns are always in the graph's topological order.
"""

from __future__ import annotations

import csv
import difflib
import logging
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from sirenvae.graph import BayesianNetwork, GraphError, LatentSplit, first_duplicate
from sirenvae.graph_io import declared_types
from sirenvae.models.likelihoods import UNSEEN
from sirenvae.names import near_pairs, preview, typo_notices
from sirenvae.networks import DiscreteNetwork
from sirenvae.splits import (  # re-exported: they lived here before
    LATENT_RULES,
    Splits,
    default_latent_rule,
    latent_split,
    sample_splits,
)
from sirenvae.variables import (
    BINARY_NOTICES,
    Variable,
    VariableError,
    binary_notice,
    binary_notices,
    check_values,
    encode,
    infer_variable,
    number_format,
    parse_types,
)

__all__ = [
    "LATENT_RULES",
    "MISSING_TOKENS",
    "DataError",
    "Splits",
    "Table",
    "default_latent_rule",
    "latent_split",
    "read_csv",
    "read_frame",
    "read_table",
    "sample_splits",
    "write_csv",
]


_log = logging.getLogger(__name__)


class DataError(ValueError):
    """A data table is unusable; the message names the file, row and column."""


class Caution(str):
    """A notice that changes what a result means (a column scored as holes): printed as a warning."""

    caution = True


def stated_types(
    graph_source, network, given: Mapping[str, str] | str | None, flag: str = "--types"
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The types and levels stated for a training table's nodes (``{node: kind}``, ``{node: levels}``):
    a shipped discrete ``network``'s states, else those ``graph_source`` declares (a JSON graph's
    ``"type"`` and ``"levels"``, a BIF file's states), with ``given`` (``--types``, named ``flag`` in
    errors) over them; a ``ValueError`` for an unknown type.
    """
    if isinstance(network, DiscreteNetwork):
        declared, levels = network.declared()
    elif graph_source is not None:
        declared, levels = declared_types(graph_source)
    else:
        declared, levels = {}, {}
    return parse_types(declared, "graph file") | parse_types(given, flag), levels


def stated_split(graph: BayesianNetwork, latent, graph_source=None) -> BayesianNetwork | LatentSplit:
    """``graph`` with the latent nodes a user stated: ``latent`` (names, a comma-separated string or a
    rule) if given, else a JSON ``graph_source`` file's ``"latent"`` list (``None`` for a shipped
    network), else ``graph`` itself (the latent nodes are then the nodes without a column).
    """
    if latent is None and graph_source is not None:
        from sirenvae.graph_io import declared_latent

        latent = declared_latent(graph_source)
    return graph if latent is None else latent_split(graph, latent)


@dataclass(frozen=True)
class Table:
    """A data table read against a graph.

    Attributes:
        x: The observed nodes' values, ``(rows, observed)`` in topological order.
        split: The latent/observed split (given, or inferred from the columns).
        notices: One-line messages for the user (columns ignored, likely discrete columns).
        ids: The cells of the ID column, one per row (``None`` without an ID column).
        id_column: The name of the ID column.
        missing: The fraction of missing cells (NaN in ``x``) of each observed column that has any,
            in ``split.observed`` order; empty for a complete table (always, unless read with
            ``allow_missing``).
        variables: Each observed column's :class:`~sirenvae.variables.Variable` (its type and
            levels; a binary or categorical column's cells are codes in ``x``).
        labels: Each binary or categorical column's cells as given (stripped; ``None`` at holes),
            and with ``keep_text`` those of every other column read as text (a CSV file), to write
            present cells back unchanged (``3`` stays ``3``, not ``3.0``).
        hidden: In training, each latent node stated binary or categorical (with its levels: a
            discrete network's states, a graph file's ``"levels"``), which a graph model sums out.
        cells: A CSV file's every column as read (text, whitespace stripped from the header), for a
            command that writes the file back (``None`` for a DataFrame).
    """

    x: Tensor
    split: LatentSplit
    notices: tuple[str, ...] = ()
    ids: tuple[str, ...] | None = None
    id_column: str | None = None
    missing: dict[str, float] = field(default_factory=dict)
    variables: dict[str, Variable] = field(default_factory=dict)
    labels: dict[str, tuple] = field(default_factory=dict)
    hidden: dict[str, Variable] = field(default_factory=dict)
    cells: pd.DataFrame | None = field(default=None, repr=False, compare=False)


#: How messages name the options that fix a table: the CLI's flags, or :mod:`sirenvae.api`'s keywords.
_HINTS = {
    "cli": {
        "ignore": lambda names: f"--ignore-columns {shlex.quote(','.join(map(str, names)))}",
        "id": " (or --id-column NAME for a column of row IDs)",
        "latent": "--latent",
        "types": lambda name, kind: f"--types {shlex.quote(f'{name}={kind}')}",
        "id_column": lambda name: f"--id-column {shlex.quote(str(name))}",
        "complete": "this command needs every cell",
        "missing": lambda token: f"--missing {token!r}",
    },
    "python": {
        "ignore": lambda names: f"ignore={list(names)!r}",
        "id": "",
        "latent": "latent=[...]",
        "types": lambda name, kind: f"types={{{name!r}: {kind!r}}}",
        "id_column": lambda name: f"id_column={name!r}",
        "complete": "this function needs every cell",
        "missing": lambda token: f"missing=[{token!r}]",
    },
}

#: The families (``Variable.family``) whose holes are drawn with pathwise gradients.
CONTINUOUS_FAMILIES = (None, "normal", "studentt", "lognormal")

#: The cells that are missing (with ``allow_missing``) besides a user's own tokens: compared with each
#: cell stripped of surrounding whitespace and regardless of case; a DataFrame's NaN, None and
#: ``pd.NA`` are missing too.
MISSING_TOKENS = ("", "NA", "N/A", "NaN")


def _index_column(name) -> bool:
    """Whether a column name is that of an unnamed index (empty, or pandas' ``Unnamed: 0``)."""
    return str(name).strip() in ("", "Unnamed: 0")


def read_csv(
    path: str | Path,
    graph: BayesianNetwork | LatentSplit,
    *,
    min_rows: int = 1,
    dtype: torch.dtype = torch.float32,
    **options,
) -> tuple[Tensor, LatentSplit]:
    """Reads observed data from a CSV file with a header of node names.

    Given a graph, its nodes without a column are the latent ones; given a split, every observed
    node needs a column. Returns ``(x, split)`` with ``x`` in topological order; ``options`` are
    those of :func:`read_table`, whose notices are logged as warnings here.

    Raises:
        DataError: On any check of :func:`read_frame` failing, with the file line of a bad cell.
    """
    table = read_table(path, graph, min_rows=min_rows, dtype=dtype, **options)
    for notice in table.notices:
        _log.warning(notice)
    return table.x, table.split


#: A number written with a decimal comma (``33,72``) in a field of a ``;``-separated line.
_DECIMAL_COMMA = re.compile(r"(^|;)\s*[+-]?\d+,\d+\s*(;|$)")


#: Suffixes of graph files, which a data option refuses by name.
GRAPH_SUFFIXES = (".json", ".dot", ".gv", ".bif")


def read_table(path: str | Path, graph: BayesianNetwork | LatentSplit, **options) -> Table:
    """Reads a CSV file as :func:`read_csv` does, with the notices for the user and row IDs.

    A UTF-8 byte order mark (as Excel writes) is skipped, and so is whitespace around names and
    cells. The checks are those of :func:`read_frame` (``options`` are its keywords); errors name
    the file, and each bad cell's row (counted from 1) and line in the file.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file not found: {path}")
    if path.suffix.lower() in GRAPH_SUFFIXES:
        raise DataError(
            f"{path} is a graph file ({path.suffix}); the data are a CSV of rows with node names as header"
        )
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty") from None
    except UnicodeDecodeError as e:
        raise DataError(
            f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save it as 'CSV UTF-8' (in pandas: "
            "pd.read_csv(path, encoding='cp1252').to_csv(new_path, index=False), with the file's encoding)"
        ) from None
    except pd.errors.ParserError as e:
        raise DataError(f"{path}: not a readable CSV file ({e})") from None
    if df.shape[1] == 1:
        sep = next((s for s in (";", "\t", "|") if s in df.columns[0]), None)
        if sep is not None:
            with open(path, encoding="utf-8-sig") as f:
                head = [f.readline() for _ in range(20)]
            decimal = (
                ", decimal=','" if sep == ";" and any(_DECIMAL_COMMA.search(line) for line in head) else ""
            )
            raise DataError(
                f"{path}: the header is one column, {df.columns[0]!r}: the file seems to separate "
                f"values with {sep!r}; sirenvae reads comma-separated files (in pandas: "
                f"pd.read_csv(path, sep={sep!r}{decimal}).to_csv(new_path, index=False))"
            )
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        # the file line of each data row: pandas skips blank lines (and so must the count)
        lines = [reader.line_num for row in reader if len(row) > 1 or row and row[0].strip()]
    if len(lines) != len(df):
        lines = list(range(2, len(df) + 2))
    df.columns = [c.strip() for c in header]  # pandas renames duplicates; read_frame refuses them
    return replace(read_frame(df, graph, name=str(path), lines=lines, **options), cells=df)


#: Below this many training rows a fit gets a notice (the settings search's 5 folds need as many).
FEW_TRAINING_ROWS = 10


def unseen_latent_notice(split: LatentSplit) -> list[str]:
    """A notice for the latent nodes with no observed descendant: nothing in the rows depends on them."""
    graph, observed = split.graph, set(split.observed)
    reaches: dict[str, bool] = {}
    for v in reversed(graph.nodes):  # children before parents
        reaches[v] = any(c in observed or reaches[c] for c in graph.children(v))
    blind = [v for v in split.latent if not reaches[v]]
    if not blind:
        return []
    shown = ", ".join(blind[:MISSING_SHOWN]) + (
        f", ... ({len(blind)} in all)" if len(blind) > MISSING_SHOWN else ""
    )
    return [
        f"latent node(s) {shown} have no observed descendant: the rows say nothing about them, so the "
        "model cannot learn how they depend on their parents; give their column or leave them out of the "
        "graph"
    ]


def read_frame(
    df: pd.DataFrame,
    graph: BayesianNetwork | LatentSplit,
    *,
    min_rows: int = 1,
    dtype: torch.dtype = torch.float32,
    ignore_columns: Sequence[str] = (),
    id_column: str | None = None,
    drop_latent_columns: bool = False,
    training: bool = False,
    allow_missing: bool = False,
    types: Mapping[str, str] | None = None,
    levels: Mapping[str, Sequence[str]] | None = None,
    variables: Mapping[str, Variable] | None = None,
    strict_levels: bool = False,
    missing: Sequence[str] | str = (),
    name: str | None = None,
    lines: Sequence[int] | None = None,
    hints: str = "cli",
    keep_text: bool = False,
) -> Table:
    """Checks a table whose columns name nodes (a CSV file's or a user's DataFrame) against a graph;
    anything unusable is a :class:`DataError` with one line that names the table, column and row.

    Every column must be a node of the graph unless named in ``ignore_columns`` or ``id_column``;
    the cells of the latter are returned as ``ids``. Given a graph, its nodes without a column are
    the latent ones; given a split, every observed node needs a column. A node without a column
    whose name is a near miss of an unused column (equal up to case or whitespace, or within edit
    distance 2) is an error that suggests the column. Columns of latent nodes (given a split) are
    an error, or with ``drop_latent_columns`` ignored with a notice (so that the output of
    ``sample``, which has every node, can be read back). Every observed cell must be a finite number
    that fits ``dtype``, or a missing cell.

    Missing cells are the :data:`MISSING_TOKENS` (empty, ``NA``, ``N/A``, ``NaN``), the tokens in
    ``missing`` (a sequence or a comma-separated string), each compared with the cell stripped of
    whitespace and regardless of case, and a DataFrame's NaN, None and ``pd.NA``; a token that is a
    finite number (``-999``) also marks the cells equal to it. Without ``allow_missing`` a missing
    cell is an error that says so; with it, it is NaN in ``x`` (the holes are treated as missing at
    random), ``Table.missing`` holds the fraction missing per column with holes and a notice lists
    them. A column with every cell missing, and a row with every observed cell missing, are errors.
    Infinite values and other text are errors either way.

    Each observed column has a type (:mod:`sirenvae.variables`): given ``variables`` (a fitted
    model's), those; for training rows, inferred from the cells with a notice, or as stated in
    ``types`` (``{node: kind}``) with the ``levels`` declared for a node; else continuous. A binary
    or categorical column's labels become codes; a level unseen in training is coded
    ``len(levels)`` with a notice (an error with ``strict_levels``, and for a binary column); a
    count must be a non-negative integer and a log-normal value positive.

    Training data (``training``) must vary, judged on the present cells of each column (at least 2
    needed): constant or near-constant columns (standard deviation below ``1e-8 * (1 + |mean|)``)
    are an error.

    Messages begin with ``name`` (a file) and locate a cell by its row counted from 1 and its file
    line, given ``lines``, else by the row's index label and position; ``hints`` names the options
    that fix a table as the CLI's flags (``"cli"``) or as Python keywords (``"python"``);
    ``keep_text`` keeps every text column's cells as written (:attr:`Table.labels`).
    """
    where = f"{name}: " if name else ""
    hint = _HINTS[hints]
    columns = list(df.columns)
    first = first_duplicate(columns)
    if first is not None:
        raise DataError(f"{where}column {first!r} appears twice")
    split = graph if isinstance(graph, LatentSplit) else None
    graph = graph.graph if isinstance(graph, LatentSplit) else graph
    ignored = _ignored(where, columns, ignore_columns)
    notices = []
    ids = None
    if id_column is None and columns and _index_column(columns[0]) and columns[0] not in graph:
        id_column = columns[0]  # pandas' to_csv writes the index as a first, unnamed column
        notices.append(
            f"the first column {columns[0]!r} has no name (a row index, as pandas' to_csv writes it): "
            "read as row IDs"
        )
    if id_column is not None:
        if id_column not in columns:
            raise DataError(f"{where}no ID column {id_column!r}; the columns are {preview(columns)}")
        ignored.add(id_column)
        ids = tuple(str(v).strip() for v in df[id_column])
        if len(set(ids)) < len(ids):
            dup = first_duplicate(ids)
            notices.append(f"the ID column {id_column!r} repeats {dup!r}: IDs do not tell its rows apart")
    used = [c for c in columns if c not in ignored]
    if split is not None and drop_latent_columns:
        dropped = [c for c in used if c in split.latent]
        if dropped:
            of = f" of {Path(name).name}" if name else ""
            notices.append(f"ignoring column(s) {', '.join(dropped)}{of}: they are latent nodes")
            used = [c for c in used if c not in dropped]
    absent = _check_columns(where, graph, split, used, hint, training, allow_missing)
    if absent:  # a fitted model scores the other columns: the absent ones are holes in every row
        df = df.assign(**{v: "" for v in absent})
        notices.append(
            Caution(
                f"no column for observed node(s) {preview(absent)}: read as missing in every row (an NLL "
                "scores the present columns only, not comparable with one of every column; commands that "
                "fill holes fill these)"
            )
        )
    if split is None:
        split = _inferred_split(where, graph, used, hint, _blank_columns(df, used, missing, hint))
        notices += typo_notices(split.latent, used)
    if training:
        notices += unseen_latent_notice(split)
        if min_rows <= len(df) < FEW_TRAINING_ROWS:
            notices.append(
                f"only {len(df)} training rows: a fit on so few rests mostly on its prior and varies from "
                f"seed to seed (--settings auto needs at least {FEW_TRAINING_ROWS})"
            )
    if len(df) < min_rows:
        raise DataError(f"{where}{len(df)} data row(s), at least {min_rows} needed")

    def row(i: int) -> str:
        if lines is not None:
            return f"row {i + 1} (line {lines[i]})"
        label = df.index[i]
        return f"row {label.item() if isinstance(label, np.generic) else label!r} (position {i})"

    observed = split.observed
    tokens = _missing_tokens(missing)
    values = np.empty((len(df), len(observed)), dtype=np.float64)
    holes = np.zeros((len(df), len(observed)), dtype=bool)
    declared = dict(types or {})
    unknown = sorted(set(declared) - set(graph.nodes))
    if unknown:
        close = difflib.get_close_matches(unknown[0], graph.nodes, n=1)
        hint_ = f" (did you mean {close[0]!r}?)" if close else ""
        what = "a type is given for" if len(unknown) == 1 else "types are given for"
        raise DataError(f"{where}{what} {', '.join(map(repr, unknown))}, not a node of the graph{hint_}")
    # a graph's declared states of a hidden node (a discrete network's) say nothing about the data
    typed = sorted(
        v
        for v in set(declared) - set(observed)
        if declared[v] not in ("continuous", "binary") and v not in (levels or {})
    )
    if typed:
        raise DataError(
            f"{where}latent node(s) {', '.join(map(repr, typed))} are given a type without levels: a "
            "hidden node is continuous, or binary, or categorical with its levels stated in the graph "
            'file ("levels": [...])'
        )
    found: dict[str, Variable] = {}
    binaries: dict[str, str] = {}
    unseen: dict[str, int] = {}
    labels: dict[str, tuple] = {}
    for j, v in enumerate(observed):
        values[:, j], holes[:, j], bad = _numbers(df[v], tokens, allow_missing, hint)
        if variables is not None:
            var = variables.get(v, Variable())
        elif training:
            try:
                var, notice = infer_variable(
                    v, df[v], holes[:, j], *_stated(df[v], declared.get(v), levels), hint
                )
            except VariableError as e:
                raise DataError(f"{where}{e}") from None
            if strict_levels and var.kind == "categorical":
                var = Variable(var.kind, var.levels, var.numeric, strict=True)
            if var.kind == "binary" and notice == binary_notice(v, var.levels[1], hint):
                binaries[v] = var.levels[1]  # one line for many (below)
            if notice:
                notices.append(notice)
        else:
            var = Variable(declared.get(v, "continuous"))
        found[v] = var
        if var.labelled and not (bad is not None and holes[bad[0], j]):
            values[:, j], bad, unseen[v] = encode(df[v], holes[:, j], var)
            if bad is not None and var.kind == "binary" and not training:
                more = f"for a column with more levels, refit with {hint['types'](v, 'categorical')}"
                bad = (bad[0], f"{bad[1]} (the two its training rows held; {more} or declare its levels)")
            cells = df[v].map(lambda c: c.strip() if isinstance(c, str) else c)
            labels[v] = tuple(None if h else str(c) for c, h in zip(cells, holes[:, j], strict=True))
        elif bad is None:
            bad = check_values(values[:, j], holes[:, j], var)
            if keep_text and all(isinstance(c, str) for c in df[v]):  # a CSV file's cells, as written
                labels[v] = tuple(None if h else c.strip() for c, h in zip(df[v], holes[:, j], strict=True))
        elif not holes[bad[0], j] and training and var.kind == "continuous" and "non-numeric" in bad[1]:
            bad = (bad[0], bad[1] + f" (or {hint['types'](v, 'categorical')} for a column of labels)")
        if bad is not None:
            raise DataError(f"{where}{row(bad[0])}, column {v!r}: {bad[1]}")
    values[holes] = np.nan
    if len(binaries) > BINARY_NOTICES:
        plain = {binary_notice(v, one, hint) for v, one in binaries.items()}
        first = next(i for i, n in enumerate(notices) if n in plain)
        notices = [n for n in notices if n not in plain]
        notices.insert(first, binary_notices(binaries, hint))
    seen = {v: n for v, n in unseen.items() if n}
    if seen:
        shown = ", ".join(f"{v} ({n} cells)" for v, n in list(seen.items())[:MISSING_SHOWN])
        notices.append(
            f"levels unseen in training in column(s) {shown}: each scored with probability {UNSEEN:g} "
            "(a run fitted with --strict-levels refuses them)"
        )
    x = torch.from_numpy(values).to(dtype)
    over = ~torch.isfinite(x).numpy() & ~holes
    if over.any():
        i, j = (int(k[0]) for k in np.nonzero(over))
        more = f" ({int(over.sum())} such cells)" if over.sum() > 1 else ""
        raise DataError(
            f"{where}{row(i)}, column {observed[j]!r}: {values[i, j]:g} overflows "
            f"{str(dtype).removeprefix('torch.')} (largest magnitude {torch.finfo(dtype).max:.3g}){more}; "
            "rescale the column (e.g. a log transform of positive data)"
        )
    fractions = {}
    if holes.any():
        fractions = _check_holes(where, observed, holes, row, hint, training)
        notices.append(_missing_notice(fractions, len(df)))
        drawn = [v for v in fractions if found[v].family not in CONTINUOUS_FAMILIES and graph.children(v)]
        if training and drawn:
            notices.append(
                f"the discrete column(s) {', '.join(drawn[:6])} have holes and children: training draws "
                "each such hole from the model without a score-function term, so a node's own conditional "
                "learns only from its present cells (the bound stays valid)"
            )
    if training:
        real = [j for j, v in enumerate(observed) if not found[v].labelled]
        _check_training_columns(where, [observed[j] for j in real], values[:, real], hint)
        if real and (repeat := _repeated_rows(values, holes)) is not None:
            notices.append(
                f"{repeat[0]} row(s) repeat an earlier row exactly ({row(repeat[1])} = {row(repeat[2])}), "
                "unlikely with continuous columns: copies on both sides of a fold make the cross-validation "
                "and validation scores optimistic; drop them unless they are real repeats"
            )
    hidden = _hidden_variables(split, declared, levels or {}) if training else {}
    return Table(x, split, tuple(notices), ids, id_column, fractions, found, labels, hidden)


def _repeated_rows(values: np.ndarray, holes: np.ndarray) -> tuple[int, int, int] | None:
    """How many rows repeat an earlier one exactly (holes alike), and the first such pair (later,
    earlier); ``None`` where none does.
    """
    cells = np.where(holes, np.inf, values)  # present cells are finite: a hole matches holes only
    _, first, inverse = np.unique(cells, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    repeats = np.flatnonzero(first[inverse] != np.arange(len(cells)))
    if not len(repeats):
        return None
    return len(repeats), int(repeats[0]), int(first[inverse[repeats[0]]])


def _hidden_variables(
    split: LatentSplit, declared: Mapping[str, str], levels: Mapping[str, Sequence[str]]
) -> dict[str, Variable]:
    """The latent nodes stated binary or categorical, with their levels (a binary one's default: 0, 1)."""
    out = {}
    for v in split.latent:
        kind = declared.get(v)
        if kind in ("binary", "categorical") and v in levels:
            out[v] = Variable("binary" if len(levels[v]) == 2 else "categorical", tuple(levels[v]))
        elif kind == "binary":
            out[v] = Variable("binary", ("0", "1"))
    return out


def _missing_tokens(missing: Sequence[str] | str) -> tuple[frozenset[str], np.ndarray]:
    """The missing tokens (the defaults and a user's), stripped and case-folded, and those that are
    finite numbers as numbers.
    """
    if isinstance(missing, str):
        missing = missing.split(",")
    tokens = frozenset(str(t).strip().casefold() for t in (*MISSING_TOKENS, *missing))
    numbers = pd.to_numeric(pd.Series(sorted(tokens), dtype=object), errors="coerce").to_numpy(np.float64)
    return tokens, numbers[np.isfinite(numbers)]


#: The fraction-missing notice names at most this many columns.
MISSING_SHOWN = 12


def _check_holes(
    where: str, observed: Sequence[str], holes: np.ndarray, row, hint: dict, training: bool
) -> dict[str, float]:
    """Refuses rows with every cell missing, and in training columns with every cell missing (a
    fitted model reads them as holes); the fraction missing per column with holes.
    """
    empty = [c for c, e in zip(observed, holes.all(0), strict=True) if e]
    if empty and training:
        what = (
            f"columns {preview([repr(c) for c in empty])} have"
            if len(empty) > 1
            else f"column {empty[0]!r} has"
        )
        their = "their nodes" if len(empty) > 1 else "its node"
        raise DataError(
            f"{where}{what} every cell missing: declare {their} latent ({hint['latent']}) or drop "
            f"the column{'s' if len(empty) > 1 else ''}"
        )
    blank = np.nonzero(holes.all(1))[0]
    if len(blank):
        more = f" (and {len(blank) - 1} more such rows)" if len(blank) > 1 else ""
        raise DataError(
            f"{where}{row(int(blank[0]))} has every observed cell missing{more}: it holds no data; "
            "drop the row"
        )
    share = holes.mean(0)
    return {c: float(f) for c, f in zip(observed, share, strict=True) if f > 0}


def _percent(fraction: float) -> str:
    p = 100 * fraction
    return f"{p:.1f}%" if p >= 0.1 else f"{p:.2g}%"


def _missing_notice(fractions: dict[str, float], rows: int) -> str:
    """One line: the fraction missing per column with holes, and the assumption made about them."""
    shown = [f"{c} {_percent(f)}" for c, f in list(fractions.items())[:MISSING_SHOWN]]
    if len(fractions) > MISSING_SHOWN:
        shown.append(f"and {len(fractions) - MISSING_SHOWN} more columns")
    return (
        f"missing cells: {', '.join(shown)} (of {rows} rows); they are treated as missing at random "
        "(ignorable)"
    )


def _numbers(
    column: pd.Series, tokens: tuple[frozenset[str], np.ndarray], allow_missing: bool, hint: dict
) -> tuple[np.ndarray, np.ndarray, tuple[int, str] | None]:
    """A column's cells as float64, which of them are missing (see :func:`_missing_tokens`), and the
    position and description of the first cell that is neither a finite number nor (with
    ``allow_missing``) missing (``None`` if there is none).
    """
    words, numbers = tokens
    if column.dtype == object:
        column = column.map(lambda c: c.strip() if isinstance(c, str) else c)
    num = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    holes = column.isna().to_numpy(dtype=bool, copy=True)
    if column.dtype == object or pd.api.types.is_string_dtype(column.dtype):
        text = column.map(lambda c: c.strip().casefold() if isinstance(c, str) else None)
        holes |= np.asarray(text.isin(words), dtype=bool)
    if len(numbers):
        holes |= np.isin(num, numbers)
    bad = ~np.isfinite(num) & ~holes
    if not allow_missing:
        bad |= holes
    if not bad.any():
        return num, holes, None
    i = int(np.argmax(bad))
    raw = column.iloc[i]
    if isinstance(raw, str) and np.isfinite(num[i]):  # a number that is a missing token
        what = f"value {raw!r}"
    elif isinstance(raw, str):
        kind = "non-numeric" if np.isnan(num[i]) and raw.lower() != "nan" else "non-finite"
        what = f"{kind} value {'empty' if raw == '' else repr(raw)}"
    elif pd.isna(raw):
        what = "missing (NaN) value"
    elif holes[i]:
        what = f"value {raw}"
    else:
        what = f"{'non-finite' if np.isinf(num[i]) else 'non-numeric'} value {raw}"
    if holes[i] and not what.startswith("missing"):
        what = f"missing cell {'(empty)' if raw == '' else repr(raw) if isinstance(raw, str) else raw}"
    if holes[i] and holes.sum() > 1:
        what += f" ({int(holes.sum())} missing cells in this column)"
    elif bad.sum() > 1:
        what += f" ({int(bad.sum())} bad cells in this column)"
    if holes[i]:
        what += f"; {hint['complete']}"
    elif isinstance(raw, str) and (written := number_format(raw)):
        what += f", which {written}"
    elif allow_missing and isinstance(raw, str) and raw and np.isnan(num[i]):  # text, not a number
        what += f"; if it marks a missing cell, pass {hint['missing'](raw)}"
    return num, holes, (i, what)


def _stated(column: pd.Series, kind: str | None, levels: Mapping | None) -> tuple[str | None, list | None]:
    """A column's declared type and levels; a pandas categorical of more than 2 categories states
    both (its categories, in their order), unless the user or the graph said otherwise.
    """
    given = (levels or {}).get(column.name)
    if given is None and kind in (None, "categorical") and isinstance(column.dtype, pd.CategoricalDtype):
        if len(categories := [str(c) for c in column.cat.categories]) > 2:
            return "categorical", categories
    return kind, given


def _blank_columns(df: pd.DataFrame, columns: Sequence[str], missing: Sequence[str] | str, hint) -> list[str]:
    """The columns without a single value (every cell missing, by :func:`_numbers`' rule)."""
    tokens = _missing_tokens(missing)
    return [c for c in columns if _numbers(df[c], tokens, True, hint)[1].all()]


def _inferred_split(
    where: str, graph: BayesianNetwork, used: Sequence[str], hint: dict, blank: Sequence[str] = ()
) -> LatentSplit:
    """The split whose latent nodes are the graph's nodes without a column."""
    unseen = [v for v in graph.nodes if v not in set(used)]
    if not unseen:
        empty = ""
        if blank:
            cli = hint["latent"].startswith("--")
            given = f"--latent {','.join(blank)}" if cli else f"latent={list(blank)!r}"
            empty = (
                f"; column(s) {preview(blank)} have no value at all: if their nodes are hidden, pass {given}"
            )
        raise DataError(
            f"{where}every node of the graph has a column, so none is latent; name the latent "
            f"nodes ({hint['latent']}) or drop their columns{empty}"
        )
    try:
        return LatentSplit(graph, unseen)
    except GraphError as e:
        raise DataError(f"{where}{e}") from None


def _check_training_columns(where: str, columns: Sequence[str], values: np.ndarray, hint: dict) -> None:
    """Refuses numeric columns a model cannot learn from, each judged on its present cells (not NaN)."""
    constant, scarce = [], []
    for j, c in enumerate(columns):
        col = values[:, j]
        col = col[~np.isnan(col)]
        if len(col) < 2:
            scarce.append(f"{c!r} ({len(col)} present of {len(values)})")
            continue
        distinct = np.unique(col)
        mean, sd = float(col.mean()), float(col.std(ddof=1))
        if len(distinct) < 2 or sd < 1e-8 * (1 + abs(mean)):
            constant.append(f"{c!r} (sd {sd:.3g} around {mean:.6g})")
    if scarce:
        raise DataError(
            f"{where}column(s) {', '.join(scarce)} have fewer than 2 present cells: too few to learn "
            f"from; declare the node(s) latent ({hint['latent']}) or drop the column(s)"
        )
    if constant:
        raise DataError(
            f"{where}constant or near-constant column(s) {', '.join(constant)}: nothing to learn and "
            "an unbounded likelihood; drop them from the data (their nodes then become latent) or "
            "check the data"
        )


def _ignored(where: str, columns: Sequence[str], names: Sequence[str]) -> set[str]:
    """The columns the user asked to skip; each must exist."""
    for name in names:
        if name not in columns:
            raise DataError(f"{where}no column {name!r} to ignore; the columns are {preview(columns)}")
    return set(names)


#: A misnamed column suggests at most this many renamings.
MAX_SUGGESTIONS = 5


def _check_columns(
    where: str,
    graph: BayesianNetwork,
    split: LatentSplit | None,
    used: list,
    hint: dict,
    training: bool,
    allow_missing: bool,
) -> list[str]:
    """Every used column names a node, and every observed node has a column (with suggestions);
    outside training, with ``allow_missing``, the observed nodes without a column are returned
    instead (they are read as missing cells).
    """
    unknown = [c for c in used if c not in graph]
    present = set(used)
    if split is None:
        without = [v for v in graph.nodes if v not in present]
    else:
        without = [v for v in split.observed if v not in present]
        latent = [c for c in used if c in split.latent]
        if latent:
            raise DataError(
                f"{where}column(s) {', '.join(latent)} are latent nodes; drop them, leave them out of "
                f"{hint['latent']}, or pass {hint['ignore'](latent)}"
            )
    pairs = [(c, v) for v, c in near_pairs(without, unknown, 2)]
    if pairs:
        c, v = pairs[0]
        also = "".join(f"; and column {c2!r} node {v2!r}?" for c2, v2 in pairs[1:MAX_SUGGESTIONS])
        if len(pairs) > MAX_SUGGESTIONS:
            also += f" ({len(pairs) - MAX_SUGGESTIONS} more alike)"
        raise DataError(
            f"{where}column {c!r} matches no node of the graph and node {v!r} has no column: is column "
            f"{c!r} node {v!r}?{also} Rename the column or the node so that they agree"
        )
    if unknown:
        raise DataError(
            f"{where}column {unknown[0]!r} matches no node of the graph"
            f"{f' (nor do {len(unknown) - 1} more)' if len(unknown) > 1 else ''}; nodes are "
            f"{preview(graph.nodes)}; drop the column(s) or pass {hint['ignore'](unknown)}{hint['id']}"
            + (
                f" (an edge list names a node without edges in a row of its own: ,{unknown[0]})"
                if getattr(graph, "from_edge_list", False)
                else ""
            )
        )
    if split is not None and without and (training or not allow_missing):
        also = f", or add them to the latent nodes ({hint['latent']})" if training else ""
        raise DataError(
            f"{where}observed node(s) without a column: {', '.join(without)}; add the column(s){also}"
        )
    return without if split is not None else []


#: How drawn values are written: 8 significant digits, what a float32 model computes (``74.385994``,
#: not ``74.38599395751953``).
DRAWN_FORMAT = "%.8g"


def write_csv(
    path: str | Path | IO[str],
    columns: Sequence[str],
    values: Tensor | np.ndarray,
    float_format: str | None = None,
    **extra,
) -> None:
    """Writes a table with named columns (extra columns, e.g. ``row=...``, come first) to a file
    or an open text stream.
    """
    data = dict(extra)
    arr = values.detach().cpu().numpy() if isinstance(values, Tensor) else np.asarray(values)
    for j, c in enumerate(columns):
        data[c] = arr[:, j]
    pd.DataFrame(data).to_csv(path, index=False, float_format=float_format)

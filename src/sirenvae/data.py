"""Tables and tensors: latent rules, seeded splits of the shipped networks, CSV reading with validation.

Data are kept on their raw scale. Observed columns are always in the graph's topological order.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from sirenvae.graph import BayesianNetwork, GraphError, LatentSplit
from sirenvae.networks import ArithmeticCircuit, LinearGaussianNetwork

__all__ = [
    "LATENT_RULES",
    "DataError",
    "Splits",
    "default_latent_rule",
    "latent_split",
    "read_csv",
    "sample_splits",
    "write_csv",
]


class DataError(ValueError):
    """A data table is unusable; the message names the file, row and column."""


LATENT_RULES = {
    # SPEC section 5: ecoli70, arth150, magic-irri
    "leaves-observed": lambda g: [v for v in g.nodes if g.children(v)],
    # SPEC section 5: magic-niab
    "roots-and-leaves-observed": lambda g: [v for v in g.nodes if g.children(v) and g.parents(v)],
}

_DEFAULT_RULES = {
    "ecoli70": "leaves-observed",
    "arth150": "leaves-observed",
    "magic-irri": "leaves-observed",
    "magic-niab": "roots-and-leaves-observed",
}


def default_latent_rule(network: str) -> str | list[str]:
    """The latent rule of SPEC section 5 for a shipped network."""
    if network in ("arithmetic-circuit", "arithmetic_circuit"):
        return [f"z{i}" for i in range(6)]
    return _DEFAULT_RULES.get(network, "leaves-observed")


def latent_split(graph: BayesianNetwork, rule: str | Sequence[str]) -> LatentSplit:
    """The split of ``graph`` whose latent nodes follow a named rule (``leaves-observed``,
    ``roots-and-leaves-observed``) or an explicit list of node names (or a comma-separated string).
    """
    if isinstance(rule, str):
        if rule in LATENT_RULES:
            return LatentSplit(graph, LATENT_RULES[rule](graph))
        rule = [v.strip() for v in rule.split(",") if v.strip()]
    return LatentSplit(graph, rule)


#: Test rows are drawn from a generator seeded apart from every training seed.
TEST_SEED_OFFSET = 1_000_003


@dataclass(frozen=True)
class Splits:
    """Training and test rows of the observed nodes, drawn from a known network with a seed."""

    split: LatentSplit
    train: Tensor
    test: Tensor
    train_latent: Tensor
    test_latent: Tensor

    @property
    def observed(self) -> tuple[str, ...]:
        return self.split.observed

    @property
    def latent(self) -> tuple[str, ...]:
        return self.split.latent


def sample_splits(
    network: LinearGaussianNetwork | ArithmeticCircuit,
    split: LatentSplit,
    *,
    train_size: int,
    test_size: int = 2000,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> Splits:
    """Draws a training set and a fresh test set; the test set depends on ``seed`` only, so models
    trained on different training sizes with the same seed share it.
    """
    if split.graph != network.graph:
        raise GraphError("the split is of another graph than the network's")
    io, il = split.observed_index(), split.latent_index()
    train = network.sample(train_size, seed=2 * seed)
    test = network.sample(test_size, seed=2 * seed + 1 + TEST_SEED_OFFSET)
    return Splits(
        split,
        train[:, io].to(dtype),
        test[:, io].to(dtype),
        train[:, il].to(dtype),
        test[:, il].to(dtype),
    )


def read_csv(
    path: str | Path,
    graph: BayesianNetwork | LatentSplit,
    *,
    min_rows: int = 1,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, LatentSplit]:
    """Reads observed data from a CSV file with a header of node names.

    Given a graph, its nodes without a column are the latent ones; given a split, every observed
    node needs a column. Returns ``(x, split)`` with ``x`` in topological order.

    Raises:
        DataError: Unknown or duplicate columns, missing observed columns, NaN, inf,
            non-numeric cells or values that overflow ``dtype`` (with row, file line and column),
            or fewer than ``min_rows`` rows.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file not found: {path}")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable CSV file ({e})") from None
    split = graph if isinstance(graph, LatentSplit) else None
    graph = graph.graph if isinstance(graph, LatentSplit) else graph
    with open(path, newline="") as f:
        header = next(csv.reader(f), [])
    columns = [c.strip() for c in header]
    seen: set[str] = set()
    for c in columns:
        if c in seen:
            raise DataError(f"{path}: column {c!r} appears twice")
        seen.add(c)
        if c not in graph:
            raise DataError(
                f"{path}: column {c!r} matches no node of the graph; "
                f"nodes are {', '.join(graph.nodes[:8])}{' ...' if len(graph) > 8 else ''}"
            )
    df.columns = columns
    if split is None:
        unseen = [v for v in graph.nodes if v not in seen]
        if not unseen:
            raise DataError(
                f"{path}: every node of the graph has a column, so none is latent; name the latent "
                "nodes (--latent) or drop their columns"
            )
        try:
            split = LatentSplit(graph, unseen)
        except GraphError as e:
            raise DataError(f"{path}: {e}") from None
    latent, observed = split.latent, split.observed
    missing = [v for v in observed if v not in seen]
    if missing:
        raise DataError(f"{path}: observed node(s) without a column: {', '.join(missing)}")
    extra = [c for c in columns if c in set(latent)]
    if extra:
        raise DataError(
            f"{path}: column(s) {', '.join(extra)} are latent nodes; drop them or leave them out of --latent"
        )
    if len(df) < min_rows:
        raise DataError(f"{path}: {len(df)} data row(s), at least {min_rows} needed")
    values = np.empty((len(df), len(observed)), dtype=np.float64)
    for j, v in enumerate(observed):
        raw = df[v].str.strip()
        num = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(num)
        if bad.any():
            i = int(np.argmax(bad))
            what = "empty" if raw.iloc[i] == "" else repr(raw.iloc[i])
            kind = "non-numeric" if np.isnan(num[i]) and raw.iloc[i].lower() not in ("nan",) else "non-finite"
            raise DataError(
                f"{path}: row {i + 1} (line {i + 2}), column {v!r}: {kind} value {what}"
                f"{f' ({int(bad.sum())} bad cells in this column)' if bad.sum() > 1 else ''}"
            )
        values[:, j] = num
    x = torch.from_numpy(values).to(dtype)
    _check_overflow(path, observed, values, x, dtype)
    return x, split


def _check_overflow(path: Path, columns: Sequence[str], values: np.ndarray, x: Tensor, dtype) -> None:
    """Names the first cell that is finite as read but not in the working ``dtype``."""
    over = ~torch.isfinite(x).numpy()
    if over.any():
        i, j = (int(k[0]) for k in np.nonzero(over))
        name = str(dtype).removeprefix("torch.")
        more = f" ({int(over.sum())} such cells)" if over.sum() > 1 else ""
        raise DataError(
            f"{path}: row {i + 1} (line {i + 2}), column {columns[j]!r}: {values[i, j]:g} overflows {name} "
            f"(largest magnitude {torch.finfo(dtype).max:.3g}){more}; "
            "rescale the column (e.g. a log transform of positive data)"
        )


def write_csv(path: str | Path, columns: Sequence[str], values: Tensor | np.ndarray, **extra) -> None:
    """Writes a table with named columns (extra columns, e.g. ``row=...``, come first)."""
    data = dict(extra)
    arr = values.detach().cpu().numpy() if isinstance(values, Tensor) else np.asarray(values)
    for j, c in enumerate(columns):
        data[c] = arr[:, j]
    pd.DataFrame(data).to_csv(path, index=False)

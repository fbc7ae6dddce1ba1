r"""The type and levels of every observed column: inferred from the training rows, stated by the user,
recorded with the model, and applied to every table read afterwards (labels in, labels out).

Inference, each with a notice (never silently Gaussian, never silently categorical):

- a bool column, or one with exactly 2 distinct values, is ``binary``;
- a pandas categorical of more than 2 categories is ``categorical`` with its categories as levels,
  in their order;
- a text column is ``categorical`` (``binary`` with 2 levels); one whose every cell differs (10 or
  more rows) looks like row IDs and is refused (``--id-column``);
- integers with at most :data:`FEW_INTEGERS` distinct values stay continuous, with a notice
  suggesting ``--types x=count`` or ``x=categorical``; so do more whole numbers from 0 (``count``);
- a positive, right-skewed column that the log makes less skewed stays continuous, with a notice
  suggesting ``--types x=lognormal``;
- anything else numeric is continuous.

Levels are fixed before any fold or fit: declared ones where given (a graph file's ``"levels"``),
else the sorted training levels (numbers by value, text case-insensitively; a label's commonest
spelling is kept). Bernoulli's 1 is the larger of two numbers, or the level that reads as true (``yes``,
``true``, ...; see :data:`TRUE_WORDS`), else the later of the two sorted levels. A level of a
categorical node that training did not see gets the small probability
:data:`sirenvae.models.likelihoods.UNSEEN`, with a notice (``strict`` refuses it); a binary node's
third level is an error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "KINDS",
    "Variable",
    "VariableError",
    "decode",
    "encode",
    "infer_variable",
    "model_types",
    "negative_notice",
    "nonnegative_columns",
    "number_format",
    "parse_types",
]

#: The words of ``--types`` (and a graph file's ``"type"``) and the kind each means.
KINDS: dict[str, str] = {
    "continuous": "continuous",
    "normal": "normal",
    "gaussian": "normal",
    "studentt": "studentt",
    "binary": "binary",
    "bool": "binary",
    "categorical": "categorical",
    "category": "categorical",
    "count": "negbin",
    "negbin": "negbin",
    "poisson": "poisson",
    "lognormal": "lognormal",
    "positive": "lognormal",
}
#: Integer columns with at most this many distinct values get a notice suggesting ``--types``.
FEW_INTEGERS = 10
#: A positive column gets a notice suggesting ``lognormal`` when its skewness is above this and
#: the log makes it less skewed (a normal sample of 30 rows exceeds 1 about once in 100).
SKEWED = 1.0
#: A continuous column with one value in at least this share of its cells gets a notice: a density
#: is rewarded without bound for a spike there, which then dominates the likelihood.
SPIKE_SHARE = 0.25
#: A number with a decimal comma, ``-3,25``, or thousands separators, ``45,000.5`` (or a whole
#: number beside such cells).
_COMMA_NUMBER = re.compile(r"[+-]?\d+(,\d+)*(\.\d+)?")
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d+)?")
_DECIMAL_COMMA = re.compile(r"[+-]?\d*,\d+")
#: A text column whose every cell differs is refused as row IDs from this many rows on.
ID_ROWS = 10
#: Levels that read as true: a binary column's 1, compared case-insensitively.
TRUE_WORDS = frozenset({"true", "t", "yes", "y", "positive", "pos", "present", "on", "high"})
#: The label written for a level unseen in training.
UNSEEN_LABEL = "<unseen>"


def number_format(raw: str) -> str | None:
    """Why a cell that is not a number looks like one, as a hint; ``None`` if it does not
    (``'45,000'``: thousands separators; ``'12,5'``: a decimal comma).
    """
    raw = raw.strip()
    if _THOUSANDS.fullmatch(raw):
        return (
            "looks like a number with thousands separators (or a decimal comma): write the column's "
            "numbers without separators, with a decimal point"
        )
    if _DECIMAL_COMMA.fullmatch(raw):
        return "looks like a number with a decimal comma: write the column's numbers with a decimal point"
    return None


class VariableError(ValueError):
    """A column's type or levels do not fit its cells (raised as the data layer's error)."""


@dataclass(frozen=True)
class Variable:
    """An observed column's kind and, for a binary or categorical one, its levels in code order."""

    kind: str = "continuous"
    levels: tuple[str, ...] = ()
    numeric: bool = False  # levels are numbers, matched by value
    strict: bool = False  # a level unseen in training is an error, not a small probability
    boolean: bool = False  # read from a bool column: written back as bools

    @property
    def family(self) -> str | None:
        """Its observation family's key in ``ModelConfig.types`` (``None``: the model's continuous one)."""
        if self.kind == "continuous":
            return None
        if self.kind == "categorical":
            return f"categorical:{len(self.levels)}"
        return self.kind

    @property
    def labelled(self) -> bool:
        return self.kind in ("binary", "categorical")

    def to_dict(self) -> dict:
        out: dict = {"type": self.kind}
        if self.labelled:
            out["levels"] = list(self.levels)
            out["numeric"] = self.numeric
        if self.strict:
            out["strict"] = True
        if self.boolean:
            out["boolean"] = True
        return out

    @classmethod
    def from_dict(cls, d: Mapping) -> Variable:
        levels = tuple(map(str, d.get("levels", ())))
        kind, numeric, strict = (
            str(d.get("type", "continuous")),
            bool(d.get("numeric")),
            bool(d.get("strict")),
        )
        return cls(kind, levels, numeric, strict, bool(d.get("boolean")))


def nonnegative_columns(x: np.ndarray, names: Sequence[str], variables: Mapping[str, Variable]) -> dict:
    """The continuous columns whose training cells are all >= 0, each with ``{"min", "whole",
    "skewed"}`` (its smallest value, whether every cell is a whole number, whether it looks
    log-normal): recorded with the model, so that samples below 0 can be pointed out
    (:func:`negative_notice`).
    """
    out = {}
    for j, name in enumerate(names):
        v = x[:, j][np.isfinite(x[:, j])]
        continuous = name not in variables or variables[name].kind == "continuous"
        if continuous and len(v) and v.min() >= 0:
            whole, skewed = bool(np.all(v == np.round(v))), _log_normal_skews(v) is not None
            out[name] = {"min": float(v.min()), "whole": whole, "skewed": skewed}
    return out


def negative_notice(
    columns: Mapping[str, Mapping], values: Mapping[str, np.ndarray], types_hint=lambda fix: f"--types {fix}"
) -> str | None:
    """A notice where samples of :func:`nonnegative_columns` fall below 0 (the continuous families are
    unbounded: a log-normal keeps amounts positive, a count family counts), else ``None``.
    """
    shares = {c: float(np.mean(np.asarray(values[c], dtype=float) < 0)) for c in columns if c in values}
    shares = {c: share for c, share in shares.items() if share > 0}
    if not shares:
        return None
    count = {c for c in shares if columns[c]["whole"] and columns[c]["min"] == 0}
    fits = {
        c: "count" if c in count else "lognormal" for c in shares if c in count or columns[c].get("skewed")
    }
    said = ", ".join(f"{c!r} in {share:.1%}" for c, share in shares.items())
    fix = types_hint(",".join(f"{c}={kind}" for c, kind in fits.items())) if fits else ""
    return (
        f"samples below 0 of column(s) whose training values are all >= 0: {said}; they are modelled "
        "with unbounded continuous noise" + (f" (refit with {fix} if that is what they are)" if fix else "")
    )


def recorded(meta: Mapping) -> dict[str, Variable]:
    """The variables a run's metadata records (``{}`` for a run written before types: all continuous)."""
    return {v: Variable.from_dict(d) for v, d in (meta.get("variables") or {}).items()}


def parse_types(given: str | Mapping[str, str] | None, flag: str = "--types") -> dict[str, str]:
    """``a=binary,b=count`` (or a mapping) as ``{node: kind}``, each word one of :data:`KINDS`."""
    if not given:
        return {}
    if isinstance(given, str):
        items = {}
        for part in (p.strip() for p in given.split(",") if p.strip()):
            name, eq, word = part.partition("=")
            if not eq or not name.strip() or not word.strip():
                raise ValueError(
                    f"{flag}: expected name=type, got {part!r} (e.g. {flag} smoker=binary,visits=count)"
                )
            items[name.strip()] = word.strip()
        given = items
    out = {}
    for name, word in given.items():
        kind = KINDS.get(str(word).strip().casefold())
        if kind is None:
            raise ValueError(f"{flag}: unknown type {word!r} for {name!r}; choose one of {', '.join(KINDS)}")
        out[str(name)] = kind
    return out


def model_types(variables: Mapping[str, Variable]) -> dict[str, str]:
    """``ModelConfig.types``: the family of every column that is not plain continuous."""
    return {v: var.family for v, var in variables.items() if var.family is not None}


def _sorted_levels(labels: Sequence[str], numeric: bool) -> list[str]:
    if numeric:
        return sorted(labels, key=float)
    return sorted(labels, key=lambda s: (s.casefold(), s))


def _as_label(value: float) -> str:
    return f"{value + 0.0:g}" if np.isfinite(value) else str(value)  # + 0.0: -0 is 0


def _binary_order(levels: list[str], numeric: bool) -> list[str]:
    """The two levels as ``[0, 1]``: 1 is the one that reads as true, else the later sorted one."""
    levels = _sorted_levels(levels, numeric)
    truthy = [] if numeric else [lv for lv in levels if lv.casefold() in TRUE_WORDS]
    if len(truthy) == 1:
        return [lv for lv in levels if lv != truthy[0]] + truthy
    return levels


def infer_variable(
    name: str,
    cells: pd.Series,
    holes: np.ndarray,
    declared: str | None,
    declared_levels: Sequence[str] | None,
    hint: Mapping,
) -> tuple[Variable, str | None]:
    """The variable of training column ``name`` (cells as given, ``holes`` its missing cells) and a
    notice about how it was decided (``None`` when there is nothing to say), which also names the
    labels that differ in case alone and are read as one level.
    """
    present = cells[~holes]
    if not len(present):
        return Variable(KINDS.get(declared or "continuous", "continuous")), None  # the hole checks refuse it
    boolean = pd.api.types.is_bool_dtype(cells.dtype)
    if boolean and declared is None:
        declared = "binary"
    text = present.map(lambda c: c.strip() if isinstance(c, str) else str(c) if boolean else c)
    nums = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    numeric = bool(len(nums)) and bool(np.isfinite(nums).all())
    cased = None
    if numeric:
        labels = sorted({_as_label(v) for v in nums}, key=float)
    else:
        spellings: dict[str, dict[str, int]] = {}  # each level's spellings and their counts, in order seen
        for c in text:
            seen = spellings.setdefault(str(c).casefold(), {})
            seen[str(c)] = seen.get(str(c), 0) + 1
        labels = [max(v, key=v.get) for v in spellings.values()]  # the commonest (the first of a tie)
        cased = _case_notice(name, [sorted(v) for v in spellings.values() if len(v) > 1])
    if declared_levels:
        levels = [str(v) for v in declared_levels]
        numeric = numeric and all(_is_number(v) for v in levels)
        _check_declared(name, text, labels, levels, numeric)
    else:
        levels = _sorted_levels(labels, numeric)
    kind = declared
    notice = None
    if kind is None:
        some_text = not numeric and bool(np.isfinite(nums).any())
        if some_text:  # numbers with stray words: encoding names the first one
            return Variable("continuous"), None
        if len(labels) == 2:
            kind = "binary"
            levels = _binary_order(levels, numeric)
            notice = binary_notice(name, levels[1], hint)
        elif not numeric:
            if len(labels) > FEW_INTEGERS and all(_COMMA_NUMBER.fullmatch(str(c)) for c in text):
                commas = [str(c) for c in text if "," in str(c)]
                if all(_THOUSANDS.fullmatch(c) for c in commas):
                    raise VariableError(
                        f"column {name!r} holds numbers written with thousands separators ({commas[0]!r}): "
                        "write them without (in pandas: pd.read_csv(path, thousands=',') reads them), or "
                        f"pass {hint['types'](name, 'categorical')} if they are labels"
                    )
                raise VariableError(
                    f"column {name!r} holds numbers written with a decimal comma ({commas[0]!r}): write them "
                    "with a decimal point (in pandas: pd.read_csv(path, sep=';', decimal=',') reads them), "
                    f"or pass {hint['types'](name, 'categorical')} if they are labels"
                )
            if len(labels) == len(text) >= ID_ROWS:
                raise VariableError(
                    f"column {name!r} is text with a different value in every row, like row IDs: pass "
                    f"{hint['id_column'](name)} (or {hint['types'](name, 'categorical')} if it is a category)"
                )
            kind = "categorical"
            notice = f"column {name!r} is text: modelled as categorical with {len(levels)} levels"
        else:
            whole = np.all(nums == np.round(nums))
            if whole and len(labels) <= FEW_INTEGERS:
                notice = (
                    f"column {name!r} has {len(labels)} distinct integers: modelled as continuous; pass "
                    f"{hint['types'](name, 'count')} or {hint['types'](name, 'categorical')} if it is one"
                )
            elif whole and nums.min() == 0:  # zeros: a count, never log-normal
                notice = (
                    f"column {name!r} holds only whole numbers >= 0 ({len(labels)} distinct): modelled as "
                    f"continuous; pass {hint['types'](name, 'count')} if it counts something"
                )
            elif (spike := _spike(nums)) is not None:
                notice = (
                    f"column {name!r} holds {_as_label(spike[0])} in {spike[1]:.0%} of its cells: a density "
                    "puts a spike there and its likelihood can dominate the NLL of every model; drop the "
                    "column (its node becomes latent), or pass "
                    f"{hint['types'](name, 'categorical')} if it takes few values"
                )
            elif (skews := _log_normal_skews(nums)) is not None:  # amounts, whole or not (dollars)
                notice = (
                    f"column {name!r} is positive and right-skewed (skewness {skews[0]:.1f}, "
                    f"{skews[1]:.1f} on the log scale): modelled as normal; pass "
                    f"{hint['types'](name, 'lognormal')} if it cannot be negative"
                )
            return Variable("continuous"), notice
    if kind == "binary":
        if len(levels) != 2:
            shown = ", ".join(repr(v) for v in levels[:6])
            raise VariableError(f"column {name!r} is declared binary but has {len(levels)} levels ({shown})")
        if not declared_levels and notice is None:
            levels = _binary_order(levels, numeric)
        boolean = boolean and sorted(levels) == ["False", "True"]
        cased = None if numeric or boolean else cased
        return Variable("binary", tuple(levels), numeric, boolean=boolean), _joined(notice, cased)
    if kind == "categorical":
        if len(levels) < 2:
            raise VariableError(
                f"column {name!r} has a single level {levels[0]!r}: nothing to learn; drop it"
            )
        return Variable("categorical", tuple(levels), numeric), _joined(notice, None if numeric else cased)
    return Variable(kind), notice


def binary_notice(name: str, one: str, hint: Mapping) -> str:
    """The notice of a column found to be binary, ``one`` the level read as 1."""
    return (
        f"column {name!r} has 2 distinct values: modelled as binary, 1 = {one!r} "
        f"(pass {hint['types'](name, 'normal')} to fit it as continuous)"
    )


#: More columns found to be binary than this get one notice for all (:func:`binary_notices`).
BINARY_NOTICES = 3


def binary_notices(found: Mapping[str, str], hint: Mapping) -> str:
    """One notice for many columns found to be binary (``found``: each one's level read as 1),
    grouped by that level.
    """
    by_one: dict[str, list[str]] = {}
    for name, one in found.items():
        by_one.setdefault(one, []).append(name)
    groups = "; ".join(
        f"1 = {one!r} in {', '.join(names[:12])}{f' and {len(names) - 12} more' if len(names) > 12 else ''}"
        for one, names in by_one.items()
    )
    return (
        f"{len(found)} columns have 2 distinct values: modelled as binary ({groups}); pass "
        f"{hint['types']('NAME', 'normal')} to fit one as continuous"
    )


def _case_notice(name: str, merged: list[list[str]]) -> str | None:
    """The notice for labels that differ in case alone (each list one level's spellings), if any."""
    if not merged:
        return None
    shown = "; ".join(" and ".join(map(repr, m)) for m in merged[:3]) + ("; ..." if len(merged) > 3 else "")
    return f"column {name!r}: {shown} are read as one level (labels are compared regardless of case)"


def _check_declared(name: str, text: pd.Series, labels: list[str], levels: list[str], numeric: bool) -> None:
    """Training cells outside a graph's declared levels are an error: scored as unseen, they would
    be fitted at a fixed small probability and never sampled.
    """
    known = {v.casefold() for v in levels} | ({_as_label(float(v)) for v in levels} if numeric else set())
    outside = [v for v in labels if str(v).casefold() not in known]
    if not outside:
        return
    key = (lambda c: _as_label(float(c))) if numeric else (lambda c: str(c).casefold())
    folded = {str(v).casefold() for v in outside}
    cells = sum(key(c) in folded or key(c) in outside for c in text)
    shown = ", ".join(repr(v) for v in outside[:5]) + (", ..." if len(outside) > 5 else "")
    raise VariableError(
        f"column {name!r} holds {shown} ({cells} training cell(s)), not among the levels the graph "
        f'declares for it ({", ".join(map(repr, levels))}): add them to its "levels" or correct the cells'
    )


def _joined(*notices: str | None) -> str | None:
    return "; ".join(n for n in notices if n) or None


def _skewness(v: np.ndarray) -> float:
    d = v - v.mean()
    sd = np.sqrt(np.mean(d**2))
    return float(np.mean(d**3) / sd**3) if sd > 0 else 0.0


def _spike(v: np.ndarray) -> tuple[float, float] | None:
    """The most frequent value of ``v`` and its share, where that share is at least
    :data:`SPIKE_SHARE` (at least 10 values); ``None`` otherwise.
    """
    if len(v) < 10:
        return None
    values, counts = np.unique(v, return_counts=True)
    top = int(counts.argmax())
    share = counts[top] / len(v)
    return (float(values[top]), float(share)) if share >= SPIKE_SHARE else None


def _log_normal_skews(v: np.ndarray) -> tuple[float, float] | None:
    """The skewness of a column and of its log where it looks log-normal rather than normal (every
    value > 0, at least 10 rows, skewness above :data:`SKEWED`, less skewed in absolute value on the
    log scale); ``None`` otherwise.
    """
    if len(v) < 10 or v.min() <= 0:
        return None
    skew, log_skew = _skewness(v), _skewness(np.log(v))
    return (skew, log_skew) if skew > SKEWED and abs(log_skew) < skew else None


def _is_number(s) -> bool:
    try:
        return bool(np.isfinite(float(s)))
    except (TypeError, ValueError):
        return False


def encode(
    cells: pd.Series, holes: np.ndarray, var: Variable
) -> tuple[np.ndarray, tuple[int, str] | None, int]:
    """A labelled column's cells as codes (NaN at holes), the position and description of the first
    cell that is no level (``None`` if none), and the count of unseen levels coded ``len(levels)``
    (a categorical node, unless ``var.strict``).
    """
    out = np.full(len(cells), np.nan)
    text = cells.map(lambda c: c.strip() if isinstance(c, str) else c)
    if var.numeric:
        nums = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        lookup = {float(v): k for k, v in enumerate(var.levels)}
        keys = [
            None if h else (nums[i] if np.isfinite(nums[i]) else str(text.iloc[i]))
            for i, h in enumerate(holes)
        ]
    else:
        lookup = {v.casefold(): k for k, v in enumerate(var.levels)}
        if pd.api.types.is_bool_dtype(cells.dtype):
            keys = [None if h else str(bool(text.iloc[i])).casefold() for i, h in enumerate(holes)]
        else:
            keys = [None if h else str(text.iloc[i]).casefold() for i, h in enumerate(holes)]
    unseen = 0
    for i, key in enumerate(keys):
        if key is None:
            continue
        code = lookup.get(key)
        if code is None:
            if var.kind == "categorical" and not var.strict:
                out[i] = len(var.levels)
                unseen += 1
                continue
            shown = ", ".join(repr(v) for v in var.levels[:8])
            more = " (strict levels)" if var.kind == "categorical" else ""
            cell = text.iloc[i]
            cell = f"{float(cell):g}" if not isinstance(cell, str) and _is_number(cell) else repr(cell)
            return out, (i, f"value {cell} is not a level of this {var.kind} column{more}: {shown}"), 0
        out[i] = code
    return out, None, unseen


#: The families whose values have a bounded support, and what a value outside it is not.
SUPPORT = {
    "poisson": "is not a count (a non-negative integer)",
    "negbin": "is not a count (a non-negative integer)",
    "lognormal": "is not positive (a log-normal column)",
}


def outside_support(kind: str, values: np.ndarray | float) -> np.ndarray:
    """Where ``values`` (an array or a number) lie outside the support of family ``kind``: counts are
    non-negative integers, log-normal values positive (NaN and infinities are outside both); all
    ``False`` for the other families.
    """
    values = np.asarray(values, dtype=np.float64)
    if kind in ("poisson", "negbin"):
        return ~(np.isfinite(values) & (values >= 0) & (values == np.round(values)))
    if kind == "lognormal":
        return ~(np.isfinite(values) & (values > 0))
    return np.zeros(values.shape, dtype=bool)


def check_values(values: np.ndarray, holes: np.ndarray, var: Variable) -> tuple[int, str] | None:
    """The first present value outside a count's or a positive column's domain, with its description."""
    if var.kind not in SUPPORT:
        return None
    bad = ~holes & outside_support(var.kind, values)
    what = SUPPORT[var.kind]
    if not bad.any():
        return None
    i = int(np.argmax(bad))
    more = f" ({int(bad.sum())} such cells)" if bad.sum() > 1 else ""
    return i, f"{values[i]:g} {what}{more}"


def decode(values: np.ndarray, var: Variable) -> list | np.ndarray:
    """Codes (or numbers) as a column to write: labels for a labelled column, integers for counts."""
    if var.labelled:
        labels = list(var.levels) + [UNSEEN_LABEL]
        if var.boolean:
            labels = [lv == "True" for lv in var.levels] + [UNSEEN_LABEL]
        top = len(labels) - 1
        return [None if np.isnan(v) else labels[min(max(int(round(v)), 0), top)] for v in values]
    if var.kind in ("poisson", "negbin"):
        return pd.array([None if np.isnan(v) else int(round(v)) for v in values], dtype="Int64")
    return values


def decoder_frame(
    columns: Sequence[str],
    values: np.ndarray,
    variables: Mapping[str, Variable],
    given: Mapping[str, Sequence] | None = None,
    repeat: int = 1,
) -> dict:
    """Columns of ``values`` ``(rows, columns)`` with each labelled or count column decoded; with
    ``given`` (:attr:`sirenvae.data.Table.labels`), a column's present cells as given (each row
    ``repeat`` times, as in a long table of draws).
    """
    out = _decoded(columns, values, variables)
    for c, cells in (given or {}).items():
        if c in out:
            col = np.array(list(out[c]), dtype=object)
            kept = np.array(cells, dtype=object).repeat(repeat)
            present = np.not_equal(kept, None)
            col[present] = kept[present]
            out[c] = list(col)
    return out


def _decoded(columns: Sequence[str], values: np.ndarray, variables: Mapping[str, Variable]) -> dict:
    return {
        c: decode(values[:, j], variables[c]) if c in variables else values[:, j]
        for j, c in enumerate(columns)
    }

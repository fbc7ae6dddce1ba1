r"""Does the graph help on these rows? Held-out likelihood by nested cross-validation.

Choosing among many candidates biases the winner's cross-validated score downwards, and the more
candidates a model has, the more; a comparison of models therefore scores each one on rows that no
choice of its settings has seen. :func:`compare` cuts the rows into ``k`` outer folds
(:func:`~sirenvae.selection.fold_indices`, ``k`` by :func:`~sirenvae.selection.default_folds`) and,
for each outer fold and each deep model,

1. chooses the model's settings by :func:`~sirenvae.selection.select` on the outer training rows
   only (its own inner folds),
2. refits the chosen configuration on all outer training rows
   (:func:`~sirenvae.pipeline.train_model`, the same training settings), and
3. scores each held-out row by its IWAE NLL (:math:`K = 100`).

Factor analysis and Ledoit-Wolf (on rows with missing cells, a Gaussian fitted by EM, which scores
the present cells) are fitted on each outer training part and scored on its held-out part too.
Every row then has one out-of-fold NLL :math:`\ell_{m,i}` per model :math:`m`; the table gives
each model's mean and standard error, and the difference from ``true`` with the standard error of
the per-row paired differences :math:`d_i = \ell_{m,i} - \ell_{\mathrm{true},i}`,

.. math::
    \mathrm{se}(\bar d) = \frac{\mathrm{sd}(d_1, \dots, d_n)}{\sqrt n},

much smaller than either model's own standard error when both find the same rows hard.

Which models use the graph: ``true``, ``fc`` and ``ind`` (:data:`USES_GRAPH`) all take the graph's
edges into observed nodes for their decoder; ``fc`` and ``ind`` relax only the edges among latents.
They count on the graph's side. ``vae``, ``vae-maf``, factor analysis and Ledoit-Wolf know nothing
of the graph; the sentence (:func:`verdict`) weighs ``true`` against the best of these, picked by
its mean out-of-fold NLL (a pick that slightly favours that side, so a reported gain is a cautious
one).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from sirenvae import selection
from sirenvae.flows import ConvergenceError
from sirenvae.graph import LatentSplit
from sirenvae.models.config import STRUCTURED, VARIANTS
from sirenvae.training import TrainingError

if TYPE_CHECKING:  # pandas is imported on use
    import pandas as pd

__all__ = [
    "CLASSICAL",
    "DEFAULT_MODELS",
    "USES_GRAPH",
    "Comparison",
    "ComparisonError",
    "check_models",
    "compare",
    "min_rows",
    "verdict",
]

logger = logging.getLogger(__name__)

#: The deep models compared by default.
DEFAULT_MODELS = ("true", "fc", "vae")
#: The classical models, always in the comparison (``em`` instead on rows with missing cells).
CLASSICAL = ("fa", "lw")
#: The models whose structure comes from the graph (the rest are "without it").
USES_GRAPH = STRUCTURED
#: Importance samples of the held-out IWAE NLL.
IMPORTANCE_SAMPLES = 100
#: A difference is clear when it exceeds this many paired standard errors.
CLEAR_SE = 2.0
#: Names in the sentence and the picture.
LABELS = {"fa": "factor analysis", "lw": "Ledoit-Wolf", "em": "a Gaussian fitted by EM"}
FRAME_COLUMNS = ("model", "nll", "se", "diff_vs_true", "diff_se", "uses_graph", "settings")


class ComparisonError(ValueError):
    """The comparison cannot run on these rows or with these models."""


def min_rows(outer_folds: int, inner_folds: int | None = None) -> int:
    """The fewest rows nested cross-validation with ``outer_folds`` accepts: two held-out rows per outer
    fold, and in every outer training part :func:`selection.min_rows` of its inner ``k`` (default
    :func:`selection.default_folds`).
    """
    n = 2 * outer_folds
    while True:
        train = n - math.ceil(n / outer_folds)  # the smallest outer training part
        if train >= selection.min_rows(inner_folds or selection.default_folds(train)):
            return n
        n += 1


def verdict(gain: float, se: float, best: str, rows: int) -> str:
    """The answer in one sentence: ``gain`` is the best model without the graph (named ``best``) minus
    ``true`` in mean out-of-fold NLL, ``se`` its paired standard error; "improves" needs the gain to
    exceed :data:`CLEAR_SE` standard errors.
    """
    shown = f"{abs(gain):.3f} ± {se:.3f} nats per row"
    if gain > CLEAR_SE * se:
        return f"The graph improves held-out likelihood by {shown} over the best model without it ({best})."
    if gain < -CLEAR_SE * se:
        return (
            f"The graph does not improve held-out likelihood: the best model without it ({best}) is "
            f"better by {shown}, which may mean a wrong graph (missing or wrong edges, a wrong latent "
            "set) or a graph model too constrained for these rows."
        )
    return (
        f"The graph does not clearly improve held-out likelihood: {gain:+.3f} ± {se:.3f} nats per row "
        f"over the best model without it ({best}), within {CLEAR_SE:g} standard errors of zero, which "
        f"may mean too few rows to tell ({rows}) or a graph that adds little (or is wrong)."
    )


@dataclass
class Comparison:
    """The outcome of :func:`compare`.

    Attributes:
        models: The models compared, deep ones first, then ``fa`` and ``lw`` (``em`` on rows with
            missing cells).
        per_row: Each row's out-of-fold NLL, one column per model (NaN for a model that failed).
        outer_fold: Each row's outer fold (from 1).
        choices: One dict per outer fold and deep model: ``fold``, ``model``, ``chosen`` (the
            candidate), ``inner_cv_nll`` (its inner CV score, biased low), ``nll`` (the held-out mean).
        failed: Why a model has no score, by model.
        notices: Lines for the user (each failed model).
        seconds: Wall time.
    """

    models: tuple[str, ...]
    per_row: pd.DataFrame
    outer_fold: np.ndarray
    choices: list[dict] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return len(self.outer_fold)

    @property
    def folds(self) -> int:
        return int(self.outer_fold.max())

    def _scored(self) -> list[str]:
        return [m for m in self.models if m not in self.failed]

    def paired(self, model: str, against: str = "true") -> tuple[float, float]:
        """The mean per-row difference ``model - against`` in out-of-fold NLL and its standard error."""
        d = (self.per_row[model] - self.per_row[against]).to_numpy()
        return selection.mean_se(d)

    @property
    def best_without(self) -> str | None:
        """The best scored model that does not use the graph (lowest mean out-of-fold NLL)."""
        others = [m for m in self._scored() if m not in USES_GRAPH]
        return min(others, key=lambda m: self.per_row[m].mean()) if others else None

    @property
    def sentence(self) -> str:
        """:func:`verdict` of ``true`` against :attr:`best_without`."""
        if "true" in self.failed:
            return f"No answer: true has no held-out score ({self.failed['true']})."
        best = self.best_without
        if best is None:
            return "No answer: no model without the graph was scored."
        gain, se = self.paired(best)
        return verdict(gain, se, LABELS.get(best, best), self.rows) + self._rival()

    def _rival(self) -> str:
        """A sentence more where another graph variant beats ``true`` clearly (else nothing)."""
        rivals = [m for m in self.models if m in USES_GRAPH and m != "true" and m not in self.failed]
        clear = [(m, *self.paired(m)) for m in rivals]
        clear = [(m, -d, se) for m, d, se in clear if d < -CLEAR_SE * se]
        if not clear:
            return ""
        m, gain, se = max(clear, key=lambda c: c[1])
        what = {"fc": "its latents fully connected", "ind": "its latents independent"}.get(m, m)
        return (
            f" {m} (the graph with {what}) beats true by {gain:.3f} ± {se:.3f} nats per row: the graph's "
            "edges among the latent nodes may be too strict for these rows."
        )

    def frame(self):
        """One row per model: ``model``, ``nll`` (mean out-of-fold NLL), ``se``, ``diff_vs_true`` and
        ``diff_se`` (its paired standard error), ``uses_graph``, ``settings`` (chosen per fold).
        """
        import pandas as pd

        out = []
        for m in self.models:
            values = self.per_row[m].to_numpy()
            diff, diff_se = self.paired(m) if m != "true" else (0.0, 0.0)
            picks = [c["chosen"] for c in self.choices if c["model"] == m]
            counts = {p: picks.count(p) for p in picks}
            out.append(
                {
                    "model": m,
                    "nll": float(values.mean()),
                    "se": selection.mean_se(values)[1],
                    "diff_vs_true": diff,
                    "diff_se": diff_se,
                    "uses_graph": m in USES_GRAPH,
                    "settings": "; ".join(
                        f"{p} ({c})" for p, c in sorted(counts.items(), key=lambda pc: -pc[1])
                    ),
                }
            )
        return pd.DataFrame(out, columns=list(FRAME_COLUMNS))

    def figure(self, title: str = ""):
        """Two panels: each model's mean out-of-fold NLL with ±1 standard error, and its paired
        difference from ``true`` with ±2 paired standard errors around a zero line (the panel that
        answers the question: the models' own errors share the rows' spread, the paired ones do not).
        """
        return _figure(self, title)


def compare(
    split: LatentSplit,
    x: Tensor,
    *,
    models: Sequence[str] = DEFAULT_MODELS,
    outer_folds: int | None = None,
    fit_config,
    options,
    fixed: dict | None = None,
    search: dict | None = None,
    seed: int = 0,
    workers: int = 1,
    device: str | None = None,
    progress: Callable[[str], None] | None = None,
    summed: dict | None = None,
) -> Comparison:
    """Compares ``models`` on the rows ``x`` (observed nodes in topological order) of ``split`` by
    nested cross-validation (see the module's docstring).

    Arguments:
        models: Deep variants (``true`` among them); ``fa`` and ``lw`` are always added
            (``em``, a Gaussian by EM, instead on rows with missing cells).
        outer_folds: The outer ``k`` (default :func:`~sirenvae.selection.default_folds` of the rows).
        fit_config, options: The training of every fit (:class:`~sirenvae.training.FitConfig`,
            :class:`~sirenvae.pipeline.TrainOptions`); ``fixed`` holds model fields set in every
            candidate.
        search: :class:`~sirenvae.selection.SelectionSettings` fields of the inner searches
            (``folds``, ``max_candidates``, ...).
        seed: Seeds the outer and the inner folds.
        workers: Parallel fits of each inner search.
        progress: Receives a line per model and outer fold.
        summed: For ``true`` with hidden nodes summed out: its ``split``, rows ``x`` (the same rows,
            the summed nodes' columns NaN), ``fixed`` and ``fit_config``
            (:func:`sirenvae.api.summed_hidden`).
    """
    start = time.perf_counter()
    deep = check_models(models)
    classical = selection.classical_models(x)
    names = (*deep, *classical)
    if bool(x.isnan().any()) and "mask_inputs" not in (fixed or {}):  # holes: as fit does
        fixed = {**(fixed or {}), "mask_inputs": True}
    n = int(x.shape[0])
    k = outer_folds or selection.default_folds(n)
    search = {key: v for key, v in (search or {}).items() if v is not None}
    if k < 2:
        raise ComparisonError(f"outer_folds must be at least 2, got {k}")
    if n < min_rows(k, search.get("folds")):
        train = n - math.ceil(n / k)
        inner = search.get("folds") or selection.default_folds(train)
        raise ComparisonError(
            f"nested cross-validation with {k} outer folds needs at least {min_rows(k, search.get('folds'))} "
            f"rows, got {n}: each outer fold's training part needs {selection.min_rows(inner)} rows for "
            f"the inner {inner}-fold settings search (here {train}); give more rows"
        )
    own = {m: (split, x.detach().cpu(), fixed, fit_config) for m in deep}
    if summed is not None and "true" in own:  # its own rows, options and training
        extra = {"mask_inputs": True} if (fixed or {}).get("mask_inputs") else {}
        own["true"] = (
            summed["split"],
            summed["x"].detach().cpu(),
            extra | summed["fixed"],
            summed["fit_config"],
        )
    for m, (sp, _, fx, _) in own.items():  # options every candidate rejects: an error before training
        selection.resolve_candidates(m, fx, search.get("max_candidates"), latent=bool(sp.latent))
    settings = selection.SelectionSettings(
        **({"seed": seed, "workers": workers} | search | {"classical": False})
    )
    own = {m: (sp, xm, fx, replace(fc, progress=False)) for m, (sp, xm, fx, fc) in own.items()}
    parts = selection.fold_indices(n, k, seed)
    x = x.detach().cpu()
    nll = {m: np.full(n, np.nan) for m in names}
    result = Comparison(names, None, np.zeros(n, dtype=int))
    mixed = selection.non_gaussian((fixed or {}).get("types", {}))
    for m in classical if mixed else ():
        result.failed[m] = f"it is Gaussian, and the columns {', '.join(mixed[:6])} are of other families"
    for f, held in enumerate(parts):
        result.outer_fold[held] = f + 1
        mask = np.ones(n, dtype=bool)
        mask[held] = False
        train, test = x[torch.as_tensor(mask)], x[torch.as_tensor(held)]
        where = f"outer fold {f + 1}/{k} ({len(train)} training rows)"
        for m in deep:
            if m in result.failed:
                continue
            sp, xm, fx, fc = own[m]
            rows = (xm[torch.as_tensor(mask)], xm[torch.as_tensor(held)])
            try:
                pick, values = _deep_fold(sp, *rows, m, fx, fc, options, settings, device)
            except (selection.SelectionError, TrainingError, ConvergenceError, ArithmeticError) as e:
                result.failed[m] = f"{where}: {type(e).__name__}: {str(e).splitlines()[0]}"
                _say(progress, f"{m} failed: {result.failed[m]}")
                continue
            nll[m][held] = values
            result.choices.append(
                {"fold": f + 1, "model": m, "chosen": pick.chosen, "inner_cv_nll": _chosen_score(pick),
                 "nll": float(values.mean())}
            )  # fmt: skip
            _say(progress, f"{where}: {m} chose {pick.chosen}, held-out NLL {values.mean():.3f}")
        for m in classical:
            if m in result.failed:
                continue
            try:
                nll[m][held] = selection.classical_nll(m, train, test, seed)
            except Exception as e:  # noqa: BLE001 - a classical model is a reference, never a reason to stop
                result.failed[m] = f"{where}: {type(e).__name__}: {e}"
                continue
            _say(progress, f"{where}: {m} held-out NLL {nll[m][held].mean():.3f}")
        if f + 1 < k:  # the folds are alike in size, so the first ones tell the rest's time
            spent = time.perf_counter() - start
            left = spent * (k - f - 1) / (f + 1)
            _say(progress, f"outer fold {f + 1}/{k} done after {spent:.0f} s; about {left:.0f} s to go")
    import pandas as pd

    result.per_row = pd.DataFrame(nll, columns=list(names))
    result.per_row.index.name = "row"
    for m, why in result.failed.items():
        result.notices.append(f"{m} is left out of the verdict: {why}")
    for m in deep:
        picks = {c["chosen"] for c in result.choices if c["model"] == m}
        if len(picks) == 1 and sum(c["model"] == m for c in result.choices) == k:
            result.notices.append(
                f"{m} chose {picks.pop()} in every outer fold: its score is that candidate's plain "
                "cross-validated NLL (fit's, where the folds are the same), with no choice to pay for"
            )
    result.seconds = time.perf_counter() - start
    return result


_GRAPH_COLOUR, _OTHER_COLOUR = "#1f77b4", "#d95f02"


def _figure(result: Comparison, title: str):
    import textwrap

    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    frame = result.frame().dropna(subset=["nll"])
    frame = frame.iloc[::-1]  # the first model on top
    y = np.arange(len(frame))
    labels = [f"{m} ({LABELS[m]})" if m in LABELS else m for m in frame.model]
    colours = [_GRAPH_COLOUR if g else _OTHER_COLOUR for g in frame.uses_graph]
    fig = Figure(figsize=(9.0, 1.2 + 0.45 * len(frame)), layout="constrained")
    left, right = fig.subplots(1, 2, sharey=True)
    for ax, value, err, xlabel in (
        (left, frame.nll, frame.se, "mean out-of-fold NLL (nats per row), ±1 se"),
        (right, frame.diff_vs_true, CLEAR_SE * frame.diff_se, f"model − true, paired ±{CLEAR_SE:g} se"),
    ):
        for yi, v, e, c in zip(y, value, err, colours, strict=True):
            ax.errorbar([v], [yi], xerr=[e], fmt="o", color=c, ms=6, capsize=4, lw=1.4)
        ax.set_xlabel(xlabel, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    right.axvline(0.0, color="black", lw=0.9)
    lo, hi = right.get_xlim()
    pad = 0.08 * (hi - lo)
    right.set_xlim(min(lo, -pad), max(hi, pad))
    for x, text, ha in ((0.01, "← this model better", "left"), (0.99, "true better →", "right")):
        right.text(x, 1.01, text, transform=right.transAxes, ha=ha, va="bottom", fontsize=8, color="#555555")
    left.set_yticks(y, labels)
    for tick, m in zip(left.get_yticklabels(), frame.model, strict=True):
        if m == result.best_without:  # the model the sentence weighs true against
            tick.set_fontweight("bold")
    left.set_ylim(-0.6, len(frame) - 0.4)
    handles = [
        Line2D([], [], marker="o", ls="", color=_GRAPH_COLOUR, label="uses the graph"),
        Line2D([], [], marker="o", ls="", color=_OTHER_COLOUR, label="without the graph (bold: the best)"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, frameon=False, fontsize=8)
    head = f"{title}: " if title else ""
    text = f"{head}{result.rows} rows, {result.folds} outer folds. {result.sentence}"
    fig.suptitle(textwrap.fill(text, 110), fontsize=9)
    return fig


def check_models(models: Sequence[str]) -> tuple[str, ...]:
    """The deep models of ``models``, in order and once each; ``true`` must be among them."""
    if isinstance(models, str):
        models = [v.strip() for v in models.split(",") if v.strip()]
    unknown = [m for m in models if m not in VARIANTS and m not in CLASSICAL]
    if unknown:
        raise ComparisonError(
            f"unknown model(s) {', '.join(map(repr, unknown))}; choose from {', '.join(VARIANTS)} "
            f"({', '.join(CLASSICAL)} are always compared)"
        )
    deep = tuple(dict.fromkeys(m for m in models if m in VARIANTS))
    if "true" not in deep:
        raise ComparisonError("the models must include true: the question is whether the graph helps")
    return deep


def _deep_fold(split, train, test, variant, fixed, fit_config, options, settings, device):
    """One outer fold of a deep model: settings chosen on ``train`` alone, refitted on it, and the
    held-out rows' IWAE NLL.
    """
    from sirenvae.defaults import EXACT_RESTARTS
    from sirenvae.objectives import evaluate_rows
    from sirenvae.pipeline import train_model

    def inner(line: str) -> None:
        logger.info("%s: %s", variant, line)

    pick = selection.select(
        split, train, variant, fixed=fixed, fit_config=fit_config, options=options, settings=settings,
        device=device, progress=inner,
    )  # fmt: skip
    model, _ = train_model(
        split, train, model_config=pick.config, fit_config=fit_config, options=options, device=device,
        restarts=EXACT_RESTARTS,
    )  # fmt: skip
    torch.manual_seed(fit_config.seed)
    values = evaluate_rows(model, test.to(model.loc.device), importance_samples=IMPORTANCE_SAMPLES)["nll"]
    values = values.double().cpu().numpy()
    if not np.isfinite(values).all():
        raise ArithmeticError("a held-out NLL is not finite")
    return pick, values


def _chosen_score(pick) -> float:
    row = next((r for r in pick.candidates if r.get("chosen")), {})
    return float(row.get("cv_nll", math.nan))


def _say(progress, line: str) -> None:
    logger.info(line)
    if progress is not None:
        progress(line)

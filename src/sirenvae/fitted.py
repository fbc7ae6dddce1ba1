"""A fitted model by column name: :class:`FittedModel` (from :func:`load` or :func:`sirenvae.fit`).

Data go in and come out as pandas DataFrames whose columns are node names, in any order; the model's
own tensors keep the observed nodes in the graph's topological order, and this module is the one
place that maps between the two. Every bad table is a :class:`ValueError` that names the columns or
cells at fault.
"""

from __future__ import annotations

import functools
import math
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from sirenvae.data import Table, read_frame
from sirenvae.devices import torch_threads
from sirenvae.graph import BayesianNetwork
from sirenvae.identification import identify
from sirenvae.models import SIReNVAE, causal
from sirenvae.names import unknown_node
from sirenvae.objectives import chunk_rows, iwae, log_weights, prior_draws
from sirenvae.pipeline import load_model
from sirenvae.training import History
from sirenvae.variables import Variable, decoder_frame, encode, negative_notice

__all__ = ["FittedModel", "load", "warn_user"]

_QUIET_FILES = (str(Path(__file__).resolve().parent), str(Path(torch.__file__).resolve().parent))


def warn_user(message: str) -> None:
    """A :class:`UserWarning` attributed to the user's own line: the first caller outside sirenvae
    and torch (whose ``no_grad`` wrappers would otherwise be named).
    """
    frame, level = sys._getframe(0), 1
    while frame is not None and frame.f_code.co_filename.startswith(_QUIET_FILES):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, stacklevel=level)


def _threaded(method):
    """Runs a method with the model's :attr:`FittedModel.threads` torch threads."""

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        with torch_threads(self.threads):
            return method(self, *args, **kwargs)

    return run


class _CausalQueries:
    """The causal queries of :class:`FittedModel` (interventions beyond ``sample(do=...)``,
    counterfactuals), on its ``model``, ``graph``, ``latent`` and ``observed``.
    """

    model: SIReNVAE
    graph: BayesianNetwork
    latent: tuple[str, ...]
    observed: tuple[str, ...]
    threads: int | None

    @_threaded
    @torch.no_grad()
    def effect(
        self,
        target: str,
        do: Mapping[str, float | str],
        vs: Mapping[str, float | str] | None = None,
        *,
        n: int = 10_000,
        seed: int | None = 0,
        allow_unidentified: bool = False,
    ) -> dict[str, Any]:
        r"""The average effect :math:`E[y \mid do(a)] - E[y \mid do(b)]` on node ``target`` of ``do``
        against ``vs`` (no intervention when ``None``), from ``n`` draws of the same noises under both
        (common random numbers), with its Monte-Carlo standard error ``se``. Also returns both means,
        the label ``causal`` (``"identified"`` or ``"model-dependent"``) and its ``reason``. For a
        binary or categorical target, ``levels`` holds each level's probability under both
        (``p_do``, ``p_vs``), their difference and its standard error; a binary target's ``effect``
        is that of its level 1, a categorical one's is NaN (the mean of its codes means nothing).
        """
        _positive(n, "n")
        if target not in self.graph:
            raise ValueError(unknown_node(target, self.graph.nodes, "target node"))
        iv, ident = self._intervention(do, target, allow_unidentified)
        iv_b, ident_b = self._intervention(vs, target, allow_unidentified) if vs else (None, ident)
        # an arm is computed once when the target lies downstream of neither arm's interventions:
        # with the same noises, its values are the same in both (bit for bit)
        moved = [w for arm in (iv, iv_b) if arm is not None for w in arm.values]
        apart = any(target == w or target in self.graph.descendants(w) for w in moved)
        with _seeded(seed):
            noise = causal.draw_noise(self.model, n)
            arms = [causal.propagate(self.model, *noise, iv)]
            arms.append(causal.propagate(self.model, *noise, iv_b) if apart else arms[0])
        i = self.graph.index(target)
        ys = [
            self.model.values(z, causal.raw(self.model, u, v))[:, i].cpu().double()
            for (z, u), v in zip(arms, (iv, iv_b), strict=True)
        ]
        diff = ys[0] - ys[1]
        worst = ident if not ident.identified else ident_b
        out = {
            "target": target,
            "effect": diff.mean().item(),
            "se": (diff.std() / math.sqrt(n)).item() if n > 1 else math.nan,
            "mean_do": ys[0].mean().item(),
            "mean_vs": ys[1].mean().item(),
            "causal": worst.label,
            "reason": worst.reason,
        }
        var = self.variables.get(target)
        if var is not None and var.labelled:  # each level's probability under both, with its se
            out["levels"] = {}
            for k, label in enumerate(var.levels):
                a, b = (ys[0] == k).double(), (ys[1] == k).double()
                d = a - b
                out["levels"][label] = {
                    "p_do": a.mean().item(),
                    "p_vs": b.mean().item(),
                    "effect": d.mean().item(),
                    "se": (d.std() / math.sqrt(n)).item() if n > 1 else math.nan,
                }
            if var.kind == "categorical":  # the mean of codes means nothing
                out["effect"] = out["se"] = out["mean_do"] = out["mean_vs"] = math.nan
        return out

    @_threaded
    @torch.no_grad()
    def counterfactual(
        self,
        df: pd.DataFrame,
        do: Mapping[str, float | str],
        n: int = 100,
        *,
        seed: int | None = 0,
        proposals: int = 0,
        ignore=(),
        allow_unidentified: bool = False,
    ) -> pd.DataFrame:
        r"""``n`` counterfactual draws of every node for each row of ``df``, had ``do`` been set:
        abduction from the model's posterior (encoder draws resampled by :math:`p(x, z)/q(z \mid x)`,
        ``proposals`` per row, default ``max(10 n, 100)``), action, prediction with the same noises.
        Indexed by ``(row, sample)`` like :meth:`posterior`; ``attrs["ess"]`` holds each row's
        effective sample size of the importance weights (near ``proposals`` when the encoder matches
        the model's posterior, near 1 when a few draws dominate). Counterfactuals depend on the
        fitted model and its posterior; they are not identified from data alone. A missing cell
        (NaN, ``None``) is not conditioned on (see :func:`sirenvae.models.causal.counterfactual`).
        An intervention that reaches a binary or categorical node is refused unless
        ``allow_unidentified`` (its noise is then drawn given its value by the inverse-CDF model).
        """
        _positive(n, "n")
        x = self.tensor(df, ignore=ignore, allow_missing=True)
        iv, _ = self._intervention(do, None, True)
        rows = max(1, 100_000 // max(10 * n, 100, proposals))
        with _seeded(seed):
            parts = [
                causal.counterfactual(self.model, xb, iv, n, proposals, allow_unidentified)
                for xb in x.split(rows)
            ]
        z, u, ess = (torch.cat(p, dim=-2 if p[0].dim() > 1 else 0) for p in zip(*parts, strict=True))
        values = self.model.values(z, causal.raw(self.model, u, iv)).permute(1, 0, 2)
        index = pd.MultiIndex.from_product([df.index, range(n)], names=[df.index.name or "row", "sample"])
        frame = self._frame(values.reshape(-1, len(self.graph)), True)
        frame.index = index
        frame.attrs["causal"] = "model-dependent"
        frame.attrs["ess"] = pd.Series(ess.cpu().double().numpy(), index=df.index, name="ess")
        return frame

    def _intervention(self, do, target: str | None, allow_unidentified: bool):
        """``do`` resolved on the model, and whether ``P(target | do)`` (all other observed nodes
        when ``target`` is ``None``) is identified; unidentified without ``allow_unidentified`` is
        an error.
        """
        causal.check_structural(self.model)
        iv = causal.resolve(self.model, self._coded(do))
        targets = [target] if target else [v for v in self.observed if v not in iv.values]
        ident = identify(self.graph, self.latent, list(iv.values), targets)
        if not ident.identified and not allow_unidentified:
            shown = ", ".join(targets[:5]) + (f", ... ({len(targets)} nodes)" if len(targets) > 5 else "")
            what = f"P({shown} | do({', '.join(iv.values)}))"
            raise ValueError(
                f"{what} is {ident.reason}; pass allow_unidentified=True "
                "(--allow-unidentified) for the fitted model's "
                "model-dependent answer"
            )
        return iv, ident

    def _frame(self, values: Tensor, latents: bool) -> pd.DataFrame:
        frame = pd.DataFrame(
            decoder_frame(list(self.graph.nodes), values.cpu().double().numpy(), self.variables)
        )
        return frame if latents else frame[list(self.observed)]

    def _coded(self, do: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        """``do`` with each binary or categorical node's label as its code."""
        if not do:
            return do
        out = dict(do)
        for v, value in do.items():
            var = self.variables.get(v)
            if var is not None and var.labelled:  # matched as a table's cell is (no unseen level)
                cell = pd.Series([value], dtype=object)
                code, bad, _ = encode(cell, np.zeros(1, bool), replace(var, strict=True))
                if bad is not None:
                    shown = ", ".join(repr(lv) for lv in var.levels[:8])
                    raise ValueError(f"do: {value!r} is not a level of the {var.kind} node {v!r}: {shown}")
                out[v] = float(code[0])
        return out


class FittedModel(_CausalQueries):
    """A trained model with its metadata; every method takes and returns DataFrames by node name.

    Attributes:
        model: The :class:`~sirenvae.models.SIReNVAE` (tensors in topological order).
        meta: The run's metadata (configuration, graph, latent set, history, ...).
        directory: The run directory, or ``None`` for a model fitted without ``out``.
        threads: Torch threads of every method (default 1, as the CLI's ``--threads``: fastest on
            small graphs, and several times faster on a busy machine; ``None``: torch's own count).
    """

    threads: int | None = 1

    def __init__(self, model: SIReNVAE, meta: dict, directory: str | Path | None = None) -> None:
        self.model, self.meta = model, meta
        self.directory = None if directory is None else Path(directory)
        self.model.eval()

    @property
    def graph(self) -> BayesianNetwork:
        return self.model.graph

    @property
    def latent(self) -> tuple[str, ...]:
        """The hidden nodes: the model's latents and its summed discrete nodes."""
        return self.model.hidden

    @property
    def observed(self) -> tuple[str, ...]:
        """The nodes that are columns of the rows the model reads."""
        return self.model.measured

    #: The :class:`~sirenvae.selection.Selection` of a model fitted in this session with ``auto``.
    search = None

    @property
    def settings(self) -> dict:
        """How the settings were chosen: ``{"settings": "auto", "chosen": ..., "candidates": ...}``,
        ``{"settings": "paper"}`` or ``{"settings": "file", "path": ...}`` (``{}``: a run written
        before settings were chosen, with the paper's).
        """
        return dict(self.meta.get("settings") or {})

    @property
    def selection(self) -> pd.DataFrame | None:
        """The settings search's scores, one row per candidate (and classical model) and fold:
        ``candidate``, ``fold``, ``rows``, ``nll`` (mean held-out NLL), ``epochs``, ``seconds``,
        ``status`` (``selection.csv``); ``None`` when the settings were not chosen by ``auto``.
        """
        s = self.meta.get("settings") or {}
        if s.get("settings") != "auto" or "table" not in s:
            return None
        from sirenvae.selection import TABLE_COLUMNS

        return pd.DataFrame(s["table"], columns=list(TABLE_COLUMNS))

    @property
    def variables(self) -> dict[str, Variable]:
        """Each observed column's type and levels, as fitted (empty for a run of continuous columns
        written before types were recorded: all continuous).
        """
        return {v: Variable.from_dict(d) for v, d in (self.meta.get("variables") or {}).items()}

    @property
    def history(self) -> History | None:
        h = self.meta.get("history")
        return None if h is None else History.from_dict(h)

    def __repr__(self) -> str:
        where = f", directory={str(self.directory)!r}" if self.directory else ""
        return (
            f"FittedModel({self.meta['model']['variant']!r}, {len(self.graph)} nodes, "
            f"latent={list(self.latent)}{where})"
        )

    # ------------------------------------------------------------------ tables in, numbers out
    def tensor(self, df: pd.DataFrame, *, ignore: Iterable[str] = (), allow_missing: bool = False) -> Tensor:
        """The observed columns of ``df`` as a tensor in the model's (topological) order.

        Columns that name latent nodes and those in ``ignore`` are dropped; any other column that
        is not an observed node, or a cell that is infinite, non-numeric or too large for the
        model's dtype is a :class:`ValueError` (the checks of :func:`sirenvae.data.read_frame`, as
        for the CLI's CSV files); so is a missing cell (NaN, ``None``, ``pd.NA``) or a missing
        observed column unless ``allow_missing``, when they become NaN.
        """
        like = self.model.loc
        table = _read(
            df,
            self.model.columns,
            ignore,
            dtype=like.dtype,
            allow_missing=allow_missing,
            variables=self.variables,
        )
        empty = [v for v, share in table.missing.items() if share == 1.0]
        if empty:  # an absent column is read as holes (as the CLI's note says): likely a mistake
            warn_user(f"no values for {', '.join(map(repr, empty))}: read as missing in every row")
        return self.model.with_summed(table.x).to(like.device)

    @_threaded
    @torch.no_grad()
    def log_prob(
        self, df: pd.DataFrame, importance_samples: int = 1000, *, seed: int | None = 0, ignore=()
    ) -> pd.Series:
        r"""Per-row estimate of :math:`\log p(x)`: the IWAE bound with ``importance_samples``
        encoder draws and a tenth as many defensive prior draws (a lower bound in expectation that
        tightens as it grows; see :func:`~sirenvae.objectives.evaluate_rows`), indexed like ``df``.
        A missing cell (NaN, ``None``) is integrated out: the row's value is :math:`\log p(x_{obs})`
        of its present cells (holes are taken as missing at random).
        """
        _positive(importance_samples, "importance_samples")
        x = self.tensor(df, ignore=ignore, allow_missing=True)
        rows = chunk_rows(self.model, importance_samples, x)
        with _seeded(seed):
            parts = [
                iwae(self.model, xb, importance_samples, prior_draws(importance_samples))
                for xb in x.split(rows)
            ]
        return pd.Series(torch.cat(parts).cpu().double().numpy(), index=df.index, name="log_prob")

    @_threaded
    @torch.no_grad()
    def elbo(self, df: pd.DataFrame, samples: int = 1, *, seed: int | None = 0, ignore=()) -> pd.Series:
        """Per-row evidence lower bound, averaged over ``samples`` posterior draws, indexed like ``df``
        (of the present cells where some are missing, as in :meth:`log_prob`).
        """
        _positive(samples, "samples")
        x = self.tensor(df, ignore=ignore, allow_missing=True)
        with _seeded(seed):
            value = log_weights(self.model, x, samples).mean(0)
        return pd.Series(value.cpu().double().numpy(), index=df.index, name="elbo")

    @_threaded
    @torch.no_grad()
    def posterior(self, df: pd.DataFrame, n: int = 100, *, seed: int | None = 0, ignore=()) -> pd.DataFrame:
        r"""``n`` draws of :math:`z \sim q(z \mid x)` for every row: one column per latent node,
        indexed by ``(row, sample)`` where ``row`` is ``df``'s index and ``sample`` runs from 0. A
        summed discrete hidden node's draws are its labels, from its exact conditional
        (:func:`sirenvae.imputation.hidden_draws`), and ``attrs["probabilities"]`` holds each of its
        levels' probability per row (columns ``(node, label)``;
        :func:`sirenvae.imputation.hidden_probabilities`).

        A table with missing cells (NaN, ``None``) is not conditioned on them: every row's draws are
        then resampled from ``max(10 n, 100)`` importance samples, draws of :math:`p(z \mid x_{obs})`
        (:func:`sirenvae.imputation.posterior_draws`; ``attrs["ess"]`` holds each row's effective
        sample size).
        """
        from sirenvae.imputation import hidden_draws, hidden_probabilities, posterior_draws

        _positive(n, "n")
        x = self.tensor(df, ignore=ignore, allow_missing=True)
        ess = None
        if self.model.summed:  # every hidden node, a summed one's draws as its labels
            with _seeded(seed):
                draws, ess = hidden_draws(self.model, x, n)
            index = pd.MultiIndex.from_product([df.index, range(n)], names=[df.index.name or "row", "sample"])
            values = draws.permute(1, 0, 2).reshape(-1, len(self.latent)).cpu().double().numpy()
            frame = pd.DataFrame(decoder_frame(list(self.latent), values, self.variables), index=index)
            frame.attrs["ess"] = pd.Series(ess.cpu().double().numpy(), index=df.index, name="ess")
            with _seeded(seed):
                probs = hidden_probabilities(self.model, x).cpu().double().numpy()
            levels = [(v, lv) for v in self.model.summed for lv in self.variables[v].levels]
            frame.attrs["probabilities"] = pd.DataFrame(
                probs, index=df.index, columns=pd.MultiIndex.from_tuples(levels)
            )
            return frame
        with _seeded(seed):
            if x.isnan().any():
                z, ess = posterior_draws(self.model, x, n)
            else:
                z, _ = self.model.posterior(x, n)  # (n, N, Dz)
        values = z.permute(1, 0, 2).reshape(-1, len(self.model.latent)).cpu().double().numpy()
        index = pd.MultiIndex.from_product([df.index, range(n)], names=[df.index.name or "row", "sample"])
        frame = pd.DataFrame(values, index=index, columns=list(self.model.latent))
        if ess is not None:
            frame.attrs["ess"] = pd.Series(ess.cpu().double().numpy(), index=df.index, name="ess")
        return frame

    @_threaded
    def impute(
        self,
        df: pd.DataFrame,
        m: int = 0,
        *,
        samples: int = 1000,
        seed: int | None = 0,
        ignore=(),
        quantiles: Sequence[float] = (),
    ) -> pd.DataFrame:
        r"""``df``'s observed columns with every missing cell (NaN, ``None``) filled, indexed like
        ``df``: at the importance-weighted conditional mean :math:`E[x_{mis} \mid x_{obs}]` from
        ``samples`` proposals per row, or with ``m > 0`` as ``m`` completions per row drawn by
        sampling-importance-resampling, indexed by ``(row, draw)`` (see :mod:`sirenvae.imputation`).
        Present cells are returned unchanged. ``attrs["ess"]`` holds each row's effective sample
        size (a Series; low values mean the imputation rests on few proposals) and, for ``m = 0``,
        ``attrs["sd"]`` the weighted sd of each imputed cell (0 where present) and, with
        ``quantiles`` (levels in (0, 1)), ``attrs["quantiles"]`` a frame per level of each cell's
        weighted quantile (its value where present; NaN in a labelled column).
        """
        from sirenvae.imputation import impute

        _positive(samples, "samples")
        if m < 0:
            raise ValueError(f"m must be non-negative, got {m}")
        table = _read(
            df, self.model.columns, ignore, dtype=torch.float64, allow_missing=True, variables=self.variables
        )
        x = self.model.with_summed(table.x)
        with _seeded(seed):
            result = impute(
                self.model, x.to(self.model.loc.device), samples=samples, m=m, quantiles=quantiles
            )
        columns = list(self.model.observed)  # the model's order; the frames come back in df's
        order = [c for c in df.columns if c in self.observed]
        order = order if len(order) == len(self.observed) else list(self.observed)
        ess = pd.Series(result.ess.cpu().double().numpy(), index=df.index, name="ess")
        if m == 0:
            mean = result.mean.cpu().double().numpy()
            out = pd.DataFrame(decoder_frame(columns, mean, self.variables), index=df.index)[order]
            sd = pd.DataFrame(result.sd.cpu().double().numpy(), index=df.index, columns=columns)[order]
            out.attrs["sd"] = sd
            spans = result.quantiles.cpu().double().numpy() if len(quantiles) else ()
            out.attrs["quantiles"] = {
                q: pd.DataFrame(v, index=df.index, columns=columns)[order].assign(
                    **{c: np.nan for c, var in self.variables.items() if var.labelled and c in order}
                )
                for q, v in zip(quantiles, spans, strict=True)
            }
        else:
            values = result.draws.permute(1, 0, 2).reshape(-1, len(columns)).cpu().double().numpy()
            index = pd.MultiIndex.from_product([df.index, range(m)], names=[df.index.name or "row", "draw"])
            out = pd.DataFrame(decoder_frame(columns, values, self.variables), index=index)[order]
        for c, var in self.variables.items():  # present cells as given, in the frame's own dtype
            if var.labelled and c in out:
                present = ~x[:, columns.index(c)].isnan().cpu().numpy()  # as read: a token is a hole
                given = df[c].to_numpy(dtype=object)
                if m:  # the long table repeats each row m times
                    present, given = np.repeat(present, m), np.repeat(given, m)
                col = out[c].to_numpy(dtype=object, copy=True)
                col[present] = given[present]
                out[c] = col
        out.attrs["ess"] = ess
        return out

    @_threaded
    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        seed: int | None = 0,
        do: Mapping[str, float | str] | None = None,
        latents: bool = True,
        allow_unidentified: bool = False,
    ) -> pd.DataFrame:
        """``n`` joint samples with every node as a column, in graph order (latent ones unless
        ``latents=False``).

        With ``do`` (node name to value: raw units for observed nodes, the model's own units for
        latents, or ``"q0.9"`` for a quantile of the node's marginal under the model), samples of the
        intervened model. A query not identified from the observed variables (see
        :func:`sirenvae.identification.identify`) is a :class:`ValueError` unless
        ``allow_unidentified``; the
        frame's ``attrs["causal"]`` says ``"identified"`` or ``"model-dependent"`` and
        ``attrs["reason"]`` why.
        """
        _positive(n, "n")
        with _seeded(seed):
            if do is None:
                z, x = self.model.sample(n)
                label = None
            else:
                iv, ident = self._intervention(do, None, allow_unidentified)
                z, u = causal.propagate(self.model, *causal.draw_noise(self.model, n), iv)
                x, label = causal.raw(self.model, u, iv), ident
        frame = self._frame(self.model.values(z, x).reshape(-1, len(self.graph)), latents)
        if label is not None:
            frame.attrs["causal"], frame.attrs["reason"] = label.label, label.reason
        elif below := negative_notice(self.meta.get("nonnegative") or {}, frame, _types_hint):
            warn_user(below)
        return frame


def _types_hint(fix: str) -> str:
    """``a=count,b=lognormal`` as the keyword of :func:`sirenvae.fit`."""
    return "types={" + ", ".join(f"{k!r}: {v!r}" for k, v in (p.split("=") for p in fix.split(","))) + "}"


def load(
    run_dir: str | Path, *, device: str | torch.device | None = None, threads: int | None = 1
) -> FittedModel:
    """The trained model of a run directory written by ``sirenvae fit`` or :func:`fit`, on
    ``device`` (default: the CPU; ``"cuda"`` for a GPU), its methods run on ``threads`` torch
    threads (:attr:`FittedModel.threads`).
    """
    model, meta = load_model(run_dir, device=device)
    fitted = FittedModel(model, meta, run_dir)
    fitted.threads = threads
    return fitted


def _read(df: pd.DataFrame, graph, ignore, **options) -> Table:
    """:func:`sirenvae.data.read_frame` on a user's DataFrame: columns of latent nodes are dropped,
    and errors name the options as Python keywords.
    """
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"expected a pandas DataFrame with node names as columns, got {type(df).__name__}")
    names = sorted(_names(ignore, "ignore"), key=str)
    return read_frame(df, graph, ignore_columns=names, drop_latent_columns=True, hints="python", **options)


def _names(names: Iterable[str] | str, what: str) -> set[str]:
    if isinstance(names, str):
        return {v.strip() for v in names.split(",") if v.strip()}
    try:
        return set(names)
    except TypeError:
        raise ValueError(f"{what} must be a list of column names") from None


def _positive(n: int, what: str) -> None:
    if not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"{what} must be a positive integer, got {n!r}")


class _seeded:
    """Seeds torch's generators (CPU and every CUDA device) for a block and restores their states
    afterwards (``None``: no seeding).
    """

    def __init__(self, seed: int | None) -> None:
        self.seed = seed

    def __enter__(self) -> None:
        if self.seed is not None:
            cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
            self.fork = torch.random.fork_rng(devices=cuda)
            self.fork.__enter__()
            torch.manual_seed(self.seed)

    def __exit__(self, *exc) -> None:
        if self.seed is not None:
            self.fork.__exit__(*exc)

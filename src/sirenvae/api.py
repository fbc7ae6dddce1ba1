"""The Python API by column name: :func:`load` a run directory or :func:`fit` a model on a DataFrame.

Data go in and come out as pandas DataFrames whose columns are node names, in any order; the model's
own tensors keep the observed nodes in the graph's topological order, and this module is the one
place that maps between the two. Every bad table is a :class:`ValueError` that names the columns or
cells at fault.

Example:
    >>> import pandas as pd, sirenvae
    >>> from sirenvae.graph import BayesianNetwork
    >>> bn = BayesianNetwork({"z": [], "x": ["z"], "y": ["z"]})
    >>> df = pd.DataFrame({"y": [0.1, 1.2, -0.3, 0.8], "x": [0.2, 1.0, -0.5, 0.7]})
    >>> m = sirenvae.fit(bn, df, settings="paper", max_epochs=2, warmup_steps=0)  # default: "auto"
    >>> m.latent, m.observed
    (('z',), ('x', 'y'))
    >>> m.log_prob(df, importance_samples=10).shape
    (4,)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from sirenvae.data import Table, latent_split, read_frame
from sirenvae.devices import resolve_device
from sirenvae.graph import BayesianNetwork
from sirenvae.identification import identify
from sirenvae.models import VARIANTS, ModelConfig, SIReNVAE, causal
from sirenvae.objectives import eval_chunk, log_weights
from sirenvae.pipeline import TrainOptions, load_model, train_model
from sirenvae.training import FitConfig, History

__all__ = ["FittedModel", "compare", "fit", "fit_rows", "load"]


class _CausalQueries:
    """The causal queries of :class:`FittedModel` (interventions beyond ``sample(do=...)``,
    counterfactuals), on its ``model``, ``graph``, ``latent`` and ``observed``.
    """

    model: SIReNVAE
    graph: BayesianNetwork
    latent: tuple[str, ...]
    observed: tuple[str, ...]

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
        the label ``causal`` (``"identified"`` or ``"model-dependent"``) and its ``reason``.
        """
        _positive(n, "n")
        if target not in self.graph:
            raise ValueError(f"unknown target node {target!r}")
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
            self.model.nodes(z, causal.raw(self.model, u, v))[:, i].cpu().double()
            for (z, u), v in zip(arms, (iv, iv_b), strict=True)
        ]
        diff = ys[0] - ys[1]
        worst = ident if not ident.identified else ident_b
        return {
            "target": target,
            "effect": diff.mean().item(),
            "se": (diff.std() / math.sqrt(n)).item() if n > 1 else math.nan,
            "mean_do": ys[0].mean().item(),
            "mean_vs": ys[1].mean().item(),
            "causal": worst.label,
            "reason": worst.reason,
        }

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
    ) -> pd.DataFrame:
        r"""``n`` counterfactual draws of every node for each row of ``df``, had ``do`` been set:
        abduction from the model's posterior (encoder draws resampled by :math:`p(x, z)/q(z \mid x)`,
        ``proposals`` per row, default ``max(10 n, 100)``), action, prediction with the same noises.
        Indexed by ``(row, sample)`` like :meth:`posterior`; ``attrs["ess"]`` holds each row's
        effective sample size of the importance weights (near ``proposals`` when the encoder matches
        the model's posterior, near 1 when a few draws dominate). Counterfactuals depend on the
        fitted model and its posterior; they are not identified from data alone.
        """
        _positive(n, "n")
        x = self.tensor(df, ignore=ignore)
        iv, _ = self._intervention(do, None, True)
        rows = max(1, 100_000 // max(10 * n, 100, proposals))
        with _seeded(seed):
            parts = [causal.counterfactual(self.model, xb, iv, n, proposals) for xb in x.split(rows)]
        z, u, ess = (torch.cat(p, dim=-2 if p[0].dim() > 1 else 0) for p in zip(*parts, strict=True))
        values = self.model.nodes(z, causal.raw(self.model, u, iv)).permute(1, 0, 2)
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
        iv = causal.resolve(self.model, do)
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
        frame = pd.DataFrame(values.cpu().double().numpy(), columns=list(self.graph.nodes))
        return frame if latents else frame[list(self.observed)]


class FittedModel(_CausalQueries):
    """A trained model with its metadata; every method takes and returns DataFrames by node name.

    Attributes:
        model: The :class:`~sirenvae.models.SIReNVAE` (tensors in topological order).
        meta: The run's metadata (configuration, graph, latent set, history, ...).
        directory: The run directory, or ``None`` for a model fitted without ``out``.
    """

    def __init__(self, model: SIReNVAE, meta: dict, directory: str | Path | None = None) -> None:
        self.model, self.meta = model, meta
        self.directory = None if directory is None else Path(directory)
        self.model.eval()

    @property
    def graph(self) -> BayesianNetwork:
        return self.model.graph

    @property
    def latent(self) -> tuple[str, ...]:
        return self.model.latent

    @property
    def observed(self) -> tuple[str, ...]:
        return self.model.observed

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
        is not an observed node, a missing observed column, or a cell that is infinite,
        non-numeric or too large for the model's dtype is a :class:`ValueError` (the checks of
        :func:`sirenvae.data.read_frame`, as for the CLI's CSV files); so is a missing cell (NaN,
        ``None``, ``pd.NA``) unless ``allow_missing``, when it becomes NaN.
        """
        like = self.model.loc
        table = _read(df, self.model.split, ignore, dtype=like.dtype, allow_missing=allow_missing)
        return table.x.to(like.device)

    @torch.no_grad()
    def log_prob(
        self, df: pd.DataFrame, importance_samples: int = 1000, *, seed: int | None = 0, ignore=()
    ) -> pd.Series:
        r"""Per-row estimate of :math:`\log p(x)`: the IWAE bound with ``importance_samples``
        draws (a lower bound that tightens as it grows), indexed like ``df``. A missing cell (NaN,
        ``None``) is integrated out: the row's value is :math:`\log p(x_{obs})` of its present
        cells (holes are taken as missing at random).
        """
        _positive(importance_samples, "importance_samples")
        x = self.tensor(df, ignore=ignore, allow_missing=True)
        rows = max(1, eval_chunk(self.model) // importance_samples)
        with _seeded(seed):
            parts = [
                torch.logsumexp(log_weights(self.model, xb, importance_samples), 0)
                - math.log(importance_samples)
                for xb in x.split(rows)
            ]
        return pd.Series(torch.cat(parts).cpu().double().numpy(), index=df.index, name="log_prob")

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

    @torch.no_grad()
    def posterior(self, df: pd.DataFrame, n: int = 100, *, seed: int | None = 0, ignore=()) -> pd.DataFrame:
        r"""``n`` draws of :math:`z \sim q(z \mid x)` for every row: one column per latent node,
        indexed by ``(row, sample)`` where ``row`` is ``df``'s index and ``sample`` runs from 0.
        """
        _positive(n, "n")
        x = self.tensor(df, ignore=ignore)
        with _seeded(seed):
            z, _ = self.model.posterior(x, n)  # (n, N, Dz)
        values = z.permute(1, 0, 2).reshape(-1, len(self.latent)).cpu().double().numpy()
        index = pd.MultiIndex.from_product([df.index, range(n)], names=[df.index.name or "row", "sample"])
        return pd.DataFrame(values, index=index, columns=list(self.latent))

    def impute(
        self, df: pd.DataFrame, m: int = 0, *, samples: int = 1000, seed: int | None = 0, ignore=()
    ) -> pd.DataFrame:
        r"""``df``'s observed columns with every missing cell (NaN, ``None``) filled, indexed like
        ``df``: at the importance-weighted conditional mean :math:`E[x_{mis} \mid x_{obs}]` from
        ``samples`` proposals per row, or with ``m > 0`` as ``m`` completions per row drawn by
        sampling-importance-resampling, indexed by ``(row, draw)`` (see :mod:`sirenvae.imputation`).
        Present cells are returned unchanged. ``attrs["ess"]`` holds each row's effective sample
        size (a Series; low values mean the imputation rests on few proposals) and, for ``m = 0``,
        ``attrs["sd"]`` the weighted sd of each imputed cell (0 where present).
        """
        from sirenvae.imputation import impute

        _positive(samples, "samples")
        if m < 0:
            raise ValueError(f"m must be non-negative, got {m}")
        x = _read(df, self.model.split, ignore, dtype=torch.float64, allow_missing=True).x
        with _seeded(seed):
            result = impute(self.model, x.to(self.model.loc.device), samples=samples, m=m)
        columns = list(self.observed)
        ess = pd.Series(result.ess.cpu().double().numpy(), index=df.index, name="ess")
        if m == 0:
            out = pd.DataFrame(result.mean.cpu().double().numpy(), index=df.index, columns=columns)
            out.attrs["sd"] = pd.DataFrame(result.sd.cpu().double().numpy(), index=df.index, columns=columns)
        else:
            values = result.draws.permute(1, 0, 2).reshape(-1, len(columns)).cpu().double().numpy()
            index = pd.MultiIndex.from_product([df.index, range(m)], names=[df.index.name or "row", "draw"])
            out = pd.DataFrame(values, index=index, columns=columns)
        out.attrs["ess"] = ess
        return out

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
        frame = self._frame(self.model.nodes(z, x).reshape(-1, len(self.graph)), latents)
        if label is not None:
            frame.attrs["causal"], frame.attrs["reason"] = label.label, label.reason
        return frame


def load(run_dir: str | Path, *, device: str | torch.device | None = None) -> FittedModel:
    """The trained model of a run directory written by ``sirenvae fit`` or :func:`fit`, on
    ``device`` (default: the CPU; ``"cuda"`` for a GPU).
    """
    model, meta = load_model(run_dir, device=device)
    return FittedModel(model, meta, run_dir)


def fit(
    graph: Any,
    df: pd.DataFrame,
    *,
    latent: str | Sequence[str] | None = None,
    model: str = "true",
    out: str | Path | None = None,
    resume: bool = False,
    ignore: Iterable[str] = (),
    allow_discrete: bool = False,
    device: str | torch.device | None = None,
    settings: str | Path = "auto",
    folds: int | None = None,
    max_candidates: int | None = None,
    time_budget: float | None = None,
    workers: int = 1,
    address: str | None = None,
    **options: Any,
) -> FittedModel:
    """Trains a model on a DataFrame whose columns are node names (in any order).

    Missing cells (NaN, ``None``, ``pd.NA``) are holes, assumed missing at random: the model is
    trained on the present cells (see :class:`~sirenvae.models.SIReNVAE`). The table is checked as
    ``sirenvae fit`` checks a CSV file (:func:`sirenvae.data.read_frame`):
    unknown, missing or misspelt columns, cells that are not finite numbers, constant columns and
    columns with 2 distinct values are a :class:`ValueError` naming them; columns that look
    discrete (integers with at most 10 distinct values) and ignored latent columns are warnings.

    The model's settings are chosen on the rows themselves by default (``settings="auto"``, see
    :mod:`sirenvae.selection`): the designed candidates of ``model`` are scored by k-fold
    cross-validation within ``df`` and the best is refitted on all rows; :attr:`FittedModel.selection`
    holds the candidates' scores beside factor analysis and Ledoit-Wolf on the same folds.

    Arguments:
        graph: A :class:`~sirenvae.graph.BayesianNetwork`, a graph file (``.json``, ``.csv``,
            ``.dot``, ``.bif``), anything :func:`~sirenvae.graph_io.read_graph` reads, or the
            name of a shipped network (``"ecoli70"``).
        df: The training rows; its columns name the observed nodes.
        latent: The latent nodes (a list or ``"a,b"``); by default the graph's nodes without a
            column. Columns of latent nodes are ignored, with a warning.
        model: ``true``, ``ind``, ``fc``, ``vae`` or ``vae-maf``.
        out: A run directory to write checkpoints, the model, ``history.csv`` and ``training.png``
            (and, with ``auto``, ``selection.csv`` and the finished folds, so a search resumes).
        resume: Continue an interrupted run (or settings search) in ``out``.
        ignore: Columns of ``df`` that are not nodes (e.g. IDs) and are left out.
        allow_discrete: Fit columns with only 2 distinct values as continuous (else an error).
        device: Where to train (default: the CPU; ``"cuda"`` for a GPU); the model stays there.
        settings: ``"auto"`` (chosen on ``df`` by cross-validation), ``"paper"`` (the paper's fixed
            setting) or a JSON file of settings (a run's ``model.json``, a dict of model options,
            or a ``chosen.json`` of ``sirenvae search``).
        folds, max_candidates, time_budget: The search's ``k`` (default: 5 below 100 rows, else 3),
            how many candidates it tries (the simplest first) and a bound in seconds.
        workers: Parallel fits of the search (processes, one thread each; guard a script's body
            with ``if __name__ == "__main__":`` when above 1); the result does not depend on it.
        address: A Ray cluster to run the search's fits on.
        options: Options of :class:`~sirenvae.training.FitConfig` (``lr``, ``batch_size``,
            ``max_epochs`` or ``epochs``, ``patience``, ``seed``, ``progress``, ...),
            :class:`~sirenvae.pipeline.TrainOptions` (``valid_fraction``, ``objective``,
            ``samples``, ``warmup_steps``) and :class:`~sirenvae.models.ModelConfig`
            (``prior_blocks``, ``hidden_per_set``, ...; with ``auto`` they are fixed in every
            candidate). Defaults as in ``sirenvae fit`` (:mod:`sirenvae.defaults`).
    """
    table, network = _training_table(graph, df, latent, ignore, allow_discrete, allow_missing=True)
    search = {"folds": folds, "max_candidates": max_candidates, "time_budget": time_budget}
    return fit_rows(
        table.split,
        table.x,
        model=model,
        settings=settings,
        options=options,
        search=search | {"workers": workers, "address": address},
        out=out,
        resume=resume,
        device=device,
        extra_meta={"network": network, "data": "DataFrame"},
        report=print if options.get("progress") else None,
    )


def fit_rows(
    split,
    x: Tensor,
    *,
    model: str = "true",
    settings: str | Path = "auto",
    options: Mapping[str, Any] | None = None,
    search: Mapping[str, Any] | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    device: str | torch.device | None = None,
    extra_meta: dict | None = None,
    report=None,
) -> FittedModel:
    """The one training path of :func:`fit` and ``sirenvae fit``: rows ``x`` (observed nodes in
    topological order) of ``split``, settings chosen by ``settings`` (see :func:`fit`), then trained
    on all rows; ``search`` holds :class:`~sirenvae.selection.SelectionSettings` fields and
    ``report`` receives the search's progress lines.
    """
    from sirenvae.candidates import candidates_for
    from sirenvae.selection import HUGE_GRAPH, SelectionSettings, select

    device = resolve_device(device)
    fixed, fit_config, train_options = _configs(model, dict(options or {}))
    if "mask_inputs" not in fixed and (bool(x.isnan().any()) or train_options.train_masking > 0):
        fixed["mask_inputs"] = True  # the encoder sees which cells are holes
    extra = dict(extra_meta or {}) | {"seed": fit_config.seed, "train_size": int(x.shape[0])}
    selection = None
    huge = (search or {}).get("max_candidates") is None and len(split.graph) >= HUGE_GRAPH
    recorded = _recorded_run(out, resume)
    if recorded is not None:  # a resumed run goes on with its own settings; its training may change
        if recorded["model"].get("variant", "true") != model:
            raise ValueError(
                f"the run in {out} was started with another model ({recorded['model'].get('variant')}); "
                f"resume it with --model {recorded['model'].get('variant')} or choose another --out"
            )
        config = replace(ModelConfig.from_dict(recorded["model"]), **fixed)
        extra["settings"] = recorded.get("settings") or {"settings": "paper"}
    elif str(settings) == "auto" and huge:
        config = _model_config(model, candidates_for(model)[0].options | fixed)
        notice = (
            f"the graph has {len(split.graph)} nodes: auto fits the simplest candidate "
            f"({candidates_for(model)[0].name}) without cross-validation (--max-candidates N compares N)"
        )
        if report is not None:
            report(notice)
        extra["settings"] = {"settings": "auto", "chosen": candidates_for(model)[0].name, "rule": notice}
    elif str(settings) == "auto":
        _check_no_other_run(out, resume, overwrite)
        search = {k: v for k, v in (search or {}).items() if v is not None}
        selection = select(
            split,
            x,
            model,
            fixed=fixed,
            fit_config=fit_config,
            options=train_options,
            settings=SelectionSettings(seed=fit_config.seed, **search),
            directory=out,
            device=str(device),
            progress=report,
        )
        config = selection.config
        extra["settings"] = selection.to_meta() | {"table": selection.table}
        if out is not None:  # before the final fit, so a killed fit's run still shows its search
            from sirenvae.files import atomic_write

            frame = selection.frame()
            atomic_write(Path(out) / "selection.csv", lambda tmp: frame.to_csv(tmp, index=False))
    elif str(settings) == "paper":
        config = _model_config(model, fixed)
        extra["settings"] = {"settings": "paper"}
    else:
        config = _model_config(model, _settings_file(settings, model, extra, split) | fixed)
        extra["settings"] = {"settings": "file", "path": str(settings)}
    trained, history = train_model(
        split,
        x,
        model_config=config,
        fit_config=fit_config,
        options=train_options,
        out=out,
        resume=recorded is not None,
        overwrite=overwrite and selection is None,  # a search replaced the old run before it began
        extra_meta=extra,
        device=device,
    )
    if out is not None:
        fitted = load(out, device=device)
    else:
        meta = {"model": config.to_dict(), "latent": list(split.latent), "observed": list(split.observed)}
        fitted = FittedModel(trained, meta | extra | {"history": history.to_dict()})
    fitted.search = selection
    return fitted


def _recorded_run(out, resume: bool) -> dict | None:
    """With ``resume``, the metadata of the run in ``out`` (its checkpoint's, else its model's), or
    ``None`` where only a settings search was started; nothing at all to resume is an error.
    """
    import json

    if not resume:
        return None
    if out is None:
        raise ValueError("resume needs the run directory to continue (out=...)")
    for name in ("checkpoint.json", "model.json"):
        path = Path(out) / name
        if path.exists():
            try:
                meta = json.loads(path.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                raise ValueError(f"{path} is unreadable; pass --force to start the run again") from None
            if isinstance(meta, dict) and isinstance(meta.get("model"), dict):
                return meta
            raise ValueError(f"{path} holds no model description; pass --force to start the run again")
    if (Path(out) / "selection").is_dir():
        return None
    raise ValueError(f"nothing to resume in {out}: no run and no settings search; leave out --resume")


def _check_no_other_run(out, resume: bool, overwrite: bool) -> None:
    """Refuses, before a search starts, an ``out`` that holds a run and is neither resumed nor replaced."""
    from sirenvae.pipeline import RunExists, remove_run

    if out is None:
        return
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunExists(f"{out} is a file, not a run directory; choose another --out")
    if overwrite and not resume:
        remove_run(out)
    elif not resume and any((out / name).exists() for name in ("model.json", "checkpoint.json", "selection")):
        raise RunExists(
            f"{out} already holds a run or an unfinished settings search; pass --resume to continue it "
            "or choose another --out"
        )


def _model_config(model: str, fields_: Mapping[str, Any]) -> ModelConfig:
    try:
        return ModelConfig(variant=model, **fields_)
    except TypeError as e:
        raise ValueError(str(e)) from None


def _settings_file(path, model: str, extra: dict, split) -> dict:
    """The model options of a settings file: a run's ``model.json``, a plain dict of options, or a
    ``chosen.json`` of ``sirenvae search`` (the entry of this model, network and nearest size).
    """
    import json

    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"--settings {path}: no such file; give auto, paper or a JSON file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"--settings {path} is no JSON file ({e})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"--settings {path}: expected a JSON object of model options")
    if "choices" in doc:
        entries = [e for e in doc["choices"] if e.get("model") == model and e.get("model_config")]
        if extra.get("network"):
            entries = [e for e in entries if e.get("dataset") == extra["network"]] or entries
        if not entries:
            raise ValueError(f"--settings {path} holds no choice for model {model!r}")
        factor = extra["train_size"] / len(split.graph)
        doc = {"model": min(entries, key=lambda e: (abs(math.log(e["factor"] / factor)), e["factor"]))[
            "model_config"
        ]}  # fmt: skip
    fields_ = doc.get("model", doc)
    if not isinstance(fields_, dict):
        raise ValueError(f"--settings {path}: expected a JSON object of model options")
    fields_ = dict(fields_)
    variant = fields_.pop("variant", model)
    if variant != model:
        raise ValueError(f"--settings {path} holds settings of model {variant!r}, not {model!r}")
    known = {f.name for f in fields(ModelConfig)} - {"variant"}
    unknown = sorted(set(fields_) - known)
    if unknown:
        raise ValueError(f"--settings {path}: unknown model option(s) {', '.join(unknown)}")
    return fields_


# ---------------------------------------------------------------------- helpers
def _training_table(
    graph, df: pd.DataFrame, latent, ignore, allow_discrete: bool, *, allow_missing: bool = False
) -> tuple[Table, str | None]:
    """The graph (a shipped network's name, a file, anything :func:`read_graph` reads) and the training
    rows of ``df`` checked against it, its notices as warnings; also the network's name, if one.
    """
    from sirenvae.graph_io import read_graph
    from sirenvae.networks import available_networks, load_network

    network = None
    if isinstance(graph, str) and not Path(graph).exists() and graph in available_networks():
        bn, network = load_network(graph).graph, graph
    else:
        bn = read_graph(graph)
    split = bn if latent is None else latent_split(bn, latent)
    table = _read(
        df,
        split,
        ignore,
        min_rows=2,
        training=True,
        allow_discrete=allow_discrete,
        allow_missing=allow_missing,
    )
    for notice in table.notices:
        warnings.warn(notice, stacklevel=3)  # at the caller of fit or compare
    return table, network


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


def _configs(model: str, options: dict) -> tuple[dict, FitConfig, TrainOptions]:
    """The options split into the model fields given (fixed in every candidate), the
    :class:`FitConfig` and the :class:`TrainOptions`; an unknown name is a ``ValueError``.
    """
    options = dict(options)
    if "epochs" in options:
        if "max_epochs" in options:
            raise ValueError("give epochs or max_epochs, not both")
        options["max_epochs"] = options.pop("epochs")
    groups = {}
    for cls in (FitConfig, TrainOptions, ModelConfig):
        names = {f.name for f in fields(cls)} - {"variant"}
        groups[cls] = {k: options.pop(k) for k in list(options) if k in names}
    if options:
        valid = sorted({f.name for cls in groups for f in fields(cls)} - {"variant"} | {"epochs"})
        raise ValueError(f"unknown option(s) {', '.join(sorted(options))}; known options: {', '.join(valid)}")
    if model not in VARIANTS:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(VARIANTS)}")
    try:
        return groups[ModelConfig], FitConfig(**groups[FitConfig]), TrainOptions(**groups[TrainOptions])
    except TypeError as e:
        raise ValueError(str(e)) from None


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


def compare(
    graph: Any,
    df: pd.DataFrame,
    *,
    latent: str | Sequence[str] | None = None,
    models: Sequence[str] = ("true", "fc", "vae"),
    outer_folds: int | None = None,
    ignore: Iterable[str] = (),
    allow_discrete: bool = False,
    device: str | torch.device | None = None,
    folds: int | None = None,
    max_candidates: int | None = None,
    time_budget: float | None = None,
    workers: int = 1,
    **options: Any,
):
    """Does the graph help on these rows? ``models`` (and factor analysis, Ledoit-Wolf) compared by
    held-out likelihood in nested cross-validation: a :class:`~sirenvae.comparison.Comparison` with
    ``.frame()``, ``.per_row`` and ``.sentence`` (see :mod:`sirenvae.comparison`).

    ``graph``, ``df``, ``latent``, ``ignore``, ``allow_discrete``, ``device`` and ``options`` are
    those of :func:`fit`; ``outer_folds`` is the outer ``k``, and ``folds``, ``max_candidates``,
    ``time_budget`` and ``workers`` shape each inner settings search.
    """
    from sirenvae.comparison import compare as nested

    table, _ = _training_table(graph, df, latent, ignore, allow_discrete)
    fixed, fit_config, train_options = _configs("true", dict(options))
    return nested(
        table.split,
        table.x,
        models=models,
        outer_folds=outer_folds,
        fit_config=fit_config,
        options=train_options,
        fixed=fixed,
        search={"folds": folds, "max_candidates": max_candidates, "time_budget": time_budget},
        seed=fit_config.seed,
        workers=workers,
        device=str(resolve_device(device)),
        progress=print if options.get("progress") else None,
    )

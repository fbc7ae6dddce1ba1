"""The Python API's front doors: :func:`fit` a model on a DataFrame (or :func:`fit_rows` on a tensor,
the one training path of ``sirenvae fit``), :func:`compare` the graph against models without it,
:func:`load` a run directory (:mod:`sirenvae.fitted`: the :class:`FittedModel` they return).

Example:
    >>> import numpy as np, pandas as pd, sirenvae
    >>> from sirenvae.graph import BayesianNetwork
    >>> bn = BayesianNetwork({"z": [], "x": ["z"], "y": ["z"]})
    >>> z = np.random.default_rng(0).normal(size=(3, 12))
    >>> df = pd.DataFrame({"y": z[0] + 0.5 * z[1], "x": z[0] + 0.5 * z[2]})
    >>> m = sirenvae.fit(bn, df, settings="paper", max_epochs=2, warmup_steps=0)  # default: "auto"
    >>> m.latent, m.observed
    (('z',), ('x', 'y'))
    >>> m.log_prob(df, importance_samples=10).shape
    (12,)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from sirenvae.data import Table, stated_split, stated_types
from sirenvae.defaults import EXACT_LR, EXACT_RESTARTS
from sirenvae.devices import resolve_device, torch_threads
from sirenvae.files import run_lock
from sirenvae.fitted import FittedModel, _read, load, warn_user
from sirenvae.models import VARIANTS, ModelConfig
from sirenvae.pipeline import TrainOptions, train_model
from sirenvae.training import FitConfig
from sirenvae.variables import Variable, model_types, nonnegative_columns

__all__ = ["FittedModel", "compare", "fit", "fit_rows", "load"]


def fit(
    graph: Any,
    df: pd.DataFrame,
    *,
    latent: str | Sequence[str] | None = None,
    model: str = "true",
    out: str | Path | None = None,
    resume: bool = False,
    ignore: Iterable[str] = (),
    types: Mapping[str, str] | str | None = None,
    strict_levels: bool = False,
    allow_discrete: bool = False,
    device: str | torch.device | None = None,
    settings: str | Path = "auto",
    folds: int | None = None,
    max_candidates: int | None = None,
    time_budget: float | None = None,
    workers: int = 1,
    address: str | None = None,
    threads: int | None = 1,
    **options: Any,
) -> FittedModel:
    """Trains a model on a DataFrame whose columns are node names (in any order).

    Missing cells (NaN, ``None``, ``pd.NA``) are holes, assumed missing at random: the model is
    trained on the present cells (see :class:`~sirenvae.models.SIReNVAE`). The table is checked as
    ``sirenvae fit`` checks a CSV file (:func:`sirenvae.data.read_frame`):
    unknown, missing or misspelt columns, cells that are neither numbers nor labels, and constant
    columns are a :class:`ValueError` naming them. Each column's type is inferred with a warning
    (:mod:`sirenvae.variables`: 2 values or bools are binary, text is categorical, few distinct
    integers are continuous with a hint) unless ``types`` states it; labels come back as labels.

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
        types: Column types, ``{"smoker": "binary", "visits": "count"}`` or ``"smoker=binary"``:
            ``binary``, ``categorical``, ``count`` (negative binomial), ``poisson``, ``lognormal``,
            ``normal``, ``studentt``, ``continuous``; the others are inferred.
        strict_levels: Refuse a categorical level unseen in training when the model reads rows
            later (else it gets a small probability).
        allow_discrete: Gone (an error): pass ``types={"x": "normal"}`` instead.
        device: Where to train (default: the CPU; ``"cuda"`` for a GPU); the model stays there.
        settings: ``"auto"`` (chosen on ``df`` by cross-validation), ``"paper"`` (the paper's fixed
            setting) or a JSON file of settings (a run's ``model.json``, a dict of model options,
            or a ``chosen.json`` of ``sirenvae search``).
        folds, max_candidates, time_budget: The search's ``k`` (default: 5 below 100 rows, else 3),
            how many candidates it tries (the simplest first) and a bound in seconds.
        workers: Parallel fits of the search (processes, one thread each; guard a script's body
            with ``if __name__ == "__main__":`` when above 1); the result does not depend on it.
        address: A Ray cluster to run the search's fits on.
        threads: Torch threads of the fit and of the returned model's methods (default 1, as the
            CLI: fastest on small graphs, several times faster on a busy machine; ``None``: torch's).
        options: Options of :class:`~sirenvae.training.FitConfig` (``lr``, ``batch_size``,
            ``max_epochs`` or ``epochs``, ``patience``, ``seed``, ``progress``, ...),
            :class:`~sirenvae.pipeline.TrainOptions` (``valid_fraction``, ``objective``,
            ``samples``, ``warmup_steps``) and :class:`~sirenvae.models.ModelConfig`
            (``prior_blocks``, ``hidden_per_set``, ...; with ``auto`` they are fixed in every
            candidate). Defaults as in ``sirenvae fit`` (:mod:`sirenvae.defaults`).
    """
    table, network = _training_table(graph, df, latent, ignore, types, strict_levels, allow_discrete, True)
    if table.hidden and (notice := summed_notice(table.hidden, model)):
        warn_user(notice)
    search = {"folds": folds, "max_candidates": max_candidates, "time_budget": time_budget}
    with torch_threads(threads):
        fitted = fit_rows(
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
            variables=table.variables | table.hidden,
        )
    fitted.threads = threads
    return fitted


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
    variables: Mapping[str, Variable] | None = None,
) -> FittedModel:
    """The one training path of :func:`fit` and ``sirenvae fit``: rows ``x`` (observed nodes in
    topological order) of ``split``, settings chosen by ``settings`` (see :func:`fit`), then trained
    on all rows; ``search`` holds :class:`~sirenvae.selection.SelectionSettings` fields,
    ``report`` receives the search's progress lines and ``variables`` are the columns' types and
    levels (:attr:`sirenvae.data.Table.variables`; all continuous when ``None``).
    """
    if out is not None and Path(out).is_file():
        _check_no_other_run(out, resume, overwrite)  # says so
    with run_lock(out):
        return _fit_rows(
            split, x, model=model, settings=settings, options=options, search=search, out=out,
            resume=resume, overwrite=overwrite, device=device, extra_meta=extra_meta, report=report,
            variables=variables,
        )  # fmt: skip


def _fit_rows(
    split, x: Tensor, *, model, settings, options, search, out, resume, overwrite, device, extra_meta, report,
    variables,
) -> FittedModel:  # fmt: skip
    from sirenvae.selection import HUGE_GRAPH, SelectionSettings, select

    device = resolve_device(device)
    fixed, fit_config, train_options = _configs(model, dict(options or {}))
    extra = dict(extra_meta or {}) | {"seed": fit_config.seed, "train_size": int(x.shape[0])}
    holey = bool(x.isnan().any()) or train_options.train_masking > 0
    recorded = _recorded_run(out, resume)
    variables = dict(variables or {})
    if recorded is None or recorded["model"].get("summed"):
        split, x, variables, summed = summed_hidden(split, x, variables, model)
        if summed:
            fixed["summed"] = summed
    else:  # a run from before summed nodes keeps its continuous latents
        variables = {v: var for v, var in variables.items() if v in split.observed}
    if recorded is not None and "lr" not in (options or {}):  # a resumed run keeps its rate
        fit_config = replace(fit_config, lr=recorded.get("fit", {}).get("lr", fit_config.lr))
    elif recorded is None:
        fit_config = _exact_lr(fit_config, split, fixed.get("summed"), options)
    extra["variables"] = {v: var.to_dict() for v, var in variables.items() if var.kind != "continuous"}
    extra["nonnegative"] = nonnegative_columns(x.cpu().double().numpy(), split.observed, variables)
    if variables:
        fixed["types"] = model_types(variables)
    selection = None
    huge = (search or {}).get("max_candidates") is None and len(split.graph) >= HUGE_GRAPH
    if "mask_inputs" not in fixed and holey and recorded is None:  # a resumed run keeps its own
        fixed["mask_inputs"] = True  # the encoder sees which cells are holes
    if recorded is not None:  # a resumed run goes on with its own settings; its training may change
        if recorded["model"].get("variant", "true") != model:
            raise ValueError(
                f"the run in {out} was started with another model ({recorded['model'].get('variant')}); "
                f"resume it with --model {recorded['model'].get('variant')} or choose another --out"
            )
        config = replace(ModelConfig.from_dict(recorded["model"]), **fixed)
        extra["settings"] = recorded.get("settings") or {"settings": "paper"}
    elif str(settings) == "auto" and (direct := _without_search(model, fixed, search, split, x, huge)):
        if not huge:
            _check_no_other_run(out, resume, overwrite)
        (chosen, config), notice = direct
        if report is not None:
            report(notice)
        extra["settings"] = {"settings": "auto", "chosen": chosen, "rule": notice}
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
        restarts=EXACT_RESTARTS,
    )
    if out is not None:
        fitted = load(out, device=device)
    else:
        meta = {"model": config.to_dict(), "fit": fit_config.to_dict(), "latent": list(split.latent),
                "observed": list(split.observed)}  # fmt: skip
        fitted = FittedModel(trained, meta | extra | {"history": history.to_dict()})
    fitted.search = selection
    return fitted


def summed_comparison(
    split, x: Tensor, variables, fixed: dict, fit_config: FitConfig, options
) -> dict | None:
    """What ``true`` trains on in :func:`compare` where it sums stated hidden nodes, as :func:`fit`
    does (its ``split``, rows ``x``, ``fixed`` options and ``fit_config``; ``None`` where none is).
    """
    split, wide, kept, summed = summed_hidden(split, x, variables, "true")
    if not summed:
        return None
    return {"split": split, "x": wide, "fixed": fixed | {"summed": summed, "types": model_types(kept)},
            "fit_config": _exact_lr(fit_config, split, summed, options)}  # fmt: skip


def _exact_lr(fit_config: FitConfig, split, summed, options) -> FitConfig:
    """``fit_config`` at :data:`~sirenvae.defaults.EXACT_LR` for a model whose hidden nodes are all
    ``summed`` (an exact likelihood), unless ``options`` give a rate.
    """
    if summed and not split.latent and "lr" not in (options or {}):
        return replace(fit_config, lr=EXACT_LR)
    return fit_config


def summed_hidden(split, x: Tensor, variables: Mapping[str, Variable] | None, model: str):
    """The split, rows and variables a graph variant is trained on, and the summed nodes: the hidden
    nodes given discrete levels in ``variables`` (a discrete network's states, a graph file's
    ``"type"``/``"levels"``) move among the observed with a column of holes, summed out exactly (see
    :class:`~sirenvae.models.SIReNVAE`). The VAEs keep every hidden node a continuous latent.
    """
    from sirenvae.graph import LatentSplit

    variables = dict(variables or {})
    hidden = _summable(split.latent, variables, model)
    if not hidden:
        return split, x, {v: var for v, var in variables.items() if v in split.observed}, ()
    inner = LatentSplit(split.graph, [v for v in split.latent if v not in hidden], allow_empty=True)
    wide = x.new_full((x.shape[0], len(inner.observed)), math.nan)
    wide[:, [inner.observed.index(v) for v in split.observed]] = x
    kept = {v: var for v, var in variables.items() if v in inner.observed}
    return inner, wide, kept, tuple(v for v in inner.observed if v in hidden)


def _summable(latent, variables: Mapping[str, Variable], model: str) -> list[str]:
    """The hidden nodes ``true`` sums: those stated binary or categorical, if their joint states are at
    most :data:`~sirenvae.models.summed.MAX_SUMMED_STATES` (else none: all stay continuous). ``fc`` and
    ``ind`` keep them continuous: they vary the structure among the latents, which a summed node,
    placed among the observed, would escape.
    """
    from sirenvae.models.summed import MAX_SUMMED_STATES

    hidden = [v for v in latent if v in variables and variables[v].labelled]
    if model != "true" or math.prod(len(variables[v].levels) for v in hidden) > MAX_SUMMED_STATES:
        return []
    return hidden


def summed_notice(hidden: Mapping[str, Variable], model: str) -> str | None:
    """The notice of a fit of ``model`` whose ``hidden`` nodes (their variables) stated binary or
    categorical are summed out; ``None`` where none is (or a VAE keeps them continuous).
    """
    from sirenvae.models.summed import MAX_SUMMED_STATES

    stated = [v for v, var in hidden.items() if var.labelled]
    summed = _summable(list(hidden), hidden, model)
    if stated and model in ("fc", "ind"):
        return (
            f"hidden node(s) {', '.join(stated)} have stated levels: {model} keeps them continuous latents "
            "(--model true sums them out exactly)"
        )
    if stated and not summed and model == "true":
        states = math.prod(len(hidden[v].levels) for v in stated)
        return (
            f"hidden node(s) {', '.join(stated)} have stated levels, but {states} joint states are more "
            f"than {MAX_SUMMED_STATES} to sum over: they are continuous latents"
        )
    if not summed:
        return None
    states = math.prod(len(hidden[v].levels) for v in summed)
    return (
        f"hidden node(s) {', '.join(summed)} have stated levels: summed out exactly over their {states} "
        "joint states (a type 'continuous' for one makes it a continuous latent); nothing in the rows "
        "names their levels, so they are learned up to a relabelling: read what each level does from "
        "its children (`sample --do NODE=LEVEL --allow-unidentified`)"
    )


def _without_search(
    model: str, fixed: dict, search: Mapping[str, Any] | None, split, x: Tensor, huge: bool
) -> tuple[tuple[str, ModelConfig], str] | None:
    """``auto``'s candidate to fit without cross-validation, ``((name, config), notice)``, else ``None``:
    the simplest on a ``huge`` graph; or the one candidate left (``--max-candidates 1``, or ``--set``
    making all alike) where cross-validation would choose nothing and factor analysis and Ledoit-Wolf
    cannot score these rows (non-Gaussian columns, or holes: only a Gaussian fitted by EM could, which
    asked-for folds show). Asked-for folds or a time budget keep that search
    (a held-out score was wanted), and so do rows too few for it (its error says so).
    """
    from sirenvae.candidates import candidates_for
    from sirenvae.selection import default_folds, min_rows, non_gaussian, resolve_candidates

    if huge:
        simplest = candidates_for(model)[0]
        notice = (
            f"the graph has {len(split.graph)} nodes: auto fits the simplest candidate "
            f"({simplest.name}) without cross-validation (--max-candidates N compares N)"
        )
        return (simplest.name, _model_config(model, simplest.options | fixed)), notice
    search = search or {}
    if search.get("folds") is not None or search.get("time_budget") is not None:
        return None
    if x.shape[0] < min_rows(default_folds(x.shape[0])):
        return None
    candidates, _ = resolve_candidates(
        model, fixed, search.get("max_candidates"), split.observed, bool(split.latent)
    )
    if len(candidates) != 1:
        return None
    ((cand, config),) = candidates
    mixed = [v for v in non_gaussian(config.types) if v not in config.summed]  # columns only
    columns = [i for i, v in enumerate(split.observed) if v not in config.summed]
    if not mixed and not bool(x[:, columns].isnan().any()):
        return None
    if mixed:
        why = f"non-Gaussian columns: {', '.join(mixed[:3])}{', ...' * (len(mixed) > 3)}"
        notice = (
            f"one candidate ({cand.name}) and no classical model to score beside it ({why}): "
            "fitted without cross-validation"
        )
    else:
        notice = (
            f"one candidate ({cand.name}) and rows with holes: fitted without cross-validation (pass "
            "--folds K to score it beside a Gaussian fitted by EM on the same folds)"
        )
    return (cand.name, config), notice


def _recorded_run(out, resume: bool) -> dict | None:
    """With ``resume``, the metadata of the run in ``out`` (its checkpoint's, else its model's), or
    ``None`` where only a settings search was started; nothing at all to resume is an error.
    """
    import json

    if not resume:
        return None
    if out is None:
        raise ValueError("resume needs the run directory to continue (out=...)")
    restarts = sorted(Path(out).glob("restarts/*/*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in [Path(out) / "checkpoint.json", Path(out) / "model.json", *restarts]:
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
    return {k: v for k, v in fields_.items() if k not in FROM_DATA}  # these come from this run's table


#: Model fields that describe the table, not a setting: they come from the rows and graph being fitted
#: (a settings file's are dropped; ``summed`` given as an option is refused in :func:`_configs`).
FROM_DATA = ("summed", "types")


# ---------------------------------------------------------------------- helpers
def _training_table(
    graph,
    df: pd.DataFrame,
    latent,
    ignore,
    types,
    strict_levels: bool,
    allow_discrete: bool,
    allow_missing: bool,
) -> tuple[Table, str | None]:
    """The graph (a shipped network's name, a file, anything :func:`read_graph` reads) and the training
    rows of ``df`` checked against it, its notices as warnings; also the network's name, if one.
    """
    from sirenvae.graph_io import read_graph
    from sirenvae.networks import available_networks, load_network

    if allow_discrete:
        raise ValueError(
            "allow_discrete is gone: a column with 2 values is now modelled as binary and text as "
            "categorical; pass types={'x': 'normal'} to fit a column as continuous anyway"
        )
    network = net = None
    if isinstance(graph, str) and not Path(graph).exists() and graph in available_networks():
        net = load_network(graph)
        bn, network = net.graph, graph
    else:
        bn = read_graph(graph)
    declared, levels = stated_types(None if net is not None else graph, net, types, "types")
    split = stated_split(bn, latent, None if net is not None else graph)  # a JSON file's "latent" too
    table = _read(
        df,
        split,
        ignore,
        min_rows=2,
        training=True,
        allow_missing=allow_missing,
        types=declared,
        levels=levels,
        strict_levels=strict_levels,
    )
    for notice in table.notices:
        warn_user(notice)  # at the caller of fit or compare
    return table, network


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
    if "summed" in groups[ModelConfig]:
        raise ValueError(
            'summed is not an option: a hidden node is summed out where its levels are stated ("levels" '
            'or "type" on the node in the graph file, or a discrete network\'s states)'
        )
    try:
        return groups[ModelConfig], FitConfig(**groups[FitConfig]), TrainOptions(**groups[TrainOptions])
    except TypeError as e:
        raise ValueError(str(e)) from None


def compare(
    graph: Any,
    df: pd.DataFrame,
    *,
    latent: str | Sequence[str] | None = None,
    models: Sequence[str] = ("true", "fc", "vae"),
    outer_folds: int | None = None,
    ignore: Iterable[str] = (),
    types: Mapping[str, str] | str | None = None,
    allow_discrete: bool = False,
    device: str | torch.device | None = None,
    folds: int | None = None,
    max_candidates: int | None = None,
    time_budget: float | None = None,
    workers: int = 1,
    **options: Any,
):
    """Does the graph help on these rows? ``models`` (and factor analysis, Ledoit-Wolf; a Gaussian by
    EM on rows with missing cells) compared by held-out likelihood in nested cross-validation: a
    :class:`~sirenvae.comparison.Comparison` with ``.frame()``, ``.per_row`` and ``.sentence`` (see
    :mod:`sirenvae.comparison`).

    ``graph``, ``df``, ``latent``, ``ignore``, ``types``, ``device`` and ``options`` are
    those of :func:`fit`; ``outer_folds`` is the outer ``k``, and ``folds``, ``max_candidates``,
    ``time_budget`` and ``workers`` shape each inner settings search.
    """
    from sirenvae.comparison import compare as nested

    table, _ = _training_table(graph, df, latent, ignore, types, False, allow_discrete, True)
    fixed, fit_config, train_options = _configs("true", dict(options))
    fixed["types"] = model_types(table.variables)
    own = summed_comparison(table.split, table.x, table.variables | table.hidden, fixed, fit_config, options)
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
        summed=own,
    )

"""The built-in demo: SIReN-VAE (true structure) and a plain VAE trained on samples of ecoli70.

By default each model is fitted as a user's default ``sirenvae fit`` is (``settings="auto"``): its
settings chosen by k-fold cross-validation on the 92 training rows alone (:mod:`sirenvae.selection`),
the winner trained on all of them with the training defaults of :mod:`sirenvae.defaults`, so the demo
is seed 0 of ``reproduce figure3 --settings auto`` at 2·|G|. ``"searched"`` takes the settings
search's frozen choices on tuning data and ``"paper"`` the paper's fixed setting, both trained as the
Figure 3 runs are (:func:`~sirenvae.experiments.runner.train_run`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from sirenvae.networks import load_network, oracle_nll

__all__ = ["VAEDemoConfig", "vae_demo"]


@dataclass(frozen=True, kw_only=True)
class VAEDemoConfig:
    """The demo's data and models; their settings come from the search (``settings="searched"``)
    or the paper's fixed ones (``"paper"``).
    """

    network: str = "ecoli70"
    train_factor: int = 2
    test_size: int = 2000
    importance_samples: int = 1000
    models: tuple[str, ...] = ("true", "vae")
    settings: str = "auto"
    seed: int = 0
    workers: int = 1


def vae_demo(config: VAEDemoConfig | None = None, *, progress: bool = False) -> dict:
    """Trains each model on ``train_factor * |G|`` samples and evaluates it on fresh test samples
    (NLL by IWAE, negative ELBO, reconstruction error) beside the true network's NLL.
    """
    from sirenvae.data import default_latent_rule, latent_split, sample_splits
    from sirenvae.experiments.grids import grid
    from sirenvae.experiments.runner import train_run
    from sirenvae.objectives import evaluate
    from sirenvae.pipeline import TrainOptions, train_model
    from sirenvae.selection import SelectionSettings, select
    from sirenvae.training import FitConfig

    config = config or VAEDemoConfig()
    net = load_network(config.network)
    split = latent_split(net.graph, default_latent_rule(config.network))
    splits = sample_splits(
        net,
        split,
        train_size=config.train_factor * len(net.graph),
        test_size=config.test_size,
        seed=config.seed,
    )
    runs = grid(
        "figure3",
        seeds=1,
        datasets=(config.network,),
        models=config.models,
        factors=(config.train_factor,),
        settings=config.settings,
    )

    out = {"config": asdict(config), "models": []}
    oracle = oracle_nll(net, splits.test, splits.observed)
    if oracle is not None:
        out["oracle_nll"] = oracle
    for run in runs:
        start = time.perf_counter()
        model_config, chosen = run.model_config, None
        if run.auto:  # what a user's default `sirenvae fit` does: its training, its search
            fit_config, options = FitConfig(seed=config.seed, progress=progress), TrainOptions()
            chosen = select(
                split,
                splits.train,
                run.model,
                fit_config=fit_config,
                options=options,
                settings=SelectionSettings(seed=config.seed, workers=config.workers),
            )
            model_config = chosen.config
            model, history = train_model(
                split, splits.train, model_config=model_config, fit_config=fit_config, options=options
            )
        else:
            model, history = train_run(
                split, splits.train, model_config, run.schedule, config.seed, progress=progress
            )
        seconds = time.perf_counter() - start
        torch.manual_seed(config.seed)
        metrics = evaluate(model, splits.test, importance_samples=config.importance_samples)
        out["models"].append(
            {
                "model": run.model,
                **metrics,
                "epochs": len(history.train_loss),
                "train_seconds": seconds,
                "eval_seconds": time.perf_counter() - start - seconds,
                "model_config": model_config.to_dict(),
                "chosen": None if chosen is None else chosen.chosen,
                "classical_cv": None if chosen is None else chosen.classical,
            }
        )
    nll = {row["model"]: row["nll"] for row in out["models"]}
    if {"true", "vae"} <= set(nll):
        out["margin"] = nll["vae"] - nll["true"]
    return out

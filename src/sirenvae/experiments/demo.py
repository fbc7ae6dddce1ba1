"""The built-in demo: SIReN-VAE (true structure) and a plain VAE trained on samples of ecoli70."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from sirenvae.networks import load_network, oracle_nll
from sirenvae.training import FitConfig

__all__ = ["VAEDemoConfig", "vae_demo"]


@dataclass(frozen=True, kw_only=True)
class VAEDemoConfig:
    """The VAE demo's settings (fixed before looking at test numbers)."""

    network: str = "ecoli70"
    train_factor: int = 2
    test_size: int = 2000
    importance_samples: int = 1000
    models: tuple[str, ...] = ("true", "vae")
    lr: float = 3e-3
    batch_size: int = 32
    max_epochs: int = 2000
    patience: int = 50
    seed: int = 0


def vae_demo(config: VAEDemoConfig | None = None, *, progress: bool = False) -> dict:
    """Trains each model on ``train_factor * |G|`` samples and evaluates it on fresh test samples
    (NLL by IWAE, negative ELBO, reconstruction error) beside the true network's NLL.
    """
    from sirenvae.data import default_latent_rule, latent_split, sample_splits
    from sirenvae.models import ModelConfig
    from sirenvae.objectives import evaluate
    from sirenvae.pipeline import train_model

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
    out = {"config": asdict(config), "models": []}
    oracle = oracle_nll(net, splits.test, splits.observed)
    if oracle is not None:
        out["oracle_nll"] = oracle
    for variant in config.models:
        start = time.perf_counter()
        model, history = train_model(
            split,
            splits.train,
            model_config=ModelConfig(variant=variant),
            fit_config=FitConfig(
                lr=config.lr,
                batch_size=config.batch_size,
                max_epochs=config.max_epochs,
                patience=config.patience,
                seed=config.seed,
                progress=progress,
            ),
        )
        seconds = time.perf_counter() - start
        torch.manual_seed(config.seed)
        metrics = evaluate(model, splits.test, importance_samples=config.importance_samples)
        out["models"].append(
            {
                "model": variant,
                **metrics,
                "epochs": len(history.train_loss),
                "train_seconds": seconds,
                "eval_seconds": time.perf_counter() - start - seconds,
            }
        )
    return out

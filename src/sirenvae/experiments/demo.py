"""The built-in demo: a graphical residual flow fitted to samples of the ecoli70 network."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch

from sirenvae.flows import GRF
from sirenvae.networks import LinearGaussianNetwork, load_network
from sirenvae.training import FitConfig, fit

__all__ = ["FlowDemoConfig", "VAEDemoConfig", "flow_demo", "vae_demo"]


@dataclass(frozen=True, kw_only=True)
class FlowDemoConfig:
    """The demo's settings (fixed before looking at test numbers)."""

    network: str = "ecoli70"
    train_size: int = 2000
    valid_fraction: float = 0.1
    test_size: int = 2000
    blocks: int = 5
    hidden_per_set: int = 4
    hidden_layers: int = 2
    lr: float = 5e-3
    batch_size: int = 128
    max_epochs: int = 300
    patience: int = 20
    seed: int = 0


def flow_demo(config: FlowDemoConfig | None = None, *, progress: bool = False) -> dict:
    """Fits a GRF with the network's own graph to ``train_size`` samples (a validation split carved
    out of them) and returns its test NLL beside the true model's, both in nats on the raw scale.
    """
    config = config or FlowDemoConfig()
    net = load_network(config.network)
    if not isinstance(net, LinearGaussianNetwork):
        raise ValueError(f"the demo needs a linear-Gaussian network, got {config.network!r}")
    torch.manual_seed(config.seed)
    data = net.sample(config.train_size, seed=config.seed)
    test = net.sample(config.test_size, seed=config.seed + 10_000)
    n_valid = max(1, int(config.valid_fraction * config.train_size))
    train, valid = data[n_valid:].float(), data[:n_valid].float()
    loc, scale = train.mean(0), train.std(0)
    # the flow models standardised data; log p(x) = log p(u) - sum(log scale)
    log_scale = scale.log().sum()

    flow = GRF(
        net.graph.adjacency(),
        blocks=config.blocks,
        hidden_per_set=config.hidden_per_set,
        hidden_layers=config.hidden_layers,
    )

    def nll(x: torch.Tensor) -> torch.Tensor:
        return -flow().log_prob((x - loc) / scale).mean()

    start = time.perf_counter()
    history = fit(
        flow,
        nll,
        train,
        valid,
        FitConfig(
            lr=config.lr,
            batch_size=config.batch_size,
            max_epochs=config.max_epochs,
            patience=config.patience,
            seed=config.seed,
            progress=progress,
        ),
    )
    seconds = time.perf_counter() - start
    with torch.no_grad():
        test_nll = nll(test.float()).item() + log_scale.item()
    oracle = -net.log_prob(test).mean().item()
    lip = flow.transform.certify()
    return {
        "config": asdict(config),
        "test_nll": test_nll,
        "oracle_nll": oracle,
        "gap": test_nll - oracle,
        "epochs": len(history.train_loss),
        "best_epoch": history.best_epoch,
        "seconds": seconds,
        "parameters": sum(p.numel() for p in flow.parameters()),
        "effective_weights": flow.transform.effective_weights,
        "max_lipschitz": float(lip.max()),
        "finite": math.isfinite(test_nll),
    }


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
    from sirenvae.data import default_latent_rule, latent_set, sample_splits
    from sirenvae.models import ModelConfig
    from sirenvae.objectives import evaluate
    from sirenvae.pipeline import train_model

    config = config or VAEDemoConfig()
    net = load_network(config.network)
    latent = latent_set(net.graph, default_latent_rule(config.network))
    splits = sample_splits(
        net,
        latent,
        train_size=config.train_factor * len(net.graph),
        test_size=config.test_size,
        seed=config.seed,
    )
    out = {"config": asdict(config), "models": []}
    if isinstance(net, LinearGaussianNetwork):
        out["oracle_nll"] = -net.log_prob(splits.test.double(), splits.observed).mean().item()
    for variant in config.models:
        start = time.perf_counter()
        model, history = train_model(
            net.graph,
            latent,
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

"""Causal queries of fitted SIReN-VAEs against the closed forms of a linear-Gaussian network.

The setting of ``docs/causal.md``: ecoli70 with its 5 nodes with the most children as hidden
confounders, ``100·|G|`` training rows, models fitted with ``conditioning=parents``; interventions on
the observed nodes that have a latent parent and observed descendants, at the node's observational
mean ± 2 sd, on each descendant whose effect is identified (the ID algorithm). Run it with
``python -m sirenvae.experiments.causal --out docs/results/causal``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sirenvae.identification import identify
from sirenvae.networks import load_network

__all__ = ["CausalCheck", "MODELS", "causal_check", "causal_figure"]

#: The models compared: the searched linear-Gaussian SIReN-VAE and the paper's MLP decoder with
#: two parent-conditioned prior blocks.
MODELS: dict[str, dict] = {
    "linear": {"affine": True, "prior_blocks": 0, "encoder_blocks": 0, "decoder_mean": "linear"},
    "mlp": {},
}


@dataclass(frozen=True, kw_only=True)
class CausalCheck:
    """The experiment's settings."""

    network: str = "ecoli70"
    hidden: int = 5
    factor: int = 100
    models: tuple[str, ...] = ("linear", "mlp")
    samples: int = 20_000
    rows: int = 50
    counterfactual_samples: int = 200
    max_epochs: int = 2000
    seed: int = 0


def interventions(net, latent: list[str]) -> list[tuple[str, list[str]]]:
    """Observed nodes with a latent parent and observed descendants, with their identified targets."""
    g, hidden = net.graph, set(latent)
    out = []
    for v in g.nodes:
        if v in hidden or not set(g.parents(v)) & hidden:
            continue
        targets = [y for y in g.nodes if y in g.descendants(v) - hidden]
        targets = [y for y in targets if identify(g, latent, [v], [y]).identified]
        if targets:
            out.append((v, targets))
    return out


def causal_check(config: CausalCheck, *, progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Fits each model and compares it with the closed forms: the interventional table (one row per
    model, intervention and target), the counterfactual table (per model and intervention: the
    largest and median error of the per-row means in units of the node's observational sd) and a
    summary.
    """
    from sirenvae.api import fit

    net = load_network(config.network)
    g = net.graph
    latent = sorted(g.nodes, key=lambda v: (-len(g.children(v)), g.index(v)))[: config.hidden]
    observed = [v for v in g.nodes if v not in latent]
    io = [g.index(v) for v in observed]
    data = net.sample(config.factor * len(g), seed=config.seed)
    train = pd.DataFrame(data[:, io].numpy(), columns=observed)
    held_out = net.sample(config.rows, seed=config.seed + 1)[:, io]
    mean0, cov0 = net.mean_and_covariance()
    sd0 = cov0.diagonal().sqrt()
    todo = interventions(net, latent)
    rows, cf_rows, summary = [], [], {"config": asdict(config), "latent": latent, "models": {}}
    for name in config.models:
        start = time.perf_counter()
        model = fit(
            g,
            train,
            latent=latent,
            conditioning="parents",
            seed=config.seed,
            max_epochs=config.max_epochs,
            progress=progress,
            **MODELS[name],
        )
        fit_seconds = time.perf_counter() - start
        for v, targets in todo:
            i = g.index(v)
            for sign in (-2, 2):
                value = (mean0[i] + sign * sd0[i]).item()
                mean, cov = net.intervene({v: value})
                cond = mean0 + cov0[:, i] / cov0[i, i] * (value - mean0[i])
                # the joint of all descendants may not be identified; each target below is
                s = model.sample(config.samples, do={v: value}, seed=config.seed, force=True)
                for y in targets:
                    j = g.index(y)
                    rows.append(
                        {
                            "model": name,
                            "do": v,
                            "value": value,
                            "target": y,
                            "exact_mean": mean[j].item(),
                            "exact_sd": cov[j, j].sqrt().item(),
                            "conditional_mean": cond[j].item(),
                            "model_mean": float(s[y].mean()),
                            "model_sd": float(s[y].std()),
                            "observational_mean": mean0[j].item(),
                            "observational_sd": sd0[j].item(),
                        }
                    )
            value = (mean0[i] + sd0[i]).item()
            df = pd.DataFrame(held_out.numpy(), columns=observed)
            cf = model.counterfactual(df, {v: value}, n=config.counterfactual_samples, seed=config.seed)
            got = cf.groupby(level=0, sort=False).mean()
            exact, _ = net.counterfactual(held_out, {v: value}, observed)
            errors = np.stack(
                [
                    np.abs(got[y].to_numpy() - exact[:, g.index(y)].numpy()) / sd0[g.index(y)].item()
                    for y in observed
                ]
            )
            cf_rows.append(
                {
                    "model": name,
                    "do": v,
                    "value": value,
                    "max_error": errors.max(),
                    "median_error": np.median(errors),
                }
            )
        summary["models"][name] = {"fit_seconds": fit_seconds, "epochs": len(model.history.train_loss)}
    table = pd.DataFrame(rows)
    table["error_in_sd"] = (table.model_mean - table.exact_mean) / table.exact_sd
    table["sd_ratio"] = table.model_sd / table.exact_sd
    return table, pd.DataFrame(cf_rows), summary


def causal_figure(table: pd.DataFrame):
    """Model vs exact interventional means (in units of each target's observational sd, centred on
    its observational mean), one panel per model; the exact conditional means show what conditioning
    on the same value would have given.
    """
    from matplotlib.figure import Figure

    models = list(dict.fromkeys(table.model))
    fig = Figure(figsize=(5.2 * len(models), 5.0))
    axes = fig.subplots(1, len(models), squeeze=False)[0]
    nodes = list(dict.fromkeys(table["do"]))
    colours = {v: f"C{k % 10}" for k, v in enumerate(nodes)}
    for ax, name in zip(axes, models, strict=True):
        t = table[table.model == name]
        scale = t.observational_sd
        exact = (t.exact_mean - t.observational_mean) / scale
        model = (t.model_mean - t.observational_mean) / scale
        for v in nodes:
            m = t["do"] == v
            ax.scatter(
                exact[m],
                model[m],
                s=18,
                color=colours[v],
                label=f"do({v})",
            )
        ax.scatter(
            exact,
            (t.conditional_mean - t.observational_mean) / scale,
            s=10,
            marker="x",
            color="0.6",
            label="exact E[y | v = a]: conditioning",
        )
        shown = np.r_[exact, (t.conditional_mean - t.observational_mean) / scale, model]
        lim = float(np.nanmax(np.abs(shown))) * 1.05
        ax.plot([-lim, lim], [-lim, lim], color="0.3", lw=0.8)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        worst = t.error_in_sd.abs().max()
        ax.set_title(
            f"{name}: {len(t)} (intervention, target) pairs\nworst error {worst:.2f} interventional sd"
        )
        ax.set_xlabel("exact E[y | do(v = a)]  (observational sd of y from its mean)")
        ax.set_ylabel("model E[y | do(v = a)]")
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(
        "ecoli70, 5 hidden confounders: interventions at the node's mean ± 2 sd", fontsize=10, y=1.02
    )
    return fig


def main(argv: list[str] | None = None) -> None:
    from sirenvae.plots import save

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--models", default="linear,mlp")
    parser.add_argument("--max-epochs", type=int, default=CausalCheck.max_epochs)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot-only", action="store_true", help="Redraw the figure from --out's table.")
    args = parser.parse_args(argv)
    if args.plot_only:
        save(causal_figure(pd.read_csv(args.out / "interventions.csv")), args.out / "causal.png")
        return
    torch.set_num_threads(1)
    config = CausalCheck(models=tuple(args.models.split(",")), max_epochs=args.max_epochs, seed=args.seed)
    table, cf, summary = causal_check(config)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "interventions.csv", index=False)
    cf.to_csv(args.out / "counterfactuals.csv", index=False)
    for name in config.models:
        t, c = table[table.model == name], cf[cf.model == name]
        summary["models"][name] |= {
            "pairs": len(t),
            "mean_error_in_sd_max": float(t.error_in_sd.abs().max()),
            "mean_error_in_sd_median": float(t.error_in_sd.abs().median()),
            "within_0.1_sd": float((t.error_in_sd.abs() < 0.1).mean()),
            "sd_ratio_range": [float(t.sd_ratio.min()), float(t.sd_ratio.max())],
            "within_15%_sd": float(((t.sd_ratio - 1).abs() < 0.15).mean()),
            "counterfactual_max_error_in_sd": float(c.max_error.max()),
            "counterfactual_median_error_in_sd": float(c.median_error.median()),
            "conditioning_vs_intervening_median_in_sd": float(
                ((t.conditional_mean - t.exact_mean).abs() / t.observational_sd).median()
            ),
        }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    save(causal_figure(table), args.out / "causal.png")
    print(json.dumps(summary["models"], indent=1))


if __name__ == "__main__":
    main()

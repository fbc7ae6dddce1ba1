"""Tables and figures from sweep results: one CSV row per run, Markdown summaries, Figure 3.

The classical baselines (factor analysis, Ledoit–Wolf) are exact Gaussian models: their −ELBO is their
exact NLL, and Ledoit–Wolf has no reconstruction error (shown as ``-``). An oracle that is a
Monte-Carlo estimate (the arithmetic circuit) is labelled as one, with its standard error.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pandas as pd

from sirenvae.experiments.protocol import PAPER_TABLE1, TABLE1_DATASETS, TABLE_ORDER

__all__ = ["figure3", "results_frame", "table1"]

_LABEL = {
    "vae": "VAE",
    "ind": "SIReN-VAE ind",
    "fc": "SIReN-VAE FC",
    "true": "SIReN-VAE true",
    "vae-maf": "VAE+MAF",
    "fa": "factor analysis",
    "lw": "Ledoit–Wolf",
}
_CLASSICAL = ("fa", "lw")


def results_frame(results: list[dict]) -> pd.DataFrame:
    """One row per run: dataset, model, training factor and rows, seed, metrics, oracle, times."""
    rows = []
    for r in results:
        c = r["config"]
        rows.append(
            {
                "dataset": c["dataset"],
                "model": c["model"],
                "train_factor": c["train_factor"],
                "train_rows": r["train_rows"],
                "seed": c["seed"],
                "nll": r["metrics"]["nll"],
                "neg_elbo": r["metrics"]["neg_elbo"],
                "re": r["metrics"]["re"],
                "oracle_nll": r["oracle_nll"],
                "oracle_se": r.get("oracle", {}).get("se", 0.0 if r["oracle_nll"] is not None else None),
                "oracle_method": r.get("oracle", {}).get("method", "exact"),
                "oracle_samples": r.get("oracle", {}).get("samples", 0),
                "k": r.get("fit", {}).get("k"),
                "gap": None if r["oracle_nll"] is None else r["metrics"]["nll"] - r["oracle_nll"],
                "chosen": r.get("selection", {}).get("chosen"),
                "regret": r.get("regret"),
                "epochs": r["epochs"],
                "train_seconds": r["train_seconds"],
                "eval_seconds": r["eval_seconds"],
            }
        )
    frame = pd.DataFrame(rows)
    if not frame.empty:
        # the paper's order: its datasets first, then the models as in its table
        rank = {
            "model": {m: i for i, m in enumerate(TABLE_ORDER)},
            "dataset": {d: i for i, d in enumerate(TABLE1_DATASETS)},
        }
        frame = frame.sort_values(
            ["dataset", "train_factor", "model", "seed"],
            key=lambda s: s.map(lambda v: rank[s.name].get(v, len(rank[s.name]))) if s.name in rank else s,
        ).reset_index(drop=True)
    return frame


def _pm(values: pd.Series) -> str:
    values = values.dropna()
    if values.empty:
        return "-"
    std = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():.2f} ± {std:.2f}"


def _monte_carlo(rows: pd.DataFrame) -> bool:
    return bool((rows.oracle_method == "monte-carlo").any())


def _oracle_cell(rows: pd.DataFrame) -> str:
    """Mean ± std over seeds of the oracle NLL; an estimate says so, with its largest MC std. error."""
    cell = _pm(rows.oracle_nll)
    if _monte_carlo(rows):
        cell += f" (MC estimate, s.e. ≤ {rows.oracle_se.max():.3f})"
    return cell


def table1(results: list[dict], out: str | Path) -> pd.DataFrame:
    """Writes ``table1.csv`` (one row per run) and ``table1.md`` (mean ± std per cell beside the
    paper's value and the oracle NLL); returns the per-run frame.
    """
    out = Path(out)
    frame = results_frame(results)
    frame.to_csv(out / "table1.csv", index=False)
    lines = [
        "| dataset | train size | model | seeds | NLL | paper NLL | −ELBO | RE | paper RE | oracle NLL |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (dataset, factor), cell in frame.groupby(["dataset", "train_factor"], sort=False):  # frame order
        for model in TABLE_ORDER:
            sub = cell[cell.model == model]
            if sub.empty:
                continue
            paper = PAPER_TABLE1.get((dataset, model, int(factor)))
            pn = f"{paper['nll'][0]:.2f} ± {paper['nll'][1]:.2f}" if paper else "-"
            pr = f"{paper['re'][0]:.2f} ± {paper['re'][1]:.2f}" if paper else "-"
            size = f"{factor}·\\|G\\| = {int(sub.train_rows.iloc[0])}"
            lines.append(
                f"| {dataset} | {size} | {_LABEL[model]} | {len(sub)} | {_pm(sub.nll)} | {pn} | "
                f"{_pm(sub.neg_elbo)} | {_pm(sub.re)} | {pr} | {_oracle_cell(sub)} |"
            )
    if frame.model.isin(_CLASSICAL).any():
        lines += ["", _NOTE]
    (out / "table1.md").write_text("\n".join(lines) + "\n")
    return frame


_NOTE = (
    "Factor analysis (k by 5-fold cross-validation on the training rows) and Ledoit–Wolf are exact "
    "Gaussian models: their −ELBO is their exact NLL; Ledoit–Wolf has no latent variables, so no RE."
)


def figure3(results: list[dict], out: str | Path) -> pd.DataFrame:
    """Writes ``figure3.csv``, ``figure3.md`` and ``figure3.png``: test −ELBO against training size,
    one line per model with one-std error bars (the classical baselines dashed: their exact NLL), the
    oracle NLL dashed black (marked as a Monte-Carlo estimate where it is one); returns the frame.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    frame = results_frame(results)
    frame.to_csv(out / "figure3.csv", index=False)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=150)
    for dataset, data in frame.groupby("dataset"):
        for model in TABLE_ORDER:
            sub = data[data.model == model]
            if sub.empty:
                continue
            stats = sub.groupby("train_rows").neg_elbo.agg(["mean", "std", "count"]).reset_index()
            classical = model in _CLASSICAL
            ax.errorbar(
                stats.train_rows,
                stats["mean"],
                yerr=stats["std"].fillna(0),
                marker="s" if classical else "o",
                ms=3,
                capsize=3,
                ls="--" if classical else "-",
                label=_LABEL[model] + (" (exact NLL)" if classical else ""),
            )
        oracle = data.groupby("train_rows").oracle_nll.mean()
        if oracle.notna().any():
            label = "oracle NLL (Monte-Carlo estimate)" if _monte_carlo(data) else "oracle NLL"
            ax.axhline(float(oracle.mean()), ls="--", color="k", lw=1, label=label)
        _clip_outliers(ax, data)
        ax.set_title(f"{dataset}: test negative ELBO vs training size")
    ax.set_xscale("log")
    ax.set_xlabel("training samples")
    ax.set_ylabel("negative ELBO (nats)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "figure3.png")
    plt.close(fig)
    models = [m for m in TABLE_ORDER if m in set(frame.model)]
    oracle_head = "oracle NLL (MC estimate)" if _monte_carlo(frame) else "oracle NLL"
    lines = [
        "| train rows | " + " | ".join(_LABEL[m] for m in models) + f" | {oracle_head} |",
        "|---|" + "---|" * (len(models) + 1),
    ]
    cells = defaultdict(dict)
    for (rows, model), sub in frame.groupby(["train_rows", "model"]):
        cells[rows][model] = _pm(sub.neg_elbo)
    for rows in sorted(cells):
        oracle = frame[frame.train_rows == rows].oracle_nll
        lines.append(
            f"| {rows} | " + " | ".join(cells[rows].get(m, "-") for m in models) + f" | {_pm(oracle)} |"
        )
    lines += [
        "",
        "Test −ELBO, mean ± std over seeds (nats)."
        + (" " + _NOTE if frame.model.isin(_CLASSICAL).any() else ""),
    ]
    if _monte_carlo(frame):
        se = frame.oracle_se.max()
        lines.append(
            "The oracle is a Monte-Carlo (importance-sampling) estimate of the true marginal NLL on each "
            f"seed's test rows, {int(frame.oracle_samples.max())} samples per row; its standard error is "
            f"at most {se:.4f} nats."
        )
    (out / "figure3.md").write_text("\n".join(lines) + "\n")
    return frame


def _clip_outliers(ax, data: pd.DataFrame) -> None:
    """Keeps the plot readable when some run blew up: the y-axis stops a little above the worst cell
    mean that is within 20 nats of the best, and the clipped cells are named on the plot.
    """
    means = data.groupby(["model", "train_rows"]).neg_elbo.mean()
    floor = min(means.min(), data.oracle_nll.min()) if data.oracle_nll.notna().any() else means.min()
    kept = means[means <= floor + 20]
    if len(kept) == len(means):
        return
    top = kept.max() + 0.1 * (kept.max() - floor + 1)
    ax.set_ylim(floor - 0.05 * (top - floor), top)
    clipped = [f"{_LABEL[m]} @ {r}: {v:.3g}" for (m, r), v in means[means > floor + 20].items()]
    ax.text(
        0.01,
        0.99,
        "off the plot: " + "; ".join(clipped),
        transform=ax.transAxes,
        fontsize=5,
        va="top",
        wrap=True,
    )

"""Tables and figures from sweep results: one CSV row per run, Markdown summaries, Figure 3."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pandas as pd

from sirenvae.experiments.registry import PAPER_TABLE1, TABLE1_DATASETS, TABLE_ORDER

__all__ = ["figure3", "results_frame", "table1"]

_LABEL = {
    "vae": "VAE",
    "ind": "SIReN-VAE ind",
    "fc": "SIReN-VAE FC",
    "true": "SIReN-VAE true",
    "vae-maf": "VAE+MAF",
}


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
                "gap": None if r["oracle_nll"] is None else r["metrics"]["nll"] - r["oracle_nll"],
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
                f"{_pm(sub.neg_elbo)} | {_pm(sub.re)} | {pr} | {_pm(sub.oracle_nll)} |"
            )
    (out / "table1.md").write_text("\n".join(lines) + "\n")
    return frame


def figure3(results: list[dict], out: str | Path) -> pd.DataFrame:
    """Writes ``figure3.csv`` and ``figure3.png``: test −ELBO against training size, one line per
    model with one-std error bars, the oracle NLL dashed; returns the per-run frame.
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
            ax.errorbar(
                stats.train_rows,
                stats["mean"],
                yerr=stats["std"].fillna(0),
                marker="o",
                ms=3,
                capsize=3,
                label=_LABEL[model],
            )
        oracle = data.groupby("train_rows").oracle_nll.mean()
        if oracle.notna().any():
            ax.axhline(float(oracle.mean()), ls="--", color="k", lw=1, label="oracle NLL")
        ax.set_title(f"{dataset}: test negative ELBO vs training size")
    ax.set_xscale("log")
    ax.set_xlabel("training samples")
    ax.set_ylabel("negative ELBO (nats)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "figure3.png")
    plt.close(fig)
    lines = [
        "| train rows | " + " | ".join(_LABEL[m] for m in TABLE_ORDER) + " | oracle NLL |",
        "|---|" + "---|" * (len(TABLE_ORDER) + 1),
    ]
    cells = defaultdict(dict)
    for (rows, model), sub in frame.groupby(["train_rows", "model"]):
        cells[rows][model] = _pm(sub.neg_elbo)
    for rows in sorted(cells):
        oracle = frame[frame.train_rows == rows].oracle_nll
        lines.append(
            f"| {rows} | " + " | ".join(cells[rows].get(m, "-") for m in TABLE_ORDER) + f" | {_pm(oracle)} |"
        )
    (out / "figure3.md").write_text("\n".join(lines) + "\n")
    return frame

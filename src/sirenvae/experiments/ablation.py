"""The flow ablation: the paper's stack against the parent-conditioned stack, with and without the
graph-masked affine step, and the number of blocks, for SIReN-VAE (true structure) on ecoli70 and
arth150 at 2·|G| and 100·|G|. Everything else is the paper's setting, so each row differs from the
first in the flow alone; one seed. Its results: docs/results.md, "The flow ablation".
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sirenvae.experiments.protocol import FULL, QUICK, RunConfig
from sirenvae.files import atomic_write_text
from sirenvae.models import ModelConfig

__all__ = ["ABLATION", "ablation_grid", "ablation_table"]

_PARENTS = {"conditioning": "parents"}
#: label -> the ModelConfig fields that differ from the paper's setting
ABLATION: dict[str, dict] = {
    "paper": {},
    "parents": _PARENTS,
    "affine": {"affine": True},
    "parents-affine": _PARENTS | {"affine": True},
    "affine-only": _PARENTS | {"affine": True, "prior_blocks": 0, "encoder_blocks": 0},
    "parents-affine-4": _PARENTS | {"affine": True, "prior_blocks": 4, "encoder_blocks": 4},
    # the encoder's stack parent-conditioned too (sampled by its generation-wise inverse)
    "parents-affine-enc": _PARENTS | {"affine": True, "encoder_conditioning": "parents"},
}
DATASETS = ("ecoli70", "arth150")
FACTORS = (2, 100)


def ablation_grid(
    *,
    seeds: int = 1,
    quick: bool = False,
    datasets: tuple[str, ...] | None = None,
    factors: tuple[int, ...] | None = None,
    labels: tuple[str, ...] | None = None,
) -> list[RunConfig]:
    """The ablation's runs; each is the experiment ``ablation-<label>`` of model ``true``."""
    unknown = set(labels or ()) - set(ABLATION)
    if unknown:
        raise ValueError(
            f"unknown ablation setting(s) {', '.join(sorted(unknown))}; choose {', '.join(ABLATION)}"
        )
    return [
        RunConfig(
            experiment=f"ablation-{label}",
            dataset=dataset,
            model="true",
            train_factor=factor,
            seed=seed,
            schedule=QUICK if quick else FULL,
            model_config=ModelConfig(variant="true", **ABLATION[label]),
        )
        for factor in factors or FACTORS
        for dataset in datasets or DATASETS
        for label in labels or ABLATION
        for seed in range(1 if quick else seeds)
    ]


def ablation_table(results: list[dict], out: str | Path) -> pd.DataFrame:
    """``ablation.csv`` (one row per run) and ``ablation.md`` (test NLL per setting and cell)."""
    out = Path(out)
    rows = [
        {
            "setting": r["config"]["experiment"].removeprefix("ablation-"),
            "dataset": r["config"]["dataset"],
            "factor": r["config"]["train_factor"],
            "seed": r["config"]["seed"],
            **r["metrics"],
            "oracle_nll": r["oracle_nll"],
            "train_seconds": r["train_seconds"],
        }
        for r in results
    ]
    frame = pd.DataFrame(rows)
    atomic_write_text(out / "ablation.csv", frame.to_csv(index=False))
    order = [s for s in ABLATION if s in set(frame.setting)]
    cells = sorted(
        {(d, f) for d, f in zip(frame.dataset, frame.factor, strict=True)}, key=lambda c: (c[1], c[0])
    )
    lines = [
        "| setting | " + " | ".join(f"{d} {f}·\\|G\\| NLL (−ELBO)" for d, f in cells) + " |",
        "|---|" + "---|" * len(cells),
    ]
    for s in order:
        row = []
        for d, f in cells:
            hit = frame[(frame.setting == s) & (frame.dataset == d) & (frame.factor == f)]
            row.append("-" if hit.empty else f"{hit.nll.mean():.3f} ({hit.neg_elbo.mean():.3f})")
        lines.append(f"| {s} | " + " | ".join(row) + " |")
    oracle = [frame[(frame.dataset == d) & (frame.factor == f)].oracle_nll.mean() for d, f in cells]
    lines.append("| oracle | " + " | ".join(f"{o:.3f}" for o in oracle) + " |")
    atomic_write_text(out / "ablation.md", "\n".join(lines) + "\n")
    return frame

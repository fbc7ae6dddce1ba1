"""The grid plan: every run of an experiment as a list of frozen :class:`RunConfig`.

A grid crosses an experiment's datasets, training-size factors, models (in :data:`TABLE_ORDER`) and
seeds, from the protocol's data (:mod:`sirenvae.experiments.protocol`); the flow ablation's runs come
from :mod:`sirenvae.experiments.ablation`, and ``settings="searched"`` reads the frozen choices of
the settings search (:mod:`sirenvae.experiments.chosen`).
"""

from __future__ import annotations

from pathlib import Path

from sirenvae.experiments.ablation import ablation_grid
from sirenvae.experiments.chosen import DEFAULT_CHOSEN, load_chosen, searched_settings
from sirenvae.experiments.protocol import (
    DEFAULT_CELLS,
    EXPERIMENTS,
    FULL,
    QUICK,
    SEARCHED,
    SETTINGS,
    TABLE_ORDER,
    TUNING_SEED,
    RunConfig,
    default_config,
)
from sirenvae.models import VARIANTS

__all__ = ["grid"]


def grid(
    experiment: str,
    *,
    seeds: int | None = None,
    quick: bool = False,
    datasets: tuple[str, ...] | None = None,
    models: tuple[str, ...] | None = None,
    factors: tuple[int, ...] | None = None,
    settings: str = "paper",
    chosen: str | Path | None = None,
) -> list[RunConfig]:
    """All runs of an experiment (optionally a subset), models in :data:`TABLE_ORDER`.

    ``settings="searched"`` takes each run's configuration and schedule overrides from ``chosen``
    (default: the copy shipped in the package), a factor not searched from the nearest searched one.
    """
    if experiment == "ablation":
        if models or settings != "paper":
            raise ValueError("the ablation varies the flow of SIReN-VAE true; it takes no models or settings")
        return ablation_grid(seeds=seeds or 1, quick=quick, datasets=datasets, factors=factors)
    if experiment not in DEFAULT_CELLS:
        raise ValueError(f"unknown experiment {experiment!r}; choose {', '.join(EXPERIMENTS)}")
    if settings not in SETTINGS:
        raise ValueError(f"unknown settings {settings!r}; choose {' or '.join(SETTINGS)}")
    default = DEFAULT_CELLS[experiment]
    seeds = 3 if seeds is None else seeds
    if not 1 <= seeds <= TUNING_SEED:
        raise ValueError(
            f"seeds must lie in 1..{TUNING_SEED} (the seeds above are the search's), got {seeds}"
        )
    choices = None
    if settings == "searched":
        choices = load_chosen(chosen or DEFAULT_CHOSEN)
    # auto runs train as a default `sirenvae fit` does (the schedule sets their test rows and K)
    schedule = QUICK if quick else (SEARCHED if settings == "searched" else FULL)
    seeds = 1 if quick else seeds
    out = []
    for dataset in datasets or default[0]:
        for factor in factors or default[1]:
            for model in models or TABLE_ORDER:
                if model not in TABLE_ORDER:
                    raise ValueError(f"unknown model {model!r}; choose from {', '.join(TABLE_ORDER)}")
                model_config, run_schedule = default_config(model), schedule
                if choices is not None and model in VARIANTS:  # the classical ones choose their own
                    model_config, run_schedule = searched_settings(choices, dataset, factor, model, schedule)
                for seed in range(seeds):
                    out.append(
                        RunConfig(
                            experiment=experiment,
                            dataset=dataset,
                            model=model,
                            train_factor=factor,
                            seed=seed,
                            schedule=run_schedule,
                            model_config=model_config,
                            auto=settings == "auto" and model in VARIANTS,
                        )
                    )
    return out

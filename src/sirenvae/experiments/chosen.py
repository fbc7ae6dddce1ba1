"""The frozen choices of the settings search (``chosen.json``), read by the grid plan and the demo.

``chosen.json`` maps each searched (dataset, training-size factor, model) to its chosen
:class:`ModelConfig` (as a dict), its schedule overrides (e.g. ``lr``), the point of the space it
came from and the whole trial table (:func:`sirenvae.experiments.search.write_chosen` writes it). A
run whose factor was not searched takes the choice of the nearest searched factor on a log scale.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from sirenvae.experiments.protocol import Schedule
from sirenvae.models import ModelConfig

__all__ = ["DEFAULT_CHOSEN", "FORMAT", "load_chosen", "searched_settings"]

#: The format of ``chosen.json`` and of the search's cell records.
FORMAT = 1
#: The frozen choices shipped with the package, which ``grids.grid(settings="searched")`` and the
#: demo read: a copy of the committed search's ``docs/results/search/chosen.json`` (a test checks it).
DEFAULT_CHOSEN = Path(__file__).with_name("chosen.json")


def load_chosen(path: str | Path = DEFAULT_CHOSEN) -> dict[tuple[str, int, str], dict]:
    """The frozen choices of a ``chosen.json``: (dataset, factor, model) -> entry."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no searched settings at {path}: run `sirenvae search` (it writes chosen.json) "
            "or use the paper settings"
        ) from None
    if doc.get("format") != FORMAT:
        raise ValueError(f"{path} is no chosen.json of format {FORMAT}")
    return {(e["dataset"], e["factor"], e["model"]): e for e in doc["choices"]}


def searched_settings(
    choices: Mapping[tuple[str, int, str], dict], dataset: str, factor: int, model: str, schedule: Schedule
) -> tuple[ModelConfig | None, Schedule]:
    """The chosen configuration and schedule of a run; an unsearched factor takes the nearest searched
    one on a log scale (ties: the smaller). A classical model's configuration is ``None`` (its chosen
    ``params`` are in the entry).
    """
    searched = sorted(f for d, f, m in choices if (d, m) == (dataset, model))
    if not searched:
        raise ValueError(
            f"no searched settings for {model} on {dataset}; search it or use the paper settings"
        )
    nearest = min(searched, key=lambda f: (abs(math.log(f / factor)), f))
    entry = choices[(dataset, nearest, model)]
    config = ModelConfig.from_dict(entry["model_config"]) if entry["model_config"] is not None else None
    return config, replace(schedule, **entry["schedule"])

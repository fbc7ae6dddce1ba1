"""The paper's experimental protocol as data: what every run of Table 1 and Figure 3 is made of.

The models in table order, the datasets and training-size factors of each experiment, the training
schedules (in optimiser steps, so that small and large training sets get comparable optimisation
effort), the evaluation and tuning seeds, one configuration per model, a run as a frozen
:class:`RunConfig`, and the published numbers. :mod:`sirenvae.experiments.grids` builds each
experiment's runs from them.

Hyper-parameters are fixed per model here, before any test number was looked at
(``settings="paper"``), or read from the frozen choices of the settings search on tuning data
(``settings="searched"``, :mod:`sirenvae.experiments.chosen`); either way they are written next to
every result.

Published numbers: SIReN-VAE poster (Mouton & Kroon 2022), Table 1, mean ± std over seeds, nats.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field

from sirenvae.baselines import BASELINES, ClassicalConfig
from sirenvae.models import VARIANTS, ModelConfig

__all__ = [
    "CLASSICAL_CONFIGS",
    "DEFAULT_CELLS",
    "EXPERIMENTS",
    "FIGURE3_FACTORS",
    "FULL",
    "MODEL_CONFIGS",
    "PAPER_TABLE1",
    "QUICK",
    "SEARCHED",
    "SETTINGS",
    "TABLE1_DATASETS",
    "TABLE_ORDER",
    "TUNING_SEED",
    "RunConfig",
    "Schedule",
    "default_config",
]

# the model variants (sirenvae.models.VARIANTS) in the order of the paper's tables and runs, then the
# classical baselines (sirenvae.baselines.BASELINES: factor analysis, Ledoit-Wolf), which train no VAE
TABLE_ORDER = ("vae", "ind", "fc", "true", "vae-maf", "fa", "lw")
TABLE1_DATASETS = ("magic-niab", "arth150", "magic-irri")
TABLE1_FACTORS = (2, 100)
FIGURE3_FACTORS = (1, 2, 5, 10, 20, 50, 100)
#: Each experiment's default datasets and training-size factors (the ablation's are its own:
#: :mod:`sirenvae.experiments.ablation`).
DEFAULT_CELLS: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = {
    "table1": (TABLE1_DATASETS, TABLE1_FACTORS),
    "figure3": (("ecoli70",), FIGURE3_FACTORS),
    # the nonlinear Figure 3 (its oracle a Monte-Carlo estimate); `reproduce figure3 --network
    # arithmetic-circuit` runs it
    "figure3nl": (("arithmetic-circuit",), FIGURE3_FACTORS),
}
#: The flow ablation (:mod:`sirenvae.experiments.ablation`; docs/results.md, "The flow ablation") is
#: the last experiment.
EXPERIMENTS = (*DEFAULT_CELLS, "ablation")
#: Where each run's settings come from: fixed by hand, chosen by the search on tuning data, or chosen
#: by cross-validation on the run's own training rows (:mod:`sirenvae.selection`, a user's protocol).
SETTINGS = ("paper", "searched", "auto")
#: Evaluation seeds stay below this; the settings search draws its tuning data from here on.
TUNING_SEED = 1000


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """How a run is trained (in optimiser steps) and evaluated."""

    lr: float = 3e-3
    small_batch: int = 32
    large_batch: int = 128
    large_from: int = 1000
    max_steps: int = 4000
    patience_steps: int = 1000
    warmup_steps: int = 500
    valid_fraction: float = 0.1
    test_size: int = 2000
    importance_samples: int = 1000
    valid_samples: int = 1

    def batch_size(self, n: int) -> int:
        return self.small_batch if n < self.large_from else self.large_batch

    def epochs(self, n: int) -> tuple[int, int]:
        """``(max_epochs, patience)`` for ``n`` training rows (a validation share carved out)."""
        rows = max(1, n - int(round(self.valid_fraction * n)))
        per_epoch = math.ceil(rows / self.batch_size(n))
        return max(1, math.ceil(self.max_steps / per_epoch)), max(
            3, math.ceil(self.patience_steps / per_epoch)
        )


#: Schedule fields added after results were committed, at the value that meant what came before.
SCHEDULE_LEGACY = {"valid_samples": 1}

FULL = Schedule()
#: The schedule of the searched settings: the paper's, with a validation ELBO of 32 samples under
#: common random numbers (early stopping on 9 validation rows compares epochs rather than draws).
SEARCHED = Schedule(valid_samples=32)
QUICK = Schedule(max_steps=40, patience_steps=40, warmup_steps=10, test_size=200, importance_samples=20)

# one configuration per model, shared by every dataset and size
MODEL_CONFIGS = {m: ModelConfig(variant=m) for m in VARIANTS}
# the classical baselines' fitting protocol (factor analysis: k by 5-fold CV on the training rows)
CLASSICAL_CONFIGS = {b: ClassicalConfig(baseline=b) for b in BASELINES}


def default_config(model: str) -> ModelConfig | ClassicalConfig:
    """The protocol's configuration of a deep model or a classical baseline."""
    return MODEL_CONFIGS[model] if model in MODEL_CONFIGS else CLASSICAL_CONFIGS[model]


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """One cell-seed of an experiment."""

    experiment: str
    dataset: str
    model: str
    train_factor: int
    seed: int
    schedule: Schedule = field(default_factory=Schedule)
    model_config: ModelConfig | ClassicalConfig | None = None
    #: Choose the settings by k-fold CV on the run's training rows (``model_config`` unused then).
    auto: bool = False

    @property
    def run_id(self) -> str:
        return f"{self.experiment}-{self.dataset}-{self.model}-x{self.train_factor}-s{self.seed}"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["model_config"] = (self.model_config or default_config(self.model)).to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        d = dict(d)
        d["schedule"] = Schedule(**d["schedule"])
        mc = d.get("model_config")
        config_class = ClassicalConfig if mc and "baseline" in mc else ModelConfig
        d["model_config"] = config_class.from_dict(mc) if mc else None
        return cls(**d)

    def digest(self, *, tables_inert: bool = False) -> str:
        """A hash of everything that determines the result (to refuse stale results on resume).

        Model options added after a result was written, at their :data:`~sirenvae.models.config.LEGACY`
        value (the behaviour before they existed), leave the hash unchanged, so older results stay valid;
        so do the options that act on holes only (:data:`~sirenvae.models.config.HOLE_OPTIONS`) in a
        model without ``mask_inputs``, and those of summed nodes
        (:data:`~sirenvae.models.config.SUMMED_OPTIONS`) in a model without ``summed``. With
        ``tables_inert``, ``discrete_tables`` also drops out in a model of continuous columns only
        (results written before that option existed hash so: see :meth:`digests`).
        """
        from sirenvae.models.config import HOLE_OPTIONS, LEGACY, SUMMED_OPTIONS

        d = self.to_dict()
        if "model_config" in d and isinstance(d["model_config"], dict):
            mc = d["model_config"]
            inert = (() if mc.get("mask_inputs") else HOLE_OPTIONS) + (
                () if mc.get("summed") else SUMMED_OPTIONS
            )
            if tables_inert and not mc.get("types"):
                inert += ("discrete_tables",)
            d["model_config"] = {
                k: v for k, v in mc.items() if not (k in LEGACY and LEGACY[k] == v) and k not in inert
            }
        d["schedule"] = {k: v for k, v in d["schedule"].items() if SCHEDULE_LEGACY.get(k, ...) != v}
        if not d["auto"]:  # the field came later: a run without it hashes as before
            del d["auto"]
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def digests(self) -> set[str]:
        """The hashes a finished result of this configuration may carry: :meth:`digest`, and for a
        model of continuous columns written before count tables existed, the hash without
        ``discrete_tables`` (which does nothing there).
        """
        return {self.digest(), self.digest(tables_inert=True)}


# SIReN-VAE poster, Table 1: (NLL, RE) mean and std at 2|G| and 100|G|
PAPER_TABLE1: dict[tuple[str, str, int], dict[str, tuple[float, float]]] = {}


def _paper(dataset: str, model: str, nll2, re2, nll100, re100) -> None:
    PAPER_TABLE1[(dataset, model, 2)] = {"nll": nll2, "re": re2}
    PAPER_TABLE1[(dataset, model, 100)] = {"nll": nll100, "re": re100}


_paper("magic-niab", "vae", (42.99, 1.50), (6.21, 0.32), (36.95, 0.01), (4.68, 0.01))
_paper("magic-niab", "ind", (43.77, 0.16), (6.32, 0.08), (35.84, 0.23), (4.07, 0.10))
_paper("magic-niab", "fc", (42.91, 1.04), (6.03, 0.29), (35.77, 0.23), (4.05, 0.09))
_paper("magic-niab", "true", (38.98, 0.81), (4.95, 0.22), (36.22, 0.19), (3.88, 0.10))
_paper("arth150", "vae", (74.13, 3.27), (6.13, 0.70), (38.92, 0.06), (4.50, 0.02))
_paper("arth150", "ind", (42.60, 0.38), (4.85, 0.02), (38.84, 0.11), (4.45, 0.02))
_paper("arth150", "fc", (42.15, 0.00), (4.82, 0.00), (39.06, 0.07), (4.49, 0.01))
_paper("arth150", "true", (42.06, 0.40), (4.80, 0.01), (38.86, 0.22), (4.42, 0.04))
_paper("magic-irri", "vae", (15.70, 1.89), (11.95, 2.58), (10.18, 0.21), (7.30, 0.60))
_paper("magic-irri", "ind", (14.66, 1.08), (16.66, 1.40), (10.03, 0.00), (9.12, 0.01))
_paper("magic-irri", "fc", (12.41, 3.34), (12.05, 3.99), (10.03, 0.00), (9.13, 0.01))
_paper("magic-irri", "true", (10.83, 0.64), (11.13, 1.95), (10.02, 0.01), (8.91, 0.29))

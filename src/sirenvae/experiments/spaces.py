"""The search spaces of :mod:`sirenvae.experiments.search`, as data: candidate values per field, and
designed points each model tries first (after the paper's setting).
"""

from __future__ import annotations

from sirenvae.candidates import CANDIDATES
from sirenvae.experiments.protocol import TABLE_ORDER
from sirenvae.models import VARIANTS

__all__ = ["DESIGNS", "SCHEDULE_FIELDS", "SEARCHED_MODELS", "SPACES"]

#: :class:`Schedule` fields a trial may set; the evaluation's own (test rows, K) are not searchable.
SCHEDULE_FIELDS = tuple(
    "lr small_batch large_batch large_from max_steps patience_steps warmup_steps valid_fraction".split()
)

_DECODER = {
    "decoder_mean": ["mlp", "linear", "linear+mlp"],
    "likelihood": ["normal", "studentt"],
    "min_scale": [1e-3, 1e-2, 1e-1],
}
_GRF = {
    "prior_blocks": [0, 1, 2, 4],
    "encoder_blocks": [0, 1, 2, 4],
    "hidden_per_set": [2, 4, 8],
    "conditioning": ["ancestors", "parents"],  # the prior's; the encoder's is the ablation's question
    "affine": [False, True],  # with it, blocks 0 (the affine step alone) may join the block lists
}
_LR = {"lr": [1e-3, 3e-3, 1e-2]}
#: Designed points tried first, after the paper's: the candidates of ``--settings auto``
#: (:mod:`sirenvae.candidates`: the same decoder choices for every model, and for the GRF models the
#: parent-conditioned stack with the affine step, with 0 blocks a linear-Gaussian BN), in the order the
#: committed search tried them. Fixed from the model families, before any number was seen.
_ORDER = {"true": ("flow", "linear", "flow-t", "linear-t"), "vae": ("mlp", "linear", "mlp-t", "linear-t")}
_ORDER |= {"fc": _ORDER["true"], "ind": _ORDER["true"], "vae-maf": _ORDER["vae"]}
DESIGNS: dict[str, list[dict]] = {
    model: [next(c.options for c in CANDIDATES[model] if c.name == name) for name in names]
    for model, names in _ORDER.items()
}
#: The models a search covers: the deep ones. Factor analysis chooses its k by its own 5-fold CV over
#: up to 30 values on the training rows (more trials than any deep model gets); Ledoit-Wolf has none.
SEARCHED_MODELS = tuple(m for m in TABLE_ORDER if m in VARIANTS)
_VAE = {"vae_hidden": [0, 32, 128], "hidden_layers": [1, 2]}
#: Each model's search space: field -> candidate values (ModelConfig or Schedule fields).
SPACES: dict[str, dict[str, list]] = {
    "true": _GRF | _DECODER | _LR,
    "fc": _GRF | _DECODER | _LR,
    "ind": _GRF | _DECODER | _LR,
    "vae": _VAE | _DECODER | _LR,
    "vae-maf": _VAE | {"maf_transforms": [1, 2, 4]} | _DECODER | _LR,
}

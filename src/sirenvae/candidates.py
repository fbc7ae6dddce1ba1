"""The candidate settings of ``--settings auto``: a fixed, designed list per model variant.

Fixed from the model families before any ``auto`` number was measured, and the same for every
graph and table: they are the designed points of the settings search
(:data:`sirenvae.experiments.spaces.DESIGNS`), ordered from the simplest model to the richest, so
that "the simplest candidate within one standard error of the best" is the earliest such one.

For the graph-structured variants (``true``, ``fc``, ``ind``) every candidate is parent-conditioned
with the graph-masked affine step, so a default fit answers causal queries:

1. ``linear``: no residual blocks and a linear decoder mean, i.e. a linear-Gaussian Bayesian network
   over the graph with a structured Gaussian posterior;
2. ``linear-t``: the same with Student-t noise (heavy tails);
3. ``flow``: two parent-conditioned residual blocks in prior and encoder, decoder mean affine plus a
   masked MLP;
4. ``flow-t``: two blocks, the paper's MLP decoder mean with Student-t noise;
5. ``tables`` (only where hidden nodes with stated levels are summed out): ``flow``, with free
   conditional probability tables for the summed nodes and their discrete children (EM's model
   class, :class:`~sirenvae.models.tables.LearnedTables`). Added after the first four, on tuning
   draws of ALARM (docs/results.md, "Learned tables and restarts");
6. ``tables-smooth``: the same with a head prior of 30 pseudo-rows per node instead of 10, as EM's
   BDeu equivalent sample size is chosen by CV: on ALARM's tuning draws 10 is better (by 0.3 nat),
   on own networks with CPTs drawn from a Dirichlet(0.6) 30 is, and EM's CV chose the same values
   (docs/results.md, "A smoother tables candidate").

The VAEs get the matching decoder choices (linear, linear with Student-t, linear plus MLP, MLP with
Student-t), the same number of candidates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CANDIDATES", "STUDENT_T_FORM", "Candidate", "candidates_for"]


@dataclass(frozen=True)
class Candidate:
    """A named point: the :class:`~sirenvae.models.ModelConfig` fields it sets (beyond the variant)."""

    name: str
    options: dict = field(default_factory=dict)


_PARENTS = {"conditioning": "parents", "affine": True}
_LINEAR_BN = _PARENTS | {"prior_blocks": 0, "encoder_blocks": 0, "decoder_mean": "linear"}
_GRF = (
    Candidate("linear", _LINEAR_BN),
    Candidate("linear-t", _LINEAR_BN | {"likelihood": "studentt"}),
    Candidate("flow", _PARENTS | {"decoder_mean": "linear+mlp"}),
    Candidate("flow-t", _PARENTS | {"likelihood": "studentt"}),
    Candidate("tables", _PARENTS | {"decoder_mean": "linear+mlp", "summed_tables": True}),
    Candidate(
        "tables-smooth", _PARENTS | {"decoder_mean": "linear+mlp", "summed_tables": True, "head_prior": 30.0}
    ),
)
_VAE = (
    Candidate("linear", {"decoder_mean": "linear"}),
    Candidate("linear-t", {"decoder_mean": "linear", "likelihood": "studentt"}),
    Candidate("mlp", {"decoder_mean": "linear+mlp"}),
    Candidate("mlp-t", {"likelihood": "studentt"}),
)

#: The Student-t form of each flexible candidate: with fewer than
#: :data:`sirenvae.selection.FEW_ROWS` rows a chosen flexible candidate gives way to it (a decoder
#: with an MLP fits a handful of residuals too closely, and Gaussian tails make new rows pay for it
#: quadratically; on tuning draws the t form was better in 14 of 15 such pairs).
STUDENT_T_FORM = {"flow": "flow-t", "mlp": "mlp-t"}

#: The candidates of each variant, simplest first.
CANDIDATES: dict[str, tuple[Candidate, ...]] = {
    "true": _GRF,
    "fc": _GRF,
    "ind": _GRF,
    "vae": _VAE,
    "vae-maf": _VAE,
}


def candidates_for(variant: str) -> tuple[Candidate, ...]:
    """The candidates of ``variant`` (a ``ValueError`` naming the variants for an unknown one)."""
    if variant not in CANDIDATES:
        raise ValueError(f"unknown model {variant!r}; choose one of {', '.join(CANDIDATES)}")
    return CANDIDATES[variant]

"""The model's hyper-parameters, serialised next to every checkpoint and result."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Literal

from sirenvae.defaults import CONDITIONING, KAPPA

__all__ = ["VARIANTS", "ModelConfig", "Variant"]

#: The decoder's mean: the paper's masked MLP, a graph-masked affine map, or the affine map plus the MLP.
DECODER_MEANS: tuple[str, ...] = ("mlp", "linear", "linear+mlp")

Variant = Literal["true", "fc", "ind", "vae", "vae-maf"]
#: Every model variant, in the order the CLI lists them.
VARIANTS: tuple[str, ...] = ("true", "fc", "ind", "vae", "vae-maf")
#: The variants whose prior and encoder follow a graph (graphical residual flows).
STRUCTURED: tuple[str, ...] = ("true", "fc", "ind")
#: How the head prior's pseudo-rows are counted: per node (BDeu) or per parent configuration.
HEAD_PRIOR_FORMS: tuple[str, ...] = ("bdeu", "configuration")


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """The model's hyper-parameters.

    Attributes:
        variant: ``true``, ``fc``, ``ind``, ``vae`` or ``vae-maf``.
        prior_blocks, encoder_blocks: GRF blocks of prior and encoder (``0`` with ``affine``: the
            affine step alone).
        conditioning: The prior's stack, ``ancestors`` (the paper's) or ``parents`` (the BN's exact
            factorisation at any depth; docs/results.md, "What changed in the model").
        encoder_conditioning: The same for the encoder over the faithful inverse; ``parents``
            samples by the generation-wise inverse (slower).
        affine: Add the graph-masked affine step to prior and encoder (a linear-Gaussian BN when
            the blocks are 0).
        hidden_per_set: GRF hidden units per variable set and layer.
        hidden_layers: Hidden layers of GRF blocks and of the decoder.
        decoder_hidden_per_set: Decoder hidden units per observed variable.
        vae_hidden: Width of the VAE's hidden layers (``0``: matched to the structured model).
        maf_transforms, maf_hidden: The VAE+MAF posterior.
        kappa: The GRF spectral bound.
        min_scale: The decoder's smallest scale (in standardised units), a floor on its confidence.
        standardize: Model standardised data internally; likelihoods stay on the raw scale.
        decoder_mean: ``mlp`` (the paper's), ``linear`` (a linear-Gaussian BN conditional with a
            constant scale per node) or ``linear+mlp`` (the affine map plus the MLP as a residual).
        mask_inputs: The encoder also reads each observed node's presence bit (1 present, 0 a
            missing cell), wired like the node's value; set by ``fit`` when the training rows
            have holes or ``train_masking`` hides some.
        likelihood: The decoder's observation family, a name in
            :data:`sirenvae.models.likelihoods.FAMILIES` (``normal``, ``studentt``, ...).
        types: Per observed node, another family (``binary``, ``categorical:3``, ``poisson``,
            ``negbin``, ``lognormal``, ...): a mixed table; the nodes not named take ``likelihood``.
        discrete_tables: A binary or categorical node whose parents are all observed and discrete
            takes a smoothed count table, the closed-form maximum of its factor
            (:mod:`sirenvae.models.tables`), instead of the decoder's head (graph variants).
        hole_proposal: With ``mask_inputs`` (holes in the training rows), a missing continuous node
            that has children is proposed by a network over its Markov blanket instead of blindly
            from its decoder conditional (:mod:`sirenvae.models.holes`; graph variants).
        mask_scale: With ``mask_inputs``, the presence bits also move the log-scales of the encoder's
            affine step (:class:`~sirenvae.flows.GraphAffine`'s ``scale_context``), so that a missing
            informative value can widen the posterior (graph variants, ``ancestors`` encoder).
        summed: Hidden nodes with a few discrete states (binary or categorical in ``types``), modelled
            among the decoder's nodes with their column always missing and summed out exactly over
            their joint states (:meth:`~sirenvae.models.SIReNVAE.log_joint_parts`); the split's
            ``latent`` holds the continuous hidden nodes only (graph variants).
        head_prior: With ``summed``, a Dirichlet prior of this many pseudo-rows on the conditionals
            of the summed nodes and their discrete children, spread evenly over their levels
            (:meth:`~sirenvae.models.summed.SummedNodes.log_prior`), added to the training objective.
        head_prior_form: ``"bdeu"``: ``head_prior`` pseudo-rows per node, spread evenly over its
            parent configurations too (BDeu's equivalent sample size); ``"configuration"``: per
            parent configuration.
        summed_tables: With ``summed``, the summed nodes and their discrete children (every parent
            discrete) take free conditional probability tables learned with the model
            (:class:`~sirenvae.models.tables.LearnedTables`, EM's model class) instead of heads.
    """

    variant: Variant = "true"
    prior_blocks: int = 2
    encoder_blocks: int = 2
    conditioning: str = "ancestors"
    encoder_conditioning: str = "ancestors"
    affine: bool = False
    hidden_per_set: int = 4
    hidden_layers: int = 2
    decoder_hidden_per_set: int = 4
    vae_hidden: int = 0
    maf_transforms: int = 2
    maf_hidden: int = 0
    kappa: float = KAPPA
    min_scale: float = 1e-3
    standardize: bool = True
    decoder_mean: Literal["mlp", "linear", "linear+mlp"] = "mlp"
    likelihood: str = "normal"
    mask_inputs: bool = False
    types: dict[str, str] = field(default_factory=dict)
    discrete_tables: bool = True
    hole_proposal: bool = True
    mask_scale: bool = True
    summed: tuple[str, ...] = ()
    head_prior: float = 10.0
    head_prior_form: str = "bdeu"
    summed_tables: bool = False

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown model {self.variant!r}; choose one of {', '.join(VARIANTS)}")
        for name in ("conditioning", "encoder_conditioning"):
            if getattr(self, name) not in CONDITIONING:
                raise ValueError(
                    f"{name} must be one of {', '.join(CONDITIONING)}, got {getattr(self, name)!r}"
                )
        for name in ("prior_blocks", "encoder_blocks"):
            blocks = getattr(self, name)
            if blocks < 0 or (blocks == 0 and not self.affine and self.structured):
                raise ValueError(f"{name} must be >= 1 (or 0 with affine), got {blocks}")
        if self.decoder_mean not in DECODER_MEANS:
            raise ValueError(
                f"unknown decoder_mean {self.decoder_mean!r}; choose one of {', '.join(DECODER_MEANS)}"
            )
        if self.likelihood != LEGACY["likelihood"]:  # the registry needs torch: not at CLI start-up
            from sirenvae.models.likelihoods import family

            family(self.likelihood)
        object.__setattr__(self, "types", dict(self.types))  # its own copy (LEGACY's is shared)
        object.__setattr__(self, "summed", tuple(self.summed))  # a JSON list reads back as a tuple
        if self.summed and not self.structured:
            raise ValueError("summed discrete hidden nodes need a graph variant (true, fc or ind)")
        if self.types:
            from sirenvae.models.likelihoods import family

            for node, kind in self.types.items():
                try:
                    family(kind)
                except ValueError as e:
                    raise ValueError(f"node {node!r}: {e}") from None
        if self.head_prior_form not in HEAD_PRIOR_FORMS:
            forms = ", ".join(HEAD_PRIOR_FORMS)
            raise ValueError(f"unknown head_prior_form {self.head_prior_form!r}; choose one of {forms}")
        if not self.head_prior >= 0:
            raise ValueError(f"head_prior must be non-negative, got {self.head_prior}")
        if not self.min_scale >= 0:
            raise ValueError(f"min_scale must be non-negative, got {self.min_scale}")

    @property
    def structured(self) -> bool:
        """Whether prior and encoder follow a graph."""
        return self.variant in STRUCTURED

    def to_dict(self) -> dict:
        return asdict(self) | {"summed": list(self.summed)}  # as JSON writes it

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        """The configuration of a dict; options missing from it (a file written before they
        existed) take the behaviour of that time, :data:`LEGACY`, not today's defaults.
        """
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model option(s): {', '.join(sorted(unknown))}")
        return cls(**{**LEGACY, **d})


#: The options that act only on rows with holes, i.e. with ``mask_inputs``.
HOLE_OPTIONS: tuple[str, ...] = ("hole_proposal", "mask_scale")
#: The options that act only with summed discrete hidden nodes, i.e. with ``summed``.
SUMMED_OPTIONS: tuple[str, ...] = ("head_prior", "head_prior_form", "summed_tables")

#: What options added after the first release meant before they existed.
LEGACY: dict = {
    "conditioning": "ancestors",
    "encoder_conditioning": "ancestors",
    "affine": False,
    "decoder_mean": "mlp",
    "likelihood": "normal",
    "mask_inputs": False,
    "types": {},
    "discrete_tables": False,
    "hole_proposal": False,
    "mask_scale": False,
    "summed": [],
    "head_prior": 1.0,  # acts only with summed nodes, which did not exist before it
    "head_prior_form": "configuration",
    "summed_tables": False,
}

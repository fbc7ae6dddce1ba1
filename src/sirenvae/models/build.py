r"""One builder per model variant (Mouton & Kroon 2022, Table 1; the journal version adds VAE+MAF).

- ``true``: the BN everywhere.
- ``ind``: the BN without edges among latents (independent latents in the prior), decoder masked by
  the BN, encoder by the faithful inverse of that graph.
- ``fc``: latents fully connected (a complete DAG in topological order) in prior and encoder.
- ``vae``: unmasked MLP encoder and decoder, :math:`\mathcal{N}(0, I)` prior, diagonal Gaussian posterior.
- ``vae-maf``: the VAE with zuko's (unstructured) MAF as posterior.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from sirenvae.flows import (
    Flow,
    GraphAffine,
    GraphicalResidualFlow,
    LazyComposedTransform,
    LazyTransform,
    StandardNormalBase,
)
from sirenvae.graph import BayesianNetwork, LatentSplit
from sirenvae.inversion import faithful_inverse
from sirenvae.models.components import Decoder, DiagonalEncoder, maf_encoder
from sirenvae.models.config import STRUCTURED, ModelConfig
from sirenvae.models.holes import HoleProposal, proposed_nodes
from sirenvae.models.observation import Observation, families, graph_units
from sirenvae.models.vae import SIReNVAE

__all__ = ["build_model", "variant_graph"]

#: The prior's inverse (ancestral sampling) may need more iterations than the encoder's default.
PRIOR_MAX_ITER = 100


def variant_graph(split: LatentSplit, variant: str) -> BayesianNetwork:
    """The graph a structured variant uses for its prior and encoder (``true``, ``ind``, ``fc``)."""
    bn, lat = split.graph, set(split.latent)
    if variant == "true":
        return bn
    if variant not in ("ind", "fc"):
        raise ValueError(f"variant {variant!r} uses no graph")
    parents = {}
    for v in bn.nodes:
        pa = [p for p in bn.parents(v) if not (v in lat and p in lat)]
        if variant == "fc" and v in lat:
            pa = list(split.latent[: split.latent.index(v)]) + pa
        parents[v] = pa
    return BayesianNetwork(parents, name=bn.name)


def matched_width(split: LatentSplit, config: ModelConfig) -> int:
    """A VAE width of the order of the structured decoder's: ``2 k sqrt(|X| |Z|)``, in [16, 512]."""
    Dz, Dx = len(split.latent), len(split.observed)
    return max(16, min(512, 2 * config.decoder_hidden_per_set * int(math.sqrt(Dx * Dz))))


def _grf(adjacency: Tensor, context_adjacency: Tensor | None, config: ModelConfig, **kwargs):
    return GraphicalResidualFlow(
        adjacency,
        context_adjacency,
        hidden_per_set=config.hidden_per_set,
        hidden_layers=config.hidden_layers,
        kappa=config.kappa,
        **kwargs,
    )


def _encoder(
    adjacency: Tensor, context_adjacency: Tensor, config: ModelConfig, scale_context: Tensor | None = None
) -> Flow:
    r""":math:`q(z \mid x)` over the faithful inverse.

    With the paper's stack, :math:`z = a^{-1}(F(\epsilon))`: one pass of the blocks :math:`F` and a
    triangular solve for the affine step :math:`a`, whose normalizing direction is a
    linear-Gaussian conditional :math:`q(z_i \mid z_{pa(i)}, x)`. The parent-conditioned encoder
    is a normalizing flow over :math:`z` sampled by its generation-wise inverse. ``scale_context``:
    the context inputs that also move the affine step's log-scales (the presence bits).
    """
    base = StandardNormalBase(adjacency.shape[0])
    blocks = config.encoder_blocks
    if config.encoder_conditioning == "parents":
        flow = _grf(
            adjacency, context_adjacency, config, blocks=blocks, conditioning="parents", affine=config.affine
        )
        return Flow(flow, base)
    steps: list[LazyTransform] = []
    if config.affine:
        steps.append(GraphAffine(adjacency, context_adjacency, scale_context=scale_context))
    if blocks:
        steps.append(_grf(adjacency, context_adjacency, config, blocks=blocks).inv)
    return Flow(steps[0] if len(steps) == 1 else steps, base)


def observation(split: LatentSplit, config: ModelConfig) -> Observation:
    """The observed nodes' families: ``config.types`` where given, else ``config.likelihood``."""
    return Observation(families(split.observed, config.types, config.likelihood, config.min_scale))


def _decoder(
    sets: Tensor,
    config: ModelConfig,
    obs: Observation,
    units: Tensor,
    width: int = 0,
    observed=None,
    untabled=(),
) -> Decoder:
    """The decoder over ``sets`` (the BN's parents, or all latents for a VAE) with the nodes' families;
    ``observed``, the graph positions of the observed nodes, gives it count tables where
    ``config.discrete_tables`` asks for them (not at or below ``untabled``, the summed nodes).
    """
    return Decoder(
        sets,
        config.decoder_hidden_per_set,
        config.hidden_layers,
        config.min_scale,
        width=width,
        mean=config.decoder_mean,
        likelihood=config.likelihood,
        observation=obs,
        in_units=units,
        tables=list(observed) if observed is not None and config.discrete_tables else None,
        untabled=untabled,
        learned=list(observed) if observed is not None and config.summed_tables else None,
    )


def _structured(split: LatentSplit, config: ModelConfig) -> SIReNVAE:
    """GRF prior on the variant's graph, BN-masked decoder, GRF encoder on the faithful inverse."""
    Z, X = split.latent, split.observed
    obs = observation(split, config)
    sets = split.graph.adjacency()[split.observed_index()]
    summed = [split.graph.index(v) for v in config.summed]
    decoder = _decoder(
        sets, config, obs, graph_units(split, obs), observed=split.observed_index(), untabled=summed
    )
    if not Z:  # every hidden node is summed: p(x) is exact, prior and encoder are over nothing
        nothing = Flow(LazyComposedTransform(), StandardNormalBase(0))
        empty = Flow(LazyComposedTransform(), StandardNormalBase(0))
        return SIReNVAE(split, prior=nothing, decoder=decoder, encoder=empty, config=config)
    g = variant_graph(split, config.variant)
    context = split.prior_context
    units = dict(zip(X, obs.input_units.tolist(), strict=True))
    Cp = g.cross_adjacency(Z, context) if context else None
    if Cp is not None:  # a context node's input units each carry its connections
        Cp = Cp.repeat_interleave(torch.tensor([units[v] for v in context]), 1)
    prior_flow = _grf(
        g.adjacency(Z),
        Cp,
        config,
        blocks=config.prior_blocks,
        conditioning=config.conditioning,
        affine=config.affine,
        max_iter=PRIOR_MAX_ITER,
    )
    prior = Flow(prior_flow, StandardNormalBase(len(Z)))
    H = faithful_inverse(split.on(g))
    C = H.cross_adjacency(Z, X)
    Cu = C.repeat_interleave(obs.input_units, 1)
    scale = None
    if config.mask_inputs and config.mask_scale:  # the presence bits move the affine step's scales
        scale = torch.cat([torch.zeros_like(Cu), C], 1)
    encoder = _encoder(H.adjacency(Z), torch.cat([Cu, C], 1) if config.mask_inputs else Cu, config, scale)
    holes = None
    if config.mask_inputs and config.hole_proposal and proposed_nodes(split, obs):
        holes = HoleProposal(split, obs, hidden_per_set=config.hidden_per_set)
    return SIReNVAE(
        split,
        prior=prior,
        decoder=decoder,
        encoder=encoder,
        config=config,
        prior_context=context,
        inverse_graph=H,
        holes=holes,
    )


def _unstructured(split: LatentSplit, config: ModelConfig, encoder: Callable[[int, int, int], nn.Module]):
    r"""Unmasked decoder from all latents, :math:`\mathcal{N}(0, I)` prior, the given posterior."""
    Dz, Dx = len(split.latent), len(split.observed)
    width = config.vae_hidden or matched_width(split, config)
    sets = torch.zeros(Dx, len(split.graph), dtype=torch.bool)
    sets[:, split.latent_index()] = True
    obs = observation(split, config)
    decoder = _decoder(sets, config, obs, graph_units(split, obs), width=width)
    prior = Flow(LazyComposedTransform(), StandardNormalBase(Dz))
    inputs = int(obs.input_units.sum()) + (Dx if config.mask_inputs else 0)  # presence bits beside
    return SIReNVAE(split, prior=prior, decoder=decoder, encoder=encoder(inputs, Dz, width), config=config)


def _vae(split: LatentSplit, config: ModelConfig) -> SIReNVAE:
    """The plain VAE: a diagonal Gaussian posterior."""
    return _unstructured(
        split, config, lambda Dx, Dz, width: DiagonalEncoder(Dx, Dz, width, config.hidden_layers)
    )


def _vae_maf(split: LatentSplit, config: ModelConfig) -> SIReNVAE:
    """VAE+MAF (the journal version): zuko's masked autoregressive posterior."""
    return _unstructured(
        split,
        config,
        lambda Dx, Dz, width: maf_encoder(Dx, Dz, config.maf_transforms, config.maf_hidden or width),
    )


BUILDERS: dict[str, Callable[[LatentSplit, ModelConfig], SIReNVAE]] = {
    **{v: _structured for v in STRUCTURED},
    "vae": _vae,
    "vae-maf": _vae_maf,
}


def build_model(split: LatentSplit, config: ModelConfig | None = None, **overrides) -> SIReNVAE:
    """Builds a model; keyword arguments override fields of ``config`` (e.g. ``variant="vae"``).

    Example:
        >>> from sirenvae.networks import load_network
        >>> bn = load_network("arithmetic-circuit").graph
        >>> model = build_model(LatentSplit(bn, [f"z{i}" for i in range(6)]), variant="vae")
        >>> model.observed
        ('x0', 'x1')
    """
    if not isinstance(split, LatentSplit):
        raise TypeError(f"build_model takes a LatentSplit(graph, latent), got {type(split).__name__}")
    config = config or ModelConfig()
    if overrides:
        config = ModelConfig.from_dict({**config.to_dict(), **overrides})
    return BUILDERS[config.variant](split, config)

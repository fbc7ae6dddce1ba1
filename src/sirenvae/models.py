r"""SIReN-VAE and its baselines as configurations of one model class.

.. math:: p(x, z) = p_\theta(z \mid x_{pa(Z) \cap X}) \prod_{i \in X} p_\theta(x_i \mid pa(i))

The prior is a normalizing graphical residual flow over the latents (conditioned on their observed
parents), the decoder a Gaussian whose mean and scale come from an MLP masked by the BN, and the
encoder :math:`q_\phi(z \mid x)` a generating GRF masked by the faithful inverse of the BN.

Variants (Mouton & Kroon 2022, Table 1; the journal version adds VAE+MAF):

- ``true``: the BN everywhere.
- ``ind``: the BN without edges among latents (independent latents in the prior), decoder masked by
  the BN, encoder by the faithful inverse of that graph.
- ``fc``: latents fully connected (a complete DAG in topological order) in prior and encoder.
- ``vae``: unmasked MLP encoder and decoder, :math:`\mathcal{N}(0, I)` prior, diagonal Gaussian posterior.
- ``vae-maf``: the VAE with zuko's (unstructured) MAF as posterior.

References:
    | SIReN-VAE: Leveraging Flows and Amortized Inference for Bayesian Networks (Mouton & Kroon, 2022)
    | https://arxiv.org/abs/2204.11847
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sirenvae.flows import GRF
from sirenvae.graph import BayesianNetwork, check_latent
from sirenvae.inversion import faithful_inverse
from sirenvae.nn import MaskedLinear

__all__ = [
    "VARIANTS",
    "GaussianDecoder",
    "MaskedMLP",
    "ModelConfig",
    "SIReNVAE",
    "build_model",
    "variant_graph",
]

Variant = Literal["true", "fc", "ind", "vae", "vae-maf"]
VARIANTS: tuple[str, ...] = ("true", "fc", "ind", "vae", "vae-maf")
_LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """The model's hyper-parameters (serialised next to every checkpoint and result).

    Attributes:
        variant: ``true``, ``fc``, ``ind``, ``vae`` or ``vae-maf``.
        prior_blocks, encoder_blocks: GRF blocks of prior and encoder.
        hidden_per_set: GRF hidden units per variable set and layer.
        hidden_layers: Hidden layers of GRF blocks and of the decoder.
        decoder_hidden_per_set: Decoder hidden units per observed variable.
        vae_hidden: Width of the VAE's hidden layers (``0``: matched to the structured model).
        maf_transforms, maf_hidden: The VAE+MAF posterior.
        kappa: The GRF spectral bound.
        min_scale: The decoder's smallest standard deviation (in standardised units).
        standardize: Model standardised data internally; likelihoods stay on the raw scale.
    """

    variant: Variant = "true"
    prior_blocks: int = 2
    encoder_blocks: int = 2
    hidden_per_set: int = 4
    hidden_layers: int = 2
    decoder_hidden_per_set: int = 4
    vae_hidden: int = 0
    maf_transforms: int = 2
    maf_hidden: int = 0
    kappa: float = 0.97
    min_scale: float = 1e-3
    standardize: bool = True

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown model {self.variant!r}; choose one of {', '.join(VARIANTS)}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model option(s): {', '.join(sorted(unknown))}")
        return cls(**d)


def variant_graph(bn: BayesianNetwork, latent: tuple[str, ...], variant: str) -> BayesianNetwork:
    """The graph a structured variant uses for its prior and encoder (``true``, ``ind``, ``fc``)."""
    lat = set(latent)
    if variant == "true":
        return bn
    if variant == "ind":
        return BayesianNetwork(
            {v: [p for p in bn.parents(v) if not (v in lat and p in lat)] for v in bn.nodes}, name=bn.name
        )
    if variant == "fc":
        order = [v for v in bn.nodes if v in lat]
        parents = {}
        for v in bn.nodes:
            pa = [p for p in bn.parents(v) if not (v in lat and p in lat)]
            if v in lat:
                pa = order[: order.index(v)] + pa
            parents[v] = pa
        return BayesianNetwork(parents, name=bn.name)
    raise ValueError(f"variant {variant!r} uses no graph")


class MaskedMLP(nn.Module):
    r"""An MLP whose output :math:`o` depends only on the inputs in ``sets[o]``.

    Hidden units carry the sets of the outputs (``hidden_per_set`` per distinct set); a connection is
    kept iff the receiving unit's set contains the sending unit's.

    Arguments:
        sets: ``(O, I)`` boolean, the inputs each output may see.
        hidden_per_set: Hidden units per distinct output set and layer.
        hidden_layers: The number of hidden layers.
        width: With full sets (a plain MLP), the hidden width instead.
    """

    def __init__(self, sets: Tensor, hidden_per_set: int, hidden_layers: int, width: int = 0) -> None:
        super().__init__()
        sets = sets.bool()
        if bool(sets.all()) and width:
            hidden = torch.ones(width, sets.shape[1], dtype=torch.bool)
        else:
            unique = torch.unique(sets, dim=0)
            hidden = unique.repeat_interleave(hidden_per_set, dim=0)

        def subset(receiver: Tensor, sender: Tensor) -> Tensor:
            return (sender.float() @ (~receiver).float().T).T == 0

        masks = [hidden] + [subset(hidden, hidden)] * (hidden_layers - 1) + [subset(sets, hidden)]
        self.layers = nn.ModuleList(MaskedLinear(M, kappa=None) for M in masks)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers[:-1]:
            x = F.elu(layer(x))
        return self.layers[-1](x)


class GaussianDecoder(nn.Module):
    r""":math:`p(x_i \mid pa(i)) = \mathcal{N}(\mu_i, \sigma_i^2)` for every observed :math:`i`.

    ``sets[i]`` says which nodes (latent and observed, in the graph's order) output :math:`i` sees.
    """

    def __init__(
        self, sets: Tensor, hidden_per_set: int, hidden_layers: int, min_scale: float, width: int = 0
    ) -> None:
        super().__init__()
        self.net = MaskedMLP(torch.cat([sets, sets]), hidden_per_set, hidden_layers, width)
        self.observed = sets.shape[0]
        self.min_scale = min_scale

    def forward(self, nodes: Tensor) -> tuple[Tensor, Tensor]:
        """Means and standard deviations of the observed nodes given all nodes' values."""
        out = self.net(nodes)
        mean, raw = out[..., : self.observed], out[..., self.observed :]
        # softplus(raw + 0.5413) = 1 at raw = 0
        return mean, F.softplus(raw + 0.5413) + self.min_scale


class StandardNormal(nn.Module):
    r"""The :math:`\mathcal{N}(0, I)` prior of the plain VAE."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.features = features
        self.register_buffer("_ref", torch.zeros(()))

    def log_prob(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        return -0.5 * (z * z).sum(-1) - 0.5 * self.features * _LOG_2PI

    def sample(
        self, shape: tuple[int, ...], context: Tensor | None = None, noise: Tensor | None = None
    ) -> Tensor:
        if noise is not None:
            return noise
        return torch.randn(*shape, self.features, dtype=self._ref.dtype, device=self._ref.device)


def _grf(adjacency: Tensor, context_adjacency: Tensor | None, config: ModelConfig, **kwargs) -> GRF:
    return GRF(
        adjacency,
        context_adjacency,
        hidden_per_set=config.hidden_per_set,
        hidden_layers=config.hidden_layers,
        kappa=config.kappa,
        **kwargs,
    )


class FlowPrior(nn.Module):
    """A normalizing GRF prior over the latents, conditioned on their observed parents."""

    def __init__(self, adjacency: Tensor, context_adjacency: Tensor | None, config: ModelConfig) -> None:
        super().__init__()
        self.flow = _grf(
            adjacency,
            context_adjacency,
            config,
            direction="normalize",
            blocks=config.prior_blocks,
            max_iter=100,
        )

    def log_prob(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        return self.flow(context).log_prob(z)

    def sample(
        self, shape: tuple[int, ...], context: Tensor | None = None, noise: Tensor | None = None
    ) -> Tensor:
        if noise is None:
            return self.flow(context).sample(shape if context is None else ())
        return self.flow.transform.inverse(noise, context, **self.flow.inverse_options)


class DiagonalEncoder(nn.Module):
    r""":math:`q(z \mid x) = \mathcal{N}(\mu(x), \mathrm{diag}\, \sigma(x)^2)` (the plain VAE)."""

    def __init__(self, observed: int, latent: int, width: int, hidden_layers: int) -> None:
        super().__init__()
        self.latent = latent
        self.net = MaskedMLP(torch.ones(2 * latent, observed, dtype=torch.bool), 1, hidden_layers, width)

    def rsample_and_log_prob(self, x: Tensor, samples: int) -> tuple[Tensor, Tensor]:
        mean, log_sd = self._params(x)
        eps = torch.randn(samples, *mean.shape, dtype=mean.dtype, device=mean.device)
        z = mean + log_sd.exp() * eps
        log_q = -0.5 * (eps * eps).sum(-1) - log_sd.sum(-1) - 0.5 * self.latent * _LOG_2PI
        return z, log_q

    def _params(self, x: Tensor) -> tuple[Tensor, Tensor]:
        out = self.net(x)
        return out[..., : self.latent], out[..., self.latent :].clamp(-12, 6)


class FlowEncoder(nn.Module):
    """A generating GRF posterior masked by the faithful inverse, conditioned on ``x``."""

    def __init__(self, adjacency: Tensor, context_adjacency: Tensor, config: ModelConfig) -> None:
        super().__init__()
        self.flow = _grf(
            adjacency, context_adjacency, config, direction="generate", blocks=config.encoder_blocks
        )

    def rsample_and_log_prob(self, x: Tensor, samples: int) -> tuple[Tensor, Tensor]:
        return self.flow(x).rsample_and_log_prob((samples,))


class MAFEncoder(nn.Module):
    r"""zuko's masked autoregressive transforms as an unstructured posterior (VAE+MAF).

    The transforms are used in the inverse-autoregressive direction (Kingma et al. 2016), so that
    :math:`z \sim q(z \mid x)` and its density cost one pass per transform; the order of the latents
    is reversed between transforms, as in zuko's MAF.
    """

    def __init__(self, observed: int, latent: int, transforms: int, hidden: int) -> None:
        super().__init__()
        import zuko

        steps = []
        for t in range(transforms):
            order = torch.arange(latent)
            steps.append(
                zuko.flows.MaskedAutoregressiveTransform(
                    latent,
                    observed,
                    order=order if t % 2 == 0 else order.flip(0),
                    hidden_features=(hidden, hidden),
                ).inv
            )
        base = zuko.flows.UnconditionalDistribution(
            zuko.distributions.DiagNormal, torch.zeros(latent), torch.ones(latent), buffer=True
        )
        self.flow = zuko.flows.Flow(steps, base)

    def rsample_and_log_prob(self, x: Tensor, samples: int) -> tuple[Tensor, Tensor]:
        return self.flow(x).rsample_and_log_prob((samples,))


class SIReNVAE(nn.Module):
    r"""A structured VAE on a Bayesian network; every variant of Table 1 is a configuration of it.

    Build it with :func:`build_model`. ``x`` holds the observed nodes in topological order.

    Arguments:
        graph: The Bayesian network.
        latent: The latent nodes.
        config: The configuration.
    """

    def __init__(self, graph: BayesianNetwork, latent: tuple[str, ...], config: ModelConfig) -> None:
        super().__init__()
        latent = check_latent(graph, latent)
        self.graph, self.latent, self.config = graph, latent, config
        lat = set(latent)
        self.observed = tuple(v for v in graph.nodes if v not in lat)
        Dz, Dx = len(self.latent), len(self.observed)
        idx_z = [graph.index(v) for v in self.latent]
        idx_x = [graph.index(v) for v in self.observed]
        self.register_buffer("_idx_z", torch.tensor(idx_z), persistent=False)
        self.register_buffer("_idx_x", torch.tensor(idx_x), persistent=False)
        self.register_buffer("loc", torch.zeros(Dx))
        self.register_buffer("scale", torch.ones(Dx))
        structured = config.variant in ("true", "fc", "ind")

        # decoder: output i sees pa(i) in the true BN (structured) or all latents (VAE)
        A = graph.adjacency()
        if structured:
            sets = A[idx_x]
        else:
            sets = torch.zeros(Dx, len(graph), dtype=torch.bool)
            sets[:, idx_z] = True
        width = config.vae_hidden or self._matched_width(graph, latent, config)
        self.decoder = GaussianDecoder(
            sets,
            config.decoder_hidden_per_set,
            config.hidden_layers,
            config.min_scale,
            width=0 if structured else width,
        )
        if structured:
            g = variant_graph(graph, latent, config.variant)
            ctx_nodes = tuple(v for v in self.observed if any(c in lat for c in g.children(v)))
            self.prior_context = ctx_nodes
            Cp = g.cross_adjacency(self.latent, ctx_nodes) if ctx_nodes else None
            self.prior = FlowPrior(g.adjacency(self.latent), Cp, config)
            H = faithful_inverse(g, latent)
            self.inverse_graph = H
            self.encoder = FlowEncoder(
                H.adjacency(self.latent), H.cross_adjacency(self.latent, self.observed), config
            )
        else:
            self.prior_context = ()
            self.prior = StandardNormal(Dz)
            self.inverse_graph = None
            if config.variant == "vae":
                self.encoder = DiagonalEncoder(Dx, Dz, width, config.hidden_layers)
            else:
                self.encoder = MAFEncoder(Dx, Dz, config.maf_transforms, config.maf_hidden or width)
        self.register_buffer(
            "_ctx_idx",
            torch.tensor([self.observed.index(v) for v in self.prior_context], dtype=torch.long),
            persistent=False,
        )
        # observed nodes in topological generations, for ancestral sampling of x
        level: dict[str, int] = {}
        for v in graph.nodes:
            level[v] = (
                1 + max((level[p] for p in graph.parents(v) if p not in lat), default=-1)
                if v not in lat
                else -1
            )
        self._x_levels = max((level[v] for v in self.observed), default=0) + 1
        self.register_buffer("_x_level", torch.tensor([level[v] for v in self.observed]), persistent=False)

    @staticmethod
    def _matched_width(graph: BayesianNetwork, latent: tuple[str, ...], config: ModelConfig) -> int:
        """A VAE width of the order of the structured decoder's: ``2 k sqrt(|X| |Z|)``, in [16, 512]."""
        Dz = len(latent)
        Dx = len(graph) - Dz
        return max(16, min(512, 2 * config.decoder_hidden_per_set * int(math.sqrt(Dx * Dz))))

    # ------------------------------------------------------------------ data scale
    def set_standardization(self, x: Tensor) -> None:
        """Sets the internal standardisation from training data (if the config asks for it)."""
        if self.config.standardize and x.shape[0] > 1:
            self.loc.copy_(x.mean(0))
            self.scale.copy_(x.std(0).clamp(min=1e-6))

    def _std(self, x: Tensor) -> Tensor:
        return (x - self.loc) / self.scale

    # ------------------------------------------------------------------ pieces of the joint
    def _nodes(self, z: Tensor, u: Tensor) -> Tensor:
        """All nodes' values in graph order from latents ``z`` and standardised observed ``u``."""
        shape = torch.broadcast_shapes(z.shape[:-1], u.shape[:-1])
        out = z.new_empty(*shape, len(self.graph))
        out[..., self._idx_z] = z.expand(*shape, z.shape[-1])
        out[..., self._idx_x] = u.expand(*shape, u.shape[-1])
        return out

    def _prior_context(self, u: Tensor) -> Tensor | None:
        return u[..., self._ctx_idx] if self.prior_context else None

    def log_joint(self, x: Tensor, z: Tensor) -> Tensor:
        r""":math:`\log p(x, z)` on the raw scale of ``x``; ``z`` may carry leading sample dims."""
        log_px, log_pz = self.log_joint_parts(x, z)
        return log_px + log_pz

    def log_joint_parts(self, x: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        r""":math:`\log p(x \mid z)` (raw scale) and :math:`\log p(z \mid x_{pa(Z)})`."""
        u = self._std(x)
        log_pz = self.prior.log_prob(z, self._prior_context(u))
        mean, sd = self.decoder(self._nodes(z, u))
        r = (u - mean) / sd
        log_px = (-0.5 * r * r - sd.log() - 0.5 * _LOG_2PI).sum(-1) - self.scale.log().sum()
        return log_px, log_pz

    def posterior(self, x: Tensor, samples: int = 1) -> tuple[Tensor, Tensor]:
        r"""``samples`` draws of :math:`z \sim q(z \mid x)` with :math:`\log q`, shapes
        ``(samples, N, Dz)`` and ``(samples, N)``.
        """
        return self.encoder.rsample_and_log_prob(self._std(x), samples)

    def reconstruction(self, x: Tensor, z: Tensor) -> Tensor:
        r""":math:`E[x \mid z]` on the raw scale (observed parents teacher-forced)."""
        u = self._std(x)
        mean, _ = self.decoder(self._nodes(z, u))
        return mean * self.scale + self.loc

    @torch.no_grad()
    def sample(self, n: int) -> tuple[Tensor, Tensor]:
        """Draws ``n`` ancestral samples ``(z, x)``, ``x`` on the raw scale.

        With fixed noise, alternating the prior's inverse and the decoder is exact after as many
        sweeps as the graph has generations: each sweep settles one more generation.
        """
        ref = self.loc
        eps = torch.randn(n, len(self.latent), dtype=ref.dtype, device=ref.device)
        eta = torch.randn(n, len(self.observed), dtype=ref.dtype, device=ref.device)
        u = torch.zeros(n, len(self.observed), dtype=ref.dtype, device=ref.device)
        sweeps = (self._x_levels + 1) if self.prior_context else 1
        z = None
        for _ in range(sweeps):
            z = (
                self.prior.sample((n,), self._prior_context(u), noise=eps)
                if self.prior_context or z is None
                else z
            )
            for _ in range(self._x_levels):
                mean, sd = self.decoder(self._nodes(z, u))
                u = mean + sd * eta
        return z, u * self.scale + self.loc


def build_model(graph: BayesianNetwork, latent, config: ModelConfig | None = None, **kwargs) -> SIReNVAE:
    """Builds a model; keyword arguments override fields of ``config`` (e.g. ``variant="vae"``)."""
    config = config or ModelConfig()
    if kwargs:
        config = ModelConfig.from_dict({**config.to_dict(), **kwargs})
    return SIReNVAE(graph, tuple(latent), config)

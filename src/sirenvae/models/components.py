r"""The pieces of a model as lazy distributions: ``component(context)`` returns a distribution.

- decoder: :math:`p(x_i \mid pa(i))`, Gaussian or Student-t, with its mean from a masked MLP, a
  graph-masked affine map, or both (:class:`Decoder`);
- diagonal encoder: :math:`q(z \mid x) = \mathcal{N}(\mu(x), \mathrm{diag}\,\sigma(x)^2)` (the plain VAE);
- MAF encoder: zuko's masked autoregressive transforms, inverse-autoregressive direction (VAE+MAF).

Both decoder families are location-scale: :math:`x_i = \mu_i + \sigma_i \eta_i` with standard noise
:math:`\eta_i` (normal, or Student-t with :math:`\nu_i` degrees of freedom), so a sample is a fixed
function of its noise (``reparameterize``) and the noise of a value is its standardised residual
:math:`\eta = (x - \mu) / \sigma` (``residual``).

References:
    | Robust Statistical Modeling Using the t Distribution (Lange, Little & Taylor, 1989)
    | https://doi.org/10.1080/01621459.1989.10478852
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Size, Tensor, nn
from torch.distributions import Distribution, constraints

from sirenvae.flows import DiagNormal, LazyDistribution
from sirenvae.flows.residual import SPARSE_MIN_UNITS
from sirenvae.flows.sparse import BlockSparseLinear, BlockSparseMLP, read_blocks_as_dense
from sirenvae.masks import BlockLayer, set_blocks, set_groups
from sirenvae.models.config import DECODER_MEANS, LIKELIHOODS
from sirenvae.nn import MaskedLinear, MaskedMLP

__all__ = ["Decoder", "DiagStudentT", "DiagonalEncoder", "Normal", "maf_encoder"]

#: ``softplus(RAW_SCALE_OFFSET) ≈ 1``: a raw scale output of 0 means unit standard deviation.
RAW_SCALE_OFFSET = 0.5413
#: The range of the VAE encoder's log standard deviations, against overflow early in training.
LOG_SD_RANGE = (-12.0, 6.0)
#: The Student-t degrees of freedom at initialisation: 4, the robust default of Lange et al. (1989).
DF_INIT = 4.0
#: The smallest degrees of freedom, so that the variance exists: :math:`\nu = 2 + \mathrm{softplus}(r)`.
DF_MIN = 2.0
#: The linear couplings start at this fraction of the usual ``±1/sqrt(fan_in)`` range: small, since
#: large ones would dominate the MLP, but not zero, where latent-to-observed couplings sit at a saddle.
LINEAR_INIT = 0.1


class Normal(DiagNormal):
    r""":math:`\mathcal{N}(\mu, \mathrm{diag}\,\sigma^2)`, location-scale with standard normal noise."""

    def noise(self, sample_shape: Size | Sequence[int] = ()) -> Tensor:
        r"""Standard normal noise :math:`\eta` of shape ``sample_shape + batch + event``."""
        shape = self._extended_shape(Size(sample_shape))
        return torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)

    def residual(self, x: Tensor) -> Tensor:
        r"""The standardised residual :math:`\eta = (x - \mu) / \sigma`, the inverse of ``reparameterize``."""
        return (x - self.loc) / self.scale


class DiagStudentT(Distribution):
    r"""Independent Student-t variables :math:`x_i = \mu_i + \sigma_i t_i`, :math:`t_i \sim t_{\nu_i}`.

    .. math:: \log p(x) = \sum_i \log\Gamma(\tfrac{\nu_i + 1}{2}) - \log\Gamma(\tfrac{\nu_i}{2})
        - \tfrac12 \log(\nu_i \pi) - \log \sigma_i - \tfrac{\nu_i + 1}{2} \log(1 + r_i^2 / \nu_i),
        \quad r = (x - \mu) / \sigma.

    :math:`\sigma` is the scale, not the standard deviation (that is :math:`\sigma \sqrt{\nu / (\nu - 2)}`).

    Arguments:
        df: The degrees of freedom :math:`\nu > 0` (the decoder keeps them above 2).
        loc: The locations (and means, for :math:`\nu > 1`) :math:`\mu`, shape ``(*, D)``.
        scale: The scales :math:`\sigma > 0`.
    """

    arg_constraints = {
        "df": constraints.positive,
        "loc": constraints.real,
        "scale": constraints.positive,
    }
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, df: Tensor, loc: Tensor, scale: Tensor) -> None:
        self.df, self.loc, self.scale = torch.broadcast_tensors(df, loc, scale)
        super().__init__(self.loc.shape[:-1], self.loc.shape[-1:], validate_args=False)

    @property
    def mean(self) -> Tensor:
        return self.loc

    @property
    def variance(self) -> Tensor:
        finite = self.scale.square() * self.df / (self.df - 2).clamp(min=1e-12)
        return torch.where(self.df > 2, finite, torch.full_like(finite, math.inf))

    def log_prob(self, x: Tensor) -> Tensor:
        nu = self.df
        r = (x - self.loc) / self.scale
        norm = torch.lgamma((nu + 1) / 2) - torch.lgamma(nu / 2) - 0.5 * torch.log(nu * math.pi)
        return (norm - self.scale.log() - (nu + 1) / 2 * torch.log1p(r * r / nu)).sum(-1)

    def noise(self, sample_shape: Size | Sequence[int] = ()) -> Tensor:
        r"""Standard Student-t noise :math:`t \sim t_\nu` (a normal over the root of a scaled
        :math:`\chi^2_\nu`), shape ``sample_shape + batch + event``; differentiable in :math:`\nu`.
        """
        return torch.distributions.StudentT(self.df).rsample(Size(sample_shape))

    def reparameterize(self, eta: Tensor) -> Tensor:
        r""":math:`\mu + \sigma \eta`: the sample of given standard Student-t noise."""
        return self.loc + self.scale * eta

    def residual(self, x: Tensor) -> Tensor:
        r"""The standardised residual :math:`\eta = (x - \mu) / \sigma`, the inverse of ``reparameterize``."""
        return (x - self.loc) / self.scale

    def rsample(self, sample_shape: Size | Sequence[int] = ()) -> Tensor:
        return self.reparameterize(self.noise(sample_shape))


class Decoder(LazyDistribution):
    r""":math:`p(x_i \mid pa(i))` for every observed :math:`i`: a location-scale family.

    ``decoder(nodes)`` takes the values of all nodes in the graph's order and returns a
    :class:`Normal` or :class:`DiagStudentT` over the observed ones (standardised units). The mean:

    - ``"mlp"`` (the paper's): :math:`\mu_i` and :math:`\sigma_i` from an MLP masked by the graph;
    - ``"linear"``: :math:`\mu_i = b_i + \sum_{j \in pa(i)} W_{ij} v_j` and a constant :math:`\sigma_i`,
      a linear-Gaussian BN conditional (with ``"normal"``);
    - ``"linear+mlp"``: that affine term plus the masked MLP's mean as a residual, :math:`\sigma_i`
      from the MLP.

    Scales are :math:`\mathrm{softplus}(\cdot) + \mathrm{min\_scale}`; the Student-t degrees of freedom
    :math:`\nu_i = 2 + \mathrm{softplus}(r_i)` are learned per node, starting at :data:`DF_INIT`.

    Arguments:
        sets: ``(X, V)`` boolean, the nodes output :math:`i` sees (its parents).
        hidden_per_set: Hidden units per distinct parent set and layer.
        hidden_layers: The number of hidden layers.
        min_scale: The smallest scale.
        width: With full sets (a plain VAE), the hidden width instead.
        mean: ``"mlp"``, ``"linear"`` or ``"linear+mlp"``.
        likelihood: ``"normal"`` or ``"studentt"``.
        sparse: Store the MLP and the linear term by blocks between parent sets
            (:class:`~sirenvae.flows.sparse.BlockSparseMLP`), memory and time by the graph's edges;
            by default from :data:`~sirenvae.flows.residual.SPARSE_MIN_UNITS` hidden units at a
            density of at most 10 %. Both layouts compute the same function.
    """

    def __init__(
        self,
        sets: Tensor,
        hidden_per_set: int,
        hidden_layers: int,
        min_scale: float,
        width: int = 0,
        *,
        mean: str = "mlp",
        likelihood: str = "normal",
        sparse: bool | None = None,
    ) -> None:
        super().__init__()
        if mean not in DECODER_MEANS:
            raise ValueError(f"unknown decoder mean {mean!r}; choose one of {', '.join(DECODER_MEANS)}")
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"unknown likelihood {likelihood!r}; choose one of {', '.join(LIKELIHOODS)}")
        self.observed = sets.shape[0]
        self.min_scale = min_scale
        self.mean_kind, self.likelihood = mean, likelihood
        sets = sets.bool()
        if sparse is None:  # the cheap tests first: set_groups walks every member in Python
            sparse = (
                int(sets.sum()) <= 0.1 * sets.numel()
                and sets.shape[0] * hidden_per_set >= SPARSE_MIN_UNITS
                and set_groups(sets)[2] * hidden_per_set >= SPARSE_MIN_UNITS
            )
        self.sparse = sparse
        self._shape = (sets.shape, hidden_per_set, hidden_layers)
        self._members = torch.nonzero(sets)  # to read a block-sparse checkpoint into dense layers
        if mean != "linear":
            doubled = torch.cat([sets, sets])
            if sparse:
                self.net = BlockSparseMLP(doubled, hidden_per_set, hidden_layers)
            else:
                self.net = MaskedMLP(doubled, hidden_per_set, hidden_layers, width)
        if mean != "mlp":
            if sparse:
                self.linear = BlockSparseLinear(_edge_blocks(self._members, sets.shape), kappa=None)
            else:
                self.linear = MaskedLinear(sets, kappa=None)
            with torch.no_grad():
                self.linear.weight.mul_(LINEAR_INIT)
        if mean == "linear":
            self.raw_scale = nn.Parameter(torch.zeros(self.observed))
        if likelihood == "studentt":
            raw_df = math.log(math.expm1(DF_INIT - DF_MIN))
            self.raw_df = nn.Parameter(torch.full((self.observed,), raw_df))

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        """Also reads a block-sparse checkpoint into dense layers (the other way round, the
        block-sparse layers convert by themselves), so a run loads whichever layout it was saved in.
        """
        if not self.sparse:
            shape, k, depth = self._shape
            sets = torch.zeros(shape, dtype=torch.bool)
            sets[tuple(self._members.T)] = True
            layers = {"linear.": _edge_blocks(self._members, shape)}
            for l, layer in enumerate(set_blocks(torch.cat([sets, sets]), k, depth)):
                layers[f"net.layers.{l}."] = layer
            for key, layer in layers.items():
                read_blocks_as_dense(state_dict, prefix + key, layer)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, nodes: Tensor) -> Normal | DiagStudentT:
        if self.mean_kind == "linear":
            mean, raw = self.linear(nodes), self.raw_scale
        else:
            out = self.net(nodes)
            mean, raw = out[..., : self.observed], out[..., self.observed :]
            if self.mean_kind == "linear+mlp":
                mean = self.linear(nodes) + mean
        scale = F.softplus(raw + RAW_SCALE_OFFSET) + self.min_scale
        if self.likelihood == "studentt":
            return DiagStudentT(DF_MIN + F.softplus(self.raw_df), mean, scale)
        return Normal(mean, scale)


def _edge_blocks(members: Tensor, shape: tuple[int, int]) -> BlockLayer:
    """The linear term by edges: a ``1 x 1`` block per ``(output, parent)`` row of ``members``."""
    edges = torch.ones(len(members), 1, 1, dtype=torch.bool)
    return BlockLayer(members[:, 0], members[:, 1], edges, *shape, diagonal=False)


class DiagonalEncoder(LazyDistribution):
    r""":math:`q(z \mid x) = \mathcal{N}(\mu(x), \mathrm{diag}\, \sigma(x)^2)` from an MLP (the plain VAE)."""

    def __init__(self, observed: int, latent: int, width: int, hidden_layers: int) -> None:
        super().__init__()
        self.latent = latent
        self.net = MaskedMLP(torch.ones(2 * latent, observed, dtype=torch.bool), 1, hidden_layers, width)

    def forward(self, x: Tensor) -> DiagNormal:
        out = self.net(x)
        mean, log_sd = out[..., : self.latent], out[..., self.latent :].clamp(*LOG_SD_RANGE)
        return DiagNormal(mean, log_sd.exp(), log_scale=log_sd)


def maf_encoder(observed: int, latent: int, transforms: int, hidden: int) -> LazyDistribution:
    r"""Masked autoregressive transforms (zuko) as an unstructured posterior :math:`q(z \mid x)`.

    The transforms are used in the inverse-autoregressive direction (Kingma et al. 2016), so that
    :math:`z \sim q(z \mid x)` and its density cost one pass per transform; the order of the latents
    is reversed between transforms, as in zuko's MAF.
    """
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
    return zuko.flows.Flow(steps, base)

r"""The pieces of a model as lazy distributions: ``component(context)`` returns a distribution.

- decoder: :math:`p(x_i \mid pa(i)) = \mathcal{N}(\mu_i, \sigma_i^2)` from a masked MLP;
- diagonal encoder: :math:`q(z \mid x) = \mathcal{N}(\mu(x), \mathrm{diag}\,\sigma(x)^2)` (the plain VAE);
- MAF encoder: zuko's masked autoregressive transforms, inverse-autoregressive direction (VAE+MAF).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from sirenvae.flows import DiagNormal, LazyDistribution
from sirenvae.nn import MaskedMLP

__all__ = ["DiagonalEncoder", "GaussianDecoder", "maf_encoder"]

#: ``softplus(RAW_SCALE_OFFSET) ≈ 1``: a raw scale output of 0 means unit standard deviation.
RAW_SCALE_OFFSET = 0.5413
#: The range of the VAE encoder's log standard deviations, against overflow early in training.
LOG_SD_RANGE = (-12.0, 6.0)


class GaussianDecoder(LazyDistribution):
    r""":math:`p(x_i \mid pa(i)) = \mathcal{N}(\mu_i, \sigma_i^2)` for every observed :math:`i`.

    ``decoder(nodes)`` takes the values of all nodes in the graph's order and returns a
    :class:`~sirenvae.flows.DiagNormal` over the observed ones (standardised units).

    Arguments:
        sets: ``(X, V)`` boolean, the nodes output :math:`i` sees (its parents).
        hidden_per_set: Hidden units per distinct parent set and layer.
        hidden_layers: The number of hidden layers.
        min_scale: The smallest standard deviation.
        width: With full sets (a plain VAE), the hidden width instead.
    """

    def __init__(
        self, sets: Tensor, hidden_per_set: int, hidden_layers: int, min_scale: float, width: int = 0
    ) -> None:
        super().__init__()
        self.net = MaskedMLP(torch.cat([sets, sets]), hidden_per_set, hidden_layers, width)
        self.observed = sets.shape[0]
        self.min_scale = min_scale

    def forward(self, nodes: Tensor) -> DiagNormal:
        out = self.net(nodes)
        mean, raw = out[..., : self.observed], out[..., self.observed :]
        return DiagNormal(mean, F.softplus(raw + RAW_SCALE_OFFSET) + self.min_scale)


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

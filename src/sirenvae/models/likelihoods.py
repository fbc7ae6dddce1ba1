r"""Observation models: the family of :math:`p(x_i \mid pa(i))`, one class each, in one registry.

The decoder's head gives every observed node the raw outputs its family declares (:attr:`Family.heads`,
the first of which the graph-masked linear term feeds); the family turns them into a distribution
with ``log_prob(x, mask)`` (the sum over the present cells, all of them when ``mask`` is ``None``)
and ``noise``/``reparameterize`` (a sample as a fixed function of its noise, which ancestral
sampling needs). A family also says how its values are standardised (and so the raw-scale Jacobian
:math:`-\sum_i \log s_i` of :math:`u = (x - m) / s`), how a value is encoded where it is an input (a
parent, the encoder's context), its reconstruction error, and whether it has location-scale noise
:math:`x = \mu + \sigma \eta` with :math:`\eta` free of the parents, which counterfactuals need
for abduction (:attr:`Family.abduction`).

Adding a family is one class and one registry entry:

>>> class Laplace(Family):
...     name = "laplace"
...     def distribution(self, loc, raw_scale):
...         return LocationScale(torch.distributions.Laplace(0.0, 1.0), loc, self.scale(raw_scale))
>>> FAMILIES["laplace"] = Laplace
>>> d = Laplace().distribution(torch.zeros(3), torch.zeros(3))
>>> round(float(d.log_prob(torch.zeros(3))), 4)  # 3 log(1/2): unit scale at a raw output of 0
-2.0794
>>> del FAMILIES["laplace"]

References:
    | Robust Statistical Modeling Using the t Distribution (Lange, Little & Taylor, 1989)
    | https://doi.org/10.1080/01621459.1989.10478852
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Size, Tensor
from torch.distributions import Distribution, constraints

from sirenvae.flows import DiagNormal

__all__ = [
    "FAMILIES",
    "DiagStudentT",
    "Family",
    "LocationScale",
    "Normal",
    "NormalFamily",
    "StudentTFamily",
    "family",
]

#: ``softplus(RAW_SCALE_OFFSET) ≈ 1``: a raw scale output of 0 means unit standard deviation.
RAW_SCALE_OFFSET = 0.5413
#: The Student-t degrees of freedom at initialisation: 4, the robust default of Lange et al. (1989).
DF_INIT = 4.0
#: The smallest degrees of freedom, so that the variance exists: :math:`\nu = 2 + \mathrm{softplus}(r)`.
DF_MIN = 2.0


def _masked_sum(cells: Tensor, mask: Tensor | None) -> Tensor:
    return cells.sum(-1) if mask is None else torch.where(mask, cells, cells.new_zeros(())).sum(-1)


def _filled(x: Tensor, mask: Tensor | None, loc: Tensor) -> Tensor:
    """``x`` with its holes at the location, so that a hole's value (even NaN) reaches no gradient."""
    return x if mask is None else torch.where(mask, x, loc.detach())


class Normal(DiagNormal):
    r""":math:`\mathcal{N}(\mu, \mathrm{diag}\,\sigma^2)`, location-scale with standard normal noise."""

    def log_prob(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if mask is None:
            return super().log_prob(x)
        r = (_filled(x, mask, self.loc) - self.loc) / self.scale
        return _masked_sum(-0.5 * r * r - self.log_scale - 0.5 * math.log(2 * math.pi), mask)

    def noise(self, sample_shape: Size | Sequence[int] = ()) -> Tensor:
        r"""Standard normal noise :math:`\eta` of shape ``sample_shape + batch + event``."""
        shape = self._extended_shape(Size(sample_shape))
        return torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)

    def residual(self, x: Tensor) -> Tensor:
        r"""The standardised residual :math:`\eta = (x - \mu) / \sigma`, the inverse of ``reparameterize``."""
        return (x - self.loc) / self.scale


class LocationScale(Distribution):
    r"""Independent :math:`x_i = \mu_i + \sigma_i \eta_i` with :math:`\eta_i` from a standard
    ``noise`` distribution (any torch distribution with ``log_prob`` and ``rsample``).

    .. math:: \log p(x) = \sum_i \log p_\eta\big((x_i - \mu_i) / \sigma_i\big) - \log \sigma_i
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, noise: Distribution, loc: Tensor, scale: Tensor) -> None:
        self.base = noise
        self.loc, self.scale = torch.broadcast_tensors(loc, scale)
        super().__init__(self.loc.shape[:-1], self.loc.shape[-1:], validate_args=False)

    @property
    def mean(self) -> Tensor:
        return self.loc + self.scale * self.base.mean

    def log_prob(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        r = self.residual(_filled(x, mask, self.loc))
        return _masked_sum(self.base.log_prob(r) - self.scale.log(), mask)

    def noise(self, sample_shape: Size | Sequence[int] = ()) -> Tensor:
        shape = self._extended_shape(Size(sample_shape))
        return self.base.rsample(shape).to(self.loc)

    def reparameterize(self, eta: Tensor) -> Tensor:
        return self.loc + self.scale * eta

    def residual(self, x: Tensor) -> Tensor:
        return (x - self.loc) / self.scale

    def rsample(self, sample_shape: Size | Sequence[int] = ()) -> Tensor:
        return self.reparameterize(self.noise(sample_shape))


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

    def log_prob(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        nu = self.df
        r = (_filled(x, mask, self.loc) - self.loc) / self.scale
        norm = torch.lgamma((nu + 1) / 2) - torch.lgamma(nu / 2) - 0.5 * torch.log(nu * math.pi)
        return _masked_sum(norm - self.scale.log() - (nu + 1) / 2 * torch.log1p(r * r / nu), mask)

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


class Family:
    r"""An observation family of the decoder, for the nodes it models (see the module).

    A subclass sets :attr:`name` and implements :meth:`distribution`, whose positional arguments
    are the raw head outputs named by :attr:`heads` (shape ``(*, D)`` each) and whose keyword
    arguments are the per-node constants named by :attr:`constants` (learned, shape ``(D,)``).

    Arguments:
        min_scale: The smallest scale of a location-scale family (standardised units).
    """

    #: The name in :data:`FAMILIES`, ``ModelConfig.likelihood`` and ``--set likelihood=``.
    name: ClassVar[str]
    #: The raw outputs per node; the first is the location, which the linear decoder term feeds
    #: (with ``decoder_mean="linear"`` the others are per-node constants ``raw_<head>``).
    heads: ClassVar[tuple[str, ...]] = ("loc", "raw_scale")
    #: Learned per-node constants and their raw value at initialisation.
    constants: ClassVar[dict[str, float]] = {}
    #: Whether values are standardised by their training mean and standard deviation.
    standardized: ClassVar[bool] = True
    #: Whether :math:`x = \mu + \sigma \eta` with parent-free noise (abduction for counterfactuals).
    abduction: ClassVar[bool] = True
    #: Input units per node where a value is an input (a parent, the encoder's context).
    input_units: ClassVar[int] = 1

    def __init__(self, min_scale: float = 0.0) -> None:
        self.min_scale = min_scale

    def distribution(self, *heads: Tensor, **constants: Tensor) -> Distribution:
        raise NotImplementedError

    def scale(self, raw: Tensor) -> Tensor:
        r""":math:`\sigma = \mathrm{softplus}(r + c) + \sigma_{\min}`, unit scale at :math:`r = 0`."""
        return F.softplus(raw + RAW_SCALE_OFFSET) + self.min_scale

    def standardization(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The location and scale ``(m, s)`` of ``u = (x - m) / s`` from training values ``(N, D)``,
        NaN for a missing cell: the mean and standard deviation of each column's present cells
        (the identity for a family that is not :attr:`standardized`).
        """
        if not self.standardized or x.shape[0] < 2:
            return torch.zeros_like(x[0]), torch.ones_like(x[0])
        if not x.isnan().any():
            return x.mean(0), x.std(0).clamp(min=1e-6)
        present = (~x.isnan()).sum(0)
        mean = torch.where(present > 0, x.nanmean(0), 0.0)
        var = (x - mean).square().nansum(0) / (present - 1).clamp(min=1)
        # fewer than 2 present cells say nothing about the spread: unit scale, not a 1e-6 one
        return mean, torch.where(present >= 2, var.sqrt().clamp(min=1e-6), 1.0)

    def encode(self, u: Tensor) -> Tensor:
        """The input units of (standardised) values ``u``, ``input_units`` per node."""
        return u

    def reconstruction_error(self, x: Tensor, mean: Tensor) -> Tensor:
        r"""Per-cell error of the reconstruction ``mean`` of ``x``: :math:`(x - \hat x)^2`."""
        return (x - mean).square()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(min_scale={self.min_scale})"


class NormalFamily(Family):
    r"""Gaussian noise: :math:`x_i \sim \mathcal{N}(\mu_i, \sigma_i^2)`."""

    name = "normal"

    def distribution(self, loc: Tensor, raw_scale: Tensor) -> Normal:
        return Normal(loc, self.scale(raw_scale))


class StudentTFamily(Family):
    r"""Student-t noise with learned degrees of freedom :math:`\nu_i = 2 + \mathrm{softplus}(r_i)`,
    starting at :data:`DF_INIT` (heavy tails; the variance exists).
    """

    name = "studentt"
    constants = {"raw_df": math.log(math.expm1(DF_INIT - DF_MIN))}

    def distribution(self, loc: Tensor, raw_scale: Tensor, *, raw_df: Tensor) -> DiagStudentT:
        return DiagStudentT(DF_MIN + F.softplus(raw_df), loc, self.scale(raw_scale))


#: Every observation family by name.
FAMILIES: dict[str, type[Family]] = {f.name: f for f in (NormalFamily, StudentTFamily)}


def family(name: str, min_scale: float = 0.0) -> Family:
    """The family called ``name`` (a ``ValueError`` naming the choices for an unknown one)."""
    if name not in FAMILIES:
        raise ValueError(f"unknown likelihood {name!r}; choose one of {', '.join(FAMILIES)}")
    return FAMILIES[name](min_scale)

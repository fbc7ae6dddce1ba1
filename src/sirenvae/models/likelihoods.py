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
from sirenvae.models.discrete import Bernoulli, Categorical, NegativeBinomial, Poisson

__all__ = [
    "FAMILIES",
    "BernoulliFamily",
    "CategoricalFamily",
    "LogNormalFamily",
    "NegativeBinomialFamily",
    "PoissonFamily",
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

    def reparameterize(self, eta: Tensor, need: Tensor | None = None) -> Tensor:
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

    def reparameterize(self, eta: Tensor, need: Tensor | None = None) -> Tensor:
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
    heads: tuple[str, ...] = ("loc", "raw_scale")
    #: Learned per-node constants and their raw value at initialisation.
    constants: ClassVar[dict[str, float]] = {}
    #: Whether values are standardised by their training mean and standard deviation.
    standardized: ClassVar[bool] = True
    #: Whether :math:`x = \mu + \sigma \eta` with parent-free noise (abduction for counterfactuals).
    abduction: ClassVar[bool] = True
    #: Input units per node where a value is an input (a parent, the encoder's context).
    input_units: int = 1
    #: The leading heads that the linear decoder term feeds (a location; a category's logits).
    linear_heads: int = 1
    #: Whether values are integer codes or counts (no density, no reparameterised sample).
    discrete: ClassVar[bool] = False
    #: The number of levels of a labelled (binary or categorical) family; 0 for the others.
    levels: int = 0
    #: The probability a labelled family keeps for a level unseen in training.
    unseen: float = 0.0

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

    @property
    def key(self) -> str:
        """The family and its parameters, as written in ``ModelConfig.types`` (``categorical:3``)."""
        return self.name

    def transform(self, x: Tensor) -> Tensor:
        """The values the family models, before standardisation (the identity; a log for log-normal)."""
        return x

    def untransform(self, y: Tensor) -> Tensor:
        """The inverse of :meth:`transform`."""
        return y

    def log_det(self, x: Tensor) -> Tensor:
        r"""Per cell, :math:`\log |d\,\mathrm{transform}(x) / dx|` (0 for the identity)."""
        return torch.zeros_like(x)

    def offsets(self, x: Tensor) -> Tensor:
        """Per node, an offset for each head from training values ``(N, D)`` (NaN missing), ``(heads, D)``:
        where the head starts, so that a model begins at each node's marginal (0 for standardised
        families).
        """
        return x.new_zeros(len(self.heads), x.shape[-1])

    def point(self, d: Distribution) -> Tensor:
        """The point prediction of the values (in the family's units): the mean, or a category's mode."""
        return getattr(d, "point", d.mean)

    def raw_point(self, d: Distribution, loc: Tensor, scale: Tensor) -> Tensor:
        """:meth:`point` on the raw scale, for standardisation ``(loc, scale)``."""
        return self.untransform(self.point(d) * scale + loc)

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


class LogNormalFamily(NormalFamily):
    r"""Positive values whose log is Gaussian: :math:`\log x_i \sim \mathcal{N}(\mu_i, \sigma_i^2)`,
    standardised on the log scale; the density of :math:`x` carries the Jacobian :math:`-\log x_i`.
    """

    name = "lognormal"

    def standardization(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return super().standardization(self.transform(x))

    def transform(self, x: Tensor) -> Tensor:
        return x.log()

    def untransform(self, y: Tensor) -> Tensor:
        return y.exp()

    def log_det(self, x: Tensor) -> Tensor:
        return -x.log()

    def raw_point(self, d: Distribution, loc: Tensor, scale: Tensor) -> Tensor:
        r"""The mean :math:`\exp(m + s \mu + (s \sigma)^2 / 2)` of the log-normal."""
        return (d.mean * scale + loc + (d.scale * scale).square() / 2).exp()


def _present_columns(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per column, the sum of the present cells and their count."""
    present = ~x.isnan()
    return torch.where(present, x, 0.0).sum(0), present.sum(0)


class _DiscreteFamily(Family):
    standardized = False
    abduction = False
    discrete = True

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class BernoulliFamily(_DiscreteFamily):
    r"""Binary nodes (codes 0 and 1): :math:`P(x_i = 1) = \sigma(\ell_i)`, the logit from the head
    (logistic regression on the parents with the linear decoder).
    """

    name = "binary"
    heads = ("logit",)
    levels = 2

    def distribution(self, logit: Tensor) -> Bernoulli:
        return Bernoulli(logit)

    def offsets(self, x: Tensor) -> Tensor:
        ones, n = _present_columns(x)
        p = (ones + 0.5) / (n + 1.0)  # the Jeffreys-smoothed share of ones
        return (p.log() - (-p).log1p())[None]

    def reconstruction_error(self, x: Tensor, mean: Tensor) -> Tensor:
        r"""The squared error of the probability :math:`(x - \hat p)^2` (the Brier score)."""
        return (x - mean).square()


#: The probability of a level of a categorical node that training did not see.
UNSEEN = 1e-3


class CategoricalFamily(_DiscreteFamily):
    r"""Nodes with ``levels`` categories (codes ``0..K-1``; code ``K`` a level unseen in training, of
    probability :data:`UNSEEN`): one logit per level from the heads (multinomial logistic regression
    with the linear decoder). As an input a category is its one-hot block of ``K`` units (all zero
    for an unseen level or a hole).
    """

    name = "categorical"

    def __init__(self, min_scale: float = 0.0, levels: int = 2) -> None:
        super().__init__(min_scale)
        if levels < 2:
            raise ValueError(f"a categorical node needs at least 2 levels, got {levels}")
        self.levels = levels
        self.heads = tuple(f"logit{k}" for k in range(levels))
        self.input_units = self.linear_heads = levels

    @property
    def key(self) -> str:
        return f"{self.name}:{self.levels}"

    unseen = UNSEEN

    def distribution(self, *logits: Tensor) -> Categorical:
        return Categorical(torch.stack(logits, -1), self.unseen)

    def encode(self, u: Tensor) -> Tensor:
        code = torch.nan_to_num(u, nan=-1.0).long()  # (..., D): every code, or -1 for none
        hot = code[..., None] == torch.arange(self.levels, device=u.device)
        return hot.to(u.dtype).flatten(-2)

    def offsets(self, x: Tensor) -> Tensor:
        present = ~x.isnan()
        code = torch.where(present, x, -1.0).long()
        counts = (code[..., None] == torch.arange(self.levels, device=x.device)).sum(0)  # (D, K)
        p = (counts + 0.5) / (counts.sum(-1, keepdim=True) + 0.5 * self.levels)
        return p.log().T.to(x.dtype)

    def reconstruction_error(self, x: Tensor, mean: Tensor) -> Tensor:
        """1 where the most probable level is not the value (the misclassification rate)."""
        return (x != mean).to(mean.dtype)

    def __repr__(self) -> str:
        return f"CategoricalFamily(levels={self.levels})"


class _CountFamily(_DiscreteFamily):
    def encode(self, u: Tensor) -> Tensor:
        r""":math:`\log(1 + x)`, a scale on which counts of different sizes can feed a network."""
        return u.clamp(min=0).log1p()

    def offsets(self, x: Tensor) -> Tensor:
        total, n = _present_columns(x)
        out = x.new_zeros(len(self.heads), x.shape[-1])
        out[0] = ((total + 0.5) / (n + 1.0)).log()  # the log of the mean count
        return out


class PoissonFamily(_CountFamily):
    r"""Counts :math:`x_i \sim \mathrm{Poisson}(e^{r_i})`, the log rate from the head (a log-linear
    model on the parents with the linear decoder).
    """

    name = "poisson"
    heads = ("log_rate",)

    def distribution(self, log_rate: Tensor) -> Poisson:
        return Poisson(log_rate)


class NegativeBinomialFamily(_CountFamily):
    r"""Over-dispersed counts with mean :math:`e^{m_i}` and dispersion
    :math:`r_i = \mathrm{softplus}(\rho_i + c) + 10^{-3}`, 1 at :math:`\rho = 0` (variance
    :math:`\mu + \mu^2 / r`).
    """

    name = "negbin"
    heads = ("log_mean", "raw_dispersion")

    def distribution(self, log_mean: Tensor, raw_dispersion: Tensor) -> NegativeBinomial:
        return NegativeBinomial(log_mean, F.softplus(raw_dispersion + RAW_SCALE_OFFSET) + 1e-3)


#: Every observation family by name.
FAMILIES: dict[str, type[Family]] = {
    f.name: f
    for f in (
        NormalFamily,
        StudentTFamily,
        LogNormalFamily,
        BernoulliFamily,
        CategoricalFamily,
        PoissonFamily,
        NegativeBinomialFamily,
    )
}


def family(name: str, min_scale: float = 0.0) -> Family:
    """The family called ``name``, with its parameters after a colon (``categorical:3``: three
    levels); a ``ValueError`` naming the choices for an unknown one.
    """
    base, _, arg = name.partition(":")
    if base not in FAMILIES:
        raise ValueError(f"unknown likelihood {name!r}; choose one of {', '.join(FAMILIES)}")
    if base == CategoricalFamily.name:
        if not arg.isdigit():
            raise ValueError(f"a categorical family needs its levels, e.g. 'categorical:3', got {name!r}")
        return CategoricalFamily(min_scale, int(arg))
    if arg:
        raise ValueError(f"the {base} family takes no parameter, got {name!r}")
    return FAMILIES[base](min_scale)

r"""Distributions: the standard normal base, diagonal Gaussians, and normalizing flows.

A normalizing flow with transform :math:`f` (data to base) and base :math:`p_0` has

.. math:: \log p(x) = \log p_0(f(x)) + \log |\det J_f(x)|,

and samples :math:`x = f^{-1}(\epsilon)`, :math:`\epsilon \sim p_0`. A fast sampler (an encoder)
is the flow of an inverse, :math:`f = F^{-1}`, so that sampling with its density is one pass of
:math:`F`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Size, Tensor, nn
from torch.distributions import Distribution, constraints

from sirenvae.flows.core import LazyTransform, Transform, as_lazy

__all__ = [
    "DiagNormal",
    "Flow",
    "LazyDistribution",
    "NormalizingFlow",
    "StandardNormal",
    "StandardNormalBase",
]

LOG_2PI = math.log(2 * math.pi)


class StandardNormal(Distribution):
    r""":math:`\mathcal{N}(0, I)` over vectors of ``features``, with a batch shape.

    Arguments:
        features: The event size :math:`D`.
        batch_shape: The batch shape.
        dtype, device: Of the samples.
    """

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(
        self,
        features: int,
        batch_shape: Size | Sequence[int] = (),
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | None = None,
    ) -> None:
        self.dtype, self.device = dtype, device
        super().__init__(Size(batch_shape), Size((features,)), validate_args=False)

    def log_prob(self, x: Tensor) -> Tensor:
        D = x.shape[-1]
        return -0.5 * (x * x).sum(-1) - 0.5 * D * LOG_2PI

    def rsample(self, sample_shape: Size | Sequence[int] = ()) -> Tensor:
        shape = self._extended_shape(Size(sample_shape))
        return torch.randn(shape, dtype=self.dtype, device=self.device)

    def expand(self, batch_shape: Size | Sequence[int], _instance=None) -> StandardNormal:
        return StandardNormal(self.event_shape[0], batch_shape, dtype=self.dtype, device=self.device)


class DiagNormal(Distribution):
    r""":math:`\mathcal{N}(\mu, \mathrm{diag}\,\sigma^2)` over the last dimension.

    Arguments:
        loc: The means :math:`\mu`, shape ``(*, D)``.
        scale: The standard deviations :math:`\sigma > 0`, broadcastable to ``loc``.
        log_scale: :math:`\log \sigma`, when the caller has it (exact, and saves a log).
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, loc: Tensor, scale: Tensor, log_scale: Tensor | None = None) -> None:
        self.loc, self.scale = torch.broadcast_tensors(loc, scale)
        self.log_scale = self.scale.log() if log_scale is None else log_scale
        super().__init__(self.loc.shape[:-1], self.loc.shape[-1:], validate_args=False)

    @property
    def mean(self) -> Tensor:
        return self.loc

    def log_prob(self, x: Tensor) -> Tensor:
        r = (x - self.loc) / self.scale
        return (-0.5 * r * r - self.log_scale - 0.5 * LOG_2PI).sum(-1)

    def reparameterize(self, eps: Tensor, need: Tensor | None = None) -> Tensor:
        r""":math:`\mu + \sigma \epsilon`: the sample of given standard normal noise."""
        return self.loc + self.scale * eps

    def rsample(self, sample_shape: Size | Sequence[int] = ()) -> Tensor:
        return self.rsample_and_log_prob(sample_shape)[0]

    def rsample_and_log_prob(self, sample_shape: Size | Sequence[int] = ()) -> tuple[Tensor, Tensor]:
        """A reparameterised sample and its log-density, computed from the noise."""
        shape = self._extended_shape(Size(sample_shape))
        eps = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        D = self.event_shape[0]
        log_q = -0.5 * (eps * eps).sum(-1) - self.log_scale.sum(-1) - 0.5 * D * LOG_2PI
        return self.reparameterize(eps), log_q


class NormalizingFlow(Distribution):
    r"""The distribution of :math:`x = f^{-1}(\epsilon)`, :math:`\epsilon \sim p_0`.

    Arguments:
        transform: :math:`f`, from data to the base.
        base: :math:`p_0`.
    """

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, transform: Transform, base: Distribution) -> None:
        self.transform, self.base = transform, base
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    def log_prob(self, x: Tensor) -> Tensor:
        e, ladj = self.transform.call_and_ladj(x)
        return self.base.log_prob(e) + ladj

    def rsample(self, sample_shape: Size | Sequence[int] = ()) -> Tensor:
        return self.transform.inv(self.base.rsample(sample_shape))

    def rsample_and_log_prob(self, sample_shape: Size | Sequence[int] = ()) -> tuple[Tensor, Tensor]:
        """A reparameterised sample and its log-density (one pass when ``transform`` is an inverse)."""
        e = self.base.rsample(sample_shape)
        x, ladj = self.transform.inv.call_and_ladj(e)
        return x, self.base.log_prob(e) - ladj


class LazyDistribution(nn.Module):
    """A module that returns a distribution when called with a context (or ``None``)."""

    def forward(self, c: Tensor | None = None) -> Distribution:
        raise NotImplementedError


class StandardNormalBase(LazyDistribution):
    r""":math:`\mathcal{N}(0, I)` of ``features``, in the module's dtype and on its device."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.features = features
        self.register_buffer("_like", torch.zeros(()), persistent=False)

    def forward(self, c: Tensor | None = None) -> StandardNormal:
        return StandardNormal(self.features, dtype=self._like.dtype, device=self._like.device)


class Flow(LazyDistribution):
    r"""A lazy normalizing flow: ``Flow(transform, base)(c)`` is :math:`p(x \mid c)`.

    The base is expanded to the context's batch shape. For fast sampling (an encoder), pass the
    inverse of a transform: ``Flow(F.inv, base)`` samples :math:`x = F(\epsilon)` in one pass.

    Arguments:
        transform: A lazy transform (or a sequence of them), from data to the base.
        base: A lazy base distribution.
    """

    def __init__(self, transform: LazyTransform | Sequence[LazyTransform], base: LazyDistribution) -> None:
        super().__init__()
        self.transform = as_lazy(transform)
        self.base = base

    def forward(self, c: Tensor | None = None) -> NormalizingFlow:
        base = self.base(c)
        if c is not None:
            base = base.expand(c.shape[:-1])
        return NormalizingFlow(self.transform(c), base)

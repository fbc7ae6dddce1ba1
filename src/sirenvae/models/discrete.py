r"""Independent discrete observations: Bernoulli, categorical, Poisson and negative binomial nodes.

Each distribution is over ``(*, D)`` values of ``D`` nodes (a category is its integer code, stored
as a float like every other value), with ``log_prob(x, mask)`` summed over the present cells. A
sample is a fixed function of uniform noise :math:`\eta \sim U(0, 1)` by the inverse CDF
(``noise``/``reparameterize``), so that ancestral sampling with the noise drawn once settles every
node after its parents, as it does for the continuous families; the draws carry no gradient.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Size, Tensor
from torch.distributions import Distribution, constraints

__all__ = ["Bernoulli", "Categorical", "NegativeBinomial", "Poisson"]

#: Counts above this mean are drawn by a normal approximation of the inverse CDF (rounded).
LARGE_MEAN = 200.0

#: The largest count drawn (float32 holds every integer up to it). A hole drawn from a heavy tail can
#: push a child count's mean to infinity; an infinite draw as a parent would turn the masked layers'
#: zeros into NaN (inf * 0).
MAX_DRAWN_COUNT = 2.0**24


def masked_sum(cells: Tensor, mask: Tensor | None) -> Tensor:
    """The sum over the last dimension of the present cells (all of them when ``mask`` is ``None``)."""
    return cells.sum(-1) if mask is None else torch.where(mask, cells, cells.new_zeros(())).sum(-1)


def _clean(x: Tensor, mask: Tensor | None) -> Tensor:
    """``x`` with its holes (and any NaN there) at 0, so that they reach no log-density."""
    return x if mask is None else torch.where(mask, x, x.new_zeros(()))


class _Discrete(Distribution):
    has_rsample = False

    def __init__(self, like: Tensor) -> None:
        super().__init__(like.shape[:-1], like.shape[-1:], validate_args=False)
        self._like = like

    def noise(self, sample_shape: Size | Sequence[int] = ()) -> Tensor:
        """Uniform noise of shape ``sample_shape + batch + event``."""
        shape = self._extended_shape(Size(sample_shape))
        return torch.rand(shape, dtype=self._like.dtype, device=self._like.device)

    def sample(self, sample_shape: Size | Sequence[int] = ()) -> Tensor:
        with torch.no_grad():
            return self.reparameterize(self.noise(sample_shape))

    @property
    def point(self) -> Tensor:
        """The point prediction of a value (the mean; the mode for a category)."""
        return self.mean


class Bernoulli(_Discrete):
    r"""Independent :math:`x_i \in \{0, 1\}` with :math:`P(x_i = 1) = \sigma(\ell_i)`.

    .. math:: \log p(x) = \sum_i x_i \ell_i - \log(1 + e^{\ell_i})
    """

    arg_constraints = {"logits": constraints.real}
    support = constraints.boolean

    def __init__(self, logits: Tensor) -> None:
        self.logits = logits
        super().__init__(logits)

    @property
    def mean(self) -> Tensor:
        return torch.sigmoid(self.logits)

    def log_prob(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return masked_sum(_clean(x, mask) * self.logits - F.softplus(self.logits), mask)

    def reparameterize(self, eta: Tensor, need: Tensor | None = None) -> Tensor:
        return (eta < torch.sigmoid(self.logits)).to(self.logits.dtype)

    def abduct(self, x: Tensor) -> Tensor:
        r"""Noise drawn given the value: :math:`\eta \sim U(0, p)` for 1, :math:`U(p, 1)` for 0 (the
        monotone, inverse-CDF model of a counterfactual; another noise model gives another answer).
        """
        p, x = torch.broadcast_tensors(torch.sigmoid(self.logits), x)
        r = torch.rand_like(p)
        return torch.where(x > 0.5, r * p, p + r * (1 - p))


class Categorical(_Discrete):
    r"""Independent categories :math:`x_i \in \{0, \dots, K - 1\}` (codes), each with its own
    ``K`` logits, and a small probability :math:`\epsilon` for a level not seen in training (code
    ``K``): :math:`P(x_i = k) = (1 - \epsilon)\,\mathrm{softmax}(\ell_i)_k`, :math:`P(x_i = K) = \epsilon`.

    Arguments:
        logits: ``(*, D, K)``.
        unseen: :math:`\epsilon` (0 for none).
    """

    arg_constraints = {"logits": constraints.real}
    support = constraints.nonnegative_integer

    def __init__(self, logits: Tensor, unseen: float = 0.0) -> None:
        self.logits, self.unseen = logits, unseen
        super().__init__(logits[..., 0])

    @property
    def probs(self) -> Tensor:
        return self.logits.softmax(-1)

    @property
    def mean(self) -> Tensor:
        r"""The mean code :math:`\sum_k k\, p_k` (a category's point prediction is :attr:`point`)."""
        k = torch.arange(self.logits.shape[-1], dtype=self.logits.dtype, device=self.logits.device)
        return (self.probs * k).sum(-1)

    @property
    def point(self) -> Tensor:
        """The most probable level's code."""
        return self.logits.argmax(-1).to(self.logits.dtype)

    def log_prob(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        K = self.logits.shape[-1]
        code = _clean(x, mask).long()
        seen = code < K
        shape = torch.broadcast_shapes(code.shape, self.logits.shape[:-1])
        code, seen = code.expand(shape), seen.expand(shape)
        log_p = self.logits.log_softmax(-1).expand(*shape, K)
        log_p = log_p.gather(-1, code.clamp(0, K - 1)[..., None])[..., 0]
        if self.unseen > 0:
            log_p = torch.where(seen, log_p + math.log1p(-self.unseen), math.log(self.unseen))
        else:
            log_p = torch.where(seen, log_p, -math.inf)
        return masked_sum(log_p, mask)

    def abduct(self, x: Tensor) -> Tensor:
        r"""Noise drawn uniformly within the value's CDF step :math:`[F(k - 1), F(k))` (the inverse-CDF
        model of a counterfactual); NaN for an unseen level.
        """
        cdf = self.probs.cumsum(-1)
        code = x.long().clamp(0, self.logits.shape[-1] - 1)
        shape = torch.broadcast_shapes(code.shape, cdf.shape[:-1])
        cdf = cdf.expand(*shape, cdf.shape[-1])
        code = code.expand(shape)
        hi = cdf.gather(-1, code[..., None])[..., 0]
        lo = torch.where(code > 0, cdf.gather(-1, (code - 1).clamp(min=0)[..., None])[..., 0], 0.0)
        eta = lo + torch.rand_like(hi) * (hi - lo)
        return torch.where(x.expand(shape) < self.logits.shape[-1], eta, math.nan)

    def reparameterize(self, eta: Tensor, need: Tensor | None = None) -> Tensor:
        cdf = self.probs.cumsum(-1)
        code = (cdf < eta[..., None]).sum(-1).clamp(max=self.logits.shape[-1] - 1)
        return code.to(self.logits.dtype)


class _Count(_Discrete):
    """A count distribution drawn by its inverse CDF over a window around the mean."""

    support = constraints.nonnegative_integer

    def _log_pmf(self, k: Tensor) -> Tensor:
        raise NotImplementedError

    @property
    def variance(self) -> Tensor:
        raise NotImplementedError

    def log_prob(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return masked_sum(self._log_pmf(_clean(x, mask)), mask)

    def reparameterize(self, eta: Tensor, need: Tensor | None = None) -> Tensor:
        """The counts of noise ``eta``; with ``need``, the exact inverse CDF runs only where it is
        true (the rest, a rounded normal approximation, is for cells whose draw is not used).
        """
        # a drawn count has no pathwise gradient; sqrt's at a variance underflowed to 0 is NaN
        mean, sd = self.mean.detach(), self.variance.detach().sqrt()
        shape = torch.broadcast_shapes(eta.shape, mean.shape)
        mean, sd, eta = mean.expand(shape), sd.expand(shape), eta.expand(shape)
        # the normal approximation where the window would be wide, the exact inverse CDF elsewhere
        z = math.sqrt(2) * torch.erfinv((2 * eta - 1).clamp(-1 + 1e-7, 1 - 1e-7))
        out = (mean + sd * z).nan_to_num(MAX_DRAWN_COUNT)  # an overflowed mean: inf * 0 or inf - inf
        out = out.round().clamp(0, MAX_DRAWN_COUNT)
        small = mean <= LARGE_MEAN
        if need is not None:
            small &= need.expand(shape)
        if bool(small.any()):
            top = int(torch.ceil(mean[small] + 12 * sd[small] + 12).max())
            k = torch.arange(top + 1, dtype=mean.dtype, device=mean.device)
            sub = self._subset(small)
            cdf = sub._log_pmf(k.view(-1, 1)).exp().cumsum(0)  # (top + 1, n)
            out[small] = (cdf < eta[small]).sum(0).to(out.dtype)
        return out

    def _subset(self, where: Tensor) -> _Count:
        raise NotImplementedError


class Poisson(_Count):
    r"""Independent counts :math:`x_i \sim \mathrm{Poisson}(\lambda_i)`, :math:`\lambda = e^{r}`.

    .. math:: \log p(x) = \sum_i x_i r_i - e^{r_i} - \log x_i!
    """

    arg_constraints = {"log_rate": constraints.real}

    def __init__(self, log_rate: Tensor) -> None:
        self.log_rate = log_rate
        super().__init__(log_rate)

    @property
    def mean(self) -> Tensor:
        return self.log_rate.exp()

    @property
    def variance(self) -> Tensor:
        return self.mean

    def _log_pmf(self, k: Tensor) -> Tensor:
        return k * self.log_rate - self.log_rate.exp() - torch.lgamma(k + 1)

    def _subset(self, where: Tensor) -> Poisson:
        return Poisson(self.log_rate.expand(where.shape)[where])


class NegativeBinomial(_Count):
    r"""Independent over-dispersed counts with mean :math:`\mu_i` and dispersion :math:`r_i`
    (variance :math:`\mu + \mu^2 / r`; a Poisson as :math:`r \to \infty`).

    .. math:: \log p(x) = \sum_i \log\Gamma(x_i + r_i) - \log\Gamma(r_i) - \log x_i!
        + r_i \log\frac{r_i}{r_i + \mu_i} + x_i \log\frac{\mu_i}{r_i + \mu_i}
    """

    arg_constraints = {"log_mean": constraints.real, "dispersion": constraints.positive}

    def __init__(self, log_mean: Tensor, dispersion: Tensor) -> None:
        self.log_mean, self.dispersion = torch.broadcast_tensors(log_mean, dispersion)
        super().__init__(self.log_mean)

    @property
    def mean(self) -> Tensor:
        return self.log_mean.exp()

    @property
    def variance(self) -> Tensor:
        mu = self.mean
        return mu + mu.square() / self.dispersion

    def _log_pmf(self, k: Tensor) -> Tensor:
        r, log_r = self.dispersion, self.dispersion.log()
        log_total = torch.logaddexp(log_r, self.log_mean)  # log(r + mu)
        return (
            torch.lgamma(k + r)
            - torch.lgamma(r)
            - torch.lgamma(k + 1)
            + r * (log_r - log_total)
            + k * (self.log_mean - log_total)
        )

    def _subset(self, where: Tensor) -> NegativeBinomial:
        shape = where.shape
        return NegativeBinomial(self.log_mean.expand(shape)[where], self.dispersion.expand(shape)[where])

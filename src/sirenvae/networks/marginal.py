r"""Monte-Carlo estimates of a network's marginal log-density :math:`\log p(x)` of observed variables.

Importance sampling over the latent nodes :math:`z`: with :math:`z_s \sim q(z \mid x)`,
:math:`w_s = p(x, z_s) / q(z_s \mid x)` and :math:`\hat p(x) = \frac{1}{S} \sum_s w_s`, an unbiased
estimate of :math:`p(x)` whatever :math:`q` (with the posterior's support). Its standard error on the
log scale is, by the delta method, :math:`\mathrm{sd}(w) / (\sqrt{S}\, \hat p(x))`; the log of an
unbiased estimate is biased low by about half its squared standard error.

Two proposals:

- ``"prior"`` (likelihood weighting): latent nodes drawn from their conditionals in topological
  order, observed ones set to the data; any network with per-node conditionals
  (``network.conditional(v, values)``). Exact in expectation, but its weights are the observed
  nodes' likelihoods, so it needs many samples when those are sharp.
- ``"circuit"``: for the arithmetic circuit with ``x0, x1`` observed. The Gaussian nodes that sit
  between a latent and an observation are drawn from their exact conditionals
  (:math:`z_3 \mid z_0 z_1, x_0 \sim \mathcal{N}((z_0 z_1 + x_0)/2, 0.005)` and likewise
  :math:`z_5`), :math:`z_1` and :math:`z_4` from defensive mixtures of their prior and a
  Gaussian aimed at :math:`z_0 z_1 \approx x_0` and :math:`\tanh(z_3 + z_4) \approx x_1`. Every
  weight is then bounded (by :math:`4 / (2 \pi \cdot 0.02)`), so the estimate has finite
  variance and its standard error can be trusted.

Everything is float64 and seeded by a :class:`torch.Generator`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["MarginalEstimate", "importance_log_marginal"]

_N = torch.distributions.Normal
_LAPLACE = torch.distributions.Laplace
_SQRT2 = math.sqrt(2.0)


@dataclass(frozen=True)
class MarginalEstimate:
    r"""Per-row importance-sampling estimates, each of shape ``(N,)`` (float64).

    Attributes:
        log_prob: :math:`\log \hat p(x)` per row.
        se: Its Monte-Carlo standard error (delta method).
        ess: The effective sample size :math:`(\sum w)^2 / \sum w^2` per row.
        samples: Importance samples per row.
    """

    log_prob: Tensor
    se: Tensor
    ess: Tensor
    samples: int

    @property
    def nll(self) -> float:
        """The mean negative log-density over the rows."""
        return -self.log_prob.mean().item()

    @property
    def nll_se(self) -> float:
        """The standard error of :attr:`nll` (rows estimated independently)."""
        return (self.se.square().sum().sqrt() / self.se.numel()).item()


def _draw(dist: torch.distributions.Distribution, shape: torch.Size, generator: torch.Generator) -> Tensor:
    """A seeded draw of ``shape`` by inversion (Normal and Laplace; the parameters broadcast)."""
    u = torch.rand(shape, generator=generator, dtype=torch.float64)
    return dist.icdf(u.clamp(1e-12, 1 - 1e-12))


def _prior_proposal(network, values: dict[str, Tensor], latent: Sequence[str], generator):
    """Likelihood weighting: each latent node from its conditional given its parents' values."""
    latent = set(latent)
    shape = next(iter(values.values())).shape
    log_q = 0.0
    for v in network.graph.nodes:
        if v in latent:
            dist = network.conditional(v, values)
            values[v] = _draw(dist, shape, generator)
            log_q = log_q + dist.log_prob(values[v])
    return log_q


def _mixture(a: torch.distributions.Distribution, b: torch.distributions.Distribution, generator):
    """A draw from the even mixture of ``a`` and ``b`` and its log-density."""
    shape = a.batch_shape
    pick = torch.rand(shape, generator=generator, dtype=torch.float64) < 0.5
    value = torch.where(pick, _draw(a, shape, generator), _draw(b, shape, generator))
    log_q = torch.logaddexp(a.log_prob(value), b.log_prob(value)) - math.log(2.0)
    return value, log_q


def _circuit_proposal(network, values: dict[str, Tensor], latent: Sequence[str], generator):
    """The arithmetic circuit's proposal (see the module docstring); ``x0``, ``x1`` observed."""
    x0, x1 = values["x0"], values["x1"]
    one = torch.ones_like(x0)
    s = 0.1 * _SQRT2  # sd of x0 given z0 z1 (z3 integrated out), and of x1 given z3 + z4
    z0 = _draw(_LAPLACE(5.0 * one, one), one.shape, generator)
    log_q = _LAPLACE(5.0 * one, one).log_prob(z0)
    z0_safe = torch.where(z0.abs() < 1e-6, 1e-6 * one, z0)
    z1, lq1 = _mixture(_N(x0 / z0_safe, s / z0_safe.abs()), _LAPLACE(-2.0 * one, one), generator)
    z3_given = _N((z0 * z1 + x0) / 2, 0.05 * _SQRT2)
    z3 = _draw(z3_given, one.shape, generator)
    t = x1.clamp(-0.99, 0.99)
    width = (1.5 * s / (1 - t.square())).clamp(max=2.0)
    z4, lq4 = _mixture(_N(torch.atanh(t) - z3, width), _N(7.0 * one, 2.0 * one), generator)
    z5_given = _N((torch.tanh(z3 + z4) + x1) / 2, 0.05 * _SQRT2)
    z5 = _draw(z5_given, one.shape, generator)
    values.update(z0=z0, z1=z1, z3=z3, z4=z4, z5=z5)
    z2_given = network.conditional("z2", values)
    values["z2"] = _draw(z2_given, one.shape, generator)
    log_q = (
        log_q + lq1 + z3_given.log_prob(z3) + lq4 + z5_given.log_prob(z5) + z2_given.log_prob(values["z2"])
    )
    return log_q


_PROPOSALS = {"prior": _prior_proposal, "circuit": _circuit_proposal}


@torch.no_grad()
def importance_log_marginal(
    network,
    x: Tensor,
    observed: Sequence[str],
    *,
    samples: int = 4096,
    seed: int = 0,
    proposal: str = "prior",
    chunk: int = 1 << 18,
) -> MarginalEstimate:
    r"""Estimates :math:`\log p(x)` of each row of ``x`` (columns: the ``observed`` nodes) by importance
    sampling over the other nodes with ``samples`` draws per row from ``proposal`` (``"prior"`` or
    ``"circuit"``); seeded by ``seed``, so the same rows give the same estimate.
    """
    if proposal not in _PROPOSALS:
        raise ValueError(f"unknown proposal {proposal!r}; choose from {', '.join(_PROPOSALS)}")
    observed = list(observed)
    if x.ndim != 2 or x.shape[1] != len(observed):
        raise ValueError(
            f"x must have shape (N, {len(observed)}) for the observed nodes, got {tuple(x.shape)}"
        )
    if samples < 2:
        raise ValueError(f"samples must be at least 2, got {samples}")
    latent = [v for v in network.graph.nodes if v not in set(observed)]
    circuit = {f"z{i}" for i in range(6)} | {"x0", "x1"}
    if proposal == "circuit" and (sorted(observed) != ["x0", "x1"] or set(network.graph.nodes) != circuit):
        raise ValueError("the circuit proposal is for the arithmetic circuit with exactly x0 and x1 observed")
    generator = torch.Generator().manual_seed(int(seed))
    xd = x.detach().to("cpu", torch.float64)
    rows = max(1, chunk // samples)
    log_p, se, ess = [], [], []
    for xb in xd.split(rows):
        values = {v: xb[:, j : j + 1].expand(-1, samples) for j, v in enumerate(observed)}
        log_q = _PROPOSALS[proposal](network, values, latent, generator)
        log_joint = sum(network.conditional(v, values).log_prob(values[v]) for v in network.graph.nodes)
        lw = log_joint - log_q
        lp = torch.logsumexp(lw, 1) - math.log(samples)
        rel = (lw - lp[:, None]).exp()  # w / p_hat, mean 1
        log_p.append(lp)
        se.append(rel.std(1) / math.sqrt(samples))
        ess.append(samples / rel.square().mean(1))
    return MarginalEstimate(torch.cat(log_p), torch.cat(se), torch.cat(ess), samples)

r"""Interventions and counterfactuals on a fitted SIReN-VAE, read as a structural causal model.

With ``conditioning="parents"`` every node has its own structural equation: a latent
:math:`z_i = F_i^{-1}(\epsilon_i; z_{pa(i)}, c)` through the prior flow :math:`F` (whose
component :math:`F_i` reads only :math:`z_i`, its parents and the observed context :math:`c`, and
is monotone in :math:`z_i`), an observed node :math:`u_i = \mu_i(pa) + \sigma_i(pa)\,\eta_i` through
the decoder (standardised units). An intervention :math:`do(v = a)` cuts :math:`v`'s equation:

- on an observed node, its value is clamped in every decoder sweep;
- on a latent :math:`z_k`, its noise is replaced by :math:`\epsilon_k' = F_k(z)` evaluated with
  :math:`z_k := a` and the parents' current values; the inverse then returns :math:`z_k = a` while
  every other latent keeps its own noise, so non-descendants keep their values and descendants
  follow. With several intervened latents this is repeated, each pass settling one more along any
  chain of them, and the flow's code is left untouched.

Counterfactuals (Pearl 2009, §7.1): abduction draws latents from the encoder and resamples them
with the weights :math:`p(x, z) / q(z \mid x)` (so that they follow the model's posterior, not the
encoder's), and takes their noises :math:`\epsilon = F(z)` and the observed nodes' residuals
:math:`\eta = (u - \mu) / \sigma`; action and prediction propagate the same noises through the
mutilated model.

References:
    | Causality (Pearl, 2009), 2nd ed., Cambridge University Press, §1.4 and §7.1.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from sirenvae.models.vae import SIReNVAE, prior_draws, resample
from sirenvae.names import unknown_node
from sirenvae.variables import outside_support

__all__ = [
    "Intervention",
    "check_structural",
    "counterfactual",
    "draw_noise",
    "propagate",
    "raw",
    "resolve",
]

#: A quantile value of ``do``: ``q`` and a level strictly between 0 and 1 (``q0.9``).
QUANTILE = re.compile(r"q(0?\.\d*[1-9]\d*)")
#: The largest residual of the prior's inverse accepted (in noise units; the solver aims at 1e-6).
RESIDUAL = 1e-4
#: Model samples behind a quantile value of ``do``.
QUANTILE_SAMPLES = 20_000


def check_structural(model: SIReNVAE) -> None:
    """Raises a one-line :class:`ValueError` unless ``model`` gives every node its own structural
    equation on the true graph (variant ``true`` with ``conditioning="parents"``).
    """
    c = model.config
    fix = "fit the variant true with conditioning=parents (sirenvae fit ... --set conditioning=parents)"
    if not c.structured:
        raise ValueError(f"the {c.variant} baseline has no graph over its latents, so no causal model; {fix}")
    if c.variant != "true":
        raise ValueError(
            f"the {c.variant} variant answers under another latent graph than the network's; {fix}"
        )
    if c.conditioning != "parents" and model.latent:  # without a latent the prior has nothing to tie
        raise ValueError(
            "this model was fitted with conditioning=ancestors: its prior ties each latent to all its "
            f"ancestors, not one structural equation per node; {fix}"
        )


@dataclass(frozen=True)
class Intervention:
    """An intervention resolved on a model: positions and values, observed ones standardised.

    Attributes:
        values: Each intervened node's value (raw units for observed nodes, the model's own for latents).
        latent: Positions among the latents and their values, shape ``(K,)`` each.
        observed: Positions among the observed nodes and their standardised values.
    """

    values: dict[str, float]
    latent: tuple[Tensor, Tensor]
    observed: tuple[Tensor, Tensor]


def resolve(
    model: SIReNVAE, do: Mapping[str, float | str], *, samples: int = QUANTILE_SAMPLES
) -> Intervention:
    """Checks ``do`` (node name to a number, or ``"q0.9"``: that quantile of the node's marginal
    under the model, from ``samples`` draws) and resolves it on ``model``.
    """
    if not isinstance(do, Mapping) or not do:
        raise ValueError("do: name at least one node and its value, e.g. do={'x': 1.5}")
    nodes = set(model.graph.nodes)
    for v in do:
        if v not in nodes:
            raise ValueError(f"do: {unknown_node(v, model.graph.nodes)}")
    if len(do) == len(nodes):
        raise ValueError("do: every node is intervened on, so nothing is left to sample; leave one free")
    values, marginal = {}, None
    for v, raw in do.items():
        if isinstance(raw, str) and QUANTILE.fullmatch(raw.strip()):
            if marginal is None:
                marginal = _marginal(model, samples)
            level = float(raw.strip()[1:])
            values[v] = torch.quantile(marginal[:, model.graph.index(v)].cpu().double(), level).item()
            continue
        try:
            values[v] = float(raw)
        except (TypeError, ValueError):
            raise ValueError(
                f"do: the value of {v!r} must be a number or a quantile qP with 0 < P < 1 such as 'q0.9', "
                f"got {raw!r}"
            ) from None
        if not math.isfinite(values[v]):
            raise ValueError(f"do: the value of {v!r} must be finite, got {raw!r}")
        _check_domain(model, v, values[v], raw)
    like = model.loc
    lat = [(model.latent.index(v), a) for v, a in values.items() if v in model.latent]
    obs = [(model.observed.index(v), a) for v, a in values.items() if v in model.observed]

    def pair(items, standardise):
        idx = torch.tensor([i for i, _ in items], dtype=torch.long, device=like.device)
        a = torch.tensor([a for _, a in items], dtype=like.dtype, device=like.device)
        if not standardise:
            return idx, a
        row = model.unstandardize(torch.zeros_like(model.loc))  # a whole row, so each node's rule applies
        row[idx] = a
        return idx, model.standardize(row)[idx]

    return Intervention(values, pair(lat, False), pair(obs, True))


def _check_domain(model: SIReNVAE, v: str, value: float, raw) -> None:
    """A one-line ``ValueError`` for a value outside an observed node's family's support."""
    if v not in model.observed:
        return
    f = model.observation.members[model.observed.index(v)]
    if outside_support(f.name, value):
        must = "be positive" if f.name == "lognormal" else "be a non-negative integer"
        what = "log-normal" if f.name == "lognormal" else "a count"
        raise ValueError(f"do: {v!r} is {what}, so its value must {must}, got {raw!r}")
    if f.levels and value not in range(f.levels):
        raise ValueError(f"do: {raw!r} is no level of the {f.name} node {v!r}")


def raw(model: SIReNVAE, u: Tensor, do: Intervention | None = None) -> Tensor:
    """Standardised observed values ``u`` on the raw scale, the intervened ones exactly as given."""
    x = model.unstandardize(u)
    if do is not None and len(do.observed[0]):
        idx = do.observed[0]
        given = [do.values[model.observed[i]] for i in idx.tolist()]
        x[..., idx] = torch.tensor(given, dtype=x.dtype, device=x.device)
    return x


@torch.no_grad()
def _marginal(model: SIReNVAE, n: int) -> Tensor:
    """``n`` model samples of every node in graph order (observed ones on the raw scale), drawn with
    a fixed seed on a forked generator: the same quantiles every time, the caller's stream untouched.
    """
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda):  # manual_seed seeds every device: restore them all
        torch.manual_seed(0)
        z, x = model.sample(n)
    return model.values(z, x)


def draw_noise(model: SIReNVAE, n: int) -> tuple[Tensor, Tensor]:
    r"""``n`` draws of the exogenous noises: the prior's :math:`\epsilon` and the decoder's :math:`\eta`."""
    like = model.loc
    eps = torch.randn(n, len(model.latent), dtype=like.dtype, device=like.device)
    zeros = torch.zeros(n, len(model.observed), dtype=like.dtype, device=like.device)
    return eps, model.decoder(model.nodes(eps.new_zeros(eps.shape), zeros)).noise()


@torch.no_grad()
def propagate(
    model: SIReNVAE, eps: Tensor, eta: Tensor, do: Intervention | None = None
) -> tuple[Tensor, Tensor]:
    r"""The values ``(z, u)`` (``u`` standardised) that the noises ``eps`` ``(..., Dz)`` and ``eta``
    ``(..., Dx)`` give in the model mutilated by ``do``: the ancestral sampler of
    :meth:`SIReNVAE.sample` with intervened observed nodes clamped in every decoder sweep and
    intervened latents fixed through their noise.
    """
    check_structural(model)
    shape = torch.broadcast_shapes(eps.shape[:-1], eta.shape[:-1])
    eps, eta = eps.expand(*shape, eps.shape[-1]), eta.expand(*shape, eta.shape[-1])
    (kz, az), (kx, ax) = do.latent if do else (None, None), do.observed if do else (None, None)
    u = eps.new_zeros(*shape, len(model.observed))
    if kx is not None and len(kx):
        u[..., kx] = ax
    z = eps
    for solve in model._schedule:
        if solve:
            z = _inverse(model.prior_given(u).transform, eps, kz, az)
        u = model.decoder(model.nodes(z, u)).reparameterize(eta)
        if kx is not None and len(kx):
            u[..., kx] = ax
    return z, u


def _solve(transform, e: Tensor) -> Tensor:
    r""":math:`F^{-1}(e)`, accepting a residual :math:`|F(z) - e|` up to :data:`RESIDUAL` (float32
    noise far in the tails, as interventions produce, can stall just above the solver's own
    tolerance); a worse one raises the flow's convergence error.
    """
    result = transform.solve(e)
    return result.z if result.residual <= RESIDUAL else transform.inv(e)


def _inverse(transform, eps: Tensor, k: Tensor | None, a: Tensor | None) -> Tensor:
    r""":math:`F^{-1}` with the latents ``k`` set to ``a`` through their noise (see the module)."""
    if k is None or not len(k):
        return _solve(transform, eps)
    e = eps.clone()
    for _ in range(len(k)):
        z = _solve(transform, e)
        z[..., k] = a
        e[..., k] = transform(z)[..., k]
    z = _solve(transform, e)
    z[..., k] = a  # exact, not to the solver's tolerance
    return z


@torch.no_grad()
def counterfactual(
    model: SIReNVAE, x: Tensor, do: Intervention | None, n: int, proposals: int = 0, discrete: bool = False
) -> tuple[Tensor, Tensor, Tensor]:
    r"""``n`` counterfactual draws ``(z, u)`` per row of ``x`` (raw scale, ``(N, Dx)``), shapes
    ``(n, N, Dz)`` and ``(n, N, Dx)`` (``u`` standardised), had ``do`` been set; and the effective
    sample size of the abduction's importance weights per row, ``(N,)``.

    Abduction draws ``proposals`` latents per row from :math:`q(z \mid x)` (default
    ``max(10 n, 100)``) and resamples ``n`` of them with the weights :math:`p(x, z) / q(z \mid x)`.
    With ``do=None`` the prediction returns the row itself. A missing cell (NaN) is not conditioned
    on: it is drawn with the latents in the importance sampler and resampled with them (its
    counterfactual value is then a draw too). A discrete node the intervention does not reach keeps
    its value; one it reaches is refused (a discrete value does not determine its noise), unless
    ``discrete``, when a binary or categorical node's noise is drawn given its value under the
    monotone inverse-CDF model (a model-dependent answer; counts are still refused).
    """
    check_structural(model)
    if model.summed:
        raise ValueError(
            f"a counterfactual needs each hidden node's noise, and the discrete hidden node(s) "
            f"{', '.join(model.summed)} (summed out) have none a value determines; refit with a type "
            "'continuous' for them to ask counterfactuals"
        )
    kept = _discrete_kept(model, do, discrete)
    S = proposals or max(10 * n, 100)
    z, filled, log_w = model.importance_samples(x, S, prior_draws(S))  # (S+P, N, Dz), (S+P, N, Dx)|None
    w = torch.softmax(log_w, dim=0)
    ess = 1.0 / w.square().sum(0)
    if filled is None:
        (z,) = resample(w, n, z)
        u = model.standardize(x).expand(n, *x.shape)
    else:
        z, u = resample(w, n, z, filled)
    eps = model.prior_given(u).transform(z)
    eta = model.residuals(x, z, None if filled is None else u, discrete=discrete)
    if len(kept):  # discrete nodes the intervention does not reach keep their factual values
        do = _clamped(model, do, kept, u)
    z_cf, u_cf = propagate(model, eps, eta, do)
    return z_cf, u_cf, ess


def _discrete_kept(model: SIReNVAE, do: Intervention | None, allowed: bool = False) -> Tensor:
    """The positions of the discrete observed nodes the intervention does not reach (they keep their
    values). Reaching one is a one-line ``ValueError`` (a discrete value does not determine its noise,
    so its counterfactual is not identified by the model) unless ``allowed``, and always for a count.
    """
    families = model.observation.members
    names = [v for v, f in zip(model.observed, families, strict=True) if f.discrete]
    if not names:
        return torch.zeros(0, dtype=torch.long)
    reached = set()
    for v in do.values if do is not None else {}:
        reached |= model.graph.descendants(v)
    labelled = {v for v, f in zip(model.observed, families, strict=True) if f.levels}
    hit = [v for v in names if v in reached and not (allowed and v in labelled)]
    if hit:
        shown = ", ".join(hit[:6]) + (", ..." if len(hit) > 6 else "")
        way = (
            "a count has no such answer"
            if allowed
            else "pass --allow-unidentified (allow_unidentified=True) for a model-dependent answer under "
            "the inverse-CDF noise model of binary and categorical nodes, or ask for the interventional "
            "distribution (sirenvae effect, or sample --do)"
        )
        raise ValueError(
            f"the intervention reaches the discrete node(s) {shown}, whose counterfactual values the model "
            f"does not identify (a discrete value does not determine its noise); {way}"
        )
    return torch.tensor([model.observed.index(v) for v in names if v not in reached], dtype=torch.long)


def _clamped(model: SIReNVAE, do: Intervention | None, kept: Tensor, u: Tensor) -> Intervention:
    """``do`` with the observed nodes ``kept`` also fixed at their (per-draw) values ``u``."""
    kept = kept.to(u.device)
    values = u[..., kept]
    if do is None:
        return Intervention({}, (kept[:0], u.new_zeros(0)), (kept, values))
    (kx, ax), shape = do.observed, values.shape[:-1]
    return Intervention(
        do.values, do.latent, (torch.cat([kx, kept]), torch.cat([ax.expand(*shape, -1), values], -1))
    )

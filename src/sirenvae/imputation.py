r"""Imputation of missing cells (NaN), and posteriors given the present cells, by self-normalised
importance sampling.

For a row with holes, the proposals are :math:`z \sim q(z \mid x_{obs})` and the missing values
:math:`x_{mis} \sim p(x_{mis} \mid \cdot)` drawn inside the sampler
(:meth:`~sirenvae.models.SIReNVAE.fill`), with log weights
:math:`\log p(z, x_{obs}, x_{mis}) - \log q(z \mid x_{obs}) - \log p(x_{mis} \mid \cdot)`, those of
the IWAE bound on :math:`\log p(x_{obs})`. Normalised, they give the conditional mean
:math:`E[x_{mis} \mid x_{obs}] \approx \sum_s \bar w_s x_{mis}^{(s)}` (single imputation) and, by
sampling-importance-resampling, draws from :math:`p(x_{mis} \mid x_{obs})` (multiple imputation), as
MIWAE does without a graph (Mattei & Frellsen, 2019). The effective sample size
:math:`1 / \sum_s \bar w_s^2` per row says how far to trust them. Present cells are never changed.

References:
    | MIWAE: Deep Generative Modelling and Imputation of Incomplete Data Sets (Mattei & Frellsen, 2019)
    | https://arxiv.org/abs/1812.02633
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from sirenvae.models.summed import exact_rows, summed_parts
from sirenvae.models.vae import prior_draws, resample
from sirenvae.objectives import chunk_rows

__all__ = [
    "Imputation",
    "hidden_draws",
    "hidden_probabilities",
    "impute",
    "posterior_draws",
    "weighted_quantiles",
]


@dataclass(frozen=True)
class Imputation:
    """Imputed rows on the raw scale.

    Attributes:
        mean: ``(N, D)``: each row with its holes at the importance-weighted conditional mean.
        draws: ``(m, N, D)``: ``m`` resampled completions per row (``None`` when ``m = 0``).
        sd: ``(N, D)``: the weighted standard deviation of each imputed cell (0 where present).
        ess: ``(N,)``: the effective sample size of each row's importance weights (at most
            ``samples``; computed for complete rows too).
        quantiles: ``(Q, N, D)``: the weighted quantiles of each imputed cell at the levels asked
            for (present cells repeat their value); ``None`` when none were asked for.
    """

    mean: Tensor
    draws: Tensor | None
    sd: Tensor
    ess: Tensor
    quantiles: Tensor | None = None

    def columns(self, keep: Sequence[int]) -> Imputation:
        """The imputation of the columns ``keep`` only (e.g. without a model's summed nodes)."""
        return Imputation(
            self.mean[:, keep],
            None if self.draws is None else self.draws[..., keep],
            self.sd[:, keep],
            self.ess,
            None if self.quantiles is None else self.quantiles[..., keep],
        )


@torch.no_grad()
def impute(
    model, x: Tensor, *, samples: int = 1000, m: int = 0, quantiles: Sequence[float] = ()
) -> Imputation:
    """Fills the NaN cells of ``x`` (raw scale, ``(N, D)``) from ``samples`` importance samples per
    row; ``m`` completions per row by resampling, and the weighted ``quantiles`` (levels in (0, 1))
    of each cell (see the module). The model computes in its own dtype; the results are in ``x``'s,
    whose present cells they repeat exactly. Rows go in chunks, so memory stays bounded.
    """
    if samples < 1 or m < 0:
        raise ValueError(f"need samples >= 1 and m >= 0, got samples={samples}, m={m}")
    if any(not 0 < q < 1 for q in quantiles):
        raise ValueError(f"quantile levels must lie strictly between 0 and 1, got {list(quantiles)}")
    rows = chunk_rows(model, samples, x)
    parts = [_impute(model, xb, samples, m, quantiles) for xb in x.split(rows)]
    mean, sd, ess = (torch.cat([p[i] for p in parts]) for i in (0, 2, 3))
    draws = torch.cat([p[1] for p in parts], 1) if m else None
    levels = torch.cat([p[4] for p in parts], 1) if len(quantiles) else None
    return Imputation(mean, draws, sd, ess, levels)


def weighted_quantiles(values: Tensor, w: Tensor, levels: Sequence[float]) -> Tensor:
    """The quantiles ``(Q, N, D)`` of ``values`` ``(S, N, D)`` under normalised weights ``w``
    ``(S, N)``: for each level, the smallest value whose cumulative weight reaches it.
    """
    order = values.argsort(0)
    ranked = values.gather(0, order)
    cum = w[..., None].expand_as(values).gather(0, order).cumsum(0)
    out = []
    for q in levels:
        index = (cum < q).sum(0, keepdim=True).clamp(max=values.shape[0] - 1)
        out.append(ranked.gather(0, index)[0])
    return torch.stack(out)


def _impute(model, x: Tensor, samples: int, m: int, quantiles: Sequence[float] = ()):
    mask = ~x.isnan()
    xm = x.to(model.loc)
    parts = model.proposal_parts(xm, samples)  # z ~ q(z | x) and the holes drawn with it
    filled = parts["filled"]  # (S, N, D), None without holes
    if filled is None:
        filled = model.standardize(xm).expand(samples, *xm.shape)
    w = torch.softmax(parts["log_w"], dim=0).to(x.dtype)  # (S, N)
    values = torch.where(mask, x, model.unstandardize(filled).to(x.dtype))  # present: as given
    mean = torch.einsum("sn,snd->nd", w, values)
    var = torch.einsum("sn,snd->nd", w, (values - mean).square())
    mean = torch.where(mask, x, _labels_at_mode(model, w, values, mean))
    sd = torch.where(mask, 0.0, var.clamp(min=0).sqrt())
    ess = 1.0 / w.square().sum(0)
    draws = resample(w, m, values)[0] if m else None
    levels = weighted_quantiles(values, w, quantiles) if len(quantiles) else None
    return mean, draws, sd, ess, levels


@torch.no_grad()
def posterior_draws(model, x: Tensor, n: int, proposals: int = 0) -> tuple[Tensor, Tensor]:
    r"""``n`` draws of :math:`z \sim p(z \mid x_{obs})` per row of ``x`` (NaN: missing), shape
    ``(n, N, Dz)``, by resampling ``proposals`` (default ``max(10 n, 100)``) importance samples, and
    each row's effective sample size ``(N,)``. The missing cells are integrated out, not read.
    """
    S = proposals or max(10 * n, 100)
    rows = chunk_rows(model, S, x)
    draws, sizes = [], []
    for xb in x.split(rows):
        z, _, log_w = model.importance_samples(xb.to(model.loc), S, prior_draws(S))
        w = torch.softmax(log_w, dim=0)
        draws += resample(w, n, z)
        sizes.append(1.0 / w.square().sum(0))
    return torch.cat(draws, 1), torch.cat(sizes)


@torch.no_grad()
def hidden_draws(model, x: Tensor, n: int, proposals: int = 0) -> tuple[Tensor, Tensor]:
    r"""``n`` draws of every hidden node of a model with summed nodes given each row of ``x`` (its
    observed nodes' columns, the summed ones NaN), ``(n, N, H)`` in ``model.hidden``'s order (a summed
    node's draws are its state codes), and each row's effective sample size ``(N,)``.

    Each importance sample's joint state is drawn from its exact share
    :math:`p(x, h, z) / \sum_h p(x, h, z)`; without a continuous latent or another hole that is the
    exact posterior of the states, so ``n`` proposals make ``n`` independent draws (ESS ``n``); else
    ``proposals`` (default ``max(10 n, 100)``) importance samples are resampled as in
    :func:`posterior_draws`.
    """
    rows = chunk_rows(model, max(proposals or 10 * n, 100, n), x, exact=n)
    where = model.summed_nodes.where
    draws, sizes = [], []
    for xb in x.split(rows):
        xb = xb.to(model.loc)
        if exact_rows(model, xb):  # exact: n independent draws
            z = xb.new_zeros(n, xb.shape[0], 0)
            filled = summed_parts(model, xb, z, draw=True)[2]
            draws.append(filled[..., where])
            sizes.append(xb.new_full((xb.shape[0],), float(n)))
            continue
        S = proposals or max(10 * n, 100)
        parts = model.proposal_parts(xb, S, prior_draws(S) if model.latent else 0)
        w = torch.softmax(parts["log_w"], dim=0)
        z, filled = resample(w, n, parts["z"], parts["filled"])
        values = xb.new_empty(n, xb.shape[0], len(model.hidden))
        values[..., [model.hidden.index(v) for v in model.latent]] = z
        values[..., [model.hidden.index(v) for v in model.summed]] = filled[..., where]
        draws.append(values)
        sizes.append(1.0 / w.square().sum(0))
    return torch.cat(draws, 1), torch.cat(sizes)


@torch.no_grad()
def hidden_probabilities(model, x: Tensor, proposals: int = 1000) -> Tensor:
    r"""Each summed node's levels' probabilities given each row of ``x`` (as :func:`hidden_draws`
    reads it): ``(N, K_1 + K_2 + ...)``, the nodes in ``model.summed``'s order, each block summing to 1.

    :math:`P(h = k \mid x_{obs}) = \sum_s w_s \sum_{h: h_j = k} p(x, h, z_s) / \sum_h p(x, h, z_s)`,
    the self-normalised weights :math:`w_s` of ``proposals`` encoder draws :math:`z_s` (a
    Rao-Blackwellised estimate: each draw contributes its exact conditional over the joint states);
    exact without a continuous latent or another hole.
    """
    nodes = model.summed_nodes
    exact = exact_rows(model, x)
    S = 1 if exact else proposals
    rows = chunk_rows(model, S, x)
    states = nodes.states.long()  # (E, len(summed)) codes
    sizes = [model.observation.members[int(i)].levels for i in nodes.where]
    out = []
    for xb in x.split(rows):
        xb = xb.to(model.loc)
        z, log_q = model.posterior(xb, S) if model.latent else (xb.new_zeros(S, xb.shape[0], 0), 0.0)
        total = summed_parts(model, xb, z, terms=True)[3]  # (E, S, N)
        log_w = (total - log_q).flatten(0, 1).double()  # a float64 sum over many proposals
        weight = torch.softmax(log_w, 0).view(total.shape).sum(1)  # (E, N)
        blocks = []
        for j, k in enumerate(sizes):
            onehot = torch.nn.functional.one_hot(states[:, j], k).to(weight)  # (E, K)
            blocks.append(weight.T @ onehot)
        out.append(torch.cat(blocks, -1).to(x.dtype))
    return torch.cat(out)


def _labels_at_mode(model, w: Tensor, values: Tensor, mean: Tensor) -> Tensor:
    """``mean`` with each binary or categorical column at its most probable level under the weights."""
    levels = [f.levels for f in model.observation.members]
    if not any(levels):
        return mean
    out = mean.clone()
    for j, k in enumerate(levels):
        if k:
            codes = torch.arange(k + 1, dtype=values.dtype, device=values.device)  # with the unseen code
            probs = torch.einsum("sn,snk->nk", w, (values[..., j, None] == codes).to(w.dtype))
            out[:, j] = probs.argmax(-1).to(out.dtype)
    return out

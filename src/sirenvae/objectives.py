r"""Objectives and metrics as pure functions of ``(model, x)``.

With importance weights :math:`w_k = p(x, z_k) / q(z_k \mid x)`, :math:`z_k \sim q(z \mid x)`:

.. math::
    \mathrm{ELBO} = \frac{1}{K} \sum_k \log w_k \le
    \mathrm{IWAE}_K = \log \frac{1}{K} \sum_k w_k \le \log p(x).

References:
    | Importance Weighted Autoencoders (Burda et al., 2016)
    | https://arxiv.org/abs/1509.00519
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sirenvae.models.summed import exact_rows
from sirenvae.models.vae import DEFENSIVE_SHARE, prior_draws

__all__ = [
    "DEFENSIVE_SHARE",
    "EVAL_CHUNK",
    "elbo",
    "chunk_rows",
    "eval_chunk",
    "evaluate",
    "evaluate_rows",
    "iwae",
    "warmup_elbo",
    "log_weights",
    "prior_draws",
    "reconstruction_error",
]


def log_weights(model, x: Tensor, samples: int = 1) -> Tensor:
    r""":math:`\log w_k`, shape ``(samples, N)``."""
    return model.importance_samples(x, samples)[2]


def elbo(model, x: Tensor, samples: int = 1) -> Tensor:
    """The evidence lower bound per row, averaged over ``samples`` draws, shape ``(N,)``."""
    return log_weights(model, x, samples).mean(0)


def warmup_elbo(model, x: Tensor, beta: float, samples: int = 1) -> Tensor:
    r"""The KL warm-up objective per row (Sonderby et al. 2016), shape ``(N,)``:
    :math:`E_q[\log p(x \mid z) + \beta (\log p(z) - \log q(z \mid x))]`, the ELBO at ``beta = 1``.
    """
    z, log_q = model.posterior(x, samples)
    log_px, log_pz = model.log_joint_parts(x, z)
    return (log_px + beta * (log_pz - log_q)).mean(0)


def iwae(model, x: Tensor, samples: int, prior_samples: int = 0) -> Tensor:
    """The importance-weighted bound with ``samples`` draws per row, shape ``(N,)``; with
    ``prior_samples``, that many defensive draws from the prior beside them (see
    :meth:`~sirenvae.models.SIReNVAE.importance_samples`).
    """
    lw = model.importance_samples(x, samples, prior_samples)[2]
    return torch.logsumexp(lw, 0) - math.log(lw.shape[0])


def reconstruction_error(model, x: Tensor, samples: int = 1) -> Tensor:
    r""":math:`E_{z \sim q(z \mid x)} \sum_i e(x_i, E[x_i \mid z])`, ``(N,)``, with the observation family's
    per-cell error :math:`e` (the squared error for continuous families).
    """
    z, _ = model.posterior(x, samples)
    error = model.family.reconstruction_error(x, model.reconstruction(x, z))
    return error.masked_fill(x.isnan(), 0.0).sum(-1).mean(0)  # over the present cells


#: Samples (rows x importance samples) per evaluation chunk: small enough that a chunk's activations
#: stay in cache (measured 2-2.5x faster than 200,000 on ecoli70 and arth150, `benchmarks/evaluation.py`).
EVAL_CHUNK = 8192
#: Graphs with more nodes get proportionally smaller chunks, so a chunk's activations stay about the
#: size of 8,192 samples of 1,000 nodes (a 10,000-node model took 4.2 GB at the full chunk).
EVAL_CHUNK_NODES = 1000


def eval_chunk(model) -> int:
    """Samples per evaluation chunk for ``model``: :data:`EVAL_CHUNK`, less for large graphs."""
    return max(64, EVAL_CHUNK * EVAL_CHUNK_NODES // max(len(model.graph), EVAL_CHUNK_NODES))


def chunk_rows(model, samples: int, x: Tensor | None = None, exact: int = 1) -> int:
    """Rows per evaluation chunk of ``samples`` importance samples each (about :func:`eval_chunk`
    samples a chunk). A model with summed nodes scores every sample at each of their joint states;
    without a continuous latent, rows ``x`` whose only holes are those nodes' take ``exact`` samples
    (the exact shortcut of :meth:`~sirenvae.models.SIReNVAE.proposal_parts`).
    """
    chunk = eval_chunk(model)
    if getattr(model, "summed", ()):
        chunk = max(64, chunk // model.summed_nodes.states.shape[0])
        if x is not None and exact_rows(model, x):
            samples = exact
    return max(1, chunk // max(samples, 1))


@torch.no_grad()
def evaluate_rows(
    model,
    x: Tensor,
    *,
    importance_samples: int = 1000,
    chunk: int | None = None,
    defensive: float | None = None,
) -> dict:
    r"""Per-row NLL, negative ELBO, RE and the effective sample size
    :math:`(\sum_k w_k)^2 / \sum_k w_k^2` of the importance weights, each of shape ``(N,)``.

    The NLL is the IWAE estimate from ``importance_samples`` encoder draws and a ``defensive`` share
    of prior draws (default :data:`DEFENSIVE_SHARE`; 0 for the plain IWAE bound), each weighted
    against the mixture that drew them, so a row the encoder misses is bounded by the prior's
    estimate instead of a bound that may be thousands of nats loose; the ELBO is the encoder's alone.
    Rows go through in chunks of about ``chunk`` samples (default :func:`eval_chunk`), so memory
    stays bounded whatever ``N``; the model is evaluated in ``eval()`` mode and left in the mode it
    was in.
    """
    was = model.training
    model.eval()
    extra = prior_draws(importance_samples, defensive)
    rows = (
        max(1, chunk // max(importance_samples + extra, 1))
        if chunk
        else chunk_rows(model, importance_samples + extra, x)
    )
    nll, neg_elbo, re, ess = [], [], [], []
    try:
        for xb in x.split(rows):
            parts = model.proposal_parts(xb, importance_samples, extra)
            lw, q = parts["log_w"], slice(importance_samples)  # the encoder's draws come first
            lse = torch.logsumexp(lw, 0)
            nll.append(math.log(lw.shape[0]) - lse)
            neg_elbo.append(-(parts["log_px"][q] + parts["log_pz"][q] - parts["log_q"][q]).mean(0))
            re.append(reconstruction_error(model, xb))
            ess.append(torch.exp(2 * lse - torch.logsumexp(2 * lw, 0)))
    finally:
        model.train(was)
    out = {"nll": torch.cat(nll), "neg_elbo": torch.cat(neg_elbo), "re": torch.cat(re)}
    return out | {"ess": torch.cat(ess)}


#: An effective sample size below which a row's importance-sampling estimates rest on few draws.
LOW_ESS = 10.0


def evaluate(
    model,
    x: Tensor,
    *,
    importance_samples: int = 1000,
    chunk: int | None = None,
    per_row: bool = False,
    defensive: float | None = None,
) -> dict:
    """NLL (IWAE with ``importance_samples`` and the ``defensive`` share of prior draws, see
    :func:`evaluate_rows`), negative ELBO and RE averaged over the rows of ``x``.

    All numbers are on the raw scale (nats per row); with missing cells (NaN), of the present
    cells, ``missing`` is the fraction of cells missing and ``low_ess_rows`` counts the rows with
    holes whose effective sample size is below :data:`LOW_ESS`. With ``per_row``, the result also holds
    ``per_row``: ``{"nll", "neg_elbo", "ess", "missing"}`` of shape ``(N,)`` (the same draws as the
    averages; ``missing`` counts each row's missing cells); see :func:`evaluate_rows`.
    """
    rows = evaluate_rows(model, x, importance_samples=importance_samples, chunk=chunk, defensive=defensive)
    holes = x.isnan()
    if getattr(model, "summed", ()):  # the summed nodes' columns are no holes of the data
        holes = holes[:, [model.observed.index(v) for v in model.measured]]
    result = {
        **{k: rows[k].double().mean().item() for k in ("nll", "neg_elbo", "re")},
        "rows": x.shape[0],
        "importance_samples": importance_samples,
        "missing": holes.double().mean().item() if x.numel() else 0.0,
    }
    if holes.any():  # rows with holes whose weights rest on fewer than LOW_ESS effective draws
        result["low_ess_rows"] = int((rows["ess"][holes.any(1).to(rows["ess"].device)] < LOW_ESS).sum())
    if per_row:
        result["per_row"] = {
            "nll": rows["nll"], "neg_elbo": rows["neg_elbo"], "ess": rows["ess"], "missing": holes.sum(1),
        }  # fmt: skip
    return result

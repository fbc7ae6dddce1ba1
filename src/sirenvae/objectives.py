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

__all__ = ["elbo", "evaluate", "iwae", "log_weights", "reconstruction_error"]


def log_weights(model, x: Tensor, samples: int = 1) -> Tensor:
    r""":math:`\log w_k`, shape ``(samples, N)``."""
    z, log_q = model.posterior(x, samples)
    return model.log_joint(x, z) - log_q


def elbo(model, x: Tensor, samples: int = 1) -> Tensor:
    """The evidence lower bound per row, averaged over ``samples`` draws, shape ``(N,)``."""
    return log_weights(model, x, samples).mean(0)


def iwae(model, x: Tensor, samples: int) -> Tensor:
    """The importance-weighted bound with ``samples`` draws per row, shape ``(N,)``."""
    lw = log_weights(model, x, samples)
    return torch.logsumexp(lw, 0) - math.log(samples)


def reconstruction_error(model, x: Tensor, samples: int = 1) -> Tensor:
    r""":math:`E_{z \sim q(z \mid x)} \lVert x - E[x \mid z] \rVert^2` summed over observed dims, ``(N,)``."""
    z, _ = model.posterior(x, samples)
    return (x - model.reconstruction(x, z)).square().sum(-1).mean(0)


@torch.no_grad()
def evaluate(
    model, x: Tensor, *, importance_samples: int = 1000, chunk: int = 200_000, per_row: bool = False
) -> dict:
    """NLL (IWAE with ``importance_samples``), negative ELBO and RE averaged over the rows of ``x``.

    Rows are processed in chunks of about ``chunk`` samples; all numbers are on the raw scale. With
    ``per_row``, the result also holds ``per_row``: ``{"nll": Tensor, "neg_elbo": Tensor}`` of shape
    ``(N,)`` (the same draws as the averages).
    """
    was = model.training
    model.eval()
    rows = max(1, chunk // max(importance_samples, 1))
    nll = neg_elbo = re = 0.0
    nll_rows, elbo_rows = [], []
    for xb in x.split(rows):
        lw = log_weights(model, xb, importance_samples)
        nll_b = -(torch.logsumexp(lw, 0) - math.log(importance_samples))
        elbo_b = -lw.mean(0)
        nll += nll_b.sum().item()
        neg_elbo += elbo_b.sum().item()
        if per_row:
            nll_rows.append(nll_b)
            elbo_rows.append(elbo_b)
        re += reconstruction_error(model, xb).sum().item()
    model.train(was)
    n = x.shape[0]
    result = {
        "nll": nll / n,
        "neg_elbo": neg_elbo / n,
        "re": re / n,
        "rows": n,
        "importance_samples": importance_samples,
    }
    if per_row:
        result["per_row"] = {"nll": torch.cat(nll_rows), "neg_elbo": torch.cat(elbo_rows)}
    return result

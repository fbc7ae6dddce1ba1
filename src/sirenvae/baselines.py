r"""Classical baselines: what a statistician would fit to the observed columns instead of a deep model.

- ``fa``: factor analysis, :math:`x = \mu + W^\top z + \epsilon`, :math:`z \sim \mathcal{N}(0, I_k)`,
  :math:`\epsilon \sim \mathcal{N}(0, \Psi)` with :math:`\Psi` diagonal, so
  :math:`x \sim \mathcal{N}(\mu, W^\top W + \Psi)`. The number of factors :math:`k` is chosen by
  k-fold cross-validation on the training rows only (the largest mean held-out log-likelihood), then
  the model is refitted on all training rows (scikit-learn's ``FactorAnalysis``).
- ``lw``: a Gaussian with the sample mean and the Ledoit–Wolf shrunk covariance (Ledoit & Wolf 2004,
  *J. Multivariate Anal.* 88(2)), scikit-learn's ``LedoitWolf``; nothing to choose.
- ``em``: for rows with missing cells (NaN), a Gaussian fitted by EM (Dempster, Laird & Rubin 1977)
  with a ridge :math:`\lambda \bar\sigma^2 I` added to the covariance at each M-step, :math:`\lambda`
  from :data:`EM_RIDGES` chosen by 3-fold CV of the held-out :math:`\log p(x_{obs})` (plain maximum
  likelihood is near singular with few rows); the statistician's model of a holey continuous table.

All are exact Gaussian densities, so their NLL is exact (no importance sampling; for a holey row,
the Gaussian's marginal of its present cells), and with the exact
posterior :math:`p(z \mid x)` the ELBO equals the log-likelihood: their −ELBO is their NLL. The
reconstruction error of factor analysis is the deep models' (docs/results.md, "Setup") under the
exact posterior :math:`z \mid x \sim \mathcal{N}(m, S)`, :math:`S = (I + W \Psi^{-1} W^\top)^{-1}`,
:math:`m = S W \Psi^{-1} (x - \mu)`:
:math:`E \lVert x - \mu - W^\top z \rVert^2 = \lVert x - \mu - W^\top m \rVert^2 + \mathrm{tr}(W^\top S W)`.
Ledoit–Wolf has no latent variables and no reconstruction error.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy and torch are imported on use: the CLI reads the configuration at start-up
    import numpy as np
    from torch import Tensor

__all__ = [
    "BASELINES",
    "EM_RIDGES",
    "HOLEY_BASELINES",
    "ClassicalConfig",
    "GaussianBaseline",
    "fit_classical",
    "gaussian_conditional",
    "gaussian_em",
]

#: The classical baselines of complete rows, by name.
BASELINES = ("fa", "lw")
#: The classical baselines that rows with missing cells can be fitted to.
HOLEY_BASELINES = ("em",)
#: The ridges (shares of the mean variance added to the covariance's diagonal) that ``em`` chooses from.
EM_RIDGES = (1e-3, 1e-2, 1e-1, 0.3)


@dataclass(frozen=True, kw_only=True)
class ClassicalConfig:
    """How a classical baseline is fitted (fixed before any test number was seen).

    Attributes:
        baseline: ``fa``, ``lw`` or ``em``.
        cv_folds: Folds of the cross-validation that chooses the number of factors (``fa``).
        max_factors: The largest number of factors tried (also at most ``D - 1`` and one less than
            the rows of a fold's training part).
        patience: Stop the search over ``k = 1, 2, ...`` once this many successive ``k`` did not
            improve the held-out log-likelihood (it is flat or falling past the best ``k``).
    """

    baseline: str
    cv_folds: int = 5
    max_factors: int = 30
    patience: int = 5

    def __post_init__(self) -> None:
        if self.baseline not in (*BASELINES, *HOLEY_BASELINES):
            known = ", ".join((*BASELINES, *HOLEY_BASELINES))
            raise ValueError(f"unknown baseline {self.baseline!r}; choose from {known}")
        if self.cv_folds < 2 or self.max_factors < 1 or self.patience < 1:
            raise ValueError("cv_folds must be at least 2, max_factors and patience at least 1")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ClassicalConfig:
        return cls(**d)


@dataclass(frozen=True, eq=False)
class GaussianBaseline:
    r"""A fitted Gaussian :math:`\mathcal{N}(\mu, \Sigma)` over the observed columns (float64).

    Attributes:
        name: The baseline (``fa``, ``lw`` or ``em``).
        mean, covariance: :math:`\mu` of shape ``(D,)`` and :math:`\Sigma` of shape ``(D, D)``.
        loadings, noise_variance: Factor analysis's :math:`W` ``(k, D)`` and :math:`\mathrm{diag}\,\Psi`
            ``(D,)``; ``None`` for Ledoit–Wolf.
        fit: What the fit chose: ``k`` and the cross-validation scores for ``fa``, the shrinkage for
            ``lw``, the ridge and its scores for ``em``.
    """

    name: str
    mean: Tensor
    covariance: Tensor
    loadings: Tensor | None = None
    noise_variance: Tensor | None = None
    fit: dict = field(default_factory=dict)

    def log_prob(self, x: Tensor) -> Tensor:
        """The exact log-density of each row of ``x`` (shape ``(N, D)``), shape ``(N,)``, in
        ``x``'s dtype and on its device; a row with missing cells (NaN) gets the density of its
        present cells.
        """
        import torch

        if x.ndim != 2 or x.shape[-1] != self.mean.shape[0]:
            raise ValueError(f"x must have shape (N, {self.mean.shape[0]}), got {tuple(x.shape)}")
        xd = x.detach().to("cpu", torch.float64)
        if xd.isnan().any():
            ll = gaussian_conditional(xd.numpy(), self.mean.numpy(), self.covariance.numpy())[2]
            return torch.as_tensor(ll).to(device=x.device, dtype=x.dtype)
        chol = torch.linalg.cholesky(self.covariance)
        r = torch.linalg.solve_triangular(chol, (xd - self.mean).T, upper=False)
        D = self.mean.shape[0]
        logdet = 2 * chol.diagonal().log().sum()
        lp = -0.5 * (r.square().sum(0) + logdet + D * math.log(2 * math.pi))
        return lp.to(device=x.device, dtype=x.dtype)

    def reconstruction_error(self, x: Tensor) -> Tensor | None:
        r""":math:`E_{z \sim p(z \mid x)} \lVert x - E[x \mid z] \rVert^2` per row (factor analysis;
        ``None`` for a model without latent variables).
        """
        import torch

        if self.loadings is None or self.noise_variance is None:
            return None
        W, psi = self.loadings, self.noise_variance
        xd = x.detach().to("cpu", torch.float64) - self.mean
        k = W.shape[0]
        S = torch.linalg.inv(torch.eye(k, dtype=torch.float64) + (W / psi) @ W.T)
        m = xd @ (W / psi).T @ S
        resid = (xd - m @ W).square().sum(-1)
        return (resid + torch.trace(W.T @ S @ W)).to(device=x.device, dtype=x.dtype)


def _moment_rows(x: np.ndarray) -> tuple[np.ndarray, float]:
    """``D + 1`` rows with the mean and the (biased) covariance of the rows ``x``, and the ratio of
    row counts. Factor analysis depends on its data through these two only, so scikit-learn's exact
    (LAPACK) fit on them, its tolerance on the total log-likelihood scaled by the ratio, takes the
    same steps as on ``x`` at a cost that does not grow with the number of rows.
    """
    import numpy as np

    n, D = x.shape
    m = D + 1
    if n <= m:
        return x, 1.0
    # an (m, D) basis orthonormal and orthogonal to the ones vector: centred rows, identity Gram
    basis = np.linalg.qr(np.hstack([np.ones((m, 1)), np.eye(m)[:, :D]]))[0][:, 1:]
    evals, evecs = np.linalg.eigh(np.cov(x, rowvar=False, bias=True))
    root = (evecs * np.sqrt(np.clip(evals, 0.0, None))) @ evecs.T
    return x.mean(0) + math.sqrt(m) * basis @ root, m / n


def _fa_fit(x: np.ndarray, k: int, seed: int):
    from sklearn.decomposition import FactorAnalysis

    rows, ratio = _moment_rows(x)
    return FactorAnalysis(
        n_components=k, svd_method="lapack", tol=1e-2 * ratio, max_iter=5000, random_state=seed
    ).fit(rows)


def _factor_analysis(x: np.ndarray, config: ClassicalConfig, seed: int) -> GaussianBaseline:
    import numpy as np
    import torch
    from sklearn.model_selection import KFold

    n, D = x.shape
    folds = min(config.cv_folds, n)
    splits = list(KFold(folds, shuffle=True, random_state=seed).split(x))
    smallest_fit = min(len(train) for train, _ in splits)
    k_max = max(1, min(D - 1, smallest_fit - 1, config.max_factors))
    scores: dict[int, float] = {}
    best = 1
    for k in range(1, k_max + 1):
        held_out = sum(float(_fa_fit(x[t], k, seed).score_samples(x[v]).sum()) for t, v in splits)
        scores[k] = held_out / n
        if scores[k] > scores[best]:
            best = k
        elif k - best >= config.patience:
            break
    fa = _fa_fit(x, best, seed)
    as_t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64))  # noqa: E731
    return GaussianBaseline(
        "fa",
        as_t(fa.mean_),
        as_t(fa.get_covariance()),
        loadings=as_t(fa.components_),
        noise_variance=as_t(fa.noise_variance_),
        fit={"k": best, "k_max": k_max, "cv_folds": folds, "cv_mean_log_lik": scores},
    )


def _ledoit_wolf(x: np.ndarray) -> GaussianBaseline:
    import torch
    from sklearn.covariance import LedoitWolf

    lw = LedoitWolf(assume_centered=False).fit(x)
    return GaussianBaseline(
        "lw",
        torch.as_tensor(lw.location_, dtype=torch.float64),
        torch.as_tensor(lw.covariance_, dtype=torch.float64),
        fit={"shrinkage": float(lw.shrinkage_)},
    )


def _pattern_groups(miss: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The distinct patterns of holes of ``miss`` ``(N, D)`` with the rows that have each."""
    import numpy as np

    patterns, inverse = np.unique(miss, axis=0, return_inverse=True)
    order = np.argsort(inverse.ravel(), kind="stable")
    bounds = np.cumsum(np.bincount(inverse.ravel(), minlength=len(patterns)))[:-1]
    return list(zip(patterns, np.split(order, bounds), strict=True))


def gaussian_conditional(
    x: np.ndarray, mu: np.ndarray, cov: np.ndarray, groups=None, extra: np.ndarray | None = None
) -> tuple[np.ndarray, ...]:
    r"""Per row of ``x`` (NaN: missing) under :math:`\mathcal{N}(\mu, \Sigma)`: the conditional mean
    of every cell given the present ones (present cells kept), the conditional variance (0 where
    present) and :math:`\log p(x_{obs})`; one Cholesky factor per pattern of holes (``groups``: the
    patterns of :func:`_pattern_groups`, when known). ``extra`` ``(D, D)``, if given, gains each row's
    conditional covariance of its missing cells (EM's E-step).
    """
    import numpy as np

    mean, var, ll = x.copy(), np.zeros_like(x), np.zeros(len(x))
    for pattern, rows in _pattern_groups(np.isnan(x)) if groups is None else groups:
        o, m = ~pattern, pattern
        chol = np.linalg.cholesky(cov[np.ix_(o, o)])
        a = np.linalg.solve(chol, (x[np.ix_(rows, o)] - mu[o]).T)
        ll[rows] = -0.5 * (a**2).sum(0) - np.log(np.diag(chol)).sum() - 0.5 * o.sum() * math.log(2 * math.pi)
        if m.any():
            b = np.linalg.solve(chol, cov[np.ix_(o, m)])  # L^-1 S_om
            mean[np.ix_(rows, m)] = mu[m] + a.T @ b
            conditional = cov[np.ix_(m, m)] - b.T @ b
            var[np.ix_(rows, m)] = np.diag(conditional)
            if extra is not None:
                extra[np.ix_(m, m)] += len(rows) * conditional
    return mean, var, ll


def gaussian_em(x: np.ndarray, ridge: float, iters: int = 200, tol: float = 1e-6) -> tuple[np.ndarray, ...]:
    """The mean and covariance of rows with NaN holes by EM, with ``ridge`` times the mean variance
    added to the diagonal at each M-step; stops when the log-likelihood gains less than ``tol`` a row.
    A column with fewer than 2 present cells (or no spread) starts at mean 0 or its one value and the
    mean variance of the others.
    """
    import numpy as np

    n, d = x.shape
    miss = np.isnan(x)
    present = (~miss).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = np.where(present > 0, np.nansum(x, 0) / np.maximum(present, 1), 0.0)
        var = np.where(present > 1, np.nansum((x - mu) ** 2, 0) / np.maximum(present, 1), np.nan)
    spread = np.isfinite(var) & (var > 0)
    var = np.where(spread, var, var[spread].mean() if spread.any() else 1.0)
    cov = np.diag(var)
    groups = _pattern_groups(miss)
    last = -np.inf
    for _ in range(iters):
        extra = np.zeros((d, d))
        mean, _, ll = gaussian_conditional(x, mu, cov, groups, extra)
        mu = mean.mean(0)
        centred = mean - mu
        cov = (centred.T @ centred + extra) / n
        cov += ridge * np.trace(cov) / d * np.eye(d)
        total = ll.sum()
        if total - last < tol * n:
            break
        last = total
    return mu, cov


def _em(x: np.ndarray, seed: int, folds: int = 3) -> GaussianBaseline:
    import numpy as np
    import torch

    parts = np.array_split(np.random.default_rng(seed).permutation(len(x)), min(folds, len(x)))
    scores = {}
    for ridge in EM_RIDGES:
        ll = []
        for held in parts:
            mu, cov = gaussian_em(np.delete(x, held, 0), ridge)
            ll.append(gaussian_conditional(x[held], mu, cov)[2])
        scores[ridge] = float(np.concatenate(ll).mean())
    finite = {r: v for r, v in scores.items() if math.isfinite(v)}
    if not finite:
        raise ValueError("the Gaussian EM fit gave no finite held-out likelihood for any ridge")
    ridge = max(finite, key=finite.get)
    mu, cov = gaussian_em(x, ridge)
    return GaussianBaseline(
        "em",
        torch.as_tensor(mu, dtype=torch.float64),
        torch.as_tensor(cov, dtype=torch.float64),
        fit={"ridge": ridge, "cv_folds": len(parts), "cv_mean_log_lik": scores},
    )


def fit_classical(name: str | ClassicalConfig, x_train: Tensor, seed: int = 0) -> GaussianBaseline:
    """Fits the classical baseline ``name`` (or a :class:`ClassicalConfig`) to the rows ``x_train``
    (shape ``(N, D)``, raw scale; NaN cells are missing, which only ``em`` takes); ``seed`` fixes the
    cross-validation folds and sklearn's SVD.

    Example:
        >>> import torch
        >>> x = torch.randn(200, 3, generator=torch.Generator().manual_seed(0)) @ torch.tensor(
        ...     [[1.0, 0.5, 0.0], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
        >>> model = fit_classical("fa", x, seed=0)
        >>> model.fit["k"] >= 1, model.log_prob(x).shape
        (True, torch.Size([200]))
    """
    import numpy as np
    import torch

    config = name if isinstance(name, ClassicalConfig) else ClassicalConfig(baseline=name)
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise ImportError(
            "the classical baselines need scikit-learn (a dependency of sirenvae): pip install scikit-learn"
        ) from None
    if x_train.ndim != 2 or x_train.shape[0] < 2:
        raise ValueError(f"x_train must have shape (N, D) with N >= 2, got {tuple(x_train.shape)}")
    from threadpoolctl import threadpool_limits

    x = x_train.detach().to("cpu", torch.float64).numpy()
    if config.baseline == "em":
        if np.isinf(x).any() or np.isnan(x).all(0).any() or np.isnan(x).all(1).any():
            raise ValueError("x_train has infinite values, or a row or column with every cell missing")
    elif not np.isfinite(x).all():
        raise ValueError("x_train has NaN or infinite values")
    fit = {
        "em": _em,
        "fa": lambda x, seed: _factor_analysis(x, config, seed),
        "lw": lambda x, seed: _ledoit_wolf(x),
    }
    # one BLAS thread: the matrices are small (factor analysis works on D + 1 moment rows), and
    # BLAS's spinning threads beside busy fit workers made an SVD 60x slower (133 ms against 2 ms
    # for 121 x 120 on 2 busy cores; a 120-column floor took over half an hour)
    with threadpool_limits(limits=1, user_api="blas"):
        return fit[config.baseline](x, seed)

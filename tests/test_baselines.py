import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from sirenvae.baselines import BASELINES, ClassicalConfig, _moment_rows, fit_classical


def factor_data(n: int, d: int = 10, k: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of a k-factor model with strong loadings and unequal noise; also its covariance."""
    g = torch.Generator().manual_seed(seed)
    W = 2 * torch.randn(k, d, generator=g, dtype=torch.float64)
    psi = 0.2 + torch.rand(d, generator=g, dtype=torch.float64)
    z = torch.randn(n, k, generator=g, dtype=torch.float64)
    x = 3.0 + z @ W + psi.sqrt() * torch.randn(n, d, generator=g, dtype=torch.float64)
    return x.float(), W.T @ W + torch.diag(psi)


@pytest.mark.parametrize("name", BASELINES)
def test_log_prob_is_the_gaussian_of_the_implied_covariance(name):
    x, _ = factor_data(300)
    model = fit_classical(name, x, seed=1)
    test, _ = factor_data(50, seed=5)
    lp = model.log_prob(test)
    assert lp.shape == (50,) and lp.dtype == test.dtype
    mvn = torch.distributions.MultivariateNormal(model.mean, covariance_matrix=model.covariance)
    torch.testing.assert_close(lp.double(), mvn.log_prob(test.double()), rtol=1e-6, atol=1e-5)
    scipy_lp = multivariate_normal(model.mean.numpy(), model.covariance.numpy()).logpdf(test.double().numpy())
    np.testing.assert_allclose(lp.double().numpy(), scipy_lp, rtol=1e-6, atol=1e-5)


def test_factor_analysis_matches_sklearn_on_all_rows_and_its_parts():
    from sklearn.decomposition import FactorAnalysis

    x, _ = factor_data(400)
    model = fit_classical("fa", x, seed=0)
    W, psi = model.loadings, model.noise_variance
    torch.testing.assert_close(model.covariance, W.T @ W + torch.diag(psi))
    # the moment rows give scikit-learn's exact fit on the rows themselves
    full = FactorAnalysis(model.fit["k"], svd_method="lapack", max_iter=5000).fit(x.double().numpy())
    np.testing.assert_allclose(model.covariance.numpy(), full.get_covariance(), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(
        model.log_prob(x.double()).numpy(), full.score_samples(x.double().numpy()), rtol=1e-8, atol=1e-8
    )


def test_moment_rows_keep_mean_and_covariance():
    x = factor_data(500, d=7)[0].double().numpy()
    rows, ratio = _moment_rows(x)
    assert rows.shape == (8, 7) and ratio == 8 / 500
    np.testing.assert_allclose(rows.mean(0), x.mean(0), atol=1e-12)
    np.testing.assert_allclose(
        np.cov(rows, rowvar=False, bias=True), np.cov(x, rowvar=False, bias=True), atol=1e-10
    )
    few = x[:5]
    assert _moment_rows(few)[0] is few  # nothing to gain below D + 1 rows


def test_cross_validation_finds_the_number_of_factors():
    x, cov = factor_data(600, d=12, k=3, seed=2)
    model = fit_classical("fa", x, seed=0)
    scores = model.fit["cv_mean_log_lik"]
    assert model.fit["k"] == 3 and max(scores, key=scores.get) == 3
    # the search stops `patience` steps past the best k, and never goes past D - 1
    assert max(scores) == 3 + ClassicalConfig(baseline="fa").patience
    tiny = fit_classical(ClassicalConfig(baseline="fa", max_factors=2), x, seed=0)
    assert set(tiny.fit["cv_mean_log_lik"]) == {1, 2} and tiny.fit["k_max"] == 2
    assert fit_classical("fa", x[:, :2], seed=0).fit["k_max"] == 1
    # more data, closer to the true covariance
    assert (model.covariance - cov).abs().max() < 0.25 * cov.abs().max()


def test_the_fit_is_seeded():
    x, _ = factor_data(150)
    a, b = fit_classical("fa", x, seed=3), fit_classical("fa", x, seed=3)
    assert a.fit == b.fit and torch.equal(a.covariance, b.covariance)


def test_reconstruction_error_under_the_exact_posterior():
    x, _ = factor_data(400)
    model = fit_classical("fa", x, seed=0)
    # rows drawn from the fitted model itself: averaged over x, E_{z|x} ||x - mu - W'z||^2 is the
    # expected squared noise, the sum of the noise variances
    g = torch.Generator().manual_seed(9)
    n = 200_000
    chol = torch.linalg.cholesky(model.covariance)
    rows = model.mean + torch.randn(n, len(model.mean), generator=g, dtype=torch.float64) @ chol.T
    re = model.reconstruction_error(rows)
    assert re.shape == (n,)
    expected = model.noise_variance.sum().item()
    assert abs(re.mean().item() - expected) < 5 * re.std().item() / math.sqrt(n)
    assert fit_classical("lw", x).reconstruction_error(x) is None


def test_ledoit_wolf_is_sklearns_with_the_sample_mean():
    from sklearn.covariance import LedoitWolf

    x, _ = factor_data(60)
    model = fit_classical("lw", x)
    ref = LedoitWolf().fit(x.double().numpy())
    torch.testing.assert_close(model.mean, x.double().mean(0))
    np.testing.assert_allclose(model.covariance.numpy(), ref.covariance_)
    assert model.fit["shrinkage"] == pytest.approx(ref.shrinkage_)
    # sklearn's score is the mean log-likelihood of the same Gaussian
    assert model.log_prob(x.double()).mean().item() == pytest.approx(ref.score(x.double().numpy()))


def test_errors_are_one_clear_line():
    x, _ = factor_data(20)
    with pytest.raises(ValueError, match="unknown baseline 'pca'; choose from fa, lw"):
        fit_classical("pca", x)
    with pytest.raises(ValueError, match="NaN or infinite"):
        fit_classical("fa", torch.where(x > 100, x, float("nan")))
    with pytest.raises(ValueError, match=r"shape \(N, D\)"):
        fit_classical("lw", x[0])
    with pytest.raises(ValueError, match=r"x must have shape \(N, 10\)"):
        fit_classical("lw", x).log_prob(x[:, :3])


def test_em_scores_the_present_cells_by_the_gaussian_marginal():
    """``em`` fits holey rows; a holey row's density is the Gaussian marginal of its present cells,
    and with many rows the fit recovers the generating mean and covariance."""
    g = torch.Generator().manual_seed(0)
    L = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [-0.5, 0.3, 0.7]], dtype=torch.float64)
    x = torch.randn(3000, 3, generator=g, dtype=torch.float64) @ L.T + torch.tensor([1.0, -2.0, 0.5])
    holey = x.clone()
    holey[torch.rand(x.shape, generator=g) < 0.3] = math.nan
    empty = holey.isnan().all(1)
    holey[empty, 0] = x[empty, 0]
    model = fit_classical("em", holey, seed=0)
    assert model.fit["ridge"] in (1e-3, 1e-2, 1e-1, 0.3)
    assert torch.allclose(model.mean, torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64), atol=0.06)
    assert torch.allclose(model.covariance, L @ L.T, atol=0.08)
    lp = model.log_prob(holey[:50])
    for i in range(50):
        o = ~holey[i].isnan()
        mvn = torch.distributions.MultivariateNormal(model.mean[o], model.covariance[o][:, o])
        assert torch.allclose(lp[i], mvn.log_prob(holey[i, o]), atol=1e-9)
    with pytest.raises(ValueError, match="every cell missing"):
        fit_classical("em", torch.full((4, 2), math.nan))
    with pytest.raises(ValueError, match="NaN"):
        fit_classical("fa", holey)

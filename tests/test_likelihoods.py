"""The observation-model interface: masked log-densities, the registry, and a family added in a test."""

import math
from dataclasses import replace

import pandas as pd
import pytest
import torch
from torch.distributions import Laplace as TorchLaplace
from torch.distributions import Normal as TorchNormal
from torch.distributions import StudentT as TorchStudentT

import sirenvae
from helpers import SMALL_LATENT, TINY, float64, rows, small_network
from sirenvae.graph import LatentSplit
from sirenvae.models import ModelConfig, build_model
from sirenvae.models.likelihoods import FAMILIES, DiagStudentT, Family, LocationScale, Normal
from sirenvae.objectives import elbo, iwae, reconstruction_error


class Laplace(Family):
    """The whole of a new family: one class (and one registry entry, made in the fixture)."""

    name = "laplace"

    def distribution(self, loc, raw_scale):
        return LocationScale(TorchLaplace(0.0, 1.0), loc, self.scale(raw_scale))


class Unstandardized(Laplace):
    """A family whose values are modelled on the raw scale and which has no abduction."""

    name = "raw-laplace"
    standardized = False
    abduction = False


@pytest.fixture
def laplace(monkeypatch):
    monkeypatch.setitem(FAMILIES, Laplace.name, Laplace)
    monkeypatch.setitem(FAMILIES, Unstandardized.name, Unstandardized)


def _cells(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=torch.float64)
    mask = torch.rand(*shape, generator=g) < 0.6
    return x, mask


@pytest.mark.parametrize("kind", ["normal", "studentt", "location-scale"])
def test_masked_log_prob_sums_the_present_cells_only(kind):
    x, mask = _cells((7, 5))
    loc = torch.linspace(-1, 1, 5, dtype=torch.float64)
    scale = torch.linspace(0.5, 2, 5, dtype=torch.float64)
    df = torch.linspace(2.5, 9, 5, dtype=torch.float64)
    if kind == "normal":
        d, ref = Normal(loc, scale), TorchNormal(loc, scale)
    elif kind == "studentt":
        d, ref = DiagStudentT(df, loc, scale), TorchStudentT(df, loc, scale)
    else:
        d, ref = LocationScale(TorchLaplace(0.0, 1.0), loc, scale), TorchLaplace(loc, scale)
    cells = ref.log_prob(x)
    torch.testing.assert_close(d.log_prob(x), cells.sum(-1))
    torch.testing.assert_close(d.log_prob(x, mask), (cells * mask).sum(-1))
    torch.testing.assert_close(d.log_prob(x, torch.ones_like(mask)), d.log_prob(x))
    assert torch.equal(d.log_prob(x, torch.zeros_like(mask)), torch.zeros(7, dtype=torch.float64))
    # a hole's value does not matter, even a non-finite one
    holes = torch.where(mask, x, torch.full_like(x, math.nan))
    torch.testing.assert_close(d.log_prob(holes, mask), d.log_prob(x, mask))
    loc.requires_grad_(True)
    d = {"normal": Normal, "location-scale": lambda *a: LocationScale(TorchLaplace(0.0, 1.0), *a)}.get(
        kind, lambda *a: DiagStudentT(df, *a)
    )(loc, scale)
    d.log_prob(holes, mask).sum().backward()
    assert torch.isfinite(loc.grad).all()


def test_registry_names_the_choices_and_the_config_reads_it(laplace):
    assert ModelConfig(likelihood="laplace").likelihood == "laplace"
    with pytest.raises(ValueError, match="'cauchy'; choose one of normal, studentt, .*laplace"):
        ModelConfig(likelihood="cauchy")


def test_a_family_added_in_a_test_trains_samples_and_answers_counterfactuals(laplace):
    net = small_network()
    split = LatentSplit(net.graph, SMALL_LATENT)
    torch.manual_seed(0)
    config = replace(
        TINY, likelihood="laplace", decoder_mean="linear+mlp", conditioning="parents", affine=True
    )
    model = float64(build_model(split, config))
    x = rows(net, SMALL_LATENT, 64, dtype=torch.float64)
    model.set_standardization(x)
    # the decoder's density is the Laplace density of the standardised values, with the raw Jacobian
    z, _ = model.posterior(x, 3)
    u = model.standardize(x)
    p = model.decoder(model.nodes(z, u))
    assert isinstance(p, LocationScale)
    ref = TorchLaplace(p.loc, p.scale).log_prob(u).sum(-1) - model.scale.log().sum()
    torch.testing.assert_close(model.log_joint_parts(x, z)[0], ref)
    # ELBO <= IWAE bound and it trains
    assert (elbo(model, x, 50).mean() <= iwae(model, x, 50).mean() + 0.05).item()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = -elbo(model, x, 4).mean().item()
    for _ in range(60):
        opt.zero_grad()
        (-elbo(model, x, 4).mean()).backward()
        opt.step()
    assert -elbo(model, x, 4).mean().item() < before
    # ancestral sampling and abduction go through the family's noise
    z, xs = model.sample(200)
    assert torch.isfinite(xs).all()
    eta = model.residuals(xs, z)
    torch.testing.assert_close(
        model.decoder(model.nodes(z, model.standardize(xs))).reparameterize(eta), model.standardize(xs)
    )
    assert torch.isfinite(reconstruction_error(model, x)).all()


def test_a_family_without_standardization_or_abduction(laplace):
    net = small_network()
    split = LatentSplit(net.graph, SMALL_LATENT)
    torch.manual_seed(0)
    model = float64(build_model(split, replace(TINY, likelihood="raw-laplace")))
    x = rows(net, SMALL_LATENT, 64, dtype=torch.float64) * 10 + 3
    model.set_standardization(x)
    assert torch.equal(model.loc, torch.zeros(3, dtype=torch.float64))
    assert torch.equal(model.scale, torch.ones(3, dtype=torch.float64))
    z, _ = model.posterior(x, 2)
    p = model.decoder(model.nodes(z, x))
    torch.testing.assert_close(model.log_joint_parts(x, z)[0], p.log_prob(x))  # no Jacobian term
    with pytest.raises(ValueError, match="raw-laplace observation family has no location-scale noise"):
        model.residuals(x, z)


def test_counterfactual_on_a_family_without_abduction_is_one_clear_error(laplace, tmp_path):
    net = small_network()
    x = rows(net, SMALL_LATENT, 40)
    observed = [v for v in net.graph.nodes if v not in SMALL_LATENT]
    df = pd.DataFrame(x.numpy(), columns=observed)
    fitted = sirenvae.fit(
        net.graph, df, settings="paper", likelihood="raw-laplace", conditioning="parents", affine=True,
        prior_blocks=1, encoder_blocks=1, max_epochs=2, warmup_steps=0,
    )  # fmt: skip
    with pytest.raises(ValueError, match="no location-scale noise"):
        fitted.counterfactual(df.head(3), do={"x1": 0.0}, n=5)

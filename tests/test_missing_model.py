"""Missing cells in the model: NaN is a hole, densities are those of the present cells."""

import math
from dataclasses import replace

import pytest
import torch

from helpers import SMALL_LATENT, TINY, rows, small_network
from sirenvae.graph import LatentSplit
from sirenvae.models import build_model
from sirenvae.objectives import elbo, evaluate_rows, iwae, log_weights
from sirenvae.pipeline import TrainOptions, train_model
from sirenvae.training import FitConfig


@pytest.fixture(scope="module")
def trained():
    net = small_network()
    split = LatentSplit(net.graph, SMALL_LATENT)
    x = rows(net, SMALL_LATENT, 300, dtype=torch.float64)
    config = replace(TINY, conditioning="parents", affine=True)
    model, _ = train_model(
        split, x.float(), model_config=config, fit_config=FitConfig(max_epochs=60, patience=60),
        options=TrainOptions(warmup_steps=50),
    )  # fmt: skip
    return model.double().eval(), x


@pytest.mark.parametrize("column", [0, 1], ids=["x1-with-a-child", "x2-a-leaf"])
def test_a_hole_is_integrated_out(trained, column):
    """log p(x_obs) with a hole equals the log of the integral of p(x) over the missing value."""
    model, x = trained
    row = x[:1].clone()
    hole = row.clone()
    hole[0, column] = math.nan
    torch.manual_seed(0)
    with torch.no_grad():
        estimate = iwae(model, hole, 20000).item()
        grid = torch.linspace(row[0, column].item() - 6, row[0, column].item() + 6, 121, dtype=torch.float64)
        full = row.repeat(len(grid), 1)
        full[:, column] = grid
        lp = torch.cat([iwae(model, part, 2000) for part in full.split(30)])
    assert max(lp[0], lp[-1]) < torch.logsumexp(lp, 0) - 8  # the grid covers the mass
    integral = (torch.logsumexp(lp, 0) + math.log((grid[1] - grid[0]).item())).item()
    assert estimate == pytest.approx(integral, abs=0.08)


def test_bounds_and_gradients_with_holes(trained):
    model, x = trained
    holey = x[:40].clone()
    g = torch.Generator().manual_seed(1)
    holes = torch.rand(holey.shape, generator=g) < 0.3
    holes[:, 0] &= torch.arange(40) % 2 == 0  # no row loses every cell
    holey[holes] = math.nan
    assert not holey.isnan().all(1).any()
    torch.manual_seed(0)
    with torch.no_grad():
        lw = log_weights(model, holey, 200)
        e, w = lw.mean(0), torch.logsumexp(lw, 0) - math.log(200)
        complete = iwae(model, x[:40], 200)
    assert torch.isfinite(lw).all() and (e <= w + 1e-12).all()
    # fewer cells, more probability: a hole never lowers the row's density by much (MC noise only)
    assert (w > complete - 0.1).all()
    out = evaluate_rows(model, holey, importance_samples=50)
    assert all(torch.isfinite(v).all() for v in out.values())
    model.train()
    model.zero_grad()
    (-elbo(model, holey, 4).mean()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    model.eval()


def test_standardisation_and_training_use_the_present_cells():
    net = small_network()
    split = LatentSplit(net.graph, SMALL_LATENT)
    x = rows(net, SMALL_LATENT, 200)
    holey = x.clone()
    holey[::3, 2] = math.nan
    holey[1::5, 0] = math.nan
    model = build_model(split, TINY)
    model.set_standardization(holey)
    for j in range(3):
        present = holey[:, j][~holey[:, j].isnan()]
        torch.testing.assert_close(model.loc[j], present.mean())
        torch.testing.assert_close(model.scale[j], present.std())
    trained, history = train_model(
        split, holey, model_config=TINY, fit_config=FitConfig(max_epochs=5),
        options=TrainOptions(warmup_steps=0),
    )  # fmt: skip
    assert all(math.isfinite(v) for v in history.train_loss + history.valid_loss)
    with pytest.raises(ValueError, match="a row or a column with every cell missing"):
        bad = holey.clone()
        bad[4] = math.nan
        train_model(split, bad, model_config=TINY, fit_config=FitConfig(max_epochs=1))


def test_train_masking_hides_present_cells_only_and_keeps_a_cell_per_row():
    from sirenvae.pipeline import TrainOptions, hide_cells

    torch.manual_seed(0)
    x = torch.randn(4000, 5)
    x[::7, 1] = math.nan
    hidden = hide_cells(x, 0.3)
    was = ~x.isnan()
    now = ~hidden.isnan()
    assert not (now & ~was).any()  # no hole is filled
    assert torch.equal(hidden[now], x[now])  # what stays is unchanged
    assert now.any(1).all()  # no row loses every cell
    assert abs((was & ~now).sum() / was.sum() - 0.3) < 0.02
    lone = torch.full((200, 3), math.nan)
    lone[:, 0] = 1.0
    assert torch.equal(hide_cells(lone, 0.99)[:, 0], lone[:, 0])  # a row's last cell stays
    with pytest.raises(ValueError, match="train_masking must lie in"):
        TrainOptions(train_masking=1.0)


def test_a_fit_with_train_masking_records_it_and_trains(tmp_path):
    net = small_network()
    split = LatentSplit(net.graph, SMALL_LATENT)
    x = rows(net, SMALL_LATENT, 100)
    model, history = train_model(
        split, x, model_config=TINY, fit_config=FitConfig(max_epochs=4),
        options=TrainOptions(warmup_steps=0, train_masking=0.3), out=tmp_path / "run",
    )  # fmt: skip
    assert all(math.isfinite(v) for v in history.train_loss + history.valid_loss)
    import json

    assert json.loads((tmp_path / "run" / "model.json").read_text())["train_options"]["train_masking"] == 0.3


@pytest.mark.parametrize("variant", ["true", "vae", "vae-maf"])
def test_mask_inputs_wire_each_presence_bit_like_its_value(variant):
    net = small_network()
    split = LatentSplit(net.graph, SMALL_LATENT)
    torch.manual_seed(0)
    model = build_model(split, replace(TINY, variant=variant, mask_inputs=True)).double()
    x = rows(net, SMALL_LATENT, 8, dtype=torch.float64)
    holey = x.clone()
    holey[0, 1] = math.nan
    model.set_standardization(x)
    torch.manual_seed(1)
    z_full, _ = model.posterior(x, 3)
    torch.manual_seed(1)
    z_hole, _ = model.posterior(holey, 3)
    # the bit changes the proposal of the holey row only (the rows are independent)
    assert not torch.allclose(z_full[:, 0], z_hole[:, 0]) and torch.allclose(z_full[:, 1:], z_hole[:, 1:])
    assert torch.isfinite(log_weights(model, holey, 4)).all()
    if variant == "true":  # a latent whose inverse-graph context lacks x2 ignores x2's bit as well
        C = model.inverse_graph.cross_adjacency(model.latent, model.observed)
        j = model.observed.index("x2")
        blind = [k for k in range(len(model.latent)) if not C[k, j]]
        for k in blind:
            torch.testing.assert_close(z_full[:, 0, k], z_hole[:, 0, k])


def test_fit_turns_mask_inputs_on_for_holey_rows_only():
    import pandas as pd

    import sirenvae

    net = small_network()
    observed = [v for v in net.graph.nodes if v not in SMALL_LATENT]
    df = pd.DataFrame(rows(net, SMALL_LATENT, 40).numpy(), columns=observed)
    fast = dict(settings="paper", max_epochs=1, warmup_steps=0, prior_blocks=1, encoder_blocks=1)
    assert not sirenvae.fit(net.graph, df, **fast).model.config.mask_inputs
    holey = df.copy()
    holey.iloc[3, 1] = float("nan")
    assert sirenvae.fit(net.graph, holey, **fast).model.config.mask_inputs
    assert sirenvae.fit(net.graph, df, train_masking=0.2, **fast).model.config.mask_inputs


def test_counterfactual_abduction_draws_the_holes_and_keeps_the_present_cells(trained):
    from sirenvae.imputation import posterior_draws
    from sirenvae.models import causal

    model, x = trained
    holey = x[:5].clone()
    holey[:, 0] = math.nan  # x1 has a child (x3): its value moves the abduction
    torch.manual_seed(0)
    z, u, ess = causal.counterfactual(model, holey, None, 50)
    values = u * model.scale + model.loc  # do=None: the factual world
    present = ~holey.isnan()
    # present cells come back through abduction and propagation: to the inverses' tolerance
    torch.testing.assert_close(values[:, present], holey[present].expand(50, -1), atol=1e-5, rtol=1e-6)
    assert values[:, :, 0].std(0).min() > 0 and torch.isfinite(values).all() and (ess >= 1).all()
    draws, sizes = posterior_draws(model, holey, 20)
    assert draws.shape == (20, 5, len(model.latent)) and (sizes >= 1).all()


def test_columns_with_too_few_present_cells_get_unit_scale_and_errors_stay_visible():
    from sirenvae.models.likelihoods import NormalFamily

    x = torch.tensor([[1.0, math.nan, 2.0], [3.0, 5.0, math.nan], [2.0, math.nan, math.nan]])
    loc, scale = NormalFamily().standardization(x)
    assert torch.equal(loc, torch.tensor([2.0, 5.0, 2.0])) and torch.equal(scale[1:], torch.ones(2))
    nothing = torch.full((3, 1), math.nan)
    assert NormalFamily().standardization(nothing) == (torch.zeros(1), torch.ones(1))
    # a model that diverged reports NaN, holes or not (a hole contributes 0, a NaN prediction does not)
    net = small_network()
    model = build_model(LatentSplit(net.graph, SMALL_LATENT), TINY)
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.fill_(math.nan)
    from sirenvae.objectives import reconstruction_error

    assert reconstruction_error(model, rows(net, SMALL_LATENT, 4)).isnan().all()
    holey = rows(net, SMALL_LATENT, 4)
    holey[0, 0] = math.nan
    z = torch.zeros(1, 4, 2)
    with pytest.raises(ValueError, match="missing cells: give their draws as filled"):
        model.residuals(holey, z)


def test_holes_are_settled_in_as_many_passes_as_their_longest_chain(trained, monkeypatch):
    """x1 -> x3: two passes only where both are missing in a row, and the draws equal those of a
    fixed two passes (the longest observed chain) under the same noise."""
    from sirenvae.models import vae

    model, x = trained
    links = model._hole_links
    holes = torch.tensor([[1, 1, 1], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 0, 0]], dtype=torch.bool)
    assert [vae._hole_sweeps(h[None], links) for h in holes] == [2, 1, 1, 2, 1]
    assert vae._hole_sweeps(holes, links) == 2
    u = model.standardize(x[:50])
    g = torch.Generator().manual_seed(3)
    mask = torch.rand(u.shape, generator=g) > 0.4
    mask[:, 2] |= ~mask[:, 0]  # no row misses both x1 and x3: one pass settles every hole
    assert vae._hole_sweeps(~mask, links) == 1
    z = torch.randn(7, 50, len(model.latent), dtype=u.dtype, generator=g)
    out = []
    for sweeps in (None, 2):
        if sweeps is not None:
            monkeypatch.setattr(vae, "_hole_sweeps", lambda holes, links, n=sweeps: n)
        torch.manual_seed(0)
        with torch.no_grad():
            out.append(model.propose_holes(u, mask, z))
    assert torch.equal(out[0][0], out[1][0]) and torch.equal(out[0][1], out[1][1])
    assert torch.equal(out[0][0][:, mask], u.expand(7, -1, -1)[:, mask])

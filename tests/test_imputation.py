"""Imputation: present cells untouched, holes at the conditional mean, draws from the conditional."""

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import sirenvae
from helpers import SMALL_LATENT, TINY, rows, small_network
from sirenvae.cli import app
from sirenvae.graph import LatentSplit
from sirenvae.imputation import impute
from sirenvae.pipeline import TrainOptions, train_model
from sirenvae.training import FitConfig

LINEAR = replace(
    TINY, conditioning="parents", affine=True, prior_blocks=0, encoder_blocks=0, decoder_mean="linear"
)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    net = small_network()
    split = LatentSplit(net.graph, SMALL_LATENT)
    x = rows(net, SMALL_LATENT, 1500, seed=0)
    out = tmp_path_factory.mktemp("impute") / "run"
    model, _ = train_model(
        split, x, model_config=LINEAR, fit_config=FitConfig(max_epochs=40, patience=40, batch_size=128),
        options=TrainOptions(warmup_steps=100), out=out,
    )  # fmt: skip
    return net, split, model.double().eval(), out


def _holey(net, n=300, seed=5):
    x = rows(net, SMALL_LATENT, n, seed=seed, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    holes = torch.rand(x.shape, generator=g) < 0.3
    holes[holes.all(1), 0] = False  # every row keeps a cell
    return x, torch.where(holes, math.nan, x), holes


def _oracle_mean(net, observed, x):
    """E[x_mis | x_obs] under the true Gaussian network, row by row."""
    mean, cov = net.mean_and_covariance(list(observed))
    out = x.clone()
    for i in range(x.shape[0]):
        m = x[i].isnan()
        if m.any() and (~m).any():
            o = ~m
            gain = cov[m][:, o] @ torch.linalg.inv(cov[o][:, o])
            out[i, m] = mean[m] + gain @ (x[i, o] - mean[o])
        elif m.all():
            out[i] = mean
    return out


def test_holes_go_to_the_conditional_mean_and_present_cells_stay(fitted):
    net, split, model, _ = fitted
    truth, x, holes = _holey(net)
    torch.manual_seed(0)
    result = impute(model, x, samples=500, m=30)
    present = ~holes
    assert torch.equal(result.mean[present], x[present])  # bit for bit
    assert torch.equal(result.draws[:, present], x[present].expand(30, -1))
    assert torch.equal(result.sd[present], torch.zeros(int(present.sum()), dtype=torch.float64))
    assert (result.ess >= 1).all() and (result.ess <= 500 + 1e-9).all()
    oracle = _oracle_mean(net, split.observed, x)
    sd = truth.std(0)
    err_model = ((result.mean - oracle) / sd)[holes]
    err_marginal = ((truth.mean(0).expand_as(x) - oracle) / sd)[holes]
    # close to the true conditional mean, far closer than filling with the column mean
    assert err_model.abs().mean() < 0.15, err_model.abs().mean()
    assert err_model.abs().mean() < 0.4 * err_marginal.abs().mean()
    # the resampled completions centre on the single imputation and spread as the conditional
    centre = result.draws.mean(0)
    assert ((centre - result.mean) / sd)[holes].abs().mean() < 0.15
    assert (result.draws.std(0)[holes] > 0).float().mean() > 0.95


def test_the_cli_writes_the_users_table_back_with_its_holes_filled(fitted, tmp_path):
    """Every column of the file in its order: IDs and ignored columns as read (an 'NA' note stays),
    the model's columns filled, the sd columns after them."""
    net, split, _, run = fitted
    _, x, holes = _holey(net, n=20)
    frame = (
        pd.DataFrame(x.numpy(), columns=list(split.observed))
        .round(3)
        .astype(object)
        .where(~holes.numpy(), "")
    )
    frame.insert(0, "note", ["NA" if i % 3 else f"seen {i}, ok" for i in range(20)])
    frame.insert(1, "pid", [f"P{i:03d}" for i in range(20)])
    frame = frame[["pid", *list(split.observed)[::-1], "note"]]
    path, out = tmp_path / "own.csv", tmp_path / "filled.csv"
    frame.to_csv(path, index=False)
    args = ["impute", str(run), "--data", str(path), "-o", str(out), "-k", "50", "--sd"]
    r = CliRunner().invoke(app, [*args, "--id-column", "pid", "--ignore-columns", "note"])
    assert r.exit_code == 0, r.output
    filled = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(filled.columns) == [*frame.columns, *(f"{c}_sd" for c in split.observed)]
    assert (
        filled["note"].tolist() == frame["note"].tolist() and filled["pid"].tolist() == frame["pid"].tolist()
    )
    for j, c in enumerate(split.observed):
        assert (filled[c] != "").all(), c
        present = ~holes[:, j].numpy()
        assert filled[c][present].astype(float).tolist() == frame[c][present].astype(float).tolist()


def test_the_api_and_the_cli_impute_the_same_table(fitted, tmp_path):
    net, split, _, run = fitted
    _, x, holes = _holey(net, n=40)
    frame = pd.DataFrame(x.numpy(), columns=list(split.observed))
    m = sirenvae.load(run)
    single = m.impute(frame, samples=200)
    assert list(single.columns) == list(split.observed) and single.index.equals(frame.index)
    np.testing.assert_array_equal(single.to_numpy()[~holes.numpy()], frame.to_numpy()[~holes.numpy()])
    assert not single.isna().any().any() and len(single.attrs["ess"]) == 40
    backwards = m.impute(frame[frame.columns[::-1]], samples=200)
    assert list(backwards.columns) == list(frame.columns[::-1]) == list(backwards.attrs["sd"].columns)
    pd.testing.assert_frame_equal(backwards[list(frame.columns)], single)
    multi = m.impute(frame, m=5, samples=200)
    assert multi.index.names == ["row", "draw"] and len(multi) == 200
    path = tmp_path / "holes.csv"
    frame.to_csv(path, index=False, na_rep="")
    cli = CliRunner()
    r = cli.invoke(
        app, ["impute", str(run), "--data", str(path), "-o", str(tmp_path / "f.csv"), "-k", "200", "--sd"]
    )
    assert r.exit_code == 0, r.output
    assert "effective sample size over the" in r.stderr and r.stdout == ""
    filled = pd.read_csv(tmp_path / "f.csv")
    assert list(filled.columns) == [*split.observed, *(f"{c}_sd" for c in split.observed)]
    np.testing.assert_allclose(filled[list(split.observed)].to_numpy(), single.to_numpy(), rtol=1e-6)
    r = cli.invoke(app, ["impute", str(run), "--data", str(path), "-o", str(tmp_path / "m.csv"), "-m", "3"])
    assert r.exit_code == 0, r.output
    long = pd.read_csv(tmp_path / "m.csv")
    assert list(long.columns[:2]) == ["row", "draw"] and len(long) == 120
    # present cells are written as they were written: whole numbers, trailing zeros, exponents
    text = frame.round(1).astype(object).where(~holes.numpy(), "")
    text.iloc[0:4, 0] = ["3", "2.50", "-1e-1", " 0 "]
    text.to_csv(path, index=False)
    for extra, name in (([], "t.csv"), (["-m", "2"], "tm.csv")):
        r = cli.invoke(app, ["impute", str(run), "--data", str(path), "-o", str(tmp_path / name), *extra])
        assert r.exit_code == 0, r.output
    given = pd.read_csv(path, dtype=str, keep_default_na=False)
    for name, repeat in (("t.csv", 1), ("tm.csv", 2)):
        out = pd.read_csv(tmp_path / name, dtype=str, keep_default_na=False)[list(given.columns)]
        for c in given.columns:
            present = given[c].str.strip() != ""
            kept = out[c].to_numpy()[np.repeat(present.to_numpy(), repeat)]
            assert list(kept) == [v.strip() for v in given[c][present] for _ in range(repeat)], c
        assert out.iloc[0, 0] == "3" and out.iloc[repeat, 0] == "2.50"
        filled = [
            v
            for c in given.columns
            for v in out[c].to_numpy()[~np.repeat((given[c].str.strip() != "").to_numpy(), repeat)]
        ]
        digits = [v.lstrip("-").split("e")[0].replace(".", "").lstrip("0") for v in filled]
        assert filled and max(map(len, digits)) <= 10, filled[:5]  # 10 significant digits, not 17
    r = cli.invoke(
        app, ["impute", str(run), "--data", str(path), "-o", str(tmp_path / "x.csv"), "-m", "3", "--sd"]
    )
    assert r.exit_code == 2 and "--sd is for single imputation" in r.stderr


def test_weighted_quantiles_reach_their_level_of_cumulative_weight():
    from sirenvae.imputation import weighted_quantiles

    values = torch.arange(1.0, 11.0)[:, None, None].expand(10, 2, 1).clone()
    w = torch.full((10, 2), 0.1)
    w[:, 1] = 0.0
    w[6, 1] = 1.0  # all the weight on the value 7
    q = weighted_quantiles(values, w, [0.05, 0.5, 0.95])
    assert q[:, 0, 0].tolist() == [1.0, 5.0, 10.0] and q[:, 1, 0].tolist() == [7.0, 7.0, 7.0]


def test_imputed_quantiles_bracket_the_conditional_mean_as_a_gaussian_does(fitted, tmp_path):
    net, split, model, run = fitted
    _, x, holes = _holey(net)
    torch.manual_seed(0)
    result = impute(model, x, samples=1000, quantiles=(0.05, 0.5, 0.95))
    low, mid, high = result.quantiles
    for q in result.quantiles:
        assert torch.equal(q[~holes], x[~holes])  # present cells repeat their value
    assert ((low <= mid) & (mid <= high))[holes].all() and (low < high)[holes].float().mean() > 0.95
    sd = result.sd[holes]
    # the linear-Gaussian model's conditional is Gaussian: mean -/+ 1.645 sd, and the median at the mean
    assert ((low[holes] - (result.mean[holes] - 1.645 * sd)) / sd).abs().mean() < 0.3
    assert ((high[holes] - (result.mean[holes] + 1.645 * sd)) / sd).abs().mean() < 0.3
    assert ((mid[holes] - result.mean[holes]) / sd).abs().mean() < 0.2
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        impute(model, x[:3], quantiles=(0.0,))
    # the same from the API and the CLI
    frame = pd.DataFrame(x[:20].numpy(), columns=list(split.observed))
    api = sirenvae.load(run).impute(frame, samples=200, quantiles=(0.1, 0.9))
    assert set(api.attrs["quantiles"]) == {0.1, 0.9}
    lo, hi = api.attrs["quantiles"][0.1], api.attrs["quantiles"][0.9]
    assert (lo.to_numpy() <= hi.to_numpy()).all() and lo.index.equals(frame.index)
    path = tmp_path / "h.csv"
    frame.to_csv(path, index=False, na_rep="")
    cli = CliRunner()
    out = tmp_path / "q.csv"
    r = cli.invoke(
        app, ["impute", str(run), "--data", str(path), "-o", str(out), "-k", "200", "--quantiles", "0.1,0.9"]
    )
    assert r.exit_code == 0, r.output
    written = pd.read_csv(out)
    assert list(written.columns) == [
        *split.observed,
        *(f"{c}_q{q}" for q in ("0.1", "0.9") for c in split.observed),
    ]
    kept = ~holes[:20].numpy()
    for c in split.observed:
        assert (written[f"{c}_q0.1"] <= written[f"{c}_q0.9"]).all()
        j = list(split.observed).index(c)
        np.testing.assert_allclose(written[f"{c}_q0.1"][kept[:, j]], frame[c][kept[:, j]], rtol=1e-9)
    for bad, said in (
        (["--quantiles", "1.5"], "strictly between 0 and 1"),
        (["--quantiles", "0.1", "-m", "2"], "single imputation"),
    ):
        r = cli.invoke(app, ["impute", str(run), "--data", str(path), "-o", str(tmp_path / "b.csv"), *bad])
        assert r.exit_code == 2 and said in r.stderr, r.output

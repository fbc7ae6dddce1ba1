"""The Python API by column name: sirenvae.load / sirenvae.fit and DataFrames in any column order."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import sirenvae
from sirenvae.graph import BayesianNetwork
from sirenvae.objectives import iwae, prior_draws

BN = BayesianNetwork({"z": [], "a": ["z"], "b": ["z", "a"], "w": ["b"], "c": ["w"]})
FAST = {"max_epochs": 3, "warmup_steps": 0, "batch_size": 16, "settings": "paper"}


def simulate(n=64, seed=0):
    g = np.random.default_rng(seed)
    z = g.normal(size=n)
    a = 2 * z + 0.5 * g.normal(size=n)
    b = z - a + 0.5 * g.normal(size=n)
    w = np.tanh(b) + 0.3 * g.normal(size=n)
    c = 3 * w + 1 + 0.5 * g.normal(size=n)
    return pd.DataFrame({"z": z, "a": a, "b": b, "w": w, "c": c})


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "run"
    fitted = sirenvae.fit(BN, simulate()[["c", "a", "b"]], out=out, **FAST)
    assert fitted.latent == ("z", "w") and fitted.observed == ("a", "b", "c")
    return out


def test_import_stays_light():
    code = "import sys, sirenvae; print('torch' in sys.modules, 'pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
    assert callable(sirenvae.load) and callable(sirenvae.fit)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        sirenvae.nope  # noqa: B018


def test_shuffled_columns_give_the_same_numbers(run_dir):
    m = sirenvae.load(run_dir)
    df = simulate(20, seed=1).set_index(pd.Index([f"r{i}" for i in range(20)], name="id"))
    shuffled = df[["w", "c", "b", "z", "a"]]  # latent columns are ignored, order does not matter
    lp = m.log_prob(df[["a", "b", "c"]], importance_samples=50)
    assert list(lp.index) == list(df.index)
    pd.testing.assert_series_equal(lp, m.log_prob(shuffled, importance_samples=50))
    pd.testing.assert_series_equal(m.elbo(df[["c", "a", "b"]]), m.elbo(df[["b", "c", "a"]]))
    # the same numbers as the model on a tensor in topological order
    torch.manual_seed(0)
    x = torch.tensor(df[["a", "b", "c"]].to_numpy(), dtype=torch.float32)
    with torch.no_grad():
        direct = iwae(m.model, x, 50, prior_draws(50)).double().numpy()
    np.testing.assert_allclose(lp.to_numpy(), direct, rtol=1e-5)
    # raw tensors in another order would give other numbers: the API is what protects the user
    with torch.no_grad():
        torch.manual_seed(0)
        wrong = iwae(m.model, x[:, [2, 0, 1]], 50).double().numpy()
    assert not np.allclose(wrong, direct, atol=0.05)
    # the ELBO is below the likelihood (on average: the defensive prior draws weigh each draw
    # against a mixture, so a single row's estimate may dip below its ELBO by Monte-Carlo error)
    assert m.elbo(df, samples=200).mean() <= m.log_prob(df, importance_samples=200).mean()


def test_posterior_and_sample_are_frames_by_name(run_dir):
    m = sirenvae.load(run_dir)
    df = simulate(5, seed=2)[["c", "b", "a"]]
    post = m.posterior(df, 7)
    assert list(post.columns) == ["z", "w"] and post.index.names == ["row", "sample"]
    assert len(post) == 35 and list(post.loc[3].index) == list(range(7))
    assert np.isfinite(post.to_numpy()).all()
    pd.testing.assert_frame_equal(post, m.posterior(df[["a", "c", "b"]], 7))
    s = m.sample(30)
    assert list(s.columns) == list(BN.nodes) and len(s) == 30 and (s.std() > 0).all()
    assert np.isfinite(m.log_prob(s, importance_samples=5)).all()  # sample output feeds back
    assert "latent=['z', 'w']" in repr(m) and m.history is not None


def test_bad_tables_name_what_is_wrong(run_dir):
    m = sirenvae.load(run_dir)
    df = simulate(6, seed=3)[["a", "b", "c"]]
    cases = [
        (df.assign(d=1.0), r"column 'd' matches no node of the graph; .* pass ignore=\['d'\]"),
        (df.assign(b=["1", "2", "x", "4", "5", "6"]), r"column 'b': non-numeric value 'x'"),
        (df.assign(c=[1.0, 2, 3, 4, 5, np.inf]), r"row 5 \(position 5\), column 'c': non-finite value inf"),
        (df.assign(c=[1.0, 2, 3, 4, 5, 1e300]), r"column 'c': 1e\+300 overflows float32 .*rescale"),
        (df.set_index(pd.Index([f"r{i}" for i in range(6)])).assign(a=["1"] * 5 + ["?"]), r"row 'r5'"),
        (df.rename(columns={"c": "C"}), r"is column 'C' node 'c'\?"),
        (df[["a", "b", "c", "a"]], r"column 'a' appears twice"),
        (df.iloc[:0], r"0 data row\(s\), at least 1 needed"),
    ]
    for frame, match in cases:
        with pytest.raises(ValueError, match=match):
            m.log_prob(frame, importance_samples=2)
    # an observed column left out is missing in every row: the others are scored, with a warning
    with pytest.warns(UserWarning, match="no values for 'b': read as missing in every row"):
        assert np.isfinite(m.log_prob(df.drop(columns="b"), importance_samples=2)).all()
    with pytest.raises(ValueError, match=r"observed node\(s\) without a column: b"):
        m.tensor(df.drop(columns="b"))
    # a hole (NaN, None, "") is integrated out by log_prob and elbo, not conditioned on by posterior
    holey = df.assign(a=[1.0, np.nan, 2, 3, 4, 5], c=[None, 2, 3, 4, 5, 6])
    assert np.isfinite(m.log_prob(holey, importance_samples=2)).all()
    assert np.isfinite(m.elbo(holey)).all()
    post = m.posterior(holey, n=3)
    assert np.isfinite(post.to_numpy()).all() and len(post.attrs["ess"]) == 6
    np.testing.assert_array_equal(m.elbo(df.assign(id=range(6)), ignore=["id"]), m.elbo(df))
    with pytest.raises(ValueError, match="DataFrame"):
        m.elbo(df.to_numpy())
    with pytest.raises(ValueError, match="positive integer"):
        m.sample(0)


def test_fit_options_and_latent(tmp_path):
    df = simulate(40)
    with pytest.warns(UserWarning, match="ignoring column\\(s\\) z, w: they are latent nodes"):
        m = sirenvae.fit(BN, df, latent=["z", "w"], model="vae", epochs=2, warmup_steps=0, seed=3)
    assert m.meta["model"]["variant"] == "vae" and len(m.history.train_loss) == 2
    assert m.latent == ("z", "w") and m.directory is None
    assert np.isfinite(m.log_prob(df, importance_samples=3)).all()
    with pytest.raises(ValueError, match="unknown option.*learning_rate.*known options: .*lr"):
        sirenvae.fit(BN, df, latent="z,w", learning_rate=0.1)
    with pytest.raises(ValueError, match="every node of the graph has a column"):
        sirenvae.fit(BN, df, **FAST)
    with pytest.raises(ValueError, match="unknown model 'big'"):
        sirenvae.fit(BN, df, latent="z, w", model="big")
    graph = tmp_path / "g.csv"
    graph.write_text("parent,child\nz,a\nz,b\na,b\nb,w\nw,c\n")
    fitted = sirenvae.fit(graph, df[["a", "b", "c"]], out=tmp_path / "run", **FAST)
    again = sirenvae.load(tmp_path / "run")
    assert fitted.directory == tmp_path / "run" and again.latent == ("z", "w")
    pd.testing.assert_series_equal(fitted.elbo(df), again.elbo(df))


def test_device_is_checked_and_followed(run_dir):
    """``device=`` puts the model there; every method takes CPU frames and returns CPU frames."""
    df = simulate(12)
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        sirenvae.fit(BN, df[["a", "b", "c"]], device="gpu0", **FAST)
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        sirenvae.load(run_dir, device="gpu0")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    base = sirenvae.load(run_dir)
    for device in devices:
        m = sirenvae.load(run_dir, device=device)
        assert m.model.loc.device.type == device
        pd.testing.assert_series_equal(m.elbo(df), base.elbo(df), atol=1e-4, rtol=1e-4)
        assert m.sample(4).shape == (4, 5) and m.posterior(df, n=2).shape == (24, 2)


def test_fit_on_a_shipped_network_by_name():
    from sirenvae.networks import load_network

    net = load_network("ecoli70")
    leaves = list(net.graph.leaves())
    x = net.sample(40, seed=0)[:, [net.graph.index(v) for v in leaves]].numpy()
    df = pd.DataFrame(x, columns=leaves)[leaves[::-1]]
    m = sirenvae.fit("ecoli70", df, max_epochs=1, warmup_steps=0)
    assert set(m.observed) == set(leaves) and len(m.latent) == 46 - len(leaves)
    assert np.isfinite(m.log_prob(df.iloc[:5], importance_samples=3)).all()


def test_fit_checks_a_frame_as_the_cli_checks_a_csv():
    """The same checks as `sirenvae fit --data` (sirenvae.data.read_frame), named in Python terms."""
    df = simulate(40)[["a", "b", "c"]]
    refused = [
        (df.assign(b=4.25), r"constant or near-constant column\(s\) 'b' \(sd 0 around 4.25\)"),
        (
            df.assign(b=df.b * 1e-12 + 1),
            r"constant or near-constant column\(s\) 'b' \(sd [0-9.]+e-1[23] around 1\)",
        ),
        (df.assign(a=np.nan), r"column 'a' has every cell missing: declare its node latent"),
        (
            df.assign(b=[*df.b[:7], "n.a.", *df.b[8:]]),
            r"row 7 \(position 7\), column 'b': non-numeric value 'n.a.'",
        ),
        (df.assign(c=[-np.inf, *df.c[1:]]), r"row 0 \(position 0\), column 'c': non-finite value -inf"),
        (
            df.assign(c=[*df.c[:3], 3e38 * 10, *df.c[4:]]),
            r"row 3 \(position 3\), column 'c': 3e\+39 overflows float32",
        ),
        (df.iloc[:1], r"1 data row\(s\), at least 2 needed"),
        (df.assign(patient="p"), r"column 'patient' matches no node .* pass ignore=\['patient'\]"),
    ]
    for frame, match in refused:
        with pytest.raises(ValueError, match=match):
            sirenvae.fit(BN, frame, **FAST)
    with pytest.raises(ValueError, match=r"allow_discrete is gone: .* types=\{'x': 'normal'\}"):
        sirenvae.fit(BN, df, allow_discrete=True, **FAST)
    # discrete-looking columns: a warning naming types=; a 0/1 column is binary, or continuous when asked
    with pytest.warns(UserWarning, match=r"'a' has 5 distinct integers: .* types=\{'a': 'count'\}"):
        sirenvae.fit(BN, df.assign(a=df.a.round().clip(-2, 2)), **FAST)
    with pytest.warns(UserWarning, match=r"'c' has 2 distinct values: modelled as binary, 1 = '1'"):
        m = sirenvae.fit(BN, binary := df.assign(c=(df.c > 1).astype(int)), **FAST)
    assert m.model.config.types == {"c": "binary"}
    assert np.isfinite(m.log_prob(binary, importance_samples=2)).all()
    with pytest.raises(ValueError, match=r"'c': value 3.57\d* is not a level of .* types=\{'c': 'cat"):
        m.log_prob(df)
    m = sirenvae.fit(BN, df.assign(c=(df.c > 1).astype(int)), types={"c": "normal"}, **FAST)
    assert m.model.config.types == {"c": "normal"}
    # an ID column is left out by name (a list or "a,b"), and must exist
    m = sirenvae.fit(BN, df.assign(patient="p", site=1), ignore="patient, site", **FAST)
    assert m.observed == ("a", "b", "c")
    with pytest.raises(ValueError, match="no column 'id' to ignore"):
        sirenvae.fit(BN, df, ignore=["id"], **FAST)


def test_evaluation_frames_may_be_constant_but_not_broken(run_dir):
    m = sirenvae.load(run_dir)
    df = simulate(6, seed=4)[["a", "b", "c"]]
    assert np.isfinite(m.elbo(df.assign(b=1.0))).all()  # new rows need not vary
    with pytest.raises(ValueError, match=r"row 2 \(position 2\), column 'b': 1e\+300 overflows float32"):
        m.posterior(df.assign(b=[0, 0, 1e300, 0, 0, 0]), 3)
    with pytest.raises(ValueError, match=r"column 'a': non-numeric value 'x'"):
        m.log_prob(df.assign(a=df.a.astype(object).where(df.index != 4, "x")), importance_samples=2)


def test_the_api_runs_on_one_thread_and_warns_at_the_callers_line(monkeypatch):
    """As the CLI: one torch thread inside fit and every method, the caller's count restored after;
    a warning names the user's line, not torch's no_grad wrapper."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fitted = sirenvae.fit(BN, simulate()[["c", "a", "b"]], **FAST)
        assert torch.get_num_threads() == 2 and fitted.threads == 1
        seen, sample = [], fitted.model.sample
        monkeypatch.setattr(
            fitted.model, "sample", lambda n: (seen.append(torch.get_num_threads()), sample(n))[1]
        )
        fitted.sample(5)
        fitted.threads = None  # torch's own count
        fitted.sample(5)
        assert seen == [1, 2] and torch.get_num_threads() == 2
        with pytest.warns(UserWarning, match="no values for 'c'") as caught:
            fitted.log_prob(simulate(8)[["a", "b"]], importance_samples=4)
        assert {w.filename for w in caught} == {__file__}
    finally:
        torch.set_num_threads(previous)

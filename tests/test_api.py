"""The Python API by column name: sirenvae.load / sirenvae.fit and DataFrames in any column order."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import sirenvae
from sirenvae.graph import BayesianNetwork
from sirenvae.objectives import iwae

BN = BayesianNetwork({"z": [], "a": ["z"], "b": ["z", "a"], "w": ["b"], "c": ["w"]})
FAST = {"max_epochs": 3, "warmup_steps": 0, "batch_size": 16}


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
        direct = iwae(m.model, x, 50).double().numpy()
    np.testing.assert_allclose(lp.to_numpy(), direct, rtol=1e-5)
    # raw tensors in another order would give other numbers: the API is what protects the user
    with torch.no_grad():
        torch.manual_seed(0)
        wrong = iwae(m.model, x[:, [2, 0, 1]], 50).double().numpy()
    assert not np.allclose(wrong, direct, atol=0.05)
    assert (m.elbo(df, samples=20) <= m.log_prob(df, importance_samples=20) + 1e-4).all()


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
        (df.assign(d=1.0), r"column\(s\) 'd' match no node"),
        (df.rename(columns={"c": "cc"}), r"'cc' \(did you mean 'c'\?\)"),
        (df.drop(columns="b"), r"observed node\(s\) without a column: b"),
        (df.assign(a=[1.0, np.nan, 2, 3, 4, 5]), r"row 1 \(position 1\), column 'a': missing \(NaN\)"),
        (df.assign(b=["1", "2", "x", "4", "5", "6"]), r"column 'b': non-numeric value 'x'"),
        (df.assign(c=[1.0, 2, 3, 4, 5, np.inf]), r"column 'c': non-finite value inf"),
        (df.assign(c=[1.0, 2, 3, 4, 5, 1e300]), r"column 'c': value 1e\+300 too large for float32"),
        (df.iloc[:0], "no rows"),
    ]
    for frame, match in cases:
        with pytest.raises(ValueError, match=match):
            m.log_prob(frame, importance_samples=2)
    np.testing.assert_array_equal(m.elbo(df.assign(id=range(6)), ignore=["id"]), m.elbo(df))
    with pytest.raises(ValueError, match="DataFrame"):
        m.elbo(df.to_numpy())
    with pytest.raises(ValueError, match="positive integer"):
        m.sample(0)


def test_fit_options_and_latent(tmp_path):
    df = simulate(40)
    with pytest.warns(UserWarning, match="column\\(s\\) z, w name latent nodes and are ignored"):
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


def test_fit_on_a_shipped_network_by_name():
    from sirenvae.networks import load_network

    net = load_network("ecoli70")
    leaves = list(net.graph.leaves())
    x = net.sample(40, seed=0)[:, [net.graph.index(v) for v in leaves]].numpy()
    df = pd.DataFrame(x, columns=leaves)[leaves[::-1]]
    m = sirenvae.fit("ecoli70", df, max_epochs=1, warmup_steps=0)
    assert set(m.observed) == set(leaves) and len(m.latent) == 46 - len(leaves)
    assert np.isfinite(m.log_prob(df.iloc[:5], importance_samples=3)).all()

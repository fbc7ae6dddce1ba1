import json
import math

import pytest
import torch

import sirenvae.pipeline as pipeline
from helpers import SMALL_LATENT, TINY, rows, small_network
from sirenvae.graph import BayesianNetwork, LatentSplit
from sirenvae.pipeline import RunExists, TrainOptions, load_model, train_model
from sirenvae.training import CheckpointError, FitConfig, TrainingError

KW = dict(
    model_config=TINY,
    fit_config=FitConfig(lr=3e-3, batch_size=64, max_epochs=6, patience=100),
    options=TrainOptions(warmup_steps=12),
)


def data(n=300):
    net = small_network()
    return net.graph, rows(net, SMALL_LATENT, n)


def test_resume_after_a_kill_continues_exactly(tmp_path, monkeypatch):
    g, x = data()
    full, h_full = train_model(LatentSplit(g, SMALL_LATENT), x, out=tmp_path / "a", **KW)
    monkeypatch.setattr(pipeline, "CHECKPOINT_SECONDS", 0.0)  # a checkpoint after every epoch
    real = pipeline.save_checkpoint
    calls = {"n": 0}

    def killed_after_three_epochs(directory, name, *args, **kwargs):
        real(directory, name, *args, **kwargs)
        calls["n"] += name == "checkpoint"
        if calls["n"] == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "save_checkpoint", killed_after_three_epochs)
    with pytest.raises(KeyboardInterrupt):
        train_model(LatentSplit(g, SMALL_LATENT), x, out=tmp_path / "b", **KW)
    monkeypatch.setattr(pipeline, "save_checkpoint", real)
    with pytest.raises(RunExists, match="unfinished run"):
        train_model(LatentSplit(g, SMALL_LATENT), x, out=tmp_path / "b", **KW)
    resumed, h = train_model(LatentSplit(g, SMALL_LATENT), x, out=tmp_path / "b", resume=True, **KW)
    assert h.train_loss == h_full.train_loss and h.valid_loss == h_full.valid_loss
    a, b = full.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the saved model is the trained one
    loaded, meta = load_model(tmp_path / "b")
    assert all(torch.equal(loaded.state_dict()[k], b[k]) for k in b)
    assert meta["latent"] == list(SMALL_LATENT) and meta["observed"] == ["x1", "x2", "x3"]
    with pytest.raises(RunExists, match="already holds a trained model"):
        train_model(LatentSplit(g, SMALL_LATENT), x, out=tmp_path / "b", **KW)


def test_between_checkpoints_an_interrupt_keeps_the_last_finished_epoch(tmp_path, monkeypatch):
    g, x = data()
    full, h_full = train_model(LatentSplit(g, SMALL_LATENT), x, out=tmp_path / "a", **KW)
    monkeypatch.setattr(pipeline, "CHECKPOINT_SECONDS", 1e9)  # only the first epoch's is due
    written, real_save, real_state = [], pipeline.save_checkpoint, pipeline.state_to_tensors

    def save(directory, name, tensors, meta):
        written.append((name, meta.get("epochs")))
        real_save(directory, name, tensors, meta)

    def interrupted_in_epoch_four(state):
        if state.epochs == 4:
            raise KeyboardInterrupt
        return real_state(state)

    monkeypatch.setattr(pipeline, "save_checkpoint", save)
    monkeypatch.setattr(pipeline, "state_to_tensors", interrupted_in_epoch_four)
    with pytest.raises(KeyboardInterrupt):
        train_model(LatentSplit(g, SMALL_LATENT), x, out=tmp_path / "b", **KW)
    assert written == [("checkpoint", 1), ("checkpoint", 3)]  # epoch 1 when due, epoch 3 on the way out
    monkeypatch.setattr(pipeline, "state_to_tensors", real_state)
    resumed, h = train_model(LatentSplit(g, SMALL_LATENT), x, out=tmp_path / "b", resume=True, **KW)
    assert h.train_loss == h_full.train_loss and h.valid_loss == h_full.valid_loss
    a, b = full.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert written[-2:] == [("checkpoint", 6), ("model", None)]  # the last epoch's, then the model


def killed_after_one_epoch(tmp_path, monkeypatch, g, x) -> None:
    """Starts a run in ``tmp_path`` and kills it after its first checkpoint."""
    real = pipeline.save_checkpoint

    def killed(directory, name, *args, **kwargs):
        real(directory, name, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "save_checkpoint", killed)
    with pytest.raises(KeyboardInterrupt):
        train_model(LatentSplit(g, SMALL_LATENT), x, out=tmp_path, **KW)
    monkeypatch.setattr(pipeline, "save_checkpoint", real)


def test_resume_refuses_other_inputs(tmp_path, monkeypatch):
    g, x = data()
    killed_after_one_epoch(tmp_path, monkeypatch, g, x)
    with pytest.raises(CheckpointError, match="another training data"):
        train_model(LatentSplit(g, SMALL_LATENT), x + 1, out=tmp_path, resume=True, **KW)
    other = BayesianNetwork({v: [p for p in g.parents(v) if p != "x1"] for v in g.nodes})
    with pytest.raises(CheckpointError, match="another graph"):
        train_model(LatentSplit(other, SMALL_LATENT), x, out=tmp_path, resume=True, **KW)
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train_model(LatentSplit(g, SMALL_LATENT), x, out=tmp_path / "empty", resume=True, **KW)


@pytest.fixture
def trained(tmp_path):
    g, x = data()
    train_model(LatentSplit(g, SMALL_LATENT), x, out=tmp_path, **KW)
    return tmp_path


def test_truncated_json(trained):
    path = trained / "model.json"
    path.write_text(path.read_text()[:40])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_model(trained)


def test_corrupted_tensors(trained):
    meta = json.loads((trained / "model.json").read_text())
    path = trained / meta["tensors"]
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="corrupted or truncated"):
        load_model(trained)
    path.unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_model(trained)


def test_other_version_and_format(trained):
    path = trained / "model.json"
    meta = json.loads(path.read_text())
    path.write_text(json.dumps(meta | {"sirenvae_version": "9.9.0"}))
    with pytest.raises(CheckpointError, match="written by sirenvae 9.9.0"):
        load_model(trained)
    path.write_text(json.dumps(meta | {"format_version": 99}))
    with pytest.raises(CheckpointError, match="format 99"):
        load_model(trained)
    path.write_text(json.dumps({"hello": 1}))
    with pytest.raises(CheckpointError, match="not a sirenvae checkpoint"):
        load_model(trained)


def test_tensors_from_another_graph(trained, tmp_path_factory):
    meta = json.loads((trained / "model.json").read_text())
    meta["graph"]["nodes"][4]["parents"] = ["z2"]  # drop an edge: the masks no longer fit
    (trained / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError):
        load_model(trained)


def test_non_finite_loss_stops_and_keeps_the_best_epoch_as_a_diverged_model(tmp_path, monkeypatch):
    g, x = data()
    real = pipeline.elbo
    calls = {"n": 0}

    def exploding(model, batch, samples=1):
        calls["n"] += model.training
        value = real(model, batch, samples)
        return value * math.nan if calls["n"] > 6 else value

    monkeypatch.setattr(pipeline, "elbo", exploding)
    with pytest.raises(TrainingError, match="non-finite loss") as error:
        train_model(LatentSplit(g, SMALL_LATENT), x, out=tmp_path, **KW)
    from sirenvae.training import load_checkpoint

    tensors, meta = load_checkpoint(tmp_path, "checkpoint")
    assert meta["epochs"] >= 1
    assert all(torch.isfinite(t).all() for k, t in tensors.items() if k.startswith("model."))
    # the best epoch is a loadable model, marked as diverged, and the message says how to load it
    model, final = load_model(tmp_path)
    assert final["status"] == "diverged" and final["diverged_at_epoch"] == error.value.epoch
    assert 0 <= final["history"]["best_epoch"] < error.value.epoch <= meta["epochs"]
    assert all(torch.isfinite(t).all() for t in model.state_dict().values())
    assert f"sirenvae evaluate {tmp_path}" in str(error.value) and "--resume --lr" in str(error.value)
    # resume with a lower learning rate and more epochs: it goes on from the last checkpoint
    monkeypatch.setattr(pipeline, "elbo", real)
    _, history = train_model(
        LatentSplit(g, SMALL_LATENT),
        x,
        out=tmp_path,
        resume=True,
        model_config=KW["model_config"],
        fit_config=FitConfig(lr=1e-3, batch_size=64, max_epochs=8, patience=100),
        options=KW["options"],
    )
    _, final = load_model(tmp_path)
    assert final["status"] == "finished" and len(history.train_loss) == 8
    assert history.changes == [
        {"epoch": meta["epochs"], "changed": {"lr": [3e-3, 1e-3], "max_epochs": [6, 8]}}
    ]
    assert final["history"]["changes"] == history.changes


def test_too_few_rows_and_bad_values():
    g, x = data(10)
    with pytest.raises(ValueError, match="at least 2 training rows"):
        train_model(LatentSplit(g, SMALL_LATENT), x[:1], **KW)
    bad = x.clone()
    bad[3, 1] = math.inf
    with pytest.raises(ValueError, match="contain inf"):
        train_model(LatentSplit(g, SMALL_LATENT), bad, **KW)
    bad[3, 1] = math.nan  # a hole is fine, a column of holes is not
    bad[:, 2] = math.nan
    with pytest.raises(ValueError, match="every cell missing"):
        train_model(LatentSplit(g, SMALL_LATENT), bad, **KW)


def test_resume_of_a_finished_run_with_more_epochs_goes_on(trained):
    g, x = data()
    _, first = load_model(trained)
    more = FitConfig(lr=3e-3, batch_size=64, max_epochs=9, patience=100)
    kw = KW | {"fit_config": more}
    _, history = train_model(LatentSplit(g, SMALL_LATENT), x, out=trained, resume=True, **kw)
    assert len(history.train_loss) == 9
    assert history.train_loss[:6] == first["history"]["train_loss"]
    assert history.changes == [{"epoch": 6, "changed": {"max_epochs": [6, 9]}}]
    _, final = load_model(trained)
    assert final["status"] == "finished" and final["fit"]["max_epochs"] == 9
    with pytest.raises(CheckpointError, match="another seed"):
        train_model(
            LatentSplit(g, SMALL_LATENT),
            x,
            out=trained,
            resume=True,
            **KW | {"fit_config": FitConfig(seed=1)},
        )


def test_validation_with_common_random_numbers_is_repeatable_and_leaves_training_alone():
    """valid_samples > 1: the validation ELBO uses fixed noise (so it is a function of the parameters)
    drawn apart from the training stream (so the training losses do not depend on it).
    """
    from sirenvae.objectives import elbo

    g, x = data(200)
    split = LatentSplit(g, SMALL_LATENT)
    kw = dict(KW, options=TrainOptions(warmup_steps=12, valid_samples=8))
    model, h8 = train_model(split, x, **kw)
    _, h16 = train_model(split, x, **dict(kw, options=TrainOptions(warmup_steps=12, valid_samples=16)))
    assert h8.train_loss == h16.train_loss and h8.valid_loss != h16.valid_loss
    _, valid = pipeline.split_validation(x, 0.1, KW["fit_config"].seed)
    with torch.random.fork_rng():
        torch.manual_seed(KW["fit_config"].seed + pipeline.VALID_SEED_OFFSET)
        with torch.no_grad():
            again = -elbo(model.eval(), valid, 8).mean().item()
    assert again == pytest.approx(h8.best_valid_loss, abs=1e-5)
    with pytest.raises(ValueError, match="valid_samples must be at least 1"):
        TrainOptions(valid_samples=0)


def test_a_checkpoint_from_before_the_new_options_resumes(tmp_path, monkeypatch):
    """A run started before conditioning/affine/decoder options and valid_samples existed resumes."""
    g, x = data()
    killed_after_one_epoch(tmp_path, monkeypatch, g, x)
    path = tmp_path / "checkpoint.json"
    meta = json.loads(path.read_text())
    for key in ("conditioning", "encoder_conditioning", "affine", "decoder_mean", "likelihood"):
        meta["model"].pop(key)
    meta["train_options"].pop("valid_samples")
    path.write_text(json.dumps(meta))
    _, history = train_model(LatentSplit(g, SMALL_LATENT), x, out=tmp_path, resume=True, **KW)
    assert len(history.train_loss) == KW["fit_config"].max_epochs

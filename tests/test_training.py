import math

import pytest
import torch
from torch import nn

from sirenvae.training import FitConfig, TrainingError, fit


def regression_problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 3, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(256, generator=g)
    return torch.cat([x, y[:, None]], 1)


def test_fit_reduces_loss_and_is_reproducible():
    data = regression_problem()

    def run():
        torch.manual_seed(0)
        model = nn.Linear(3, 1)
        loss = lambda b: (model(b[:, :3]).squeeze(-1) - b[:, 3]).square().mean()  # noqa: E731
        h = fit(model, loss, data[:200], data[200:], FitConfig(lr=0.05, max_epochs=60, patience=100))
        return model, h

    m1, h1 = run()
    m2, h2 = run()
    assert h1.valid_loss[-1] < 0.1 * h1.valid_loss[0]
    assert h1.train_loss == h2.train_loss
    assert torch.equal(m1.weight, m2.weight)
    assert h1.best_valid_loss == min(h1.valid_loss)


def recorded_regression():
    """A linear model, its squared loss, and a callback recording every epoch's parameters."""
    model = nn.Linear(3, 1)
    states = []

    def loss(b):
        return (model(b[:, :3]).squeeze(-1) - b[:, 3]).square().mean()

    def record(state):
        states.append({k: v.clone() for k, v in state.model.items()})

    return model, loss, record, states


def test_early_stopping_restores_best_parameters():
    data = regression_problem()
    model, loss, record, states = recorded_regression()
    h = fit(
        model, loss, data[:200], data[200:], FitConfig(lr=0.5, max_epochs=200, patience=5), on_epoch=record
    )
    assert "no improvement" in h.stopped
    assert len(h.valid_loss) == h.best_epoch + 6
    assert torch.equal(model.weight, states[h.best_epoch]["weight"])


def test_non_finite_loss_stops_with_clear_error_and_keeps_last_good_state():
    data = regression_problem()
    model = nn.Linear(3, 1)
    calls = {"n": 0}

    def loss(b):
        calls["n"] += 1
        value = (model(b[:, :3]).squeeze(-1) - b[:, 3]).square().mean()
        return value * math.nan if calls["n"] > 5 else value

    with pytest.raises(TrainingError, match="non-finite loss"):
        fit(model, loss, data[:200], data[200:], FitConfig(batch_size=64, max_epochs=10))
    assert torch.isfinite(model.weight).all()


def poisoned_regression(every: int):
    """A linear model whose loss is finite but whose gradient is NaN on every ``every``-th call."""
    model = nn.Linear(3, 1)
    calls = {"n": 0}

    def loss(b):
        calls["n"] += 1
        value = (model(b[:, :3]).squeeze(-1) - b[:, 3]).square().mean()
        if calls["n"] % every == 0:  # sqrt'(0) = inf, times 0: a NaN gradient, a finite value
            value = value + 0.0 * (0.0 * model.weight.sum()).sqrt()
        return value

    return model, loss


@pytest.mark.parametrize("grad_clip", [10.0, None])
def test_a_step_with_a_nan_gradient_is_skipped_with_or_without_clipping(grad_clip, caplog):
    data = regression_problem()
    model, loss = poisoned_regression(every=3)
    config = FitConfig(lr=0.05, batch_size=64, max_epochs=40, patience=100, grad_clip=grad_clip)
    h = fit(model, loss, data[:200], data[200:], config)
    assert torch.isfinite(model.weight).all() and torch.isfinite(model.bias).all()
    assert h.valid_loss[-1] < 0.1 * h.valid_loss[0]
    assert "non-finite gradients" in caplog.text


@pytest.mark.parametrize("grad_clip", [10.0, None])
def test_an_epoch_of_nan_gradients_stops_with_a_clear_error(grad_clip):
    data = regression_problem()
    model, loss = poisoned_regression(every=1)
    with pytest.raises(TrainingError, match="non-finite gradients in every step"):
        fit(model, loss, data[:200], data[200:], FitConfig(batch_size=64, max_epochs=5, grad_clip=grad_clip))
    assert torch.isfinite(model.weight).all()


def test_grf_fitted_to_ecoli70_samples_learns_the_structure_quickly():
    from sirenvae.flows import GRF
    from sirenvae.networks import load_network, oracle_nll

    net = load_network("ecoli70")
    torch.manual_seed(0)
    data = net.sample(600, seed=0)
    test = net.sample(500, seed=10_000)
    train, valid = data[60:].float(), data[:60].float()  # a tenth for early stopping
    loc, scale = train.mean(0), train.std(0)
    flow = GRF(net.graph.adjacency(), blocks=3, hidden_per_set=4, hidden_layers=2)

    def nll(x):  # the flow models standardised data: log p(x) = log p(u) - sum(log scale)
        return -flow().log_prob((x - loc) / scale).mean()

    config = FitConfig(lr=1e-2, batch_size=128, max_epochs=25, patience=25, seed=0)
    fit(flow, nll, train, valid, config)
    with torch.no_grad():
        test_nll = nll(test.float()).item() + scale.log().sum().item()
    assert math.isfinite(test_nll)
    assert flow.transform.certify().max() < 1  # every residual block is a contraction
    # a model cannot beat the truth beyond sampling noise ...
    assert test_nll > oracle_nll(net, test, net.graph.nodes) - 0.5
    # ... and the flow must beat an independent Gaussian fitted to the same data by a wide margin
    indep = torch.distributions.Normal(data.mean(0), data.std(0))
    indep_nll = -indep.log_prob(test).sum(-1).mean().item()
    assert test_nll < indep_nll - 5


def test_atomic_write_replaces_whole_files_and_leaves_nothing_behind_on_failure(tmp_path):
    import os
    import stat

    from sirenvae.files import atomic_write, atomic_write_text

    path = tmp_path / "doc.json"
    atomic_write_text(path, "old")
    atomic_write_text(path, "new")
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["doc.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # as a plain write would leave it

    def half_then_fail(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, half_then_fail)
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["doc.json"]


def test_checkpoints_carry_every_cuda_generator_state():
    """A run on a GPU draws its noise there: its checkpoint keeps each device's generator state, in
    order, so that a resumed CUDA run goes on with the noise it would have drawn.
    """
    from sirenvae.training import History, TrainState, state_from_tensors, state_to_tensors

    cuda = [torch.arange(16, dtype=torch.uint8), torch.arange(16, 32, dtype=torch.uint8)]
    state = TrainState(
        3, {}, {}, {"state": {}, "param_groups": []}, History(), torch.zeros(5), torch.ones(4), cuda
    )
    back = state_from_tensors(*state_to_tensors(state))
    assert len(back.rng_cuda) == 2 and all(
        torch.equal(a, b) for a, b in zip(back.rng_cuda, cuda, strict=True)
    )
    state.rng_cuda = []
    assert state_from_tensors(*state_to_tensors(state)).rng_cuda == []


def test_best_from_keeps_no_earlier_epoch_even_when_it_validated_best():
    data = regression_problem()
    model, loss, record, states = recorded_regression()
    # a validation loss that only worsens: without best_from the first epoch would be kept
    worsening = iter(range(10_000))
    h = fit(
        model,
        loss,
        data[:200],
        data[200:],
        FitConfig(lr=0.05, max_epochs=40, patience=100, best_from=7),
        valid_loss=lambda b: torch.tensor(float(next(worsening))),
        on_epoch=record,
    )
    assert h.best_epoch == 7
    assert torch.equal(model.weight, states[7]["weight"])


def test_a_fit_logged_to_a_file_prints_plain_progress_lines(monkeypatch, capsys):
    import sirenvae.training as training

    monkeypatch.setattr(training, "_interactive", lambda: False)
    monkeypatch.setattr(training, "LOG_EVERY", 0.0)  # a line every epoch
    data = regression_problem()
    model = nn.Linear(3, 1)
    loss = lambda b: (model(b[:, :3]).squeeze(-1) - b[:, 3]).square().mean()  # noqa: E731
    fit(model, loss, data[:200], data[200:], FitConfig(lr=0.05, max_epochs=3, progress=True), desc="fit x")
    lines = capsys.readouterr().err.splitlines()
    assert (
        len(lines) == 3
        and lines[0].startswith("fit x: epoch 1 of at most 3, train ")
        and "\r" not in lines[0]
    )
    fit(model, loss, data[:200], data[200:], FitConfig(lr=0.05, max_epochs=3, progress=False))
    assert capsys.readouterr().err == ""


def test_a_run_directory_is_held_by_one_live_writer(tmp_path):
    import os
    import subprocess
    import sys

    from sirenvae.files import LOCK, run_lock

    run = tmp_path / "run"
    with run_lock(run):
        assert (run / LOCK).read_text() == str(os.getpid())
    assert not run.exists()  # nothing written: no directory left behind
    run.mkdir()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / LOCK).write_text(str(live.pid))
        with pytest.raises(
            ValueError, match=rf"being written by another sirenvae process \(pid {live.pid}\)"
        ):
            with run_lock(run):
                pass
    finally:
        live.kill()
        live.wait()
    with run_lock(run):  # the holder died: its lock is taken over
        (run / "model.json").write_text("{}")
    assert sorted(p.name for p in run.iterdir()) == ["model.json"]

"""The CLI never destroys a user's files or runs, and checks its outputs before any work."""

import json
import shutil

import pytest

from test_cli import FAST, error_line, run


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "true"
    result = run("fit", "--network", "ecoli70", "--train-size", 92, "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    return out


def snapshot(directory):
    return {p.name: p.read_bytes() for p in directory.iterdir()}


def test_outputs_never_replace_a_run_or_an_input(fitted, tmp_path):
    before = snapshot(fitted)
    r = run("sample", fitted, "-n", 3, "-o", fitted / "model.json")
    assert r.exit_code == 2 and "inside the run directory" in error_line(r)
    r = run("sample", fitted, "-n", 3, "-o", fitted / "extra.csv", "--force")
    assert r.exit_code == 2 and "inside the run directory" in error_line(r)
    other = tmp_path / "other"
    shutil.copytree(fitted, other)
    r = run("sample", fitted, "-n", 3, "-o", other / "model.json", "--force")
    assert r.exit_code == 2 and "a run's own model.json" in error_line(r)
    data = tmp_path / "data.csv"
    assert run("sample", fitted, "-n", 5, "-o", data).exit_code == 0
    text = data.read_text()
    r = run("posterior", fitted, "--data", data, "-n", 2, "-o", data, "--force")
    assert r.exit_code == 2 and "also the input --data" in error_line(r)
    assert data.read_text() == text and snapshot(fitted) == before
    assert snapshot(other) == before


def test_existing_outputs_need_force(fitted, tmp_path):
    out = tmp_path / "s.csv"
    out.write_text("precious\n")
    r = run("sample", fitted, "-n", 3, "-o", out)
    line = error_line(r)
    assert r.exit_code == 2 and "already exists" in line and "--force" in line
    assert out.read_text() == "precious\n"
    r = run("sample", fitted, "-n", 3, "-o", out, "--force")
    assert r.exit_code == 0, r.output
    assert len(out.read_text().splitlines()) == 4
    data = tmp_path / "data.csv"
    shutil.copy(out, data)
    post = tmp_path / "post.csv"
    post.write_text("precious\n")
    r = run("posterior", fitted, "--data", data, "-n", 2, "-o", post)
    assert r.exit_code == 2 and "already exists" in error_line(r)
    assert post.read_text() == "precious\n"


def test_fit_force_replaces_a_run(fitted, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(fitted, out)
    r = run("fit", "--network", "ecoli70", "--train-size", 92, "--out", out, *FAST)
    assert r.exit_code == 2 and "--force" in error_line(r)
    old = json.loads((out / "model.json").read_text())
    r = run("fit", "--network", "ecoli70", "--train-size", 50, "--out", out, "--force", *FAST)
    assert r.exit_code == 0, r.output
    new = json.loads((out / "model.json").read_text())
    assert new["train_rows"] == 50 and old["train_rows"] == 92
    assert len(list(out.glob("model-*.safetensors"))) == 1
    r = run("fit", "--network", "ecoli70", "--train-size", 50, "--out", out, "--force", "--resume", *FAST)
    assert r.exit_code == 2 and "only one" in error_line(r)


def no_work(*args, **kwargs):
    raise AssertionError("the command started working before checking its output")


def test_bad_output_paths_are_refused_before_any_work(fitted, tmp_path, monkeypatch):
    import sirenvae.pipeline

    monkeypatch.setattr(sirenvae.pipeline, "train_model", no_work)
    monkeypatch.setattr(sirenvae.pipeline, "load_model", no_work)
    afile = tmp_path / "afile"
    afile.write_text("x")
    r = run("fit", "--network", "ecoli70", "--train-size", 92, "--out", afile, *FAST)
    assert r.exit_code == 2 and "is a file" in error_line(r)
    r = run("sample", fitted, "-n", 3, "-o", tmp_path)
    assert r.exit_code == 2 and "is a directory" in error_line(r)
    r = run("posterior", fitted, "--data", afile, "-o", tmp_path)
    assert r.exit_code == 2 and "is a directory" in error_line(r)
    r = run("posterior", fitted, "--data", afile, "-o", tmp_path / "no" / "p.csv")
    assert r.exit_code == 2 and "does not exist" in error_line(r)
    r = run("sample", fitted, "-n", 3, "-o", tmp_path / "no" / "s.csv")
    assert r.exit_code == 2 and "does not exist" in error_line(r)
    r = run("reproduce", "table1", "--quick", "--no-ray", "--out", afile)
    assert r.exit_code == 2 and "is a file" in error_line(r)
    assert afile.read_text() == "x"


def test_a_diverged_run_can_be_loaded_and_resumed_with_new_settings(tmp_path, monkeypatch):
    import sirenvae.pipeline as pipeline

    real = pipeline.elbo
    calls = {"validation": 0}

    def exploding_on_the_fourth_validation(model, batch, samples=1):
        calls["validation"] += not model.training
        value = real(model, batch, samples)
        return value * float("nan") if calls["validation"] > 3 else value

    monkeypatch.setattr(pipeline, "elbo", exploding_on_the_fourth_validation)
    out = tmp_path / "run"
    fit = [
        "fit",
        "--network",
        "ecoli70",
        "--train-size",
        92,
        "--out",
        out,
        "--no-progress",
        "--settings",
        "paper",
    ]
    r = run(*fit, "--epochs", 6)
    assert r.exit_code == 1
    line = " ".join(error_line(r).split())
    assert "non-finite loss at epoch 3" in line and f"sirenvae evaluate {out}" in line
    assert "--resume --lr 0.0003" in line
    meta = json.loads((out / "model.json").read_text())
    assert meta["status"] == "diverged" and meta["diverged_at_epoch"] == 3
    assert 0 <= meta["history"]["best_epoch"] < 3
    monkeypatch.setattr(pipeline, "elbo", real)
    r = run("evaluate", out, "--test-size", 20, "-k", 2, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["rows"] == 20
    assert "warning: " in r.stderr and "diverged" in r.stderr and "--resume" in r.stderr
    r = run("sample", out, "-n", 3, "-o", tmp_path / "s.csv")
    assert r.exit_code == 0 and "diverged" in r.stderr
    r = run(*fit, "--epochs", 6)
    assert r.exit_code == 2 and "diverged" in error_line(r) and "--resume" in error_line(r)
    r = run(*fit, "--epochs", 6, "--resume", "--model", "vae")
    assert r.exit_code == 2 and "another model" in error_line(r)
    r = run(*fit, "--resume", "--epochs", 7, "--lr", 3e-4, "--patience", 40, "--batch-size", 16)
    assert r.exit_code == 0, r.output
    meta = json.loads((out / "model.json").read_text())
    assert meta["status"] == "finished" and len(meta["history"]["train_loss"]) == 7
    assert meta["history"]["changes"] == [
        {
            "epoch": 3,
            "changed": {
                "lr": [3e-3, 3e-4],
                "max_epochs": [6, 7],
                "patience": [50, 40],
                "batch_size": [32, 16],
            },
        }
    ]
    r = run("evaluate", out, "--test-size", 20, "-k", 2, "--json")
    assert r.exit_code == 0 and "diverged" not in r.stderr


def test_ctrl_c_in_training_says_how_to_resume_and_resume_finishes(tmp_path, monkeypatch):
    import sirenvae.training

    epochs = []
    real = sirenvae.training._train_epoch

    def interrupted(*args, **kwargs):
        epochs.append(1)
        if len(epochs) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(sirenvae.training, "_train_epoch", interrupted)
    out = tmp_path / "run"
    args = ["fit", "--network", "ecoli70", "--train-size", 92, "--out", out, *FAST]
    r = run(*args)
    assert r.exit_code == 130 and "continue with the same command and --resume" in r.output
    r = run(*args, "--resume")
    assert r.exit_code == 0, r.output
    history = json.loads((out / "model.json").read_text())["history"]
    assert len(history["train_loss"]) == 3 and len(epochs) == 4  # epochs 1-2 kept, the third trained anew

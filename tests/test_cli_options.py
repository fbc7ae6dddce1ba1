"""Options every user meets: --threads, the progress bar, flags in --help, --version."""

import pytest
import torch

from test_cli import FAST, run


@pytest.fixture
def threads_seen(monkeypatch):
    """Records torch's thread count where the commands do their work; restores it afterwards."""
    import sirenvae.api as api
    import sirenvae.experiments.demo as demo
    import sirenvae.experiments.runner as runner
    import sirenvae.objectives as objectives
    import sirenvae.pipeline as pipeline

    seen = []

    def spy(real):
        def wrapped(*args, **kwargs):
            seen.append(torch.get_num_threads())
            return real(*args, **kwargs)

        return wrapped

    def fake_demo(config, progress=False):
        seen.append(torch.get_num_threads())
        raise ValueError("demo stops here")

    def failing_run(config, device=None):
        seen.append(torch.get_num_threads())
        raise RuntimeError("run stops here")

    monkeypatch.setattr(api, "train_model", spy(pipeline.train_model))
    monkeypatch.setattr(objectives, "evaluate", spy(objectives.evaluate))
    monkeypatch.setattr(demo, "vae_demo", fake_demo)
    monkeypatch.setattr(runner, "_run_one", failing_run)
    before = torch.get_num_threads()
    torch.set_num_threads(3)  # a count no command uses by default
    yield seen
    torch.set_num_threads(before)


def test_threads_are_applied_and_restored(threads_seen, tmp_path):
    from sirenvae.cli.common import DEFAULT_THREADS

    out = tmp_path / "run"
    fit = ["fit", "--network", "ecoli70", "--train-size", 92, *FAST]
    assert run(*fit, "--out", out).exit_code == 0
    assert threads_seen == [DEFAULT_THREADS] and torch.get_num_threads() == 3
    assert run(*fit, "--out", tmp_path / "two", "--threads", 2).exit_code == 0
    assert threads_seen[-1] == 2 and torch.get_num_threads() == 3
    assert run("evaluate", out, "--test-size", 10, "-k", 2, "--threads", 2).exit_code == 0
    assert threads_seen[-1] == 2 and torch.get_num_threads() == 3
    assert run("evaluate", out, "--test-size", 10, "-k", 2).exit_code == 0
    assert threads_seen[-1] == DEFAULT_THREADS and torch.get_num_threads() == 3
    r = run("demo", "--threads", 2, "--no-progress")
    assert r.exit_code == 2 and "demo stops here" in r.output
    assert threads_seen[-1] == 2 and torch.get_num_threads() == 3
    sweep = ["reproduce", "table1", "--quick", "--no-ray", "--datasets", "ecoli70", "--models", "vae"]
    r = run(*sweep, "--factors", 2, "--out", tmp_path / "sweep", "--threads", 2)
    assert r.exit_code == 1 and "run stops here" in r.output
    assert threads_seen[-1] == 2 and torch.get_num_threads() == 3
    r = run(*fit, "--out", tmp_path / "zero", "--threads", 0)
    assert r.exit_code == 2 and "--threads must be positive" in r.output
    r = run("reproduce", "table1", "--quick", "--threads", 2, "--out", tmp_path / "ray")
    assert r.exit_code == 2 and "--no-ray" in r.output


def test_sample_and_posterior_take_threads(threads_seen, tmp_path, monkeypatch):
    """Like fit and evaluate: --threads where the work is done (writing the CSV), restored after."""
    import sirenvae.cli.run as cli_run
    import sirenvae.files as files
    from sirenvae.cli.common import DEFAULT_THREADS

    def spy(real):
        def wrapped(*args, **kwargs):
            threads_seen.append(torch.get_num_threads())
            return real(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(files, "atomic_write", spy(files.atomic_write))
    monkeypatch.setattr(cli_run, "write_row_summaries", spy(cli_run.write_row_summaries))
    out, rows = tmp_path / "run", tmp_path / "rows.csv"
    assert run("fit", "--network", "ecoli70", "--train-size", 92, *FAST, "--out", out).exit_code == 0
    for threads in (None, 2):
        given = [] if threads is None else ["--threads", threads]
        r = run("sample", out, "-n", 4, "-o", rows, "--force", *given)
        assert r.exit_code == 0, r.output
        assert threads_seen[-1] == (threads or DEFAULT_THREADS) and torch.get_num_threads() == 3
        r = run("posterior", out, "--data", rows, "-n", 2, "-o", tmp_path / "p.csv", "--force", *given)
        assert r.exit_code == 0, r.output
        assert threads_seen[-1] == (threads or DEFAULT_THREADS) and torch.get_num_threads() == 3
    r = run("sample", out, "-n", 4, "-o", rows, "--force", "--threads", 0)
    assert r.exit_code == 2 and "--threads must be positive" in r.output


def _bad_devices() -> list[tuple[str, str]]:
    cases = [("gpu0", "unknown device 'gpu0'"), ("xla", "device type 'xla' is not supported")]
    if torch.cuda.is_available():
        return [*cases, ("cuda:99", "but this machine has")]
    return [*cases, ("cuda", "no CUDA device is available")]


def test_a_device_this_machine_lacks_is_one_line_before_any_work(tmp_path):
    from test_cli import error_line

    out = tmp_path / "run"
    for bad, words in _bad_devices():
        r = run("fit", "--network", "ecoli70", "--train-size", 92, *FAST, "--out", out, "--device", bad)
        assert r.exit_code == 2 and words in error_line(r), r.output
        assert not out.exists()
    assert run("fit", "--network", "ecoli70", "--train-size", 92, *FAST, "--out", out).exit_code == 0
    rows = tmp_path / "rows.csv"
    for cmd in (
        ["evaluate", out, "--test-size", 10, "-k", 2],
        ["sample", out, "-n", 5, "-o", rows],
        ["posterior", out, "--data", rows, "-n", 2, "-o", tmp_path / "post.csv"],
        ["reproduce", "table1", "--quick", "--no-ray", "--out", tmp_path / "sweep"],
        ["search", "--quick", "--no-ray", "--out", tmp_path / "search"],
    ):
        r = run(*cmd, "--device", "gpu0")
        assert r.exit_code == 2 and "unknown device 'gpu0'" in error_line(r), (cmd, r.output)
    assert not (tmp_path / "sweep").exists() and not (tmp_path / "search").exists()


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda",
            marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine"),
        ),
    ],
)
def test_every_command_runs_on_the_device_asked_for(tmp_path, device):
    """fit, evaluate, sample and posterior on ``--device``; their outputs are the same files."""
    import pandas as pd

    out, rows = tmp_path / "run", tmp_path / "rows.csv"
    on = ["--device", device]
    assert run("fit", "--network", "ecoli70", "--train-size", 92, *FAST, "--out", out, *on).exit_code == 0
    r = run("evaluate", out, "--test-size", 20, "-k", 5, "--json", *on)
    assert r.exit_code == 0, r.output
    assert run("sample", out, "-n", 7, "-o", rows, *on).exit_code == 0
    assert pd.read_csv(rows).notna().all().all()
    r = run("posterior", out, "--data", rows, "-n", 3, "-o", tmp_path / "post.csv", *on)
    assert r.exit_code == 0 and len(pd.read_csv(tmp_path / "post.csv")) == 7 * 5


def test_flags_render_as_flags_in_help():
    import typer

    from sirenvae.cli import app

    group = typer.main.get_command(app)
    commands = {"": group} | dict(group.commands)
    flags = 0
    for name, command in commands.items():
        result = run(*([name] if name else []), "--help")
        assert result.exit_code == 0, result.output
        assert "<bool>" not in result.output, (name, result.output)
        for param in command.params:
            if getattr(param, "is_flag", False) and not param.hidden:
                flags += 1
                assert param.opts[0] in result.output, (name, param.opts)
    assert flags >= 12
    assert "  --json " in run("evaluate", "--help").output


def test_version():
    import sirenvae

    result = run("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"sirenvae {sirenvae.__version__}"


def test_piped_output_has_no_progress_bar(tmp_path):
    search = [
        "--max-candidates",
        1,
        "--folds",
        2,
        "--workers",
        1,
    ]  # a search still runs (beside the classical floor)
    result = run(
        "fit", "--network", "ecoli70", "--train-size", 92, "--epochs", 3, *search, "--out", tmp_path / "r"
    )
    assert result.exit_code == 0, result.output
    assert "\r" not in result.output and "\r" not in result.stderr
    assert "training true on 46 nodes" in result.stderr and "CV NLL" in result.stdout


def test_progress_bar_names_the_model_and_ends_full_on_early_stopping(tmp_path, monkeypatch):
    import sirenvae.training as training

    monkeypatch.setattr(training, "_interactive", lambda: True)
    fit = [
        "fit",
        "--network",
        "ecoli70",
        "--train-size",
        92,
        "--batch-size",
        4,
        "--patience",
        1,
        "--settings",
        "paper",
        "--set",
        "warmup_steps=0",  # without the KL warm-up the validation loss stops improving within epochs
    ]
    result = run(*fit, "--epochs", 500, "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert "no improvement for 1 epochs" in result.stdout
    frames = [f for f in result.stderr.split("\r")[1:] if f.strip()]  # the notes come before the bar
    assert frames and all(f.startswith("fit true:") for f in frames), frames[:3]
    assert "100%" in frames[-1] and "/500" not in frames[-1], frames[-1]

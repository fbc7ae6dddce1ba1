"""The CLI on a user's own graph and CSV: validation of every data file, latent nodes, ID columns."""

import pandas as pd
import pytest
from typer.testing import CliRunner

from helpers import small_network
from sirenvae import graph_io
from sirenvae.cli import app

runner = CliRunner()
FAST = ["--epochs", "2", "--no-progress"]


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def error_line(result):
    text = (result.stderr if result.stderr else result.output).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert lines[0].startswith("error: "), text
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small graph (z1, z2 latent; x1, x2, x3 observed), its samples and a run fitted on them."""
    d = tmp_path_factory.mktemp("small")
    net = small_network()
    graph_io.to_json(net.graph, d / "g.json")
    frame = pd.DataFrame(net.sample(120, seed=0).numpy(), columns=list(net.graph.nodes))
    frame.to_csv(d / "all.csv", index=False)
    frame[["x1", "x2", "x3"]].to_csv(d / "obs.csv", index=False)
    result = run("fit", "--graph", d / "g.json", "--data", d / "obs.csv", "--out", d / "run", *FAST)
    assert result.exit_code == 0, result.output
    return d


def edited(files, tmp_path, name, **changes):
    """``obs.csv`` with some cells replaced: ``column=(row index, text)``."""
    frame = pd.read_csv(files / "obs.csv").astype(object)
    for column, (i, text) in changes.items():
        frame.loc[i, column] = text
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def test_every_command_names_the_cell_that_overflows(files, tmp_path):
    path = edited(files, tmp_path, "big.csv", x2=(2, "1e300"))
    expected = "big.csv: row 3 (line 4), column 'x2': 1e+300 overflows float32"

    def commands(path):
        return [
            ["fit", "--graph", files / "g.json", "--data", path, "--out", tmp_path / "o", *FAST],
            ["evaluate", files / "run", "--data", path, "-k", 2],
            ["posterior", files / "run", "--data", path, "-n", 2, "-o", tmp_path / "p.csv"],
        ]

    for args in commands(path):
        r = run(*args)
        assert r.exit_code == 2, (args, r.output)
        assert expected in error_line(r), args
    assert not (tmp_path / "p.csv").exists() and not (tmp_path / "o").exists()
    # non-finite and non-numeric cells are named the same way by evaluate and posterior
    path = edited(files, tmp_path, "nan.csv", x3=(4, "nan"))
    for args in commands(path)[1:]:
        r = run(*args)
        assert r.exit_code == 2 and "row 5 (line 6), column 'x3': non-finite value 'nan'" in error_line(r)

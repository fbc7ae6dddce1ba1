"""The README's Python examples run as written."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_has_examples():
    assert BLOCKS


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_example_runs(code, capsys):
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    # the example's own claims: a round trip and a proper posterior sample
    if "z_back" in namespace:
        torch = namespace["torch"]
        assert torch.allclose(namespace["z_back"], namespace["result"].z)
        assert namespace["result"].converged
        assert (namespace["flow"].certify() < 1).all()

"""The shape of the package: layers import downwards only, modules and classes stay small."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "sirenvae"

# each layer may import from itself and the layers before it, never after
LAYERS = [
    {"candidates", "defaults", "devices", "files", "graph", "identification", "names"},
    {"graph_io", "networks"},
    {"inversion"},
    {"masks"},
    {"nn"},
    {"flows"},
    {"models"},
    {"objectives", "data", "training", "plots", "baselines"},
    {"pipeline"},
    {"parallel"},
    {"selection", "comparison"},
    {"api"},
    {"experiments"},
    {"cli", "__main__"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def modules():
    return sorted(p for p in SRC.rglob("*.py"))


def top(path: Path) -> str:
    rel = path.relative_to(SRC).parts
    return rel[0].removesuffix(".py") if rel[0] != "__init__.py" else "__init__"


def imported(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sirenvae."):
            out.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("sirenvae.")}
    return out


def test_every_module_has_a_layer():
    names = {top(p) for p in modules()} - {"__init__"}
    assert names <= set(RANK), names - set(RANK)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_down_the_layers(path):
    here = top(path)
    if here == "__init__":
        return
    upward = {m for m in imported(path) if RANK.get(m, -1) > RANK[here]}
    assert not upward, f"{path.name} ({here}) imports from later layers {upward}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_modules_and_classes_stay_small(path):
    text = path.read_text()
    assert text.count("\n") <= 800  # a smell alarm: modules are split by concept, not by length
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ClassDef):
            assert node.end_lineno - node.lineno + 1 <= 200, node.name


def test_the_cli_starts_without_torch():
    """``sirenvae --help`` stays fast: the CLI imports torch only inside commands."""
    import subprocess
    import sys

    code = "import sys, sirenvae.cli; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0

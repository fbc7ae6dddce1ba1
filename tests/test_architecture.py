"""The shape of the package: layers import downwards only, no module imports itself round a circle,
modules and classes stay small, comments cite what the repository holds."""

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "sirenvae"

# each layer may import from itself and the layers before it, never after
LAYERS = [
    {"candidates", "defaults", "devices", "files", "graph", "identification", "names", "variables"}
    | {"version"},
    {"graph_io", "networks"},
    {"inversion"},
    {"masks"},
    {"layers"},
    {"nn"},
    {"flows"},
    {"models"},
    {"objectives", "splits", "data", "training", "plots", "baselines"},
    {"imputation"},
    {"pipeline"},
    {"parallel"},
    {"selection", "comparison", "fitted"},
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


def module_name(path: Path, root: Path = SRC) -> str:
    """``sirenvae.experiments.grids`` for ``src/sirenvae/experiments/grids.py`` (a package: its name)."""
    parts = (root.name, *path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def import_graph(root: Path = SRC) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, anywhere in its body (inside functions too: a lazy
    import runs as surely as another, only later); imports under ``if TYPE_CHECKING:`` never run and
    are left out. ``from p import m`` counts as an import of the module ``p.m`` where that is one, of
    ``p`` otherwise. Importing ``p.m`` also runs ``p/__init__.py`` first, but that edge is not drawn:
    a package's ``__init__`` may re-export its modules so long as they do not import it back.
    """
    package = root.name
    names = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    graph = {}
    for name, path in names.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()

        def visit(node, here=here, targets=targets):
            if isinstance(node, ast.If) and _type_checking(node.test):
                nodes = node.orelse
            else:
                nodes = list(ast.iter_child_nodes(node))
                if isinstance(node, ast.ImportFrom):
                    base = node.module or ""
                    if node.level:  # relative: from the package `level - 1` steps above this one
                        up = here.split(".")[: len(here.split(".")) - node.level + 1]
                        base = ".".join([*up, *([base] if base else [])])
                    for alias in node.names:
                        targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in names else base)
                elif isinstance(node, ast.Import):
                    targets.update(alias.name for alias in node.names)
            for child in nodes:
                visit(child)

        visit(ast.parse(path.read_text()))
        graph[name] = {t for t in targets if t in names and (t == package or t.startswith(package + "."))}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A circle of imports ``[a, b, ..., a]`` in ``graph`` (the first by name), or ``None``."""
    done, path = set(), []

    def visit(node):
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if cycle := visit(nxt):
                return cycle
        path.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        if cycle := visit(start):
            return cycle
    return None


def test_the_cycle_finder_finds_a_circle_and_only_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"a", "c"}}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"d": {"e"}, "e": {"e"}}) == ["e", "e"]


def test_the_import_graph_sees_lazy_imports_and_skips_type_checking(tmp_path):
    pkg = tmp_path / "fake"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "a.py": "from typing import TYPE_CHECKING\n\nfrom fake.sub import b\n\n"
        "if TYPE_CHECKING:\n    import fake.c\n",
        "c.py": "import os\nfrom fake import a as _a\n",
        "sub/__init__.py": "from .b import thing\n",
        "sub/b.py": "thing = 1\n\ndef later():\n    from fake.c import x\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    graph = import_graph(pkg)
    assert graph == {
        "fake": set(),
        "fake.a": {"fake.sub.b"},  # the TYPE_CHECKING import of fake.c left out
        "fake.c": {"fake.a"},
        "fake.sub": {"fake.sub.b"},
        "fake.sub.b": {"fake.c"},  # the import inside a function counts
    }
    assert find_cycle(graph) == ["fake.a", "fake.sub.b", "fake.c", "fake.a"]


def test_no_module_imports_itself_round_a_circle():
    """Inside packages too: a module's imports (lazy ones included) never lead back to it."""
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


CITATION = re.compile(r"\bSPEC\b|(?i:\bissues? #?\d+)")  # SPEC the document, not a variable `spec`


def cited_files():
    """The package, the benchmarks and the tests (but this file, whose pattern names what it seeks)."""
    root = SRC.parents[1]
    others = [*root.glob("benchmarks/*.py"), *root.glob("tests/*.py")]
    return modules() + sorted(p for p in others if p.resolve() != Path(__file__).resolve())


@pytest.mark.parametrize("path", cited_files(), ids=lambda p: str(p.relative_to(SRC.parents[1])))
def test_comments_cite_only_what_the_repository_holds(path):
    """The paper or ``docs/``, never a specification or an issue thread the repository lacks."""
    hits = [f"{i}: {line.strip()}" for i, line in enumerate(path.read_text().splitlines(), 1)]
    hits = [h for h in hits if CITATION.search(h.partition(": ")[2])]
    assert not hits, "\n".join(hits)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_modules_and_classes_stay_small(path):
    text = path.read_text()
    assert text.count("\n") <= 800  # a smell alarm: modules are split by concept, not by length
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ClassDef):
            assert node.end_lineno - node.lineno + 1 <= 400, node.name  # a smell alarm too


def test_the_cli_starts_without_torch():
    """``sirenvae --help`` stays fast: the CLI imports torch only inside commands."""
    import subprocess
    import sys

    code = "import sys, sirenvae.cli; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0

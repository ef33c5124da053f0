"""prodcat's modules import one another without a cycle, and each imports on its own."""

import ast
import subprocess
import sys
from pathlib import Path

import prodcat

PACKAGE = Path(prodcat.__file__).parent
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__main__")


def imported_modules(path: Path) -> set[str]:
    """The prodcat modules a module imports anywhere (top level or inside a function)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == 1:  # from . import a, b
                found.update(alias.name for alias in node.names)
            elif node.level == 0 and node.module and node.module.startswith("prodcat."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("prodcat."))
    return {name for name in found if name in MODULES and name != path.stem}


def import_graph() -> dict[str, set[str]]:
    return {name: imported_modules(PACKAGE / f"{name}.py") for name in MODULES}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert "labeler" in import_graph()["predict"] and "seq2seq" in import_graph()["labeler"]


def test_no_import_cycle_among_prodcat_modules():
    assert find_cycle(import_graph()) is None


def test_every_module_imports_first_in_a_fresh_interpreter():
    """Each module imported before any other prodcat module (prodcat's modules are dropped from
    sys.modules between them; third-party imports stay cached, so this takes seconds)."""
    script = (
        "import importlib, sys\n"
        f"for name in {MODULES!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'prodcat' or m.startswith('prodcat.')]:\n"
        "        del sys.modules[loaded]\n"
        "    importlib.import_module('prodcat.' + name)\n"
        "print('ok', len(" + repr(MODULES) + "))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"ok {len(MODULES)}"

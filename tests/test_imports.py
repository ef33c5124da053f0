"""prodcat's import graph: entry points on top, stage subpackages below them, each subpackage
importing only from the layers under it, no cycle between modules, and each module importing on its
own."""

import ast
import subprocess
import sys
from pathlib import Path

import prodcat
from prodcat.code_version import PackageSource

PACKAGE = Path(prodcat.__file__).parent
SOURCE = PackageSource(PACKAGE)
# dotted module names ("cli", "data.io"); a package's own code is "data.__init__"
MODULES = sorted(m for m in SOURCE.modules if m != "__main__")
# The entry points (the command line, the rules' steps, prediction from a finished run, the code
# hash) sit on top and may import anything below; the subpackages, bottom first.
ENTRY_POINTS = {"__init__", "cli", "stack_cli", "workflow", "predict", "code_version"}
LAYERS = ["runtime", "data", "labelers", "names", "ensemble", "report", "standins"]


def layer_of(module: str) -> int | None:
    """The index of a module's subpackage in LAYERS; None for the root's modules."""
    top = module.split(".")[0]
    return LAYERS.index(top) if "." in module else None


def imported_modules(module: str) -> set[str]:
    """The prodcat modules a module imports anywhere (top level or inside a function), relative or
    absolute imports alike (prodcat.code_version resolves them); a package's own code counts as
    its __init__ module."""
    found = set()
    for node in ast.walk(SOURCE.tree(module)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.update(target for target, _ in SOURCE.package_imports(module, node))
    return {name for name in found if name in SOURCE.modules and name != module}


def import_graph() -> dict[str, set[str]]:
    return {name: imported_modules(name) for name in MODULES}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Imports that point up: from a subpackage into an entry point, or into a later layer."""
    bad = []
    for module, targets in graph.items():
        here = layer_of(module)
        if here is None:
            continue
        for target in sorted(targets):
            there = layer_of(target)
            if (there is None and target != "__init__") or (there is not None and there > here):
                bad.append(f"{module} → {target}")
    return bad


def test_the_graph_checks_find_what_they_look_for():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert upward_imports({"data.io": {"runtime.errors", "__init__"}, "cli": {"data.io"}}) == []
    assert upward_imports({"data.io": {"labelers.seq2seq"}, "runtime.hub": {"workflow"}}) == [
        "data.io → labelers.seq2seq",
        "runtime.hub → workflow",
    ]
    graph = import_graph()
    assert "labelers.interface" in graph["predict"] and "labelers.seq2seq" in graph["labelers.interface"]
    assert "data.io" in graph["data.hierarchy"] and "__init__" in graph["data.io"]


def test_the_package_is_cut_by_stage():
    """Entry points at the top (at most 10 modules there), every other module in a stage subpackage."""
    top = {m for m in SOURCE.modules if "." not in m}
    assert top - {"__main__"} == ENTRY_POINTS
    assert {m.split(".")[0] for m in SOURCE.modules if "." in m} == set(LAYERS)
    assert all(f"{layer}.__init__" in SOURCE.modules for layer in LAYERS)


def test_imports_only_point_down():
    assert upward_imports(import_graph()) == []


def test_no_import_cycle_among_prodcat_modules():
    assert find_cycle(import_graph()) is None


def test_every_module_imports_first_in_a_fresh_interpreter():
    """Each module imported before any other prodcat module (prodcat's modules are dropped from
    sys.modules between them; third-party imports stay cached, so this takes seconds)."""
    names = [m.removesuffix(".__init__") if m != "__init__" else "" for m in MODULES]
    script = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'prodcat' or m.startswith('prodcat.')]:\n"
        "        del sys.modules[loaded]\n"
        "    importlib.import_module('prodcat.' + name if name else 'prodcat')\n"
        "print('ok', len(" + repr(names) + "))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"ok {len(names)}"

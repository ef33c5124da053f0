"""Which modules of the package a workflow rule's command can run, and one hash of their code.

A rule passes `code_hash(...)` of its entry point as a param, so Snakemake's params trigger reruns
it (and what reads its output) when that code changes, and leaves the other rules alone. The rule's
own text is Snakemake's concern (its code trigger); a script rule's script is a one-line call into
this package, so without this a change of the package would rerun nothing.

Entry points are "module:name" with the module dotted inside the package (e.g. "cli:_cmd_correct",
"workflow:train_labeler", "labelers.charngram:CharNgramLabeler"). From a name, the walk follows what
its definition uses: the names of its own module it mentions, and what it imports from the package,
absolute or relative (`from ..data.io import`), inside the function too (the package imports
lazily), down to single names of other modules (`from prodcat.data.io import read_rows` follows
read_rows, not all of io); the imports at the top of every module reached are followed as well, and
so are the `__init__` modules of its parent packages, which Python runs before it. A module reached at all is hashed
whole, as its syntax tree without docstrings, so comments, formatting and docstrings do not rerun
anything. Package data files a reached definition names (a string equal to the file's name, e.g.
"hierarchy.schema.json") are hashed byte for byte.

The walk over-approximates within a module (a mentioned name counts as used) and does not see
imports made by a string (importlib); the package makes none (tests/test_code_version.py checks).
Standard library only: rules/common.smk loads this file by path, since the interpreter that runs
Snakemake need not have the package (under --sdm conda only the rules' envs do).
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

PACKAGE = "prodcat"
# `from . import x` / `import prodcat.x` with x a module: every top-level name of x is used
WHOLE_MODULE = "*"


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
    return tree


class PackageSource:
    """The package's source folder (src/prodcat), parsed on demand.

    Modules are named by their dotted path inside the package: "cli", "data.io", and a package's
    own code "__init__" (the root) or "data.__init__"."""

    def __init__(self, package_dir):
        self.dir = Path(package_dir)
        if not (self.dir / "__init__.py").is_file():
            raise FileNotFoundError(f"{self.dir}: not a package folder (no __init__.py)")
        self.modules = set()
        self.data_files = {}  # file name → its path inside the package (names are unique, checked)
        for path in sorted(self.dir.rglob("*")):
            relative = path.relative_to(self.dir)
            if not path.is_file() or "__pycache__" in relative.parts or not self._in_package(relative):
                continue
            if path.suffix == ".py":
                self.modules.add(".".join(relative.with_suffix("").parts))
            elif path.name in self.data_files:
                raise ValueError(
                    f"{self.dir}: two data files named {path.name} ({self.data_files[path.name]}, "
                    f"{relative}): a name must say which one a module reads"
                )
            else:
                self.data_files[path.name] = relative

    def _in_package(self, relative: Path) -> bool:
        """Whether every folder above the file is a subpackage (has an __init__.py)."""
        folder = self.dir
        for part in relative.parts[:-1]:
            folder = folder / part
            if not (folder / "__init__.py").is_file():
                return False
        return True

    def _path(self, module: str) -> Path:
        return self.dir / (module.replace(".", "/") + ".py")

    def is_package(self, dotted: str) -> bool:
        """Whether dotted ("" for the root) names a package of this source."""
        return f"{dotted}.__init__" in self.modules if dotted else True

    @staticmethod
    def package_of(module: str) -> str:
        """The dotted package a module belongs to ("" for the root)."""
        parts = module.split(".")
        return ".".join(parts[:-1])

    def parent_inits(self, module: str) -> list[str]:
        """The __init__ modules Python runs before `module`: the root's, then each subpackage's."""
        parts = self.package_of(module).split(".") if self.package_of(module) else []
        inits = [_init_of(".".join(parts[:i])) for i in range(len(parts) + 1)]
        return [init for init in inits if init != module]

    @cache
    def tree(self, module: str) -> ast.Module:
        path = self._path(module)
        return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))

    @cache
    def definitions(self, module: str) -> dict[str, list[ast.stmt]]:
        """Top-level name → the statements that bind it (def, class, assignment, import)."""
        bound: dict[str, list[ast.stmt]] = {}
        for stmt in self.tree(module).body:
            for name in _bound_names(stmt):
                bound.setdefault(name, []).append(stmt)
        return bound

    def _target(self, dotted: str, name: str) -> tuple[str, str]:
        """What `from <dotted> import <name>` takes: a submodule whole, or a name of a module or of
        a package's __init__."""
        child = f"{dotted}.{name}" if dotted else name
        if child in self.modules:
            return child, WHOLE_MODULE
        if self.is_package(child):
            return _init_of(child), WHOLE_MODULE
        module = _init_of(dotted) if self.is_package(dotted) else dotted
        return module, name if name != "*" else WHOLE_MODULE

    def package_imports(self, current: str, node: ast.ImportFrom | ast.Import) -> list[tuple[str, str]]:
        """(module, name) pairs that an import statement takes from the package."""
        pairs = []
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == PACKAGE:
                    # `import prodcat.data.io` runs every package on the way (parent_inits) and io
                    pairs.append(
                        self._target(".".join(parts[1:-1]), parts[-1]) if len(parts) > 1 else ("__init__", WHOLE_MODULE)
                    )
            return pairs
        if node.level:
            package = self.package_of(current).split(".") if self.package_of(current) else []
            if node.level - 1 > len(package):
                return pairs  # above the package: not its code
            base = package[: len(package) - (node.level - 1)]
            if node.module:
                base += node.module.split(".")
            dotted = ".".join(base)
        elif node.module and node.module.split(".")[0] == PACKAGE:
            dotted = node.module.split(".", 1)[1] if "." in node.module else ""
        else:
            return pairs
        for alias in node.names:
            if alias.name == "*" or self.is_package(dotted) or f"{dotted}.{alias.name}" in self.modules:
                pairs.append(self._target(dotted, alias.name))
            else:
                pairs.append((dotted, alias.name))
        return pairs

    def uses(self, module: str, name: str) -> tuple[set[tuple[str, str]], set[str]]:
        """What one top-level name of a module uses: (module, name) pairs and package data files."""
        if module not in self.modules:
            raise KeyError(f"{PACKAGE}.{module}: no such module in {self.dir}")
        definitions = self.definitions(module)
        if name == WHOLE_MODULE:
            statements = list(self.tree(module).body)
        elif name in definitions:
            statements = definitions[name]
        else:
            raise KeyError(f"{PACKAGE}.{module} has no top-level name {name!r}")
        used, files = set(), set()
        for stmt in statements:
            for node in ast.walk(stmt):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    used.update(self.package_imports(module, node))
                elif isinstance(node, ast.Name) and node.id in definitions and node.id != name:
                    used.add((module, node.id))
                elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in self.data_files:
                    files.add(node.value)
        return used, files

    def closure(self, entries, skip=()) -> tuple[set[str], set[str]]:
        """The modules and data files reachable from entries ("module:name" or "module", modules
        dotted), not following the top-level names in skip ("module:name": code the command cannot
        run, such as the Labeler classes of other kinds than the rule's). A module reached brings
        its parent packages' __init__ modules, which Python runs first."""
        todo = []
        for entry in entries:
            module, _, name = entry.partition(":")
            todo.append((module, name or WHOLE_MODULE))
        seen, modules, files = set(), set(), set()
        for entry in skip:
            module, _, name = entry.partition(":")
            if module not in self.modules or name not in self.definitions(module):
                raise KeyError(f"cannot skip {entry!r}: no such top-level name in {self.dir}")
            seen.add((module, name))
        while todo:
            item = todo.pop()
            if item in seen:
                continue
            seen.add(item)
            module = item[0]
            if module not in self.modules:
                raise KeyError(f"no such module in {self.dir}: {module}")
            if module not in modules:
                modules.add(module)
                todo.append((module, "__imports__"))
                todo.extend((init, "__imports__") for init in self.parent_inits(module))
            if item[1] == "__imports__":
                # the module's top-level imports run whenever it is imported
                for stmt in self.tree(module).body:
                    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                        todo.extend(self.package_imports(module, stmt))
                continue
            used, data = self.uses(*item)
            todo.extend(used)
            files |= data
        return modules, files

    @cache
    def module_code(self, module: str) -> bytes:
        """A module's syntax tree without docstrings: its code, not its comments or layout."""
        tree = ast.parse(self._path(module).read_text(encoding="utf-8"))
        return ast.dump(_strip_docstrings(tree)).encode()

    def code_hash(self, *entries: str, skip=()) -> str:
        """12 hex digits over the code of every module (and data file) the entries reach (see
        `closure` for skip)."""
        modules, files = self.closure(entries, tuple(skip))
        digest = hashlib.sha256()
        for module in sorted(modules):
            digest.update(f"{module}.py\0".encode() + self.module_code(module) + b"\0")
        for name in sorted(files):
            digest.update(f"{name}\0".encode() + (self.dir / self.data_files[name]).read_bytes() + b"\0")
        return digest.hexdigest()[:12]


def _init_of(package: str) -> str:
    """The module that holds a package's own code ("" is the root)."""
    return f"{package}.__init__" if package else "__init__"


def _bound_names(stmt: ast.stmt) -> list[str]:
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [stmt.name]
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        return [(alias.asname or alias.name).split(".")[0] for alias in stmt.names if alias.name != "*"]
    targets = []
    if isinstance(stmt, ast.Assign):
        targets = stmt.targets
    elif isinstance(stmt, (ast.AnnAssign, ast.AugAssign)):
        targets = [stmt.target]
    names = []
    for target in targets:
        names += [node.id for node in ast.walk(target) if isinstance(node, ast.Name)]
    return names


@cache
def package_source(package_dir) -> PackageSource:
    return PackageSource(package_dir)


def code_hash(package_dir, *entries: str, skip=()) -> str:
    """The hash of the package code that `entries` can run (see the module's docstring), not
    following the names in skip ("module:name")."""
    return package_source(str(package_dir)).code_hash(*entries, skip=skip)

"""prodcat.code_version: which modules a rule's command can run, and a hash that changes with their
code (not their comments, layout or docstrings); every rule that runs the package carries it."""

import re
from pathlib import Path

import pytest

from prodcat.code_version import PackageSource, code_hash

REPO = Path(__file__).resolve().parents[1]

TOY = {
    "__init__.py": '"""toy."""\nLEVELS = ("a", "b")\n',
    "cli.py": (
        "from . import LEVELS\n"
        "from .errors import InputError\n\n\n"
        "def _cmd_one(args):\n"
        "    from .one import run\n"
        "    return run(args)\n\n\n"
        "def _cmd_two(args):\n"
        "    from .two import run\n"
        "    return run(args)\n\n\n"
        "def main():\n"
        "    return {'one': _cmd_one, 'two': _cmd_two}\n"
    ),
    "errors.py": "class InputError(ValueError):\n    pass\n",
    "one.py": (
        "import json\n\n\n"
        "def run(args):\n"
        "    return helper(args)\n\n\n"
        "def helper(args):\n"
        "    from .shared import used\n"
        "    return used(json.loads(open('toy.schema.json').read()))\n\n\n"
        "def unrelated():\n"
        "    from .three import other\n"
        "    return other()\n"
    ),
    "two.py": "from . import shared\n\n\ndef run(args):\n    return shared.used(args)\n",
    "three.py": "def other():\n    return 3\n",
    "shared.py": "def used(x):\n    return x\n\n\ndef big():\n    from .three import other\n    return other()\n",
    "toy.schema.json": "{}\n",
    "unused.schema.json": "{}\n",
}


@pytest.fixture
def toy(tmp_path) -> Path:
    package = tmp_path / "toy"
    package.mkdir()
    for name, text in TOY.items():
        (package / name).write_text(text)
    return package


def test_closure_follows_the_names_a_command_uses(toy):
    source = PackageSource(toy)
    modules, files = source.closure(["cli:_cmd_one"])
    # helper's import of shared.used, not shared.big (which would reach three); not one.unrelated
    assert modules == {"cli", "__init__", "errors", "one", "shared"}
    assert files == {"toy.schema.json"}
    # `from . import shared`: the whole module, so shared.big's import of three too
    modules, files = source.closure(["cli:_cmd_two"])
    assert modules == {"cli", "__init__", "errors", "two", "shared", "three"} and files == set()


def test_skipped_names_are_not_followed(toy):
    source = PackageSource(toy)
    # main mentions both commands; skipping _cmd_two leaves what _cmd_one reaches
    assert source.closure(["cli:main"])[0] == {"cli", "__init__", "errors", "one", "two", "shared", "three"}
    assert source.closure(["cli:main"], skip=["cli:_cmd_two"])[0] == {"cli", "__init__", "errors", "one", "shared"}
    assert code_hash(toy, "cli:main", skip=["cli:_cmd_two"]) != code_hash(toy, "cli:main")
    (toy / "two.py").write_text(TOY["two.py"] + "\n\nCONSTANT = 2\n")
    assert PackageSource(toy).code_hash("cli:main", skip=["cli:_cmd_two"]) == code_hash(
        toy, "cli:main", skip=["cli:_cmd_two"]
    )
    with pytest.raises(KeyError, match="cannot skip 'cli:nope'"):
        source.closure(["cli:main"], skip=["cli:nope"])


def test_labeler_rules_hash_only_their_kinds_classes():
    """rules/common.smk's LABELER_CLASSES: the classes labeler_for gives each kind (with their
    bases in the package); a charngram rule's code leaves seq2seq out, a seq2seq rule's charngram."""
    import ast

    from prodcat.labelers.interface import LABELERS

    text = (REPO / "rules" / "common.smk").read_text()
    block = re.search(r"^LABELER_CLASSES = (\{.*?^\})", text, flags=re.M | re.S).group(1)
    classes = ast.literal_eval(block)
    assert set(classes) == set(LABELERS)
    for kind, cls in LABELERS.items():
        assert classes[kind] == [
            c.__name__ for c in cls.__mro__ if c.__module__ == "prodcat.labelers.interface" and c.__name__ != "Labeler"
        ], kind
    source = PackageSource(REPO / "src" / "prodcat")
    every = {c for names in classes.values() for c in names}
    for entry in ("workflow:train_labeler", "workflow:predict_labeler", "workflow:score_candidates"):
        reach = {
            kind: source.closure([entry], skip=[f"labelers.interface:{c}" for c in every - set(mine)])[0]
            for kind, mine in classes.items()
        }
        assert "labelers.charngram" in reach["charngram"] and "labelers.seq2seq" not in reach["charngram"], entry
        assert (
            "labelers.seq2seq" in reach["text"]
            and "labelers.charngram" not in reach["text"]
            and "labelers.charngram" not in reach["multimodal"]
        )


def test_hash_changes_with_code_only(toy):
    one, two = code_hash(toy, "cli:_cmd_one"), code_hash(toy, "cli:_cmd_two")
    assert re.fullmatch(r"[0-9a-f]{12}", one) and one != two

    def rehash(name, text):
        (toy / name).write_text(text)
        return PackageSource(toy).code_hash("cli:_cmd_one"), PackageSource(toy).code_hash("cli:_cmd_two")

    # a comment, blank lines and a docstring: the same code
    assert rehash("one.py", '"""Now documented."""\n# a comment\n\n' + TOY["one.py"]) == (one, two)
    # a module command one does not reach
    assert rehash("two.py", TOY["two.py"] + "\n\nCONSTANT = 2\n") == (one, PackageSource(toy).code_hash("cli:_cmd_two"))
    assert PackageSource(toy).code_hash("cli:_cmd_two") != two
    # code of a module it reaches, and the data file it names
    changed = rehash("shared.py", TOY["shared.py"].replace("return x", "return [x]"))
    assert changed[0] != one and changed[1] != two
    (toy / "shared.py").write_text(TOY["shared.py"])
    assert PackageSource(toy).code_hash("cli:_cmd_one") == one
    (toy / "toy.schema.json").write_text('{"type": "object"}\n')
    assert PackageSource(toy).code_hash("cli:_cmd_one") != one
    (toy / "unused.schema.json").write_text('{"type": "object"}\n')
    (toy / "toy.schema.json").write_text(TOY["toy.schema.json"])
    assert PackageSource(toy).code_hash("cli:_cmd_one") == one


def test_unknown_entries_are_named(toy):
    with pytest.raises(KeyError, match="toy|no top-level name 'nope'"):
        PackageSource(toy).closure(["cli:nope"])
    with pytest.raises(KeyError, match="missing"):
        PackageSource(toy).closure(["missing:run"])
    with pytest.raises(FileNotFoundError, match="not a package folder"):
        PackageSource(toy / "errors.py")


def test_the_package_imports_nothing_by_string():
    """The walk sees import statements only."""
    import ast

    for path in sorted((REPO / "src" / "prodcat").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                assert not any(alias.name.startswith("importlib") for alias in node.names), path.name
            elif isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("importlib"), path.name
            elif isinstance(node, ast.Name):
                assert node.id != "__import__", path.name


def rule_blocks():
    for path in [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]:
        for block in re.split(r"^(?=rule \w+:)", path.read_text(), flags=re.M):
            header = re.match(r"rule (\w+):", block)
            if header:
                yield header.group(1), block


def test_every_rule_that_runs_the_package_hashes_the_code_its_command_runs():
    """A script rule's script calls prodcat.workflow.NAME: its entry is workflow:NAME; a shell rule's
    `prodcat CMD` runs cli's (or stack_cli's) _cmd_CMD."""
    source = PackageSource(REPO / "src" / "prodcat")
    checked = 0
    for name, block in rule_blocks():
        script = re.search(r'^\s+script:\s*\n\s+"([^"]+)"', block, flags=re.M)
        command = re.search(r'"prodcat ([\w-]+)', block)
        if not script and not command:
            assert "package_code(" not in block, name
            continue
        entry = re.search(
            r'code=(?:lambda wildcards: )?package_code\("([^"]+)"(?:\)|, labeler=wildcards\.labeler\))', block
        )
        assert entry, f"rule {name} runs the package but has no code=package_code(...) param"
        if script:
            called = re.search(r"from prodcat\.workflow import (\w+)", (REPO / "rules" / script.group(1)).read_text())
            expected = {f"workflow:{called.group(1)}"}
        else:
            function = "_cmd_" + command.group(1).replace("-", "_")
            expected = {
                f"{module}:{function}" for module in ("cli", "stack_cli") if function in source.definitions(module)
            }
        assert entry.group(1) in expected, f"rule {name}: {entry.group(1)}, its command runs {expected}"
        checked += 1
    assert checked >= 25


NESTED = {
    "__init__.py": '"""toy."""\nLEVELS = ("a", "b")\n',
    "cli.py": "def _cmd_fit(args):\n    from .stage.fit import fit\n    return fit(args)\n\n\n"
    "def _cmd_other(args):\n    from prodcat.other import run\n    return run(args)\n",
    "other.py": "def run(args):\n    return args\n",
    "base/__init__.py": '"""the bottom layer."""\n',
    "base/errors.py": "class InputError(ValueError):\n    pass\n",
    "base/io.py": (
        "from .. import LEVELS\nfrom .errors import InputError\n\n\ndef read(path):\n    return LEVELS, path\n"
    ),
    "stage/__init__.py": '"""a stage."""\n',
    "stage/fit.py": "from ..base.io import read\n\n\ndef fit(args):\n    return read(open('stage.schema.json'))\n",
    "stage/unused.py": "def never():\n    return 0\n",
    "stage/stage.schema.json": "{}\n",
}


@pytest.fixture
def nested(tmp_path) -> Path:
    package = tmp_path / "prodcat"
    for name, text in NESTED.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    return package


def test_nested_packages_relative_imports_and_parent_inits(nested):
    """Subpackages: dotted module names, `from ..base.io import` resolved from the importing
    module's package, each parent package's __init__ reached (Python runs it first), data files in
    a subfolder found by name."""
    modules, files = PackageSource(nested).closure(["cli:_cmd_fit"])
    assert modules == {"cli", "__init__", "stage.__init__", "stage.fit", "base.__init__", "base.io", "base.errors"}
    assert files == {"stage.schema.json"}
    assert PackageSource(nested).closure(["cli:_cmd_other"])[0] == {"cli", "__init__", "other"}

    fit, other = code_hash(nested, "cli:_cmd_fit"), code_hash(nested, "cli:_cmd_other")

    def rehash(name, text):
        (nested / name).write_text(text)
        return PackageSource(nested).code_hash("cli:_cmd_fit"), PackageSource(nested).code_hash("cli:_cmd_other")

    # code in a parent package's __init__ reruns what is below it, a docstring edit does not
    assert rehash("base/__init__.py", '"""the bottom layer, documented."""\n') == (fit, other)
    assert rehash("base/__init__.py", '"""the bottom layer."""\nSEPARATOR = "|"\n') == (
        PackageSource(nested).code_hash("cli:_cmd_fit"),
        other,
    )
    assert PackageSource(nested).code_hash("cli:_cmd_fit") != fit
    (nested / "base/__init__.py").write_text(NESTED["base/__init__.py"])
    # a module of the same subpackage that nothing imports, and the root's code, which every module's import runs
    assert rehash("stage/unused.py", "def never():\n    return 1\n") == (fit, other)
    changed = rehash("__init__.py", NESTED["__init__.py"] + "SEPARATOR = '|'\n")
    assert changed[0] != fit and changed[1] != other
    (nested / "__init__.py").write_text(NESTED["__init__.py"])
    assert rehash("stage/stage.schema.json", '{"type": "object"}\n')[0] != fit


def test_a_folder_without_init_is_no_subpackage_and_data_names_are_unique(nested):
    (nested / "notes").mkdir()
    (nested / "notes" / "scratch.py").write_text("x = 1\n")
    assert "notes.scratch" not in PackageSource(nested).modules
    (nested / "base" / "stage.schema.json").write_text("{}\n")
    with pytest.raises(ValueError, match="two data files named stage.schema.json"):
        PackageSource(nested)

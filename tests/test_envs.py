"""The per-rule conda environments agree with the pinned, tested requirements.txt, and every rule
that runs something names one (so `snakemake --sdm conda` reproduces the tested set)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml

REPO = Path(__file__).resolve().parents[1]
ENV_FILES = sorted((REPO / "envs").glob("*.yaml"))
RULE_FILES = [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]
# Conda-level entries that are not Python packages from requirements.txt.
CONDA_ONLY = {"python", "pip"}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"requirements.txt: {line!r} is not pinned with =="
            pins[normalize(name)] = version.strip()
    return pins


def env_pins(path: Path) -> list[tuple[str, str]]:
    """(package, version) for every pinned pip and conda entry, the local package excepted."""
    pins = []
    for dep in yaml.safe_load(path.read_text())["dependencies"]:
        entries = dep["pip"] if isinstance(dep, dict) else [dep]
        for entry in entries:
            if entry.startswith("-e ") or entry.split("=")[0].strip() in CONDA_ONLY:
                continue
            match = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*==?\s*([^\s=]+)", entry)
            assert match, f"{path.name}: {entry!r} is not pinned to one version"
            pins.append((normalize(match.group(1)), match.group(2)))
    return pins


def rule_blocks():
    """(file, rule name, rule text) for every rule in the Snakefile and rules/*.smk."""
    for path in RULE_FILES:
        for block in re.split(r"^(?=(?:rule|checkpoint) \w+:)", path.read_text(), flags=re.M):
            header = re.match(r"(?:rule|checkpoint) (\w+):", block)
            if header:
                yield path, header.group(1), block


def test_env_files_exist():
    assert {path.name for path in ENV_FILES} >= {"cpu.yaml", "gpu.yaml"}


@pytest.mark.parametrize("env_file", ENV_FILES, ids=lambda path: path.name)
def test_env_pins_equal_requirements(env_file):
    required = requirement_pins()
    pins = env_pins(env_file)
    assert pins, f"{env_file.name} pins nothing"
    for name, version in pins:
        assert name in required, f"{env_file.name} pins {name}, which requirements.txt does not"
        assert version == required[name], f"{env_file.name}: {name}=={version}, requirements.txt: {required[name]}"


def test_every_rule_that_runs_something_has_a_conda_env():
    checked = 0
    for path, name, block in rule_blocks():
        if not re.search(r"^\s+(shell|script|run|notebook|wrapper):", block, flags=re.M):
            continue  # e.g. `all`: nothing runs
        conda = re.search(r"^\s+conda:\s*\n?\s*\"([^\"]+)\"", block, flags=re.M)
        assert conda, f"{path.name}: rule {name} has no conda: directive"
        assert (path.parent / conda.group(1)).resolve().is_file(), (
            f"{path.name}: rule {name} names a missing {conda.group(1)}"
        )
        checked += 1
    assert checked >= 10


def test_gpu_rules_use_an_env_with_torch():
    for path, name, block in rule_blocks():
        if re.search(r"^\s+gpu\s*=\s*[1-9]", block, flags=re.M):
            env = re.search(r"^\s+conda:\s*\n?\s*\"([^\"]+)\"", block, flags=re.M).group(1)
            names = {package for package, _ in env_pins((path.parent / env).resolve())}
            assert "torch" in names, f"rule {name} asks for a GPU but its env {env} has no torch"


def pip_section(path: Path) -> list[str]:
    return next(dep["pip"] for dep in yaml.safe_load(path.read_text())["dependencies"] if isinstance(dep, dict))


@pytest.mark.parametrize("env_file", ENV_FILES, ids=lambda path: path.name)
def test_env_installs_the_package_from_the_workflow_folder(env_file, tmp_path, monkeypatch):
    """Snakemake hands conda a copy of the env file (.snakemake/conda/HASH.yaml, or under
    --conda-prefix), and pip resolves a relative path against that copy's folder, so the package is
    named through the variable rules/common.smk sets to the workflow's folder."""
    editable = [entry for entry in pip_section(env_file) if entry.startswith("-e ")]
    assert editable == ["-e ${PRODCAT_WORKFLOW_ROOT}"], f"{env_file.name}: {editable}"
    # where conda runs pip: the copy's folder; the variable as Snakemake sets it for this workflow
    # (tests/test_module.py checks that value, with the workflow imported from another folder)
    copy_dir = tmp_path / ".snakemake" / "conda"
    copy_dir.mkdir(parents=True)
    monkeypatch.chdir(copy_dir)
    monkeypatch.setenv("PRODCAT_WORKFLOW_ROOT", str(REPO))
    project = Path(os.path.expandvars(editable[0].split(" ", 1)[1])).resolve()
    assert project == REPO
    assert tomllib.loads((project / "pyproject.toml").read_text())["project"]["name"] == "prodcat"


@pytest.mark.slow
@pytest.mark.parametrize("env_file", ENV_FILES, ids=lambda path: path.name)
def test_pip_section_resolves_where_conda_runs_it(env_file, tmp_path):
    """pip's own dry run of the env's pip section, from the folder of Snakemake's copy of the env
    file (conda writes the section there as a requirements file and runs pip in that folder)."""
    copy_dir = tmp_path / ".snakemake" / "conda"
    copy_dir.mkdir(parents=True)
    requirements = copy_dir / "condaenv.requirements.txt"
    requirements.write_text("\n".join(pip_section(env_file)) + "\n")
    env = dict(os.environ, PRODCAT_WORKFLOW_ROOT=str(REPO))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--no-deps",
            "-r",
            requirements.name,
        ],
        cwd=copy_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    would_install = next(line for line in proc.stdout.splitlines() if line.startswith("Would install"))
    assert "prodcat-" in would_install

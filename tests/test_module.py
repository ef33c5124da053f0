"""The workflow used from another one: a fresh folder with its own data and config imports it with
Snakemake's `module` directive (all rules, prefixed), plans the whole DAG, and runs a data target."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from tests.conftest import REPO
from tests.test_rebuilds import merged_test_config, parse_dry_run

HOST_SNAKEFILE = """import os


configfile: "config.yaml"


module prodcat:
    snakefile:
        "{snakefile}"
    config:
        config


use rule * from prodcat as prodcat_*


print("PRODCAT_WORKFLOW_ROOT=" + os.environ["PRODCAT_WORKFLOW_ROOT"])
"""


def host_snakemake(host: Path, *args):
    """Snakemake in the host folder, started by path with a bare PATH (no venv activated)."""
    env = {key: value for key, value in os.environ.items() if key not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = "/usr/bin:/bin"
    proc = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "snakemake"), "--cores", "1", *args],
        cwd=host,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-6000:]
    return proc.stdout + proc.stderr


def test_imported_as_a_module_from_another_folder(tmp_path):
    host = tmp_path / "host"
    shutil.copytree(REPO / ".test" / "data", host / "data")
    cfg = merged_test_config()
    cfg["data"] = {key: f"data/{Path(value).name}" if value else value for key, value in cfg["data"].items()}
    cfg["results"] = "out/prodcat"
    (host / "config.yaml").write_text(yaml.safe_dump(cfg))
    (host / "Snakefile").write_text(HOST_SNAKEFILE.format(snakefile=REPO / "Snakefile"))

    out = host_snakemake(host, "-n", "prodcat_all")

    # the env files install the package from the imported workflow's folder, not the host's
    assert f"PRODCAT_WORKFLOW_ROOT={REPO}\n" in out
    jobs = parse_dry_run(out)
    direct = parse_dry_run(
        subprocess.run(
            [
                sys.executable,
                "-m",
                "snakemake",
                "-n",
                "--configfile",
                ".test/config.yaml",
                "--config",
                f"results={tmp_path / 'direct'}",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
        ).stdout
    )
    assert direct, "the direct dry run planned nothing"
    # every job of the workflow run directly, under its prefixed name
    assert {(job.rule, job.wildcards) for job in jobs} == {(f"prodcat_{job.rule}", job.wildcards) for job in direct}

    host_snakemake(host, "out/prodcat/data/hierarchy.json")
    assert (host / "out" / "prodcat" / "data" / "hierarchy.json").stat().st_size > 0
    assert not (REPO / "out").exists()

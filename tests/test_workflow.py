"""The workflow as a user drives it: lint, dry run, and the whole DAG on .test/ to completion."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from prodcat.report import METRICS_COLUMNS, EFFICIENCY_COLUMNS

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def run_snakemake(*args, check=True, timeout=1800):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run([*SNAKEMAKE, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def test_lint_is_clean():
    proc = run_snakemake("--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Lints for" not in proc.stdout + proc.stderr


def test_dry_run_of_default_config_plans_every_stage():
    proc = run_snakemake("-n", "--config", "results=/tmp/prodcat-dryrun-results", "--quiet", "rules")
    out = proc.stdout + proc.stderr
    for rule in ("ingest", "split", "hierarchy", "build_tiny_model", "synthesize_names", "train_namer",
                 "infer_names", "train_labeler", "predict_labeler", "correct", "level_accuracy", "vote",
                 "evaluate", "report_tables", "submission", "name_quality"):
        assert rule in out, f"{rule} missing from the dry run:\n{out}"


def test_config_schema_rejects_unknown_keys_and_wrong_types(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("split: {fraction: 0.1, seed: 42, sneaky: 1}\n")
    proc = run_snakemake("-n", "--configfile", str(bad), check=False)
    assert proc.returncode != 0 and "sneaky" in proc.stdout + proc.stderr
    bad.write_text("split: {fraction: high, seed: 42}\n")
    proc = run_snakemake("-n", "--configfile", str(bad), check=False)
    assert proc.returncode != 0 and "fraction" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_whole_dag_runs_on_test_data(tmp_path):
    results = tmp_path / "results"
    run_snakemake("--cores", "2", "--resources", "gpu=1", "--configfile", ".test/config.yaml",
                  "--config", f"results={results}")
    metrics = pd.read_csv(results / "report" / "metrics.csv")
    assert list(metrics.columns) == METRICS_COLUMNS
    assert set(metrics["split"]) == {"val", "test"}
    assert set(metrics["stage"]) == {"raw", "corrected", "joint", "baseline"}
    assert set(metrics["model"]) == {"majority", "byt5", "flant5", "mmbyt5", "ensemble"}
    assert set(metrics.loc[metrics["model"] == "ensemble", "stage"]) == {"corrected", "joint"}
    assert metrics["item_accuracy"].between(0, 1).all()
    assert (metrics["n"] > 0).all()
    efficiency = pd.read_csv(results / "report" / "efficiency.csv")
    assert list(efficiency.columns) == EFFICIENCY_COLUMNS and (efficiency["parameters"] > 0).all()
    test_rows = sum(1 for _ in open(REPO / ".test" / "data" / "test.features"))
    assert sum(1 for _ in open(results / "submission" / "ensemble.predict")) == test_rows
    # logs hold the device line and the Trainer's progress
    log = (results / "logs" / "train_labeler" / "byt5.log").read_text()
    assert "device: cpu" in log and "eval_loss" in log
    names = pd.read_csv(results / "report" / "names.csv")
    assert set(names["names"]) == {"teacher", "student"} and names["chrf"].between(0, 100).all()
    # a second run finds nothing to do
    proc = run_snakemake("-n", "--cores", "2", "--configfile", ".test/config.yaml", "--config", f"results={results}")
    assert "Nothing to be done" in proc.stdout + proc.stderr

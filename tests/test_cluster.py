"""The .test workflow through a real one-node Slurm cluster (tests/slurm/start_cluster.sh), driven
by profiles/slurm as a user would: every job that is not a localrule is an sbatch submission, the
data preparation one group job, and naming runs as 3 shards per split.

Checked from what Slurm recorded (`scontrol show job`, kept for an hour by the test cluster's
MinJobAge): every job completed; jobs of GPU rules asked for one GPU (TresPerJob gres:gpu:1, from
the plugin's `--gpus=1`) and the others asked for none; with the node's one GPU, Slurm alone
(no Snakemake resource cap) ran the GPU jobs one after the other. The sbatch calls themselves
(Snakemake's --verbose log) show the flags, the partition taken from PRODCAT_SLURM_PARTITION and
the memory and wall time taken from the config's `resources`. The names gathered from the shards
equal those one unsharded generation writes here, with the models the cluster run trained.

    sudo python -m pytest tests/test_cluster.py      (skips unless root with apt-get or Slurm)
"""

import os
import re
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml
from tests.test_rebuilds import merged_test_config

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "tests" / "slurm"
pytestmark = [pytest.mark.slurm, pytest.mark.slow]

# start_cluster.sh exit codes that mean "this machine cannot host the test cluster".
CANNOT_INSTALL, ANOTHER_CLUSTER = 3, 4
SHARDS = 3
# test-only job sizes: memory that any test machine has, and distinctive values to find in sbatch
JOB_MEM_MB, JOB_RUNTIME = 1900, 17


def gpu_rules() -> set[str]:
    """Rules whose resources ask for a GPU, read from rules/*.smk (the training rules ask for
    training_gpus(RULE): config resources.RULE.gpus, 1 in the .test config)."""
    names = set()
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for block in re.split(r"^(?=rule |checkpoint )", smk.read_text(), flags=re.M):
            header = re.match(r"(?:rule|checkpoint) (\w+):", block)
            if header and re.search(r"^\s+gpu\s*=\s*([1-9]|training_gpus\()", block, flags=re.M):
                names.add(header.group(1))
    return names


def rule_of(comment: str) -> str | None:
    """The rule name in the plugin's job comment: rule_NAME or rule_NAME_wildcards_VALUES."""
    match = re.fullmatch(r"rule_(\w+?)(?:_wildcards_\S*)?", comment)
    return match.group(1) if match else None


def slurm_jobs(env) -> list[dict]:
    """Every job the cluster remembers, as scontrol's key=value fields."""
    out = subprocess.run(
        ["scontrol", "show", "job", "--oneliner"], env=env, capture_output=True, text=True, check=True
    ).stdout
    return [
        dict(field.split("=", 1) for field in line.split() if "=" in field)
        for line in out.splitlines()
        if line.startswith("JobId=")
    ]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("starting slurmctld/slurmd needs root")
    if not shutil.which("apt-get") and not shutil.which("slurmctld"):
        pytest.skip("Slurm is not installed and apt-get is unavailable to install it")
    state = tmp_path_factory.mktemp("slurm")
    proc = subprocess.run(
        ["bash", str(SCRIPTS / "start_cluster.sh"), str(state)], capture_output=True, text=True, timeout=900
    )
    try:
        if proc.returncode in (CANNOT_INSTALL, ANOTHER_CLUSTER):
            pytest.skip(proc.stderr.strip().splitlines()[-1])
        assert proc.returncode == 0, f"start_cluster.sh failed:\n{proc.stdout}\n{proc.stderr}"
        yield dict(os.environ, SLURM_CONF=str(state / "slurm.conf"))
    finally:
        subprocess.run(["bash", str(SCRIPTS / "stop_cluster.sh"), str(state)], timeout=120)


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("slurm-run")
    env = dict(
        cluster, PRODCAT_SLURM_PARTITION="extra", PATH=f"{Path(sys.executable).parent}{os.pathsep}{cluster['PATH']}"
    )
    overlay = root / "cluster.yaml"
    sized = {rule: {"mem_mb": JOB_MEM_MB, "runtime": JOB_RUNTIME} for rule in merged_test_config()["resources"]}
    overlay.write_text(
        yaml.safe_dump({"results": str(root / "results"), "namer": {"shards": SHARDS}, "resources": sized})
    )
    started = datetime.now()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--workflow-profile",
            "profiles/slurm",
            "--configfile",
            ".test/config.yaml",
            str(overlay),
            # test-only: tiny jobs, so check soon; keep Slurm logs
            "--slurm-init-seconds-before-status-checks",
            "2",
            "--slurm-logdir",
            str(root / "slurm-logs"),
            "--slurm-keep-successful-logs",
            "--verbose",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    elapsed = (datetime.now() - started).total_seconds()
    assert proc.returncode == 0, proc.stderr[-8000:]
    print(f"the .test DAG through Slurm took {elapsed:.0f} s")
    return {"results": root / "results", "log": proc.stderr, "jobs": slurm_jobs(env)}


def test_every_job_ran_on_slurm_and_completed(slurm_run):
    results = slurm_run["results"]
    for output in ("report/metrics.csv", "report/efficiency.csv", "submission/ensemble.predict"):
        assert (results / output).stat().st_size > 0, output
    calls = re.findall(r"^sbatch call: (.*)$", slurm_run["log"], flags=re.M)
    jobs = slurm_run["jobs"]  # the cluster is this module's own: every job is this run's
    assert calls and len(jobs) == len(calls)
    assert all(rule_of(job.get("Comment", "")) for job in jobs)
    assert {job["JobState"] for job in jobs} == {"COMPLETED"}
    # The partition came from PRODCAT_SLURM_PARTITION through the profile's default-resources
    # (the test cluster's default partition is `main`).
    assert all(" -p extra " in call for call in calls)
    assert {job["Partition"] for job in jobs} == {"extra"}


def test_gpu_jobs_asked_for_a_gpu_and_others_did_not(slurm_run):
    gpu = gpu_rules()
    assert {"train_labeler", "predict_labeler"} <= gpu
    for call in re.findall(r"^sbatch call: (.*)$", slurm_run["log"], flags=re.M):
        rule = rule_of(re.search(r"--comment (\S+)", call).group(1))
        if rule in gpu:
            assert "--gpus=1" in call, call
        else:
            assert "--gpus" not in call and "--gres" not in call, call
    for job in slurm_run["jobs"]:
        assert ("gres:gpu:1" in job.get("TresPerJob", "")) == (rule_of(job["Comment"]) in gpu), job
    ran = {rule_of(job["Comment"]) for job in slurm_run["jobs"]}
    in_dag = gpu - {"predict_new"}  # labels files outside the DAG, on request only
    assert in_dag <= ran, f"GPU rules that never reached Slurm: {in_dag - ran}"


def test_slurm_ran_gpu_jobs_one_at_a_time(slurm_run):
    gpu = gpu_rules()
    spans = sorted(
        (datetime.fromisoformat(job["StartTime"]), datetime.fromisoformat(job["EndTime"]), job["Comment"])
        for job in slurm_run["jobs"]
        if rule_of(job["Comment"]) in gpu
    )
    assert len(spans) >= 2
    for (_, end, first), (start, _, second) in zip(spans, spans[1:]):
        assert start >= end, f"{first} and {second} held the one GPU at the same time"


def test_config_sizes_jobs_and_tiny_jobs_are_local_or_grouped(slurm_run):
    calls = re.findall(r"^sbatch call: (.*)$", slurm_run["log"], flags=re.M)
    by_rule = {}
    for call in calls:
        by_rule.setdefault(rule_of(re.search(r"--comment (\S+)", call).group(1)), []).append(call)
    # the rules that the config sizes ask Slurm for what it says (test values: 1900 MB, 17 min)
    for rule in merged_test_config()["resources"]:
        for call in by_rule.get(rule, []):
            assert f"--mem {JOB_MEM_MB}" in call and f"-t {JOB_RUNTIME}" in call, call
    # ingest x2, split, hierarchy: one group job (its comment: rule_GROUP_RULES); the seconds-long
    # tail never reaches Slurm
    assert [name for name in by_rule if name.startswith("prepare_")] == ["prepare_hierarchy_ingest_split"]
    assert len(by_rule.pop("prepare_hierarchy_ingest_split")) == 1
    assert not set(by_rule) & {
        "ingest",
        "split",
        "hierarchy",
        "correct",
        "vote",
        "evaluate",
        "gather_names",
        "report_tables",
        "plots",
        "name_quality",
        "build_tiny_model",
        "submission",
    }
    assert len(by_rule["synthesize_names"]) == 2 * SHARDS and len(by_rule["infer_names"]) == 2 * SHARDS
    print(f"{len(calls)} sbatch calls: " + ", ".join(f"{rule} {len(c)}" for rule, c in sorted(by_rule.items())))


def test_sharded_names_equal_an_unsharded_local_run(slurm_run):
    """Every split's names, gathered from 3 Slurm shards, equal one unsharded generation here with
    the same model (the stand-in the run built, the namer it trained) and the same settings."""
    import torch

    from prodcat.data.io import read_rows
    from prodcat.names import generation

    results, cfg = slurm_run["results"], merged_test_config()
    templates = cfg["namer"]["templates"]
    torch.set_num_threads(cfg["threads"]["predict"])  # as the rule's job did
    for split in ("train", "val"):
        rows = read_rows(results / "data" / f"{split}.parquet", labelled=True)
        local = generation.generate_teacher_names(
            results / "models" / "base" / "llama", rows, templates, cfg["namer"]["teacher"]
        )
        # (values compared exactly; a Parquet round trip turns object columns into strings)
        pd.testing.assert_frame_equal(
            pd.read_parquet(results / "names" / "teacher" / f"{split}.parquet"), local, check_dtype=False
        )
    for split in ("val", "test"):
        rows = read_rows(results / "data" / f"{split}.parquet")
        local = generation.generate_student_names(
            results / "models" / "namer" / "merged", rows, templates, cfg["namer"]["student"]
        )
        gathered = pd.read_parquet(results / "names" / "student" / f"{split}.parquet")
        pd.testing.assert_frame_equal(gathered, local, check_dtype=False)
        assert gathered["name"].nunique() > len(gathered) // 2  # one name per row, not one for all
        summary = yaml.safe_load((results / "names" / "student" / f"{split}.summary.json").read_text())
        assert summary["shards"] == SHARDS and summary["rows"] == len(rows)

"""Partial rebuilds: after a change, exactly the jobs that depend on it would rerun.

One finished run of the .test workflow (on a private copy of its input data) is shared by every
case; each case changes one thing, asks Snakemake for a dry run, compares the planned jobs with
the jobs its case names, and undoes the change.

Touching an input without changing its bytes reruns nothing: Snakemake 9 keeps the checksum of
every input file up to --max-checksum-file-size (profiles/default raises it to 200 MB) and skips a
job whose newer input has the recorded checksum. A real edit still reruns (the mtime trigger).
"""

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Job:
    rule: str
    wildcards: frozenset = frozenset()

    def __str__(self):
        return f"{self.rule}[{', '.join(f'{k}={v}' for k, v in sorted(self.wildcards))}]"


@dataclass(frozen=True)
class Pattern:
    """Matches the jobs of `rule` whose wildcards include `wildcards` (all of them, if empty)."""

    rule: str
    wildcards: dict = field(default_factory=dict)

    def matches(self, job: Job) -> bool:
        return job.rule == self.rule and set(self.wildcards.items()) <= job.wildcards


def snakemake(*args, check=True):
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", *args], cwd=REPO, capture_output=True, text=True, timeout=3600
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-6000:]}")
    return proc


def parse_dry_run(text: str) -> set[Job]:
    """The jobs a dry run lists: a `rule NAME:` line, then indented details up to a blank line."""
    jobs, rule, wildcards = set(), None, {}
    for line in text.splitlines() + [""]:
        header = re.fullmatch(r"(?:local)?rule (\w+):", line)
        if header:
            rule, wildcards = header.group(1), {}
        elif rule and line.strip().startswith("wildcards:"):
            wildcards = dict(item.split("=", 1) for item in line.split(":", 1)[1].strip().split(", "))
        elif rule and not line.startswith(" "):
            jobs.add(Job(rule, frozenset(wildcards.items())))
            rule = None
    return jobs


def deep_merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = (
            deep_merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
        )
    return merged


def merged_test_config() -> dict:
    """config.yaml with .test/config.yaml merged over it, as the workflow sees it."""
    return deep_merge(
        yaml.safe_load((REPO / "config.yaml").read_text()), yaml.safe_load((REPO / ".test" / "config.yaml").read_text())
    )


class FinishedRun:
    def __init__(self, root: Path):
        self.root = root
        self.data = root / "data"
        self.results = root / "results"
        self.configfile = root / "run.yaml"

    def dry_run(self, *extra_configfiles: Path, forceall=False, snakefile: Path | None = None) -> set[Job]:
        args = ["-n", "--configfile", ".test/config.yaml", str(self.configfile), *map(str, extra_configfiles)]
        args += ["--snakefile", str(snakefile)] if snakefile else []
        proc = snakemake(*args, *(["--forceall"] if forceall else []))
        return parse_dry_run(proc.stdout + proc.stderr)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("rebuilds")
    run = FinishedRun(root)
    shutil.copytree(REPO / ".test" / "data", run.data)
    cfg = merged_test_config()
    data = {key: str(run.data / Path(value).name) if value else value for key, value in cfg["data"].items()}
    run.configfile.write_text(yaml.safe_dump({"data": data, "results": str(run.results)}))
    started = time.perf_counter()
    snakemake("--cores", "2", "--resources", "gpu=1", "--configfile", ".test/config.yaml", str(run.configfile))
    print(f"the .test DAG locally (--cores 2) took {time.perf_counter() - started:.0f} s")
    assert run.dry_run() == set(), "a finished run should plan nothing"
    run.all_jobs = run.dry_run(forceall=True)
    return run


# --- what a change should rerun ------------------------------------------------------------------


def downstream_of_labelers(cfg: dict, labelers) -> list[Pattern]:
    """Evaluation, votes, report and submissions that read these labelers' predictions."""
    patterns = [Pattern("evaluate"), Pattern("report_tables"), Pattern("plots"), Pattern("all")]
    patterns += [Pattern("submission", {"model": name}) for name in labelers]
    # each labeler's calibrated confidence, and the confidence report that shows every model
    patterns += [Pattern("calibrate", {"model": name}) for name in labelers] + [Pattern("confidence_report")]
    voting = [e for e, members in cfg["ensemble"]["members"].items() if set(labelers) & set(members)]
    if voting:
        # per-level validation accuracy breaks vote ties; the manifest records the submitted one
        patterns += [Pattern("level_accuracy"), Pattern("manifest")]
    for ensemble in voting:
        patterns += [Pattern("vote", {"ensemble": ensemble}), Pattern("submission", {"model": ensemble})]
        patterns += [Pattern("calibrate", {"model": ensemble})]  # the vote's calibrated agreement
    if voting:
        # the submission is chosen on validation accuracy (ensemble.submit: auto), its review queue
        patterns += [Pattern("choose_submission"), Pattern("review_queue")]
    if voting:
        # the stack: every member scores the union of all members' paths, so a member's new paths
        # reach every member's candidate scores and every stacked ensemble
        patterns += [
            Pattern("score_candidates"),
            Pattern("score_candidates_charngram"),
            Pattern("fit_stack"),
            Pattern("apply_stack"),
        ]
        patterns += [Pattern("submission", {"model": f"{e}_stack"}) for e in cfg["ensemble"]["members"]]
    return patterns


def labeler_chain(cfg: dict, labeler: str, retrain: bool = True) -> list[Pattern]:
    patterns = [Pattern("train_labeler", {"labeler": labeler})] if retrain else []
    patterns += [Pattern("predict_labeler", {"labeler": labeler}), Pattern("correct", {"labeler": labeler})]
    return patterns + downstream_of_labelers(cfg, [labeler])


def namer_chain(cfg: dict) -> list[Pattern]:
    """A new namer gives new student names: every name-reading labeler predicts again; those
    trained on student names also retrain."""
    readers = [name for name, lab in cfg["labelers"].items() if lab.get("source") == "name"]
    patterns = [
        Pattern("train_namer"),
        Pattern("infer_names"),
        Pattern("gather_names", {"which": "student"}),
        Pattern("name_quality"),
    ]
    for name in readers:
        patterns += labeler_chain(cfg, name, retrain=cfg["labelers"][name].get("train_names") == "student")
    return patterns


# Each case: (override merged over the run's config, required labelers, a namer needed?, expected reruns)
HYPERPARAMETER_CASES = {
    "byt5_learning_rate": (
        {"labelers": {"byt5": {"train": {"learning_rate": 1.0e-3}}}},
        ["byt5"],
        False,
        lambda cfg: labeler_chain(cfg, "byt5"),
    ),
    "flant5_num_train_epochs": (
        {"labelers": {"flant5": {"train": {"num_train_epochs": 3}}}},
        ["flant5"],
        False,
        lambda cfg: labeler_chain(cfg, "flant5"),
    ),
    "namer_lora_rank": ({"namer": {"train": {"r": 8}}}, [], True, namer_chain),
    # Table 3's length only: the report again (plots read its metrics.csv), no training
    "profile_top_operators": (
        {"profile": {"top_operators": 5}},
        [],
        False,
        lambda cfg: [Pattern("report_tables"), Pattern("plots"), Pattern("all")],
    ),
}
# Never rerun by a hyper-parameter of a model: the data stages and the stand-in base models.
UPSTREAM_RULES = ("ingest", "split", "test_rows", "hierarchy", "build_tiny_model")


@pytest.mark.parametrize("case", list(HYPERPARAMETER_CASES))
def test_hyperparameter_change_reruns_exactly_its_model_and_downstream(finished_run, tmp_path, case):
    override, labelers, needs_namer, expected_patterns = HYPERPARAMETER_CASES[case]
    cfg = merged_test_config()
    missing = [name for name in labelers if name not in cfg["labelers"]]
    if missing:
        pytest.skip(f"the .test config has no labeler {', '.join(missing)}")
    if needs_namer and not any(lab.get("source") == "name" for lab in cfg["labelers"].values()):
        pytest.skip("no labeler in the .test config reads namer output")
    override_file = tmp_path / "override.yaml"
    override_file.write_text(yaml.safe_dump(override))

    planned = finished_run.dry_run(override_file)

    patterns = expected_patterns(deep_merge(cfg, override))
    for pattern in patterns:
        assert any(pattern.matches(job) for job in finished_run.all_jobs), f"{pattern} matches no job of the DAG"
    expected = {job for job in finished_run.all_jobs if any(p.matches(job) for p in patterns)}
    assert planned == expected, (
        f"unexpected reruns: {sorted(map(str, planned - expected))}; "
        f"missing reruns: {sorted(map(str, expected - planned))}"
    )
    assert not {job.rule for job in planned} & set(UPSTREAM_RULES)
    print(f"{case}: {len(planned)} of {len(finished_run.all_jobs)} jobs rerun")


def test_touching_inputs_without_changing_them_reruns_nothing(finished_run):
    inputs = sorted(finished_run.data.iterdir()) + sorted((finished_run.results / "data").glob("*.parquet"))
    saved = {path: path.stat() for path in inputs}
    try:
        later = max(s.st_mtime for s in saved.values()) + 60
        for path in inputs:
            os.utime(path, (later, later))
        assert finished_run.dry_run() == set()
    finally:
        for path, st in saved.items():
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_editing_an_input_reruns_its_branch_only(finished_run):
    features = finished_run.data / "test.features"
    original, st = features.read_bytes(), features.stat()
    try:
        # The same records with other spacing: new bytes (so a new checksum), same table.
        lines = original.decode().splitlines()
        features.write_text("".join(line.replace('{"', '{ "', 1) + "\n" for line in lines))
        assert features.read_bytes() != original
        planned = finished_run.dry_run()
    finally:
        features.write_bytes(original)
        os.utime(features, ns=(st.st_atime_ns, st.st_mtime_ns))
    rules = {job.rule for job in planned}
    assert Job("ingest", frozenset({("dataset", "test")})) in planned and "test_rows" in rules
    assert {"predict_labeler", "evaluate", "submission"} <= rules
    assert Job("ingest", frozenset({("dataset", "train")})) not in planned
    assert not rules & {"split", "hierarchy", "build_tiny_model", "train_labeler", "train_namer"}
    assert all(dict(job.wildcards).get("split") != "val" for job in planned)
    print(f"edited test.features: {len(planned)} of {len(finished_run.all_jobs)} jobs rerun")


# --- what a code change should rerun ------------------------------------------------------------


def workflow_copy(root: Path) -> Path:
    """The workflow's files and the package's source, copied with their times: run from the
    repository (same working directory, so the same .snakemake records and results), the copy's
    Snakefile hashes the copy's src/prodcat (rules/common.smk, package_code)."""
    copy = root / "workflow"
    for name in ("Snakefile", "config.yaml"):
        copy.mkdir(exist_ok=True)
        shutil.copy2(REPO / name, copy / name)
    for name in ("rules", "scripts", "envs", "schemas", "report", "profiles"):
        shutil.copytree(REPO / name, copy / name)
    shutil.copytree(REPO / "src" / "prodcat", copy / "src" / "prodcat", ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def charngram_chain(cfg: dict) -> list[Pattern]:
    """prodcat/labelers/charngram.py: a labeler rule hashes only its kind's code (rules/common.smk,
    package_code(labeler=...)), so the charngram labelers' training, prediction, correction, ranked
    alternatives and candidate scores rerun, and what reads them: every member's candidate scores
    (charngram's paths are candidates), every vote (its validation accuracy breaks the ties), the
    stacks. Not the seq2seq labelers' training or prediction, the data stages or the namer."""
    ngram = [name for name, lab in cfg["labelers"].items() if lab["kind"] == "charngram"]
    patterns = [
        Pattern("train_charngram"),
        Pattern("predict_charngram"),
        Pattern("list_alternatives"),
        Pattern("score_candidates_charngram"),
        Pattern("vote"),
    ]
    patterns += [Pattern("correct", {"labeler": name}) for name in ngram]
    patterns += [Pattern("submission", {"model": name}) for name in cfg["ensemble"]["members"]]
    patterns += [Pattern("calibrate", {"model": name}) for name in cfg["ensemble"]["members"]]  # every vote's
    return patterns + downstream_of_labelers(cfg, ngram)


# Each case: (module, expected reruns); the edit adds a function to the module.
def seq2seq_chain(cfg: dict) -> list[Pattern]:
    """prodcat/labelers/seq2seq.py: every seq2seq labeler's chain (training to the report); charngram's
    training, prediction and ranked alternatives stay (its candidate scores rerun: the candidates
    change)."""
    return [p for name, lab in cfg["labelers"].items() if lab["kind"] != "charngram" for p in labeler_chain(cfg, name)]


CODE_CASES = {
    "charngram": ("labelers/charngram.py", charngram_chain),
    "seq2seq": ("labelers/seq2seq.py", seq2seq_chain),
    # prodcat submission only: the submission files and the target that lists them
    "submission": ("data/submission.py", lambda cfg: [Pattern("submission"), Pattern("all")]),
}


@pytest.fixture(scope="module")
def copied_workflow(finished_run, tmp_path_factory):
    copy = workflow_copy(tmp_path_factory.mktemp("code"))
    assert finished_run.dry_run(snakefile=copy / "Snakefile") == set(), "the unchanged copy should plan nothing"
    return copy


def test_a_comment_or_docstring_edit_reruns_nothing(finished_run, copied_workflow):
    module = copied_workflow / "src" / "prodcat" / "labelers" / "charngram.py"
    original = module.read_text()
    try:
        module.write_text(
            original.replace('"""A fast character', '"""A documented, fast character', 1) + "\n# a trailing comment\n"
        )
        assert finished_run.dry_run(snakefile=copied_workflow / "Snakefile") == set()
    finally:
        module.write_text(original)


@pytest.mark.parametrize("case", list(CODE_CASES))
def test_code_change_reruns_exactly_the_rules_that_run_it_and_downstream(finished_run, copied_workflow, case):
    name, expected_patterns = CODE_CASES[case]
    module = copied_workflow / "src" / "prodcat" / name
    original = module.read_text()
    try:
        module.write_text(original + "\n\ndef _added_by_the_rebuild_test():\n    return None\n")
        planned = finished_run.dry_run(snakefile=copied_workflow / "Snakefile")
    finally:
        module.write_text(original)
    patterns = expected_patterns(merged_test_config())
    for pattern in patterns:
        assert any(pattern.matches(job) for job in finished_run.all_jobs), f"{pattern} matches no job of the DAG"
    expected = {job for job in finished_run.all_jobs if any(p.matches(job) for p in patterns)}
    assert planned == expected, (
        f"unexpected reruns: {sorted(map(str, planned - expected))}; "
        f"missing reruns: {sorted(map(str, expected - planned))}"
    )
    print(f"{name} edited: {len(planned)} of {len(finished_run.all_jobs)} jobs rerun")

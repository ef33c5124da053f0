"""The workflow as a user drives it: lint, dry run, the whole DAG on .test/ to completion, a
rerun that finds nothing to do, the HTML report, and labelling a new file with the trained models."""

import json

import pandas as pd
import pytest
from tests.conftest import REPO, run_snakemake

from prodcat import LEVELS
from prodcat.cli import main
from prodcat.ensemble.calibration import ece_of_a_calibrated_model, unseen_path_share
from prodcat.report.tables import EFFICIENCY_COLUMNS, METRICS_COLUMNS, NO_CUDA, OPERATOR_COLUMNS


def test_lint_is_clean():
    proc = run_snakemake("--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Lints for" not in proc.stdout + proc.stderr


def test_dry_run_of_default_config_plans_every_stage():
    proc = run_snakemake("-n", "--config", "results=/tmp/prodcat-dryrun-results", "--quiet", "rules")
    out = proc.stdout + proc.stderr
    for rule in (
        "ingest",
        "split",
        "hierarchy",
        "build_tiny_model",
        "synthesize_names",
        "gather_names",
        "train_namer",
        "infer_names",
        "train_labeler",
        "predict_labeler",
        "correct",
        "level_accuracy",
        "vote",
        "fit_stack",
        "apply_stack",
        "evaluate",
        "report_tables",
        "plots",
        "submission",
        "name_quality",
        "manifest",
        "calibrate",
        "choose_submission",
        "confidence_report",
        "review_queue",
    ):
        assert rule in out, f"{rule} missing from the dry run:\n{out}"


def test_runs_from_the_venv_snakemake_without_the_venv_on_path(tmp_path):
    """`.venv/bin/snakemake` with neither an activated venv nor its bin on PATH: the shell rules
    call the package through Snakemake's own interpreter (rules/common.smk, PRODCAT)."""
    import os
    import subprocess
    import sys

    env = {key: value for key, value in os.environ.items() if key not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = "/usr/bin:/bin"
    assert subprocess.run(["sh", "-c", "command -v prodcat"], env=env).returncode != 0, "prodcat is on the bare PATH"
    results = tmp_path / "results"
    target = results / "data" / "hierarchy.json"
    snakemake = os.path.join(os.path.dirname(sys.executable), "snakemake")  # .venv/bin/snakemake under make test
    proc = subprocess.run(
        [snakemake, "--cores", "1", "--config", f"results={results}", "--", str(target)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert json.loads(target.read_text())["paths"]
    assert "command not found" not in (results / "logs" / "ingest" / "train.log").read_text()


# (override merged over config.yaml, what the error must say): the schema's own checks, then each
# check of rules/common.smk's _check_config, which the schema cannot express
BAD_CONFIGS = {
    "unknown_key": ("split: {fraction: 0.1, seed: 42, sneaky: 1}", "'sneaky' was unexpected"),
    "wrong_type": ("split: {fraction: high, seed: 42}", "'high' is not of type 'number'"),
    "member_not_a_labeler": (
        "ensemble: {members: {ensemble: [byt5, nope]}}",
        "config: ensemble.members.ensemble names 'nope', which is not under labelers",
    ),
    "ensemble_named_like_a_labeler": (
        "ensemble: {members: {byt5: [byt5, flant5]}, submit: byt5}",
        "config: ensemble name 'byt5' is also a labeler name",
    ),
    "labeler_named_like_a_stack": (
        "labelers: {ensemble_stack: {kind: charngram}}",
        "config: ensemble_stack names the stacked 'ensemble'",
    ),
    "submit_not_an_ensemble": (
        "ensemble: {submit: nope}",
        "config: ensemble.submit is 'nope', not one of ensemble.members",
    ),
    "namer_base_unknown": ("namer: {base: nope}", "config: namer.base is 'nope', but tiny has no such key"),
    "labeler_base_unknown": (
        "labelers: {byt5: {base: nope}}",
        "config: labelers.byt5.base is 'nope', but tiny has no such key",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_fails_for_its_own_reason(tmp_path, case):
    override, message = BAD_CONFIGS[case]
    bad = tmp_path / "bad.yaml"
    bad.write_text(override + "\n")
    proc = run_snakemake("-n", "--configfile", str(bad), "--config", f"results={tmp_path / 'results'}", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert message in out, out[-3000:]
    if case.startswith(("unknown", "wrong")):
        assert "Failed validating" in out
    else:  # past the schema: _check_config's own error
        assert "Failed validating" not in out, out[-3000:]
    assert not (tmp_path / "results").exists()


def ablation_labeler(configfile: str, base: str, added: str) -> tuple[dict, dict]:
    """(config.yaml's labeler `base`, the ablation's one labeler, which must be named `added`)."""
    import yaml

    original = yaml.safe_load((REPO / "config.yaml").read_text())["labelers"][base]
    ablation = yaml.safe_load((REPO / configfile).read_text())["labelers"]
    assert list(ablation) == [added]
    return original, ablation[added]


def dry_run_plans_both(configfile: str, base: str, added: str) -> None:
    proc = run_snakemake("-n", "--configfile", configfile, "--config", f"results=/tmp/prodcat-dryrun-{added}")
    out = proc.stdout + proc.stderr
    assert f"wildcards: labeler={added}" in out and f"wildcards: labeler={base}" in out


def test_names_ablation_adds_flant5_on_descriptions_with_the_same_budget():
    flant5, on_descriptions = ablation_labeler("configs/ablation_names.yaml", "flant5", "flant5_desc")
    assert (flant5["source"], on_descriptions["source"]) == ("name", "description")
    # the same model, budget and decoding: only what it reads differs
    for key in ("kind", "base", "train", "predict"):
        assert on_descriptions[key] == flant5[key], key
    dry_run_plans_both("configs/ablation_names.yaml", "flant5", "flant5_desc")


def test_fusion_ablation_differs_from_mmbyt5_in_fusion_only():
    mmbyt5, prepend = ablation_labeler("configs/ablation_fusion.yaml", "mmbyt5", "mmbyt5_prepend")
    assert (mmbyt5["fusion"], prepend["fusion"]) == ("first", "prepend")
    # the same model, side features, training budget and decoding: only where the features go differs
    assert set(prepend) == set(mmbyt5)
    for key in set(mmbyt5) - {"fusion"}:
        assert prepend[key] == mmbyt5[key], key
    dry_run_plans_both("configs/ablation_fusion.yaml", "mmbyt5", "mmbyt5_prepend")


def test_paper_config_validates_and_names_the_hub_models():
    proc = run_snakemake("-n", "--configfile", "configs/paper.yaml", check=False)
    out = proc.stdout + proc.stderr
    # only the competition files are missing (they are not shipped)
    assert "data/raw/train.features" in out
    assert "Failed validating" not in out


@pytest.fixture(scope="module")
def finished_run(finished_test_run):
    return finished_test_run[0]


@pytest.mark.slow
def test_whole_dag_runs_on_test_data(finished_run):
    results = finished_run
    metrics = pd.read_csv(results / "report" / "metrics.csv")
    assert list(metrics.columns) == METRICS_COLUMNS
    assert set(metrics["split"]) == {"val", "test"}
    assert set(metrics["stage"]) == {"raw", "corrected", "joint", "constrained", "baseline"}
    ensembles = ("ensemble", "ensemble_ngram", "ensemble_stack", "ensemble_ngram_stack")
    assert set(metrics["model"]) == {"majority", "byt5", "flant5", "mmbyt5", "charngram", *ensembles}
    for ensemble in ensembles:
        for split in ("val", "test"):
            part = metrics[(metrics["model"] == ensemble) & (metrics["split"] == split)]
            assert set(part["stage"]) == {"corrected", "joint", "constrained"}, (ensemble, split)
    # the stack's validation rows are its cross-fitted ones, as its fit recorded them
    for stage in ("corrected", "joint", "constrained"):
        fitted = json.loads((results / "ensemble" / f"ensemble_ngram.{stage}.stack.json").read_text())
        row = metrics[
            (metrics["model"] == "ensemble_ngram_stack") & (metrics["stage"] == stage) & (metrics["split"] == "val")
        ]
        assert fitted["validation"]["cross_fitted_item_accuracy"] == pytest.approx(float(row["item_accuracy"].iloc[0]))
        assert fitted["members"] == ["byt5", "flant5", "mmbyt5", "charngram"]
    # vote and stack side by side, and which one the submission uses (config.yaml: stack)
    report = (results / "report" / "metrics.md").read_text()
    assert "hard vote vs learned arbiter" in report and "combined by **stack**" in report
    assert "submission/ensemble_stack.predict" in report
    # every prediction carries its confidence; corrections keep it and flag changed rows
    for model in ("byt5", "flant5", "mmbyt5"):
        for stage in ("raw", "constrained", "corrected"):
            table = pd.read_parquet(results / "predictions" / model / f"val.{stage}.parquet")
            assert {"logprob", "logprob_per_token", "logprob_min"} <= set(table.columns), (model, stage)
            assert (table["logprob"] <= 0).all() and table["logprob"].notna().all()
        corrected = pd.read_parquet(results / "predictions" / model / "val.corrected.parquet")
        assert corrected["corrected"].tolist() == (corrected["corrected_levels"] != "").tolist()
    charngram = pd.read_parquet(results / "predictions" / "charngram" / "val.raw.parquet")
    assert (charngram["logprob"] <= 0).all() and (charngram["margin"] >= 0).all()
    # constrained decoding and the charngram labeler only ever write valid paths
    valid = {tuple(p[:4]) for p in json.loads((results / "data" / "hierarchy.json").read_text())["paths"]}
    for model, stage in (("byt5", "constrained"), ("mmbyt5", "constrained"), ("charngram", "raw")):
        table = pd.read_parquet(results / "predictions" / model / f"val.{stage}.parquet")
        assert all(tuple(r) in valid for r in table[list(LEVELS)].itertuples(index=False, name=None)), (model, stage)
    assert metrics["item_accuracy"].between(0, 1).all() and (metrics["n"] > 0).all()
    efficiency = pd.read_csv(results / "report" / "efficiency.csv")
    assert list(efficiency.columns) == EFFICIENCY_COLUMNS
    assert set(efficiency["model"]) == {"byt5", "flant5", "mmbyt5", "charngram", "namer"}
    neural = efficiency[efficiency["model"] != "charngram"]
    assert (efficiency["parameters"] > 0).all() and (neural["train_gflops_per_step"] > 0).all()
    assert (
        efficiency.set_index("model").loc[["byt5", "flant5", "mmbyt5"], "constrained_predict_seconds_per_1k"] > 0
    ).all()
    # the paper's profiler columns: every Trainer-trained model profiled (CPU here), charngram n/a
    profiled = efficiency.set_index("model").loc[["byt5", "flant5", "mmbyt5", "namer"]]
    assert (profiled["train_step_self_cpu_ms"].astype(float) > 0).all()
    assert (profiled["train_step_self_cuda_ms"] == NO_CUDA).all() and (profiled["predict_seconds_per_batch"] > 0).all()
    assert (profiled["train_profiling_seconds"].astype(float) > 0).all()
    written = pd.read_csv(results / "report" / "efficiency.csv", keep_default_na=False).set_index(
        "model"
    )  # "n/a" as written
    assert (written.loc["charngram", ["train_step_self_cpu_ms", "train_step_self_cuda_ms"]] == "n/a").all()
    assert (
        "mean of 3 optimizer step(s) recorded by torch.profiler (CPU activities)"
        in (results / "report" / "efficiency.md").read_text()
    )
    operators = pd.read_csv(results / "report" / "operators.csv")
    assert list(operators.columns) == OPERATOR_COLUMNS
    assert set(operators["model"]) == {"byt5", "flant5", "mmbyt5", "namer"}
    assert operators.groupby("model").size().max() == 15 and (operators["self_cpu_ms"] > 0).all()
    assert "aten::mm" in set(operators["operator"]) and (operators["cuda_total_ms"] == NO_CUDA).all()
    assert (results / "report" / "operators.md").read_text().startswith("# Table 3")
    for model in ("byt5", "flant5", "mmbyt5", "namer"):
        assert (results / "models" / model / "profile" / "trace.json.gz").stat().st_size > 0
    test_rows = sum(1 for _ in open(REPO / ".test" / "data" / "test.features"))
    for model in (
        "ensemble",
        "ensemble_ngram",
        "ensemble_stack",
        "ensemble_ngram_stack",
        "byt5",
        "flant5",
        "mmbyt5",
        "charngram",
    ):
        assert sum(1 for _ in open(results / "submission" / f"{model}.predict")) == test_rows
    log = (results / "logs" / "train_labeler" / "byt5.log").read_text()
    assert "device: cpu" in log and "eval_loss" in log
    names = pd.read_csv(results / "report" / "names.csv")
    assert set(names["names"]) == {"teacher", "student"} and names["chrf"].between(0, 100).all()
    for figure in ("item_accuracy.svg", "f1_per_level.svg", "training_curves.svg"):
        assert (results / "report" / figure).read_text().lstrip().startswith("<?xml")


@pytest.mark.slow
def test_submission_round_trips_through_ingest(finished_run, tmp_path):
    out = tmp_path / "joined.parquet"
    assert (
        main(
            [
                "ingest",
                "--features",
                str(REPO / ".test/data/test.features"),
                "--labels",
                str(finished_run / "submission" / "ensemble.predict"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert set(LEVELS) <= set(pd.read_parquet(out).columns)


@pytest.mark.slow
def test_rerun_finds_nothing_to_do(finished_run):
    proc = run_snakemake(
        "-n", "--cores", "2", "--configfile", ".test/config.yaml", "--config", f"results={finished_run}"
    )
    assert "Nothing to be done" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_html_report_holds_tables_and_figures(finished_run):
    report = finished_run.parent / "report.html"
    run_snakemake("--configfile", ".test/config.yaml", "--config", f"results={finished_run}", "--report", str(report))
    html = report.read_text(errors="replace")
    for name in ("metrics.csv", "efficiency.csv", "operators.csv", "item_accuracy.svg", "training_curves.svg"):
        assert name in html
    # the banner, and each table's caption and label
    assert "Tiny stand-ins, not the real models." in html
    for text in (
        "Table 1: item accuracy",
        "Table 2, efficiency per model",
        "Table 3, the operators",
        "Name quality: chrF",
        "Reliability diagram on the test rows",
        "Coverage against accuracy",
        "Where the submitted model errs",
    ):
        assert text in html, text
    for name in ("calibration.csv", "errors.csv", "reliability.svg", "coverage.svg"):
        assert name in html, name
    assert "top operators of a training step" in html


@pytest.mark.slow
def test_predict_new_file_with_unseen_retailers_missing_prices_and_odd_characters(finished_run, tmp_path, capsys):
    new = tmp_path / "new.jsonl"
    records = [
        {"indoml_id": 1, "description": "cad 5 pk creme egg 197 g", "retailer": "a shop nobody saw", "price": None},
        {"indoml_id": 2, "description": "ÿ€ 🍫 choc\tbar ✓", "retailer": "", "price": "1.99"},
        {"indoml_id": 3, "description": "x", "retailer": "greenzen", "price": 0.0},
    ]
    new.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "labels.parquet"
    assert (
        main(
            [
                "predict",
                "--models",
                str(finished_run),
                "--input",
                str(new),
                "--out",
                str(out),
                "--keep",
                str(tmp_path / "keep"),
            ]
        )
        == 0
    )
    labels = pd.read_parquet(out)
    assert labels["indoml_id"].tolist() == [1, 2, 3]
    hierarchy = json.loads((finished_run / "data" / "hierarchy.json").read_text())
    valid = {tuple(p[:4]) for p in hierarchy["paths"]}
    assert all(tuple(row) in valid for row in labels[list(LEVELS)].itertuples(index=False, name=None))
    assert {f"{m}_{level}" for m in ("byt5", "flant5", "mmbyt5") for level in LEVELS} <= set(labels.columns)
    assert (tmp_path / "keep" / "names.parquet").exists()
    # config.yaml submits the stack: predict combines with the arbiter, exactly as stack-apply does
    assert json.loads((finished_run / "manifest.json").read_text())["ensemble"]["method"] == "stack"
    assert {"stack_score", "stack_candidates", "stack_proposers"} <= set(labels.columns)
    applied = tmp_path / "applied.parquet"
    members = ("byt5", "flant5", "mmbyt5")
    assert (
        main(
            [
                "stack-apply",
                "--model",
                str(finished_run / "ensemble" / "ensemble.corrected.stack.json"),
                "--hierarchy",
                str(finished_run / "data" / "hierarchy.json"),
                "--out",
                str(applied),
                "--rows",
                str(new),
                *[f"--scores={m}={tmp_path / 'keep' / f'{m}.candidates.parquet'}" for m in members],
                *[f"{m}={tmp_path / 'keep' / f'{m}.corrected.parquet'}" for m in members],
            ]
        )
        == 0
    )
    pd.testing.assert_frame_equal(pd.read_parquet(applied), labels[pd.read_parquet(applied).columns])
    # bad input: the same rules as ingest, exit 2, nothing written
    new.write_text(json.dumps({"indoml_id": 1, "description": "", "retailer": "r", "price": 1}) + "\n")
    bad_out = tmp_path / "bad.parquet"
    assert main(["predict", "--models", str(finished_run), "--input", str(new), "--out", str(bad_out)]) == 2
    assert "column 'description'" in capsys.readouterr().err and not bad_out.exists()


@pytest.mark.slow
def test_predict_with_the_ngram_stack_takes_charngrams_ranked_alternatives_as_stack_apply_does(finished_run, tmp_path):
    """The run submitting ensemble_ngram's stack instead (the same run's models and arbiter, seen
    through another manifest): predict lists charngram's alternatives and gives stack-apply's answer."""
    view = tmp_path / "run"
    view.mkdir()
    for name in ("models", "data", "ensemble"):
        (view / name).symlink_to(finished_run / name)
    manifest = json.loads((finished_run / "manifest.json").read_text())
    manifest["labelers"]["charngram"] = {"kind": "charngram"}
    manifest["ensemble"]["submit"] = "ensemble_ngram"
    manifest["stack_model"] = "ensemble/ensemble_ngram.corrected.stack.json"
    (view / "manifest.json").write_text(json.dumps(manifest))
    model = json.loads((finished_run / manifest["stack_model"]).read_text())
    assert model["alternatives"] == {"charngram": 5}
    rows = pd.read_parquet(finished_run / "data" / "test.parquet").head(40).drop(columns=list(LEVELS))
    rows.to_parquet(tmp_path / "new.parquet")
    keep = tmp_path / "keep"
    assert (
        main(
            [
                "predict",
                "--models",
                str(view),
                "--input",
                str(tmp_path / "new.parquet"),
                "--out",
                str(tmp_path / "labels.parquet"),
                "--keep",
                str(keep),
            ]
        )
        == 0
    )
    labels = pd.read_parquet(tmp_path / "labels.parquet")
    listed = pd.read_parquet(keep / "charngram.alternatives.parquet")
    assert len(listed) == 5 * len(rows) and listed["rank"].max() == 5
    members = ("byt5", "flant5", "mmbyt5", "charngram")
    applied = tmp_path / "applied.parquet"
    assert (
        main(
            [
                "stack-apply",
                "--model",
                str(finished_run / manifest["stack_model"]),
                "--hierarchy",
                str(finished_run / "data" / "hierarchy.json"),
                "--out",
                str(applied),
                "--rows",
                str(tmp_path / "new.parquet"),
                f"--alternatives=charngram={keep / 'charngram.alternatives.parquet'}",
                *[f"--scores={m}={keep / f'{m}.candidates.parquet'}" for m in members],
                *[f"{m}={keep / f'{m}.corrected.parquet'}" for m in members],
            ]
        )
        == 0
    )
    pd.testing.assert_frame_equal(pd.read_parquet(applied), labels[pd.read_parquet(applied).columns])
    # the candidates include charngram's runners-up: some rows had more than the members' predictions
    proposed = pd.concat([pd.read_parquet(keep / f"{m}.corrected.parquet") for m in members])
    distinct_proposed = proposed.drop_duplicates(["indoml_id", *LEVELS]).groupby("indoml_id").size()
    assert (labels.set_index("indoml_id")["stack_candidates"] > distinct_proposed).any()


@pytest.mark.slow
def test_pretrained_teacher_writes_expansions_of_the_receipt_line(finished_run):
    """The names branch at work: after its pretraining (tiny.llama.warmup) the Llama stand-in's
    teacher writes names clearly closer to the true product names than the receipt line itself, and
    few of its answers fall back to the description. Fails if the names stop being expansions."""
    names = pd.read_csv(finished_run / "report" / "names.csv")
    teacher = names[names["names"] == "teacher"]
    assert set(teacher["split"]) == {"train", "val"}
    assert (teacher["chrf"] > teacher["chrf_description"] + 5).all(), teacher.to_string()
    assert (teacher["fallbacks"] < 0.2 * teacher["n"]).all(), teacher.to_string()
    assert "stand-in's pretraining" in (finished_run / "report" / "names.md").read_text()
    pretraining = json.loads((finished_run / "models" / "base" / "llama" / "pretraining.json").read_text())
    run_ids = pd.concat(
        [
            pd.read_parquet(finished_run / "data" / f"{split}.parquet", columns=["indoml_id"])
            for split in ("train", "val", "test")
        ]
    )["indoml_id"]
    assert pretraining["ids"][1] < 0 <= run_ids.min() and pretraining["rows"] >= pretraining["steps"]


@pytest.mark.slow
def test_confidence_is_calibrated_on_every_table_and_predict_writes_a_review_queue(finished_run, tmp_path, capsys):
    """Every model's test table has a confidence in [0, 1]; the report tables exist; predict
    --review-below writes the rows under P, least confident first, with their candidates (the
    answer first), keeps --out complete, and refuses bad thresholds with exit 2."""
    calibration = pd.read_csv(finished_run / "report" / "calibration.csv")
    assert set(calibration["split"]) == {"val", "test"}
    assert calibration["ece"].between(0, 1).all() and (calibration["submitted"] == "yes").sum() == 2
    # the sampling-noise column is the simulation on the model's own confidences
    byt5_test = calibration[(calibration["model"] == "byt5") & (calibration["split"] == "test")]
    byt5_confidence = pd.read_parquet(finished_run / "predictions" / "byt5" / "test.corrected.confidence.parquet")
    assert byt5_test["ece_noise_p95"].item() == pytest.approx(ece_of_a_calibrated_model(byt5_confidence["confidence"]))
    assert calibration["ece_noise_p95"].between(0, 1, inclusive="neither").all()
    # every fitted map is scaled by the training paths' Good–Turing share of unseen paths
    share = unseen_path_share(pd.read_parquet(finished_run / "data" / "train.parquet"))
    fitted = [json.loads(p.read_text()) for p in (finished_run / "ensemble" / "calibration").glob("*.json")]
    fitted += [json.loads(p.read_text())["calibration"] for p in (finished_run / "ensemble").glob("*.stack.json")]
    assert share > 0 and len(fitted) >= 8
    assert all(c["unseen_path_share"] == pytest.approx(share) for c in fitted)
    errors = pd.read_csv(finished_run / "report" / "errors.csv")
    assert {"supergroup", "retailer", "description length (characters)"} <= set(errors["breakdown"])
    for model in ("ensemble_stack", "byt5", "charngram", "ensemble"):
        name = "test.corrected.parquet" if model.endswith("_stack") else "test.corrected.confidence.parquet"
        table = pd.read_parquet(finished_run / "predictions" / model / name)
        assert table["confidence"].between(0, 1).all(), model
    queue_dag = pd.read_parquet(finished_run / "submission" / "review.parquet")
    assert (queue_dag["confidence"] < 0.5).all()

    rows = pd.read_parquet(finished_run / "data" / "test.parquet").head(60).drop(columns=list(LEVELS))
    rows.to_parquet(tmp_path / "new.parquet")
    out, review = tmp_path / "labels.parquet", tmp_path / "queue.parquet"
    args = ["predict", "--models", str(finished_run), "--input", str(tmp_path / "new.parquet"), "--out", str(out)]
    assert main([*args, "--review-below", "0.9", "--review-out", str(review)]) == 0
    labels, queue = pd.read_parquet(out), pd.read_parquet(review)
    assert len(labels) == 60 and labels["confidence"].between(0, 1).all()  # the submission stays complete
    flagged = labels[labels["confidence"] < 0.9]
    firsts = queue[queue["candidate_rank"] == 1].set_index("indoml_id")
    assert sorted(firsts.index) == sorted(flagged["indoml_id"])
    assert firsts["review_order"].tolist() == list(range(1, len(firsts) + 1))
    assert firsts["confidence"].is_monotonic_increasing
    answer = flagged.set_index("indoml_id").loc[firsts.index]
    assert (firsts[list(LEVELS)] == answer[list(LEVELS)]).all().all()  # the answer is candidate 1
    assert queue["proposers"].notna().all() and queue["candidate_rank"].max() <= 3
    for bad in ("0", "1.5", "abc", "nan"):
        bad_review = tmp_path / f"bad-{bad}.parquet"
        capsys.readouterr()
        assert (
            main([*args[:-1], str(tmp_path / "x.parquet"), "--review-below", bad, "--review-out", str(bad_review)]) == 2
        )
        assert "--review-below expects a number in (0, 1]" in capsys.readouterr().err
        assert not bad_review.exists() and not (tmp_path / "x.parquet").exists()

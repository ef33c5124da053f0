"""Regression tests for the tracebacks of issue 16: each of these inputs crashed a `prodcat`
sub-command (exit 1) and now exits 2 with a message saying what was wrong, writing nothing."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from tests.conftest import write_jsonl

from prodcat import LEVELS
from prodcat.cli import main

PATHS = [("food", "dairy", "milk", "moo"), ("home", "clean", "soap", "suds")]
LABELS = [{"indoml_id": i, **dict(zip(LEVELS, PATHS[i % 2]))} for i in range(6)]
ROWS = [
    {"indoml_id": i, "description": f"item {i}", "retailer": "r", "price": 1.0, **dict(zip(LEVELS, PATHS[i % 2]))}
    for i in range(6)
]
ACCURACY = {m: dict.fromkeys(LEVELS, 0.5) for m in ("a", "b")}


@pytest.fixture
def files(tmp_path):
    f = {"dir": tmp_path, "out": tmp_path / "out" / "o.parquet"}
    f["hierarchy"] = tmp_path / "hierarchy.json"
    f["hierarchy"].write_text(json.dumps({"levels": list(LEVELS), "paths": [[*p, 3] for p in PATHS]}))
    f["a"] = write_jsonl(tmp_path / "a.jsonl", LABELS)
    f["b"] = write_jsonl(tmp_path / "b.jsonl", LABELS)
    f["truth"] = tmp_path / "truth.parquet"
    pd.DataFrame(ROWS).to_parquet(f["truth"])
    f["accuracy"] = tmp_path / "acc.json"
    f["accuracy"].write_text(json.dumps(ACCURACY))
    return f


def refused(argv, *fragments, capsys, outputs=()):
    """Exit 2 (returned, or argparse's SystemExit(2)), every fragment in the message, no output."""
    try:
        status = main(["-q", *map(str, argv)])
    except SystemExit as exc:
        status = exc.code
    err = capsys.readouterr().err
    assert status == 2, err
    for fragment in fragments:
        assert fragment in err, err
    for output in outputs:
        assert not output.exists()


def test_vote_with_non_integer_ids(files, capsys):
    bad = write_jsonl(files["dir"] / "bad.jsonl", [dict(r, indoml_id=r["indoml_id"] + 0.5) for r in LABELS])
    refused(
        ["vote", "--hierarchy", files["hierarchy"], "--out", files["out"], f"a={files['a']}", f"b={bad}"],
        "bad.jsonl",
        "column 'indoml_id'",
        "row 1",
        capsys=capsys,
        outputs=[files["out"]],
    )


@pytest.mark.parametrize(
    "accuracy, fragments",
    [
        ("{not json", ["cannot read a level-accuracy JSON"]),
        (json.dumps({"a": ACCURACY["a"]}), ["key b", "no accuracies for model 'b'"]),
        (json.dumps({"a": ACCURACY["a"], "b": {"supergroup": 0.5}}), ["key b.group", "expected an accuracy in [0, 1]"]),
        (json.dumps({"a": ACCURACY["a"], "b": dict.fromkeys(LEVELS, "high")}), ["key b.supergroup"]),
        (json.dumps([0.5]), ["expected a JSON object"]),
    ],
)
def test_vote_with_a_malformed_or_incomplete_accuracy(files, capsys, accuracy, fragments):
    files["accuracy"].write_text(accuracy)
    refused(
        [
            "vote",
            "--hierarchy",
            files["hierarchy"],
            "--accuracy",
            files["accuracy"],
            "--out",
            files["out"],
            f"a={files['a']}",
            f"b={files['b']}",
        ],
        "acc.json",
        *fragments,
        capsys=capsys,
        outputs=[files["out"]],
    )


def test_vote_weighted_without_accuracy(files, capsys):
    refused(
        ["vote", "--hierarchy", files["hierarchy"], "--weighted", "--out", files["out"], files["a"], files["b"]],
        "--weighted needs --accuracy",
        capsys=capsys,
        outputs=[files["out"]],
    )


def test_vote_with_two_prediction_files_of_the_same_stem(files, capsys):
    (files["dir"] / "x").mkdir()
    twin = write_jsonl(files["dir"] / "x" / "a.jsonl", LABELS)
    refused(
        ["vote", "--hierarchy", files["hierarchy"], "--out", files["out"], files["a"], twin],
        "both named 'a'",
        "NAME=PATH",
        capsys=capsys,
        outputs=[files["out"]],
    )


@pytest.mark.parametrize(
    "predictions, fragments",
    [
        ("", ["not a predictions table", "column 'indoml_id'"]),  # zero rows
        (
            '{"indoml_id": NaN, "supergroup": "a", "group": "b", "module": "c", "brand": "d"}\n',
            ["column 'indoml_id'", "row 1", "integer id"],
        ),
        (
            "".join(json.dumps(dict(r, indoml_id=f"#{r['indoml_id']}")) + "\n" for r in LABELS),
            ["column 'indoml_id'", "row 1", "integer id"],
        ),
    ],
)
def test_evaluate_with_zero_rows_nan_or_string_ids(files, capsys, predictions, fragments):
    bad = files["dir"] / "bad.jsonl"
    bad.write_text(predictions)
    metrics = files["dir"] / "out" / "metrics.json"
    refused(
        ["evaluate", "--truth", files["truth"], "--out", metrics, f"m:raw={bad}"],
        "bad.jsonl",
        *fragments,
        capsys=capsys,
        outputs=[metrics],
    )


def test_evaluate_with_zero_prediction_rows_in_parquet(files, capsys):
    bad = files["dir"] / "bad.parquet"
    pd.DataFrame(
        {"indoml_id": pd.Series([], dtype="int64"), **{lv: pd.Series([], dtype=object) for lv in LEVELS}}
    ).to_parquet(bad)
    metrics = files["dir"] / "out" / "metrics.json"
    refused(
        ["evaluate", "--truth", files["truth"], "--out", metrics, str(bad)],
        "bad.parquet",
        "no prediction for 6 of the 6 truth rows",
        capsys=capsys,
        outputs=[metrics],
    )


def test_evaluate_counts_predictions_outside_the_truth(files, capsys):
    extra = write_jsonl(files["dir"] / "extra.jsonl", LABELS + [dict(LABELS[0], indoml_id=99)])
    metrics = files["dir"] / "metrics.json"
    assert main(["-q", "evaluate", "--truth", str(files["truth"]), "--out", str(metrics), f"m:raw={extra}"]) == 0
    (result,) = json.loads(metrics.read_text())
    assert result["n"] == 6 and result["ignored_predictions"] == 1 and result["item_accuracy"] == 1.0


@pytest.fixture
def run_dir(files):
    run = files["dir"] / "results"
    (run / "data").mkdir(parents=True)
    (run / "ensemble").mkdir()
    (run / "data" / "hierarchy.json").write_text(files["hierarchy"].read_text())
    manifest = {
        "labelers": {"a": {"kind": "charngram"}},
        "namer": {"templates": {}, "generate": {}},
        "correction": {"method": "topdown", "stage": "corrected"},
        "ensemble": {},
        "hierarchy": "data/hierarchy.json",
        "level_accuracy": "ensemble/level_accuracy.corrected.json",
    }
    (run / "manifest.json").write_text(json.dumps(manifest))
    return run, manifest


def test_predict_with_a_malformed_manifest(files, run_dir, capsys):
    run, _ = run_dir
    (run / "manifest.json").write_text('{"labelers": ')
    refused(
        ["predict", "--models", run, "--input", files["truth"], "--out", files["out"]],
        "manifest.json",
        "cannot read the run's manifest",
        capsys=capsys,
        outputs=[files["out"]],
    )


@pytest.mark.parametrize("key", ["labelers", "correction", "hierarchy", "level_accuracy"])
def test_predict_with_a_manifest_missing_a_key(files, run_dir, capsys, key):
    run, manifest = run_dir
    (run / "manifest.json").write_text(json.dumps({k: v for k, v in manifest.items() if k != key}))
    refused(
        ["predict", "--models", run, "--input", files["truth"], "--out", files["out"]],
        "manifest.json",
        f"'{key}' is a required property",
        capsys=capsys,
        outputs=[files["out"]],
    )


def test_predict_with_a_missing_level_accuracy_file(files, run_dir, capsys):
    run, _ = run_dir
    refused(
        ["predict", "--models", run, "--input", files["truth"], "--out", files["out"]],
        "level_accuracy.corrected.json",
        "file not found",
        capsys=capsys,
        outputs=[files["out"]],
    )


def test_predict_with_a_missing_model(files, run_dir, capsys):
    run, _ = run_dir
    (run / "ensemble" / "level_accuracy.corrected.json").write_text(json.dumps({"a": ACCURACY["a"]}))
    refused(
        ["predict", "--models", run, "--input", files["truth"], "--out", files["out"]],
        "models/a",
        "missing from the run",
        capsys=capsys,
        outputs=[files["out"]],
    )


@pytest.mark.parametrize("argument, value", [("--train", "0"), ("--test", "-5"), ("--train", "many")])
def test_make_sample_with_a_bad_size(files, capsys, argument, value):
    out = files["dir"] / "sample"
    refused(["make-sample", "--out", out, argument, value], f"argument {argument}", capsys=capsys, outputs=[out])


def test_make_sample_with_out_naming_a_file(files, capsys):
    refused(["make-sample", "--out", files["a"], "--train", "3", "--test", "2"], "a.jsonl", "is a file", capsys=capsys)
    assert files["a"].read_text().startswith('{"indoml_id": 0')


def test_outputs_that_cannot_be_written_are_refused_before_any_work(files, capsys):
    refused(
        ["correct", "--hierarchy", files["hierarchy"], "--predictions", files["a"], "--out", files["dir"]],
        "is a folder",
        capsys=capsys,
    )
    refused(
        ["predict", "--models", files["dir"] / "nowhere", "--input", files["truth"], "--out", files["a"] / "o.parquet"],
        "a.jsonl",
        "cannot create the output's folder",
        capsys=capsys,
    )


def test_a_manifest_gets_the_defaults_of_its_schema(run_dir):
    from prodcat.predict import load_manifest

    run, _ = run_dir
    manifest = load_manifest(run)
    assert manifest["correction"]["salvage"] is False
    assert (manifest["ensemble"]["method"], manifest["ensemble"]["weighted"]) == ("vote", False)


MANIFEST_CONFIG = {
    "labelers": {"a": {"kind": "charngram"}, "b": {"kind": "charngram"}, "c": {"kind": "charngram"}},
    "namer": {"templates": {"t": "x"}, "student": {"num_beams": 1}},
    "correction": {"method": "joint", "salvage": True},
    "ensemble": {"members": {"ab": ["a", "b"]}, "submit": "ab", "method": "stack", "weighted": False},
}


@pytest.mark.parametrize("results", ["results", "absolute"])
def test_the_manifest_records_the_files_the_rule_passes_relative_to_the_results_folder(tmp_path, monkeypatch, results):
    """The manifest rule's inputs are the one spelling of the run's paths (rules/ensemble.smk):
    write_manifest records them as given, relative to the manifest's folder, for `prodcat predict`."""
    from prodcat.predict import load_manifest, write_manifest

    monkeypatch.chdir(tmp_path)
    from pathlib import Path

    run = tmp_path / "results" if results == "absolute" else Path("results")
    write_manifest(
        MANIFEST_CONFIG,
        "joint",
        run / "manifest.json",
        hierarchy=run / "data" / "labels.json",
        level_accuracy=f"{run}/ensemble/acc.joint.json",
        stack_model=run / "ensemble" / "ab.joint.stack.json",
    )
    manifest = load_manifest(run)
    assert (manifest["hierarchy"], manifest["level_accuracy"], manifest["stack_model"]) == (
        "data/labels.json",
        "ensemble/acc.joint.json",
        "ensemble/ab.joint.stack.json",
    )
    assert list(manifest["labelers"]) == ["a", "b"]
    assert manifest["correction"] == {"method": "joint", "salvage": True, "stage": "joint"}
    assert manifest["namer"] == {"templates": {"t": "x"}, "generate": {"num_beams": 1}}

    vote = {**MANIFEST_CONFIG, "ensemble": {**MANIFEST_CONFIG["ensemble"], "method": "vote"}}
    write_manifest(vote, "joint", run / "manifest.json", hierarchy=run / "h.json", level_accuracy=run / "a.json")
    assert load_manifest(run)["stack_model"] is None
    with pytest.raises(ValueError, match="stack model"):  # the rule's inputs and the method disagree
        write_manifest(MANIFEST_CONFIG, "joint", run / "manifest.json", hierarchy="h", level_accuracy="a")

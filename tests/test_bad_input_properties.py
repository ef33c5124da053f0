"""Property-based test of the bad-input contract (issue 16), for every `prodcat` sub-command.

Hypothesis generates bad tables and files — a missing column, one bad cell (ids such as "--5",
"²", 2**70 or NaN; lone surrogates; labels with the target separator, a line break or outer
spaces; out-of-range prices; non-string labels), a repeated or missing id, a broken hierarchy,
level-accuracy or manifest JSON — in JSON lines or Parquet. Every one must give exit status 2, a
message that names the bad file and where in it (column, row or key), and no output file.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prodcat import LEVELS
from prodcat.cli import main
from prodcat.data.io import MAX_PRICE

# Derandomized: the same cases on every run, so CI is stable and the count is reproducible.
# PRODCAT_HYPOTHESIS_CASES=2000 PRODCAT_HYPOTHESIS_RANDOM=1 explores further (random cases).
CASES_PER_COMMAND = int(os.environ.get("PRODCAT_HYPOTHESIS_CASES", "100"))
SETTINGS = settings(
    max_examples=CASES_PER_COMMAND,
    deadline=None,
    database=None,
    derandomize=not os.environ.get("PRODCAT_HYPOTHESIS_RANDOM"),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
GENERATED = {}  # command -> examples run (printed at the end of the module)

PATHS = [("food", "dairy", "milk", "moo"), ("food", "dairy", "cheese", "moo"), ("home", "clean", "soap", "suds")]
N_ROWS = 5
FEATURES = [
    {"indoml_id": 10 + i, "description": f"item {i}", "retailer": f"shop{i % 2}", "price": 1.25 + i}
    for i in range(N_ROWS)
]
LABELS = [{"indoml_id": 10 + i, **dict(zip(LEVELS, PATHS[i % len(PATHS)]))} for i in range(N_ROWS)]
ROWS = [{**f, **lab} for f, lab in zip(FEATURES, LABELS)]
HIERARCHY = {"levels": list(LEVELS), "paths": [[*p, 3] for p in PATHS]}
ACCURACY = {m: dict.fromkeys(LEVELS, 0.5) for m in ("a", "b")}
MANIFEST = {
    "labelers": {"a": {"kind": "charngram"}},
    "namer": {"templates": {}, "generate": {}},
    "correction": {"method": "topdown", "stage": "corrected"},
    "ensemble": {"members": {"e": ["a"]}, "submit": "e"},
    "hierarchy": "data/hierarchy.json",
    "level_accuracy": "ensemble/level_accuracy.corrected.json",
}


class Raw(str):
    """File content to write as is (a truncated, unparsable JSON), not as a JSON value."""


# ---- bad values ---------------------------------------------------------------------------------
surrogate_text = st.text(max_size=5).map(lambda t: t + "\ud800")
bad_id = st.one_of(
    st.sampled_from([None, True, "--5", "²", "1.5", "", "12a", "1_0", "0x1f", [1], {"a": 1}, math.nan]),
    st.integers(min_value=2**63),
    st.integers(max_value=-(2**63) - 1),
    st.floats(allow_nan=False, allow_infinity=True).filter(lambda x: not (math.isfinite(x) and x.is_integer())),
    st.text(min_size=1, max_size=6).filter(
        lambda t: not t.strip().lstrip("+-").isascii() or not t.strip().lstrip("+-").isdigit()
    ),
)
bad_description = st.one_of(st.sampled_from([None, 17, 2.5, True, "", "   ", "\t\n", [], {}]), surrogate_text)
bad_retailer = st.one_of(st.sampled_from([None, 3, 1.5, False, ["shop"], {}]), surrogate_text)
bad_price = st.one_of(
    st.sampled_from(["abc", "1,99", "£2", "inf", "-inf", "Infinity", True, [1], {"p": 1}]),
    st.floats(max_value=-1e-9, allow_infinity=True),
    st.floats(min_value=MAX_PRICE, allow_infinity=True),
)
bad_label = st.one_of(
    st.sampled_from([None, "", "   ", 5, 2.5, True, [], {}]),
    st.text(max_size=4).map(lambda t: f"{t} | {t}"),
    st.text(max_size=4).map(lambda t: f"a{t}\nb"),
    st.text(min_size=1, max_size=4).map(lambda t: f" {t}x"),
    st.text(min_size=1, max_size=4).map(lambda t: f"x{t}\t"),
    surrogate_text,
)
# a predicted label may be anything a model writes, or missing; not another type
bad_predicted_label = st.one_of(st.sampled_from([5, 2.5, True, [], {"a": 1}]), surrogate_text)
bad_submission_label = st.one_of(st.sampled_from([None, "", "   ", 5, True, []]), surrogate_text)


def cell_pools(kind: str) -> dict:
    features = {"indoml_id": bad_id, "description": bad_description, "retailer": bad_retailer, "price": bad_price}
    if kind == "features":
        return features
    if kind == "labels":
        return {"indoml_id": bad_id, **dict.fromkeys(LEVELS, bad_label)}
    if kind == "rows":
        return {**features, **dict.fromkeys(LEVELS, bad_label)}
    if kind == "predictions":
        return {"indoml_id": bad_id, **dict.fromkeys(LEVELS, bad_predicted_label)}
    if kind == "submission":
        return {"indoml_id": bad_id, **dict.fromkeys(LEVELS, bad_submission_label)}
    raise ValueError(kind)


BASE = {"features": FEATURES, "labels": LABELS, "rows": ROWS, "predictions": LABELS, "submission": LABELS}


@st.composite
def bad_table(draw, kind: str, allow_missing_rows: bool = False):
    """(records, expected column, expected row or None, file format)."""
    records = copy.deepcopy(BASE[kind])
    pools = cell_pools(kind)
    actions = ["drop column", "bad cell", "bad cell", "bad cell", "duplicate id"] + (
        ["missing row"] if allow_missing_rows else []
    )
    action = draw(st.sampled_from(actions))
    if action == "drop column":
        column = draw(st.sampled_from(list(pools)))
        for record in records:
            record.pop(column)
        row = None
    elif action == "bad cell":
        column = draw(st.sampled_from(list(pools)))
        index = draw(st.integers(0, len(records) - 1))
        records[index][column] = draw(pools[column])
        row = index + 1
    elif action == "duplicate id":
        a, b = draw(st.lists(st.integers(0, len(records) - 1), min_size=2, max_size=2, unique=True))
        records[a]["indoml_id"] = records[b]["indoml_id"]
        column, row = "indoml_id", max(a, b) + 1
    else:  # a truth row without a prediction
        del records[draw(st.integers(0, len(records) - 1))]
        column, row = "indoml_id", None
    return records, column, row, draw(st.sampled_from(["jsonl", "parquet"]))


def write_table(directory: Path, stem: str, records, fmt: str) -> Path:
    """JSON lines, or Parquet when the values fit one Arrow type per column."""
    columns = {key for record in records for key in record}
    uniform = all(len({type(r[c]) for r in records if c in r and r[c] is not None}) <= 1 for c in columns)
    if fmt == "parquet" and uniform:  # mixed types would be coerced (True → 1.0), hiding the bad value
        path = directory / f"{stem}.parquet"
        try:
            pd.DataFrame.from_records(records).to_parquet(path)
            return path
        except Exception:  # mixed types, ints beyond int64, surrogates: Parquet cannot hold them
            path.unlink(missing_ok=True)
    path = directory / f"{stem}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


def run(argv) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = main(["-q", *map(str, argv)])
    return status, err.getvalue()


def assert_refused(argv, bad_file: Path, where: list[str], outputs, directory: Path, command: str) -> None:
    GENERATED[command] = GENERATED.get(command, 0) + 1
    status, message = run(argv)
    assert status == 2, f"exit {status} for {argv}:\n{message}"
    assert str(bad_file) in message, f"the message does not name {bad_file}:\n{message}"
    assert any(fragment in message for fragment in where), f"the message names none of {where}:\n{message}"
    for output in outputs:
        assert not Path(output).exists(), f"{output} was written for a refused input"
    assert not list(directory.rglob("*.tmp")), "a temporary file was left behind"


def table_locators(column, row) -> list[str]:
    """What the message must name: the column, or the row when the column is unknown to the reader."""
    where = [f"column {column!r}"]
    if row is not None:
        where.append(f"row {row}")
    return where


# ---- per command --------------------------------------------------------------------------------
@SETTINGS
@given(
    bad=st.one_of(
        bad_table("features").map(lambda b: ("features", *b)), bad_table("labels").map(lambda b: ("labels", *b))
    )
)
def test_ingest_refuses_bad_tables(bad):
    which, records, column, row, fmt = bad
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        features = write_table(d, "train", records if which == "features" else FEATURES, fmt)
        labels = write_table(d, "train_labels", records if which == "labels" else LABELS, fmt)
        out = d / "out" / "rows.parquet"
        bad_file = features if which == "features" else labels
        assert_refused(
            ["ingest", "--features", features, "--labels", labels, "--out", out],
            bad_file,
            table_locators(column, row),
            [out],
            d,
            "ingest",
        )


@SETTINGS
@given(bad=bad_table("rows"))
def test_split_refuses_bad_tables(bad):
    records, column, row, fmt = bad
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        data = write_table(d, "rows", records, fmt)
        outputs = [d / "s" / "train.parquet", d / "s" / "val.parquet", d / "s" / "report.json"]
        assert_refused(
            ["split", "--data", data, "--train", outputs[0], "--val", outputs[1], "--report", outputs[2]],
            data,
            table_locators(column, row),
            outputs,
            d,
            "split",
        )


@SETTINGS
@given(bad=bad_table("rows"))
def test_hierarchy_refuses_bad_tables(bad):
    records, column, row, fmt = bad
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        data = write_table(d, "rows", records, fmt)
        out = d / "h" / "hierarchy.json"
        assert_refused(
            ["hierarchy", "--data", data, "--out", out], data, table_locators(column, row), [out], d, "hierarchy"
        )


@st.composite
def bad_hierarchy(draw):
    """(JSON object or raw text, locators the message must name)."""
    kind = draw(st.sampled_from(["cell", "cell", "row length", "paths type", "nested", "not json"]))
    obj = copy.deepcopy(HIERARCHY)
    if kind == "cell":
        i, j = draw(st.integers(0, len(PATHS) - 1)), draw(st.integers(0, 4))
        bad_count = st.one_of(st.sampled_from([None, 1.5, "3", "", True, [], {}]), st.integers(max_value=0))
        bad = draw(bad_count if j == 4 else bad_label)
        obj["paths"][i][j] = bad
        return obj, [f"row {i + 1}"]
    if kind == "row length":
        i = draw(st.integers(0, len(PATHS) - 1))
        obj["paths"][i] = obj["paths"][i][: draw(st.sampled_from([0, 3, 4]))] or draw(st.sampled_from(["x", 1, None]))
        return obj, [f"row {i + 1}"]
    if kind == "paths type":
        obj["paths"] = draw(st.sampled_from([{}, "paths", 3, None, []]))
        return obj, ["key paths"]
    if kind == "nested":
        nested = {"food": {"dairy": {"milk": ["moo"], "cheese": ["moo"]}}, "home": {"clean": {"soap": ["suds"]}}}
        broken = draw(st.sampled_from(["brand string", "brand bad", "group list", "empty"]))
        if broken == "brand string":
            nested["home"]["clean"]["soap"] = "suds"
            return nested, ["key home → clean → soap"]
        if broken == "brand bad":
            nested["home"]["clean"]["soap"] = [draw(bad_label)]
            return nested, ["key home → clean → soap"]
        if broken == "group list":
            nested["home"] = ["clean"]
            return nested, ["key home"]
        nested["food"]["dairy"] = {}
        return nested, ["key food → dairy"]
    text = json.dumps(obj)
    return Raw(text[: draw(st.integers(1, len(text) - 1))]), ["line 1 column"]  # a truncated file


def write_hierarchy(d: Path, obj) -> Path:
    path = d / "hierarchy.json"
    path.write_text(obj if isinstance(obj, Raw) else json.dumps(obj))
    return path


@SETTINGS
@given(
    bad=st.one_of(
        bad_hierarchy().map(lambda b: ("hierarchy", *b)), bad_table("predictions").map(lambda b: ("predictions", *b))
    )
)
def test_correct_refuses_bad_hierarchies_and_predictions(bad):
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        out = d / "out" / "corrected.parquet"
        if bad[0] == "hierarchy":
            _, obj, where = bad
            hierarchy, predictions = write_hierarchy(d, obj), write_table(d, "pred", LABELS, "jsonl")
            bad_file = hierarchy
        else:
            _, records, column, row, fmt = bad
            hierarchy, predictions = write_hierarchy(d, HIERARCHY), write_table(d, "pred", records, fmt)
            bad_file, where = predictions, table_locators(column, row)
        assert_refused(
            ["correct", "--hierarchy", hierarchy, "--predictions", predictions, "--out", out],
            bad_file,
            where,
            [out],
            d,
            "correct",
        )


@st.composite
def bad_accuracy(draw, models=("a", "b")):
    obj = {m: copy.deepcopy(ACCURACY[m]) for m in models}
    model = draw(st.sampled_from(models))
    kind = draw(st.sampled_from(["no model", "no level", "bad value", "model not object", "not object"]))
    if kind == "no model":
        del obj[model]
        return obj, [f"key {model}"]
    if kind == "model not object":
        obj[model] = draw(st.sampled_from([0.5, [0.5], None, "x"]))
        return obj, [f"key {model}"]
    if kind == "not object":
        return draw(st.sampled_from([[], 0.5, None, "acc"])), ["expected a JSON object"]
    level = draw(st.sampled_from(LEVELS))
    if kind == "no level":
        del obj[model][level]
    else:
        obj[model][level] = draw(
            st.one_of(
                st.sampled_from([None, "high", True, [0.5], {}]),
                st.floats(max_value=-1e-9),
                st.floats(min_value=1.0000001),
                st.just(math.nan),
            )
        )
    return obj, [f"key {model}.{level}"]


@SETTINGS
@given(
    bad=st.one_of(
        bad_table("predictions", allow_missing_rows=True).map(lambda b: ("predictions", *b)),
        bad_hierarchy().map(lambda b: ("hierarchy", *b)),
        bad_accuracy().map(lambda b: ("accuracy", *b)),
    )
)
def test_vote_refuses_bad_predictions_hierarchies_and_accuracies(bad):
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        out = d / "out" / "voted.parquet"
        hierarchy, accuracy = write_hierarchy(d, HIERARCHY), write_json(d / "acc.json", ACCURACY)
        first = write_table(d, "first", LABELS, "jsonl")
        second = write_table(d, "second", LABELS, "jsonl")
        if bad[0] == "predictions":
            _, records, column, row, fmt = bad
            second = write_table(d, "second_bad", records, fmt)
            bad_file, where = second, table_locators(column, row)
        elif bad[0] == "hierarchy":
            hierarchy, where = write_hierarchy(d, bad[1]), bad[2]
            bad_file = hierarchy
        else:
            accuracy, where = write_json(d / "acc.json", bad[1]), bad[2]
            bad_file = accuracy
        assert_refused(
            ["vote", "--hierarchy", hierarchy, "--accuracy", accuracy, "--out", out, f"a={first}", f"b={second}"],
            bad_file,
            where,
            [out],
            d,
            "vote",
        )


@SETTINGS
@given(
    bad=st.one_of(
        bad_table("rows").map(lambda b: ("truth", *b)),
        bad_table("predictions", allow_missing_rows=True).map(lambda b: ("predictions", *b)),
    )
)
def test_evaluate_refuses_bad_truth_and_predictions(bad):
    which, records, column, row, fmt = bad
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        truth = write_table(d, "truth", records if which == "truth" else ROWS, fmt)
        predictions = write_table(d, "pred", records if which == "predictions" else LABELS, fmt)
        out = d / "out" / "metrics.json"
        assert_refused(
            ["evaluate", "--truth", truth, "--out", out, f"m:raw={predictions}"],
            truth if which == "truth" else predictions,
            table_locators(column, row),
            [out],
            d,
            "evaluate",
        )


@st.composite
def bad_run(draw):
    """A results folder broken in one way: (what to write, the bad file's name, locators)."""
    kind = draw(st.sampled_from(["manifest key", "manifest type", "manifest text", "accuracy", "hierarchy"]))
    manifest = copy.deepcopy(MANIFEST)
    if kind == "manifest key":
        key = draw(st.sampled_from(sorted(manifest)))
        del manifest[key]
        return {"manifest": manifest}, "manifest.json", ["is a required property"]
    if kind == "manifest type":
        key = draw(st.sampled_from(["labelers", "namer", "correction", "hierarchy", "level_accuracy"]))
        manifest[key] = draw(
            st.sampled_from([[], 3, None, {"x": 1}] if key in ("hierarchy", "level_accuracy") else [[], 3, None, "x"])
        )
        return {"manifest": manifest}, "manifest.json", [f"key {key}"]
    if kind == "manifest text":
        text = json.dumps(manifest)
        return {"manifest": Raw(text[: draw(st.integers(1, len(text) - 1))])}, "manifest.json", ["line 1 column"]
    if kind == "accuracy":
        accuracy, where = draw(bad_accuracy(models=("a",)))  # the manifest's one labeler
        return {"accuracy": accuracy}, "level_accuracy.corrected.json", where
    obj, where = draw(bad_hierarchy())
    return {"hierarchy": obj}, "hierarchy.json", where


@SETTINGS
@given(bad=st.one_of(bad_table("features").map(lambda b: ("input", *b)), bad_run().map(lambda b: ("run", *b))))
def test_predict_refuses_bad_input_and_a_broken_run(bad):
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        run_dir = d / "results"
        (run_dir / "data").mkdir(parents=True)
        (run_dir / "ensemble").mkdir()
        files = {
            "manifest": run_dir / "manifest.json",
            "hierarchy": run_dir / "data" / "hierarchy.json",
            "accuracy": run_dir / "ensemble" / "level_accuracy.corrected.json",
        }
        contents = {"manifest": MANIFEST, "hierarchy": HIERARCHY, "accuracy": {"a": ACCURACY["a"]}}
        features = write_table(d, "new", FEATURES, "jsonl")
        if bad[0] == "input":
            _, records, column, row, fmt = bad
            features = write_table(d, "new_bad", records, fmt)
            bad_file, where = features, table_locators(column, row)
        else:
            _, broken, name, where = bad
            contents.update(broken)
            bad_file = next(files[k] for k in broken)
            assert bad_file.name == name
        for key, path in files.items():
            obj = contents[key]
            path.write_text(obj if isinstance(obj, Raw) else json.dumps(obj))
        out = d / "out" / "labels.parquet"
        assert_refused(
            ["predict", "--models", run_dir, "--input", features, "--out", out], bad_file, where, [out], d, "predict"
        )


@SETTINGS
@given(bad=bad_table("submission"))
def test_submission_refuses_bad_predictions(bad):
    records, column, row, fmt = bad
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        predictions = write_table(d, "pred", records, fmt)
        out = d / "out" / "ensemble.predict"
        assert_refused(
            ["submission", "--predictions", predictions, "--out", out],
            predictions,
            table_locators(column, row),
            [out],
            d,
            "submission",
        )


@SETTINGS
@given(
    name=st.text(alphabet="abcdefghij_.-", min_size=1, max_size=12).filter(lambda n: n not in {".", ".."}),
    content=st.binary(max_size=20),
)
def test_make_sample_refuses_an_out_that_is_a_file(name, content):
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        target = d / name
        target.write_bytes(content)
        assert_refused(
            ["make-sample", "--out", target, "--train", "3", "--test", "2"], target, ["is a file"], [], d, "make-sample"
        )
        assert target.read_bytes() == content and [p.name for p in d.iterdir()] == [name]


@pytest.fixture(scope="module", autouse=True)
def report_generated_cases():
    yield
    if GENERATED:
        print(f"\nhypothesis bad-input cases run: {sum(GENERATED.values())} {dict(sorted(GENERATED.items()))}")

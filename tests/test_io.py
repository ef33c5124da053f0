import json
import math
from pathlib import Path

import pandas as pd
import pytest
from tests.conftest import write_jsonl

from prodcat import LEVELS
from prodcat.cli import main
from prodcat.data.io import ingest
from prodcat.runtime.errors import InputError

FEATURES = [
    {"indoml_id": 1, "description": "cad 5 pk creme egg 197 g", "retailer": "greenzen", "price": "1.99"},
    {"indoml_id": 2, "description": "1 adblue", "retailer": "organicorner", "price": 25.35},
    {"indoml_id": 3, "description": "dm br o bottle", "retailer": "producify", "price": None},
]
LABELS = [{"indoml_id": i, "supergroup": "sg", "group": "g", "module": "m", "brand": f"b{i}"} for i in (3, 1, 2)]


def test_jsonl_features_and_labels_are_joined_and_prices_parsed(tmp_path):
    rows = ingest(write_jsonl(tmp_path / "train.features", FEATURES), write_jsonl(tmp_path / "train.labels", LABELS))
    assert rows["indoml_id"].tolist() == [1, 2, 3]
    assert rows["price"].iloc[0] == pytest.approx(1.99)
    assert rows["price"].iloc[1] == pytest.approx(25.35)
    assert math.isnan(rows["price"].iloc[2])
    assert rows["brand"].tolist() == ["b1", "b2", "b3"]
    assert str(rows["indoml_id"].dtype) == "int64" and str(rows["price"].dtype) == "float64"


def test_parquet_with_inline_labels_and_string_prices(tmp_path):
    frame = pd.DataFrame(FEATURES)
    frame["price"] = ['"1.99"', "25.35", None]
    for level in LEVELS:
        frame[level] = "x"
    frame.to_parquet(tmp_path / "rows.parquet")
    rows = ingest(tmp_path / "rows.parquet")
    assert rows["price"].iloc[0] == pytest.approx(1.99)
    assert math.isnan(rows["price"].iloc[2])
    assert all(level in rows for level in LEVELS)


def bad(change=None, drop=None):
    """FEATURES with {(row, column): value} changed, or one column dropped."""
    features = [dict(r) for r in FEATURES]
    for (row, column), value in (change or {}).items():
        features[row][column] = value
    if drop:
        for r in features:
            r.pop(drop)
    return features


@pytest.mark.parametrize(
    "features, labels, expected",
    [
        (bad(drop="retailer"), None, ["column 'retailer'", "missing column"]),
        (bad({(1, "indoml_id"): "abc"}), None, ["column 'indoml_id'", "row 2", "integer"]),
        (bad({(1, "indoml_id"): 1}), None, ["column 'indoml_id'", "row 2", "duplicate"]),
        (bad({(2, "description"): "   "}), None, ["column 'description'", "row 3", "non-empty"]),
        (bad({(0, "description"): 17}), None, ["column 'description'", "row 1", "string"]),
        (bad({(0, "price"): "one ninety"}), None, ["column 'price'", "row 1", "number"]),
        (bad({(1, "price"): -3}), None, ["column 'price'", "row 2", "non-negative"]),
        # issue 16: ids that int() reads or that overflow int64 were tracebacks
        (bad({(1, "indoml_id"): "--5"}), None, ["column 'indoml_id'", "row 2", "integer"]),
        (bad({(1, "indoml_id"): "²"}), None, ["column 'indoml_id'", "row 2", "integer"]),
        (bad({(1, "indoml_id"): "1_000"}), None, ["column 'indoml_id'", "row 2", "integer"]),
        (bad({(2, "indoml_id"): 2**70}), None, ["column 'indoml_id'", "row 3", "64-bit"]),
        (bad({(2, "indoml_id"): 1e30}), None, ["column 'indoml_id'", "row 3", "64-bit"]),
        (bad({(2, "indoml_id"): 1.5}), None, ["column 'indoml_id'", "row 3", "integer"]),
        # issue 16: very large and non-finite prices are refused (nan stays "missing")
        (bad({(0, "price"): 1e300}), None, ["column 'price'", "row 1", "below 1,000,000"]),
        (bad({(0, "price"): "Infinity"}), None, ["column 'price'", "row 1", "finite"]),
        (
            FEATURES,
            LABELS + [{"indoml_id": 9, "supergroup": "s", "group": "g", "module": "m", "brand": "b"}],
            ["train.labels", "indoml_id 9", "row 4"],
        ),
        (FEATURES, LABELS[:2], ["train.features", "indoml_id 2", "no labels"]),
        (FEATURES, [dict(LABELS[0], brand=None)] + LABELS[1:], ["train.labels", "column 'brand'", "row 1"]),
    ],
)
def test_bad_input_names_file_column_and_row(tmp_path, features, labels, expected):
    features_path = write_jsonl(tmp_path / "train.features", features)
    labels_path = write_jsonl(tmp_path / "train.labels", labels) if labels is not None else None
    with pytest.raises(InputError) as info:
        ingest(features_path, labels_path)
    message = str(info.value)
    for fragment in expected:
        assert fragment in message, message


def test_unreadable_and_unknown_files(tmp_path):
    broken = tmp_path / "x.parquet"
    broken.write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match="cannot read as Parquet"):
        ingest(broken)
    bad_json = tmp_path / "x.jsonl"
    bad_json.write_text('{"indoml_id": 1}\n{oops\n')
    with pytest.raises(InputError, match="row 2.*not valid JSON"):
        ingest(bad_json)
    csv = tmp_path / "x.csv"
    csv.write_text("a,b\n")
    with pytest.raises(InputError, match="unknown file type"):
        ingest(csv)
    with pytest.raises(InputError, match="file not found"):
        ingest(tmp_path / "missing.parquet")


def test_cli_exits_2_and_writes_nothing_on_bad_input(tmp_path, capsys):
    features = bad({(2, "description"): ""})
    out = tmp_path / "out" / "rows.parquet"
    status = main(["ingest", "--features", str(write_jsonl(tmp_path / "t.features", features)), "--out", str(out)])
    assert status == 2
    err = capsys.readouterr().err
    assert "t.features" in err and "column 'description'" in err and "row 3" in err
    assert not out.exists()
    assert not list(tmp_path.rglob("*.tmp"))


def test_cli_ingest_writes_validated_parquet(tmp_path):
    out = tmp_path / "rows.parquet"
    status = main(
        [
            "ingest",
            "--features",
            str(write_jsonl(tmp_path / "t.features", FEATURES)),
            "--labels",
            str(write_jsonl(tmp_path / "t.labels", LABELS)),
            "--out",
            str(out),
        ]
    )
    assert status == 0
    rows = pd.read_parquet(out)
    assert len(rows) == 3 and set(LEVELS) <= set(rows.columns)
    assert json.loads(rows.to_json())["price"]["2"] is None


def test_ids_in_range_and_decimal_strings_are_read(tmp_path):
    features = bad({(0, "indoml_id"): " 7 ", (1, "indoml_id"): 2**63 - 1, (2, "indoml_id"): -(2**63)})
    rows = ingest(write_jsonl(tmp_path / "t.features", features))
    assert rows["indoml_id"].tolist() == [7, 2**63 - 1, -(2**63)]


@pytest.mark.parametrize("column", ["description", "retailer"])
def test_lone_surrogate_is_an_input_error_not_a_traceback(tmp_path, column):
    record = dict(FEATURES[0], **{column: "ab\ud800c"})
    path = tmp_path / "t.features"
    path.write_text(json.dumps(FEATURES[1]) + "\n" + json.dumps(record, ensure_ascii=True) + "\n")
    with pytest.raises(InputError, match="lone surrogate") as info:
        ingest(path)
    assert info.value.column == column and info.value.row == 2


@pytest.mark.parametrize(
    "label, problem",
    [
        ("a | b", "reserved separator"),
        ("dai\nry", "line break"),
        ("dai\rry", "line break"),
        (" milk", "white space"),
        ("milk\t", "white space"),
    ],
)
def test_labels_that_would_break_the_target_text_are_refused_at_ingest(tmp_path, label, problem):
    labels = [dict(r) for r in LABELS]
    labels[1]["module"] = label
    with pytest.raises(InputError, match=problem) as info:
        ingest(write_jsonl(tmp_path / "t.features", FEATURES), write_jsonl(tmp_path / "t.labels", labels))
    assert info.value.path.endswith("t.labels") and info.value.column == "module" and info.value.row == 2
    # a "|" without the spaces of the separator is an ordinary character
    labels[1]["module"] = "a|b"
    assert ingest(tmp_path / "t.features", write_jsonl(tmp_path / "t.labels", labels))["module"].tolist()[0] == "a|b"


def test_price_nan_is_missing_and_the_price_limit_is_exclusive(tmp_path):
    from prodcat.data.io import MAX_PRICE

    rows = ingest(write_jsonl(tmp_path / "t.features", bad({(0, "price"): "NaN", (1, "price"): MAX_PRICE - 0.01})))
    assert math.isnan(rows["price"].iloc[0]) and rows["price"].iloc[1] == pytest.approx(MAX_PRICE - 0.01)
    with pytest.raises(InputError, match="below"):
        ingest(write_jsonl(tmp_path / "t.features", bad({(1, "price"): MAX_PRICE})))


# ---- atomic writes (issue 16: fsync before the rename, temporary files removed on SIGTERM) ----------
def test_atomic_write_fsyncs_the_data_before_the_rename(tmp_path, monkeypatch):
    import os

    from prodcat.data import io as prodcat_io

    events = []
    real_fsync, real_replace = os.fsync, Path.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(self, target):
        events.append(("rename", str(self), str(target)))
        return real_replace(self, target)

    monkeypatch.setattr(prodcat_io.os, "fsync", fsync)
    monkeypatch.setattr(Path, "replace", replace)
    out = tmp_path / "o.json"
    prodcat_io.write_json({"a": 1}, out)
    assert json.loads(out.read_text()) == {"a": 1}
    tmp = events[0][1]
    assert Path(tmp).name.startswith(".o.json.") and tmp.endswith(".tmp")
    assert events[1] == ("rename", tmp, str(out))
    assert events[2] == ("fsync", str(tmp_path))  # and the folder, so the rename itself is durable


def test_atomic_paths_write_all_outputs_or_none(tmp_path):
    from prodcat.data.io import atomic_paths

    a, b = tmp_path / "a.txt", tmp_path / "sub" / "b.txt"
    with pytest.raises(RuntimeError):
        with atomic_paths(a, b) as (ta, tb):
            ta.write_text("a")
            tb.write_text("b")
            raise RuntimeError("fails after both were written")
    assert not a.exists() and not b.exists() and not list(tmp_path.rglob("*.tmp"))
    with atomic_paths(a, b) as (ta, tb):
        ta.write_text("a")
        tb.write_text("b")
    assert a.read_text() == "a" and b.read_text() == "b"
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="cannot create the output's folder"):
        with atomic_paths(a, tmp_path / "file" / "c.txt"):
            raise AssertionError("the block must not run when an output path is bad")
    with pytest.raises(InputError, match="is a folder"):
        with atomic_paths(tmp_path / "sub"):
            pass


def test_sigterm_removes_the_temporary_file_being_written(tmp_path):
    """A process killed by SIGTERM in the middle of a write leaves no temporary file and no output,
    and still dies of the signal."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "o.txt"
    ready = tmp_path / "ready"
    script = (
        "import sys, time; from pathlib import Path; from prodcat.data.io import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n"
        "    tmp.write_text('half')\n"
        "    Path(sys.argv[2]).write_text(str(tmp))\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(out), str(ready)])
    try:
        deadline = time.time() + 30
        while not (ready.exists() and ready.read_text()) and time.time() < deadline:
            time.sleep(0.05)
        tmp = Path(ready.read_text())
        assert tmp.exists()
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not tmp.exists() and not out.exists()


def test_a_table_with_some_but_not_all_label_columns_is_refused(tmp_path):
    frame = pd.DataFrame(FEATURES).assign(price=[1.99, 25.35, None], supergroup="sg", group="g", brand="b")  # no module
    frame.to_parquet(tmp_path / "rows.parquet")
    with pytest.raises(InputError, match="missing column") as info:
        ingest(tmp_path / "rows.parquet")
    assert info.value.column == "module"

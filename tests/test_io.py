import json
import math

import pandas as pd
import pytest

from prodcat import LEVELS
from prodcat.cli import main
from prodcat.errors import InputError
from prodcat.io import ingest
from tests.conftest import write_jsonl

FEATURES = [
    {"indoml_id": 1, "description": "cad 5 pk creme egg 197 g", "retailer": "greenzen", "price": "1.99"},
    {"indoml_id": 2, "description": "1 adblue", "retailer": "organicorner", "price": 25.35},
    {"indoml_id": 3, "description": "dm br o bottle", "retailer": "producify", "price": None},
]
LABELS = [
    {"indoml_id": i, "supergroup": "sg", "group": "g", "module": "m", "brand": f"b{i}"} for i in (3, 1, 2)
]


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
        (FEATURES, LABELS + [{"indoml_id": 9, "supergroup": "s", "group": "g", "module": "m", "brand": "b"}],
         ["train.labels", "indoml_id 9", "row 4"]),
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
    status = main(["ingest", "--features", str(write_jsonl(tmp_path / "t.features", FEATURES)),
                   "--labels", str(write_jsonl(tmp_path / "t.labels", LABELS)), "--out", str(out)])
    assert status == 0
    rows = pd.read_parquet(out)
    assert len(rows) == 3 and set(LEVELS) <= set(rows.columns)
    assert json.loads(rows.to_json())["price"]["2"] is None

import json

import pandas as pd
import pytest

from prodcat import LEVELS
from prodcat.data.io import ingest
from prodcat.data.submission import write_submission
from prodcat.runtime.errors import InputError


def _predictions():
    return pd.DataFrame(
        {
            "indoml_id": pd.Series([7, 3, 11], dtype="int64"),
            "supergroup": ["baby care", "automotive", "baby care"],
            "group": ["baby feeding accessories", "automotive detail unknown total", "baby care detail unknown total"],
            "module": ["baby feeding accessories", "automotive", "baby care"],
            "brand": ["dr browns", "receipt all", "pure baby"],
            "text": ["raw", "raw", "raw"],
            "vote_agreement": [3, 2, 1],
        }
    )


def _features(tmp_path):
    path = tmp_path / "test.features"
    rows = [
        {"indoml_id": 3, "description": "1 adblue", "retailer": "organicorner", "price": 25.35},
        {"indoml_id": 7, "description": "dm br o bottle", "retailer": "producify", "price": "1.35"},
        {"indoml_id": 11, "description": "pbaby disposable bed mats 10 s", "retailer": "herbgrove", "price": 2.99},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_writes_exactly_the_submission_keys_with_integer_ids(tmp_path):
    out = tmp_path / "attribute_test.predict"
    write_submission(_predictions(), out)
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [list(r) for r in records] == [["indoml_id", *LEVELS]] * 3
    assert [r["indoml_id"] for r in records] == [7, 3, 11]
    assert all(type(r["indoml_id"]) is int for r in records)
    assert records[0]["brand"] == "dr browns"


def test_round_trips_through_ingest(tmp_path):
    out = tmp_path / "attribute_test.predict"
    predictions = _predictions()
    write_submission(predictions, out)
    rows = ingest(_features(tmp_path), labels_path=out)
    merged = rows.merge(predictions, on="indoml_id", suffixes=("", "_pred"))
    assert len(merged) == 3
    for level in LEVELS:
        assert merged[level].tolist() == merged[f"{level}_pred"].tolist()
    assert rows.set_index("indoml_id").loc[3, "supergroup"] == "automotive"


@pytest.mark.parametrize("missing", [None, float("nan"), pd.NA, "", "  "])
def test_missing_label_is_an_error_naming_the_row_and_nothing_is_written(tmp_path, missing):
    out = tmp_path / "sub.jsonl"
    out.write_text("previous\n")
    predictions = _predictions().astype({"module": object})
    predictions.loc[1, "module"] = missing
    with pytest.raises(InputError) as caught:
        write_submission(predictions, out, source="results/vote/test.parquet")
    message = str(caught.value)
    assert "results/vote/test.parquet" in message
    assert "row 2" in message and "'module'" in message and "indoml_id 3" in message
    assert out.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub.jsonl"]


def test_missing_column_and_bad_ids_are_errors(tmp_path):
    with pytest.raises(InputError, match="brand"):
        write_submission(_predictions().drop(columns="brand"), tmp_path / "a.jsonl")
    duplicated = _predictions()
    duplicated.loc[2, "indoml_id"] = 7
    with pytest.raises(InputError, match="duplicate indoml_id 7"):
        write_submission(duplicated, tmp_path / "b.jsonl")
    fractional = _predictions().astype({"indoml_id": "float64"})
    with pytest.raises(InputError, match="integers"):
        write_submission(fractional, tmp_path / "c.jsonl")
    assert list(tmp_path.iterdir()) == []

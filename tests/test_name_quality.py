"""name_quality matches names, rows and true names on (split, indoml_id): ids are unique within a
file, not across files (issue 16: test ids that repeat training ids stopped the workflow)."""

from types import SimpleNamespace

import pandas as pd
import pytest

from prodcat import LEVELS
from prodcat.runtime.errors import InputError
from prodcat.workflow import name_quality, true_names_by_dataset


def rows(ids, descriptions):
    return pd.DataFrame(
        {
            "indoml_id": ids,
            "description": descriptions,
            "retailer": "r",
            "price": 1.0,
            **{level: "x" for level in LEVELS},
        }
    )


def names(ids, texts):
    return pd.DataFrame({"indoml_id": ids, "name": texts, "status": "ok"})


def test_true_names_are_keyed_by_file_and_id():
    table = pd.DataFrame(
        {"indoml_id": [0, 1, 0], "name": ["train zero", "train one", "test zero"], "split": ["train", "train", "test"]}
    )
    by_dataset = true_names_by_dataset(table, "names.jsonl")
    assert by_dataset["train"].to_dict() == {0: "train zero", 1: "train one"}
    assert by_dataset["test"].to_dict() == {0: "test zero"}
    with pytest.raises(InputError, match="two names for indoml_id 0 of the train file") as info:
        true_names_by_dataset(pd.concat([table, table.iloc[:1]], ignore_index=True), "names.jsonl")
    assert info.value.row == 4 and info.value.column == "indoml_id"


def test_name_quality_with_test_ids_that_repeat_training_ids(tmp_path):
    split_rows = {"train": rows([0, 1], ["aa", "bb"]), "val": rows([2], ["cc"]), "test": rows([0, 1], ["dd", "ee"])}
    for split, frame in split_rows.items():
        frame.to_parquet(tmp_path / f"{split}.parquet")
    truth = pd.DataFrame(
        {
            "indoml_id": [0, 1, 2, 0, 1],
            "name": ["aa", "bb", "cc", "dd", "ee"],
            "split": ["train", "train", "train", "test", "test"],
        }
    )
    truth.to_parquet(tmp_path / "names.parquet")
    (tmp_path / "teacher").mkdir()
    (tmp_path / "student").mkdir()
    names([0, 1], ["aa", "bb"]).to_parquet(tmp_path / "teacher" / "train.parquet")
    names([2], ["cc"]).to_parquet(tmp_path / "teacher" / "val.parquet")
    names([2], ["cc"]).to_parquet(tmp_path / "student" / "val.parquet")
    names([0, 1], ["dd", "ee"]).to_parquet(tmp_path / "student" / "test.parquet")
    smk = SimpleNamespace(
        input=SimpleNamespace(
            truth=str(tmp_path / "names.parquet"),
            rows=[str(tmp_path / f"{s}.parquet") for s in ("train", "val", "test")],
            teacher=[str(tmp_path / "teacher" / f"{s}.parquet") for s in ("train", "val")],
            student=[str(tmp_path / "student" / f"{s}.parquet") for s in ("val", "test")],
        ),
        output=SimpleNamespace(csv=str(tmp_path / "names.csv"), md=str(tmp_path / "names.md")),
        params=SimpleNamespace(teacher={"tiny": True, "warmup": None}),
        log=[str(tmp_path / "log.txt")],
    )
    name_quality(smk)
    table = pd.read_csv(tmp_path / "names.csv")
    # every name equals its own row's true name and description: keyed by id alone, test ids 0 and 1
    # would meet the training rows' names and descriptions
    assert table["exact"].tolist() == [1.0] * 4
    assert table["chrf"].tolist() == [100.0] * 4 and table["chrf_description"].tolist() == [100.0] * 4
    assert table[["names", "split"]].values.tolist() == [
        ["teacher", "train"],
        ["teacher", "val"],
        ["student", "val"],
        ["student", "test"],
    ]

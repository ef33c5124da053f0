import json

import pytest

from prodcat.data.hierarchy import Hierarchy
from prodcat.runtime.errors import InputError


def test_from_frame_counts_order_and_children(labelled_rows, tmp_path):
    h = Hierarchy.from_frame(labelled_rows)
    assert h.n_paths == 4
    assert h.majority_path() == ("dairy & eggs", "yoghurts", "yoghurt drinks", "glenmoor")
    assert h.children(()) == ["dairy & eggs", "snacks"]
    assert h.children(("dairy & eggs",)) == ["yoghurts", "cheese"]
    assert h.children(("dairy & eggs", "yoghurts")) == ["yoghurt drinks", "spoonable yoghurt"]
    assert h.children(("nope",)) == []
    h.to_json(tmp_path / "h.json")
    again = Hierarchy.from_json(tmp_path / "h.json")
    assert again.paths.equals(h.paths)


def test_nested_indoml_form_and_tie_order(tmp_path):
    nested = {"s": {"g": {"m2": ["b", "a"], "m1": ["a"]}}}
    (tmp_path / "n.json").write_text(json.dumps(nested))
    h = Hierarchy.from_json(tmp_path / "n.json")
    assert h.n_paths == 3
    # equal counts: alphabetical, deterministic
    assert h.children(("s", "g")) == ["m2", "m1"]  # m2 has 2 paths (count 2) vs m1 count 1
    assert h.children(("s", "g", "m2")) == ["a", "b"]
    assert h.labels("brand") == ["a", "b"]


def test_supergroups_are_ordered_by_count_not_alphabet(tmp_path):
    import pandas as pd

    h = Hierarchy(
        pd.DataFrame(
            [("drinks", "g", "m", "b", 1), ("food", "g", "m", "b", 5), ("household", "g", "m", "b", 2)],
            columns=["supergroup", "group", "module", "brand", "count"],
        )
    )
    assert h.children(()) == ["food", "household", "drinks"]


# ---- issue 16: the file is validated against a JSON schema; rows in errors are 1-based ------------
GOOD = [["food", "dairy", "milk", "moo", 3], ["home", "clean", "soap", "suds", 1]]


@pytest.mark.parametrize(
    "obj, where, fragment",
    [
        ({"paths": [GOOD[0], ["food", "dairy", None, "moo", 3]]}, {"row": 2, "column": "module"}, "expected a label"),
        (
            {"paths": [GOOD[0], ["food", "dairy", "milk", "moo", "many"]]},
            {"row": 2, "column": "count"},
            "integer count",
        ),
        ({"paths": [GOOD[0], ["food", "dairy", "milk", "moo", 2.5]]}, {"row": 2, "column": "count"}, "integer count"),
        ({"paths": [["food", "dairy", "milk", "moo", 0]]}, {"row": 1, "column": "count"}, "minimum of 1"),
        (
            {"paths": [GOOD[0], ["food", "dairy", "milk", "moo"]]},
            {"row": 2},
            "[supergroup, group, module, brand, count]",
        ),
        ({"paths": [["food", "dairy", "milk", "mo | o", 1]]}, {"row": 1, "column": "brand"}, "reserved separator"),
        ({"paths": [["food ", "dairy", "milk", "moo", 1]]}, {"row": 1, "column": "supergroup"}, "white space"),
        ({"paths": {"food": 1}}, {"key": "paths"}, "expected a list"),
        ({"paths": []}, {"key": "paths"}, "non-empty"),
        ({"food": {"dairy": {"milk": "moo"}}}, {"key": "food → dairy → milk"}, "expected a list"),
        ({"food": {"dairy": {"milk": ["moo", 7]}}}, {"key": "food → dairy → milk → 1"}, "expected a label"),
        ({"food": {"dairy": {"milk": []}}}, {"key": "food → dairy → milk"}, "non-empty"),
        ({"food": ["dairy"]}, {"key": "food"}, "expected a JSON object"),
        ({"food": {"da\nry": {"milk": ["moo"]}}}, {}, "line break"),
        ([GOOD[0]], {}, "expected a JSON object"),
    ],
)
def test_bad_hierarchy_files_name_the_row_column_or_keys(tmp_path, obj, where, fragment):
    path = tmp_path / "h.json"
    path.write_text(json.dumps(obj))
    with pytest.raises(InputError) as info:
        Hierarchy.from_json(path)
    assert fragment in str(info.value) and info.value.path == str(path)
    for attribute, value in where.items():
        assert getattr(info.value, attribute) == value, str(info.value)


def test_a_written_hierarchy_passes_its_schema_and_a_null_label_no_longer_reaches_vote(tmp_path, labelled_rows):
    from prodcat.cli import main

    path = tmp_path / "h.json"
    Hierarchy.from_frame(labelled_rows).to_json(path)
    assert Hierarchy.from_json(path).n_paths == 4
    # before issue 16 a null label loaded, then `vote` and `correct` crashed with IndexError
    path.write_text(json.dumps({"paths": [GOOD[0], ["food", None, "milk", "moo", 1]]}))
    predictions = tmp_path / "p.jsonl"
    predictions.write_text(
        json.dumps({"indoml_id": 1, "supergroup": "food", "group": "dairy", "module": "milk", "brand": "moo"}) + "\n"
    )
    out = tmp_path / "v.parquet"
    assert main(["vote", "--hierarchy", str(path), "--out", str(out), str(predictions)]) == 2
    assert main(["correct", "--hierarchy", str(path), "--predictions", str(predictions), "--out", str(out)]) == 2
    assert not out.exists()

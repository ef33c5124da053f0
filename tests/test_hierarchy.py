import json

from prodcat.hierarchy import Hierarchy


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

    h = Hierarchy(pd.DataFrame([("drinks", "g", "m", "b", 1), ("food", "g", "m", "b", 5), ("household", "g", "m", "b", 2)],
                               columns=["supergroup", "group", "module", "brand", "count"]))
    assert h.children(()) == ["food", "household", "drinks"]

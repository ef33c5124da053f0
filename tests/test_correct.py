"""Hallucination correction: hand-made cases, the topdown/joint trade-off, and property tests
against simple row-by-row reference implementations on random small hierarchies."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest
from rapidfuzz import fuzz

from prodcat import LEVELS
from prodcat.data.hierarchy import Hierarchy
from prodcat.ensemble.correct import correct_predictions

GROCERY = [
    ("food", "dairy", "milk", "arla", 10),
    ("food", "dairy", "milk", "cravendale", 6),
    ("food", "dairy", "cheese", "cathedral city", 5),
    ("food", "bakery", "bread", "warburtons", 8),
    ("food", "bakery", "bread", "hovis", 3),
    ("drinks", "soft drinks", "cola", "coca cola", 7),
    ("drinks", "soft drinks", "cola", "pepsi", 4),
    ("drinks", "beer", "lager", "carling", 2),
    ("household", "cleaning", "bleach", "domestos", 1),
]


def hierarchy_of(rows) -> Hierarchy:
    return Hierarchy(pd.DataFrame(rows, columns=[*LEVELS, "count"]))


def predictions_of(*paths) -> pd.DataFrame:
    frame = pd.DataFrame([list(p) for p in paths], columns=list(LEVELS), dtype=object)
    frame.insert(0, "indoml_id", np.arange(len(paths), dtype=np.int64))
    frame["text"] = [f"raw {i}" for i in range(len(paths))]
    frame["parse_ok"] = [all(label is not None for label in p) for p in paths]
    return frame


def labels_of(frame: pd.DataFrame) -> list[tuple]:
    return list(frame[list(LEVELS)].itertuples(index=False, name=None))


@pytest.fixture
def grocery() -> Hierarchy:
    return hierarchy_of(GROCERY)


# ---- hand-made cases ------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["topdown", "joint"])
def test_typo_is_fixed_and_flagged(grocery, method):
    out = correct_predictions(predictions_of(("food", "dairy", "milk", "arlla")), grocery, method)
    assert labels_of(out) == [("food", "dairy", "milk", "arla")]
    assert out.loc[0, "corrected_levels"] == "brand"
    assert out.loc[0, "corrected_brand"] and not out.loc[0, "corrected_module"]
    assert [out[f"corrected_{level}"].dtype for level in LEVELS] == [bool] * 4


@pytest.mark.parametrize("method", ["topdown", "joint"])
def test_valid_paths_are_untouched_and_other_columns_kept(grocery, method):
    paths = [p[:4] for p in GROCERY]
    predictions = predictions_of(*paths).set_index(pd.Index(range(100, 100 + len(paths))))
    out = correct_predictions(predictions, grocery, method)
    assert labels_of(out) == paths
    assert list(out.index) == list(predictions.index)
    assert (out["corrected_levels"] == "").all()
    assert not out[[f"corrected_{level}" for level in LEVELS]].to_numpy().any()
    kept = ["indoml_id", "text", "parse_ok"]
    pd.testing.assert_frame_equal(out[kept], predictions[kept])


def test_topdown_forces_the_group_under_the_chosen_supergroup(grocery):
    # "dairy" is a valid group, but not under "drinks": the closest drinks group is taken
    # (ratio: "soft drinks" 25.0 > "beer" 22.2), then the only module and the closest brand there.
    out = correct_predictions(predictions_of(("drinks", "dairy", "milk", "arla")), grocery, "topdown")
    assert labels_of(out) == [("drinks", "soft drinks", "cola", "coca cola")]
    assert out.loc[0, "corrected_levels"] == "group,module,brand"


def test_missing_labels_take_the_most_frequent_child(grocery):
    out = correct_predictions(
        predictions_of(("food", None, None, None), (None, None, None, None), ("drinks", "beer", None, None)),
        grocery,
        "topdown",
    )
    assert labels_of(out) == [
        ("food", "dairy", "milk", "arla"),  # dairy 21 > bakery 11; milk 16 > cheese 5
        ("food", "dairy", "milk", "arla"),  # food 32 > drinks 13 > household 1
        ("drinks", "beer", "lager", "carling"),
    ]
    assert list(out["corrected_levels"]) == ["group,module,brand", "supergroup,group,module,brand", "module,brand"]


def test_missing_values_of_any_kind_count_as_missing(grocery):
    predictions = predictions_of(("food", "dairy", "milk", "arla"), ("food", "dairy", "milk", "arla"))
    predictions["brand"] = pd.array([np.nan, pd.NA], dtype=object)
    out = correct_predictions(predictions, grocery, "topdown")
    assert list(out["brand"]) == ["arla", "arla"]
    assert out["corrected_brand"].all()


@pytest.mark.parametrize("method", ["topdown", "joint"])
def test_similarity_tie_goes_to_the_more_frequent_label(method):
    # ratio("abcz", "abcx") == ratio("abcz", "abcy") == 75: frequency decides, whichever way round.
    for frequent, rare in (("abcx", "abcy"), ("abcy", "abcx")):
        hierarchy = hierarchy_of([("s", "g", "m", frequent, 5), ("s", "g", "m", rare, 2)])
        out = correct_predictions(predictions_of(("s", "g", "m", "abcz")), hierarchy, method)
        assert out.loc[0, "brand"] == frequent
    # Equal counts: alphabetical, the hierarchy's own order.
    hierarchy = hierarchy_of([("s", "g", "m", "abcy", 1), ("s", "g", "m", "abcx", 1)])
    assert correct_predictions(predictions_of(("s", "g", "m", "abcz")), hierarchy, method).loc[0, "brand"] == "abcx"


def test_joint_fixes_a_supergroup_typo_that_misleads_topdown():
    hierarchy = hierarchy_of(
        [
            ("fresh", "fruit", "apples", "pink lady", 9),
            ("fresh", "vegetables", "carrots", "growers pride", 4),
            ("frozen", "frozen veg", "peas", "birds eye", 3),
        ]
    )
    # "frezh" is closer to "fresh" (80.0) than to "frozen" (54.5); group, module and the brand
    # exist under "frozen" only.
    predicted = predictions_of(("frezh", "frozen veg", "peas", "birds eye"))
    topdown = correct_predictions(predicted, hierarchy, "topdown")
    joint = correct_predictions(predicted, hierarchy, "joint")
    assert labels_of(topdown)[0][0] == "fresh"
    assert labels_of(joint) == [("frozen", "frozen veg", "peas", "birds eye")]
    assert joint.loc[0, "corrected_levels"] == "supergroup"


def test_topdown_keeps_an_exact_module_that_joint_gives_up():
    hierarchy = hierarchy_of(
        [
            ("drinks", "soft drinks", "cola", "pepsi", 4),
            ("drinks", "soft drinks", "colas", "pepsi max", 1),
        ]
    )
    # The module is exactly right, the brand is a hallucinated neighbour: topdown trusts the
    # module; joint prefers colas/pepsi max (88.9 + 100 > 100 + 71.4).
    predicted = predictions_of(("drinks", "soft drinks", "cola", "pepsi max"))
    topdown = correct_predictions(predicted, hierarchy, "topdown")
    joint = correct_predictions(predicted, hierarchy, "joint")
    assert labels_of(topdown) == [("drinks", "soft drinks", "cola", "pepsi")]
    assert labels_of(joint) == [("drinks", "soft drinks", "colas", "pepsi max")]
    # Weighting the module up makes joint agree with topdown.
    weighted = correct_predictions(predicted, hierarchy, "joint", weights={"module": 3.0})
    assert labels_of(weighted) == [("drinks", "soft drinks", "cola", "pepsi")]


def test_joint_missing_labels_score_zero(grocery):
    out = correct_predictions(predictions_of((None, None, None, "pepsi"), (None, None, None, None)), grocery, "joint")
    assert labels_of(out) == [("drinks", "soft drinks", "cola", "pepsi"), ("food", "dairy", "milk", "arla")]


def test_bad_arguments_are_refused(grocery):
    predictions = predictions_of(("food", "dairy", "milk", "arla"))
    with pytest.raises(ValueError, match="method"):
        correct_predictions(predictions, grocery, "nearest")
    with pytest.raises(ValueError, match="scorer"):
        correct_predictions(predictions, grocery, scorer="levenshtein")
    with pytest.raises(ValueError, match="unknown level"):
        correct_predictions(predictions, grocery, "joint", weights={"brnad": 1.0})
    with pytest.raises(ValueError, match="non-negative"):
        correct_predictions(predictions, grocery, "joint", weights={"brand": -1.0})
    with pytest.raises(ValueError, match="brand"):
        correct_predictions(predictions.drop(columns="brand"), grocery)


@pytest.mark.parametrize("method", ["topdown", "joint"])
def test_empty_predictions(grocery, method):
    out = correct_predictions(predictions_of(), grocery, method)
    assert len(out) == 0 and "corrected_levels" in out.columns


# ---- property tests against row-by-row references -------------------------------------------
def reference_topdown(row, hierarchy: Hierarchy) -> tuple:
    """The paper's walk, one row at a time."""
    chosen: tuple = ()
    for label in row:
        children = hierarchy.children(chosen)
        if label is None:
            best = children[0]
        elif label in children:
            best = label
        else:
            best = max(children, key=lambda child: fuzz.ratio(label, child))  # first max wins
        chosen += (best,)
    return chosen


def reference_joint(row, paths: list[tuple], weights: dict[str, float]) -> tuple:
    """Score every path (in hierarchy order); the first best one."""
    if tuple(row) in paths:
        return tuple(row)

    def score(path):
        total = 0.0
        for level, label, candidate in zip(LEVELS, row, path):
            total += weights.get(level, 1.0) * (0.0 if label is None else fuzz.ratio(label, candidate))
        return total

    return max(paths, key=score)


def random_label(rng: random.Random) -> str:
    # A tiny alphabet, so that near-misses and similarity ties are common.
    return "".join(rng.choice("abcd") for _ in range(rng.randint(1, 5)))


def random_hierarchy(rng: random.Random) -> Hierarchy:
    rows = []
    for _ in range(rng.randint(1, 25)):
        rows.append((*(random_label(rng) for _ in LEVELS), rng.randint(1, 4)))
        if rows and rng.random() < 0.5:  # share a prefix with an earlier path
            base = rng.choice(rows)
            depth = rng.randint(1, 3)
            rows.append((*base[:depth], *(random_label(rng) for _ in range(4 - depth)), rng.randint(1, 4)))
    return hierarchy_of(rows)


def random_predictions(rng: random.Random, hierarchy: Hierarchy, n: int) -> list[tuple]:
    paths = labels_of(hierarchy.paths)
    all_labels = [sorted({p[d] for p in paths}) for d in range(4)]
    rows = []
    for _ in range(n):
        path = list(rng.choice(paths))
        for d in range(4):
            roll = rng.random()
            if roll < 0.15:
                path[d] = None
            elif roll < 0.35:
                path[d] = random_label(rng)
            elif roll < 0.5:
                path[d] = rng.choice(all_labels[d])  # valid label, maybe in another branch
        rows.append(tuple(path))
    return rows + rows[: n // 4]  # repeated rows exercise the de-duplication


def test_topdown_matches_the_row_by_row_reference_on_random_hierarchies():
    rng = random.Random(20240)
    for _ in range(60):
        hierarchy = random_hierarchy(rng)
        rows = random_predictions(rng, hierarchy, 40)
        out = correct_predictions(predictions_of(*rows), hierarchy, "topdown")
        assert labels_of(out) == [reference_topdown(row, hierarchy) for row in rows]


def test_joint_matches_the_exhaustive_reference_on_random_hierarchies():
    rng = random.Random(7)
    for trial in range(60):
        hierarchy = random_hierarchy(rng)
        rows = random_predictions(rng, hierarchy, 30)
        weights = {} if trial % 2 else {level: rng.choice([0.0, 0.5, 1.0, 2.0]) for level in LEVELS}
        out = correct_predictions(predictions_of(*rows), hierarchy, "joint", weights=weights)
        paths = labels_of(hierarchy.paths)
        assert labels_of(out) == [reference_joint(row, paths, weights) for row in rows]


@pytest.mark.parametrize("method", ["topdown", "joint"])
def test_output_is_always_a_valid_path_and_flags_match_changes(method):
    rng = random.Random(3)
    for _ in range(30):
        hierarchy = random_hierarchy(rng)
        rows = random_predictions(rng, hierarchy, 30)
        out = correct_predictions(predictions_of(*rows), hierarchy, method)
        valid = hierarchy.path_set()
        for row, corrected, flags, names in zip(
            rows, labels_of(out), out[[f"corrected_{level}" for level in LEVELS]].to_numpy(), out["corrected_levels"]
        ):
            assert corrected in valid
            if row in valid:
                assert corrected == row
            expected_flags = [before != after for before, after in zip(row, corrected)]
            assert list(flags) == expected_flags
            assert names == ",".join(level for level, flag in zip(LEVELS, expected_flags) if flag)


def test_unparsed_text_is_salvaged_before_correction_and_flagged():
    import pandas as pd

    from prodcat.data.hierarchy import Hierarchy
    from prodcat.ensemble.correct import correct_predictions

    hierarchy = Hierarchy(
        pd.DataFrame(
            [("food", "dairy", "milk", "moo", 5), ("drinks", "soft", "cola", "fizz", 9)],
            columns=["supergroup", "group", "module", "brand", "count"],
        )
    )
    predictions = pd.DataFrame(
        {
            "indoml_id": [1, 2],
            "supergroup": [None, None],
            "group": [None, None],
            "module": [None, None],
            "brand": [None, None],
            "text": ["food | dairy | milk | milk | moo", "food | dairy"],
            "parse_ok": [False, False],
        }
    )
    out = correct_predictions(predictions, hierarchy, salvage=True)
    assert out.loc[0, ["supergroup", "group", "module", "brand"]].tolist() == ["food", "dairy", "milk", "moo"]
    assert out.loc[1, ["supergroup", "group"]].tolist() == ["food", "dairy"]
    assert out["corrected_levels"].tolist() == ["supergroup,group,module,brand"] * 2
    plain = correct_predictions(predictions, hierarchy)
    assert plain.loc[0, "supergroup"] == "drinks"  # from nothing: the most frequent supergroup

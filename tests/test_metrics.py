import numpy as np
import pandas as pd
import pytest

from prodcat import LEVELS
from prodcat.data.hierarchy import Hierarchy
from prodcat.report.metrics import majority_path_predictions, score
from prodcat.runtime.errors import InputError


def table(ids, paths, **extra):
    frame = pd.DataFrame(paths, columns=list(LEVELS))
    frame.insert(0, "indoml_id", ids)
    for k, v in extra.items():
        frame[k] = v
    return frame


def test_item_accuracy_and_macro_f1_against_hand_computed_values():
    truth = table(
        [1, 2, 3, 4], [("a", "x", "m1", "b1"), ("a", "x", "m1", "b2"), ("b", "y", "m2", "b1"), ("b", "y", "m2", "b3")]
    )
    pred = table(
        [4, 3, 2, 1],
        [("b", "y", "m2", "b3"), ("a", "x", "m1", "b1"), ("a", "x", "m1", "b1"), ("a", "x", "m1", "b1")],
        parse_ok=[True, True, False, True],
    )
    result = score(truth, pred)
    # row 1 all right, row 2 brand wrong, row 3 all but the brand wrong, row 4 all right
    assert result["item_accuracy"] == pytest.approx(0.5)
    # supergroup: a tp2 fp1 fn0 → P2/3 R1 F0.8; b tp1 fp0 fn1 → P1 R1/2 F2/3
    assert result["f1_supergroup"] == pytest.approx((0.8 + 2 / 3) / 2)
    # brand: b1 tp2 fp1 fn0 → F0.8; b2 tp0 fp0 fn1 → P=1 (zero_division) R0 F0; b3 tp1 → F1
    assert result["f1_brand"] == pytest.approx((0.8 + 0.0 + 1.0) / 3)
    assert result["parse_failures"] == 1
    assert result["n"] == 4


def test_missing_prediction_row_is_an_error_and_none_label_is_wrong():
    truth = table([1, 2], [("a", "x", "m", "b"), ("a", "x", "m", "b")])
    with pytest.raises(InputError, match="no prediction for 1 of the 2 truth rows, e.g. indoml_id 2") as info:
        score(truth, truth.iloc[:1], name="p.parquet")
    assert info.value.path == "p.parquet" and info.value.column == "indoml_id"
    pred = table([1, 2], [("a", "x", "m", "b"), ("a", "x", "m", None)])
    assert score(truth, pred)["item_accuracy"] == pytest.approx(0.5)


def test_a_repeated_prediction_id_is_an_error_not_counted_twice():
    truth = table([1, 2], [("a", "x", "m", "b"), ("a", "x", "m", "c")])
    pred = table([1, 2, 2], [("a", "x", "m", "b"), ("a", "x", "m", "c"), ("a", "x", "m", "c")])
    with pytest.raises(InputError, match="duplicate indoml_id 2") as info:
        score(truth, pred, name="p.parquet")
    assert info.value.row == 3 and info.value.column == "indoml_id"


def test_predictions_outside_the_truth_are_ignored_and_counted():
    truth = table([1, 2], [("a", "x", "m", "b"), ("a", "x", "m", "c")])
    pred = table(
        [7, 1, 2, 8],
        [("z", "z", "z", "z"), ("a", "x", "m", "b"), ("a", "x", "m", "d"), ("a", "x", "m", "b")],
        parse_ok=[False, True, True, False],
    )
    result = score(truth, pred)
    assert result["n"] == 2 and result["ignored_predictions"] == 2
    assert result["item_accuracy"] == pytest.approx(0.5)
    assert result["parse_failures"] == 0  # the two failures are on ignored rows


def test_item_accuracy_on_rows_whose_retailer_is_unseen_in_training():
    truth = table([1, 2, 3, 4], [("a", "x", "m", "b")] * 4, retailer=["old", "new", "new", "other"])
    pred = table(
        [1, 2, 3, 4], [("a", "x", "m", "b"), ("a", "x", "m", "b"), ("a", "x", "m", "WRONG"), ("a", "x", "m", "b")]
    )
    result = score(truth, pred, seen_retailers={"old", "other"})
    assert result["n_unseen_retailer"] == 2
    assert result["item_accuracy_unseen_retailer"] == pytest.approx(0.5)
    assert result["item_accuracy"] == pytest.approx(0.75)
    none_unseen = score(truth, pred, seen_retailers={"old", "new", "other"})
    assert none_unseen["n_unseen_retailer"] == 0 and np.isnan(none_unseen["item_accuracy_unseen_retailer"])


def test_majority_path_baseline(labelled_rows):
    hierarchy = Hierarchy.from_frame(labelled_rows)
    baseline = majority_path_predictions(hierarchy, labelled_rows["indoml_id"])
    assert score(labelled_rows, baseline)["item_accuracy"] == pytest.approx(20 / 41)

"""Calibrated confidence (prodcat.ensemble.calibration), the review queue (prodcat.ensemble.review),
the report's confidence tables (prodcat.report.confidence) and the submission choice."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from prodcat import LEVELS
from prodcat.ensemble.calibration import (
    accuracy_at_coverage,
    apply_calibration,
    check_calibration,
    ece_of_a_calibrated_model,
    expected_calibration_error,
    fit_calibration,
    fit_temperature,
    raw_score,
    softmax_top,
    unseen_path_share,
    with_confidence,
)
from prodcat.ensemble.review import check_threshold, review_queue, vote_candidates
from prodcat.predict import choose_submission
from prodcat.report.confidence import errors_table
from prodcat.runtime.errors import InputError, UsageError


def test_ece_matches_a_hand_computed_case():
    # bin [0.2, 0.3): confidences 0.2, 0.2, one right → |0.5 - 0.2| = 0.3, share 2/5
    # bin [0.9, 1.0]: 0.9, 0.95, 1.0, all right → |1 - 0.95| = 0.05, share 3/5
    confidence = [0.2, 0.2, 0.9, 0.95, 1.0]
    correct = [1, 0, 1, 1, 1]
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.4 * 0.3 + 0.6 * 0.05)
    # perfectly calibrated bins give 0; always-wrong certainty gives 1
    assert expected_calibration_error([0.55] * 20, [1] * 11 + [0] * 9) == pytest.approx(0.0)
    assert expected_calibration_error([1.0, 1.0], [0, 0]) == pytest.approx(1.0)


def test_isotonic_json_round_trip_equals_sklearn(tmp_path):
    from sklearn.isotonic import IsotonicRegression

    rng = np.random.default_rng(0)
    score = rng.uniform(0, 1, 2000)
    correct = rng.uniform(0, 1, 2000) < score**2  # overconfident raw score
    calibration = fit_calibration(score, correct, "logprob")
    (tmp_path / "c.json").write_text(json.dumps(calibration))
    loaded = check_calibration(json.loads((tmp_path / "c.json").read_text()), tmp_path / "c.json")
    fresh = np.r_[rng.uniform(-0.5, 1.5, 500), score[:10]]  # also outside the fitted range: clipped
    sk = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(score, correct.astype(float))
    np.testing.assert_allclose(apply_calibration(loaded, fresh), sk.predict(fresh), atol=1e-12)
    # calibrated on a fresh sample of the same process: ECE small, raw score's large
    test = rng.uniform(0, 1, 5000)
    truth = rng.uniform(0, 1, 5000) < test**2
    assert expected_calibration_error(apply_calibration(loaded, test), truth) < 0.03
    assert expected_calibration_error(test, truth) > 0.1
    with pytest.raises(InputError, match="c.json"):
        check_calibration({**calibration, "method": "platt"}, tmp_path / "c.json")


def _rows_of_paths(counts):
    """Labelled rows: counts[i] rows of path i."""
    return pd.DataFrame(
        [{**{level: f"{level}{i}" for level in LEVELS}, "indoml_id": 0} for i, n in enumerate(counts) for _ in range(n)]
    )


def test_unseen_path_share_is_good_turing_and_scales_the_confidence(tmp_path):
    # 10 rows: paths seen 5, 2, 1, 1, 1 times → 3 rows of once-seen paths → 0.3
    assert unseen_path_share(_rows_of_paths([5, 2, 1, 1, 1])) == pytest.approx(0.3)
    assert unseen_path_share(_rows_of_paths([3, 2])) == 0.0
    assert unseen_path_share(_rows_of_paths([])) == 0.0
    # Good–Turing on a Zipf-like catalogue: the share of new draws whose path the sample lacks
    rng = np.random.default_rng(1)
    weights = 1.0 / np.arange(1, 2001) ** 1.1
    weights /= weights.sum()
    sample = rng.choice(len(weights), 5000, p=weights)
    estimate = unseen_path_share(_rows_of_paths(np.bincount(sample).tolist()))
    unseen_mass = weights[np.setdiff1d(np.arange(len(weights)), sample)].sum()
    assert estimate == pytest.approx(unseen_mass, rel=0.15)

    score = np.linspace(0, 1, 200)
    correct = score > 0.5
    plain = fit_calibration(score, correct, "logprob")
    scaled = fit_calibration(score, correct, "logprob", unseen_share=0.25)
    assert scaled["unseen_path_share"] == 0.25 and plain["unseen_path_share"] == 0.0
    np.testing.assert_allclose(apply_calibration(scaled, score), 0.75 * apply_calibration(plain, score))
    # a file written before the key existed applies unscaled; a share outside [0, 1] is refused by name
    legacy = {k: v for k, v in plain.items() if k != "unseen_path_share"}
    np.testing.assert_allclose(
        apply_calibration(check_calibration(legacy, "old.json"), score), apply_calibration(plain, score)
    )
    for bad in (1.01, -0.1, "0.2", None):
        with pytest.raises(InputError, match="cal.json"):
            check_calibration({**plain, "unseen_path_share": bad}, "cal.json")
    with pytest.raises(ValueError, match="unseen_share"):
        fit_calibration(score, correct, "logprob", unseen_share=1.5)


def test_ece_of_a_calibrated_model_is_the_sampling_noise():
    rng = np.random.default_rng(2)
    confidence = rng.uniform(0, 1, 1000)
    noise = ece_of_a_calibrated_model(confidence)
    assert noise == ece_of_a_calibrated_model(confidence)  # seeded
    # a calibrated model's ECE on a fresh draw is under it about 95 % of the time
    fresh = [expected_calibration_error(confidence, rng.random(1000) < confidence) for _ in range(400)]
    assert 0.9 <= np.mean(np.array(fresh) <= noise) <= 0.99
    # 4x the rows, about half the noise; a miscalibrated model (every confidence +0.1) is above it
    assert 0.35 < ece_of_a_calibrated_model(np.tile(confidence, 4)) / noise < 0.65
    assert expected_calibration_error(np.clip(confidence + 0.1, 0, 1), rng.random(1000) < confidence) > noise


def test_raw_score_and_confidence_keep_the_ranking_and_the_labels():
    table = pd.DataFrame(
        {"indoml_id": [1, 2, 3], **{level: ["a", "b", "c"] for level in LEVELS}, "logprob": [-0.1, np.nan, -3.0]}
    )
    score, column = raw_score(table)
    assert column == "logprob" and score[0] == pytest.approx(np.exp(-0.1)) and score[1] < score[2]
    calibration = fit_calibration(np.array([0.0, 0.05, 0.9, 0.95]), np.array([0, 0, 1, 1]), "logprob")
    out = with_confidence(table, calibration)
    assert out[list(LEVELS)].equals(table[list(LEVELS)]) and out["confidence"].between(0, 1).all()
    assert out["confidence"].iloc[0] >= out["confidence"].iloc[2]
    with pytest.raises(InputError, match="vote_agreement"):
        with_confidence(table.drop(columns="logprob").assign(vote_agreement=3), calibration)
    with pytest.raises(InputError, match="no confidence score"):
        raw_score(table.drop(columns="logprob"))


def test_temperature_softmax_and_coverage():
    row = np.array([0, 0, 1, 1, 2, 2])
    score = np.array([2.0, 0.0, 1.0, 0.0, 3.0, 0.0])
    p = softmax_top(row, score, 1.0)
    assert p[0] == pytest.approx(1 / (1 + np.exp(-2))) and np.bincount(row, p) == pytest.approx([1, 1, 1])
    # the first candidate is always right: a colder softmax (T < 1) fits better
    assert fit_temperature(row, score, np.array([1, 0, 1, 0, 1, 0], dtype=bool)) < 1.0
    # coverage: the 80 % most confident of 5 rows = the 4 best
    assert accuracy_at_coverage([0.9, 0.1, 0.8, 0.7, 0.6], [1, 0, 1, 0, 1]) == pytest.approx(0.75)


def _paths(*labels):
    return {level: [f"{label}_{level[0]}" for label in labels] for level in LEVELS}


def test_review_queue_rows_order_and_candidates():
    predictions = pd.DataFrame({"indoml_id": [10, 11, 12, 13], **_paths("a", "b", "c", "d")})
    predictions["confidence"] = [0.9, 0.2, 0.4, 0.2]
    members = {
        "m1": pd.DataFrame({"indoml_id": [10, 11, 12, 13], **_paths("a", "b", "c", "d")}),
        "m2": pd.DataFrame({"indoml_id": [13, 12, 11, 10], **_paths("x", "y", "z", "a")}),
        "m3": pd.DataFrame({"indoml_id": [10, 11, 12, 13], **_paths("a", "z", "c", "x")}),
    }
    candidates = vote_candidates(predictions, members)
    rows = pd.DataFrame({"indoml_id": [10, 11, 12, 13], "description": ["d10", "d11", "d12", "d13"]})
    queue = review_queue(predictions, candidates, 0.5, rows)
    # rows under 0.5 only, least confident first, ties by id; the answer first, then the others by support
    assert queue.drop_duplicates("review_order")["indoml_id"].tolist() == [11, 13, 12]
    first = queue[queue["indoml_id"] == 11]
    assert first["supergroup"].tolist() == ["b_s", "z_s"] and first["proposers"].tolist() == ["m1", "m2,m3"]
    assert first["candidate_rank"].tolist() == [1, 2] and (first["description"] == "d11").all()
    assert queue[queue["indoml_id"] == 12]["proposers"].tolist() == ["m1,m3", "m2"]
    assert review_queue(predictions, candidates, 0.1, rows).empty
    assert review_queue(predictions, candidates, 1.0, rows)["review_order"].nunique() == 4


@pytest.mark.parametrize("bad", ["0", "-0.1", "1.5", "nan", "abc", "", "inf"])
def test_review_threshold_refuses_bad_values(bad):
    with pytest.raises(UsageError, match=r"\(0, 1\]"):
        check_threshold(bad)
    assert check_threshold("1") == 1.0 and check_threshold("0.25") == 0.25


def test_choose_submission_auto_and_configured():
    config = {"members": {"a": ["x", "y"], "b": ["x", "y", "z"]}, "submit": "auto", "method": "vote"}
    validation = {
        "a": {"vote_item_accuracy": 0.5, "cross_fitted_item_accuracy": 0.6},
        "b": {"vote_item_accuracy": 0.7, "cross_fitted_item_accuracy": 0.9},
    }
    chosen = choose_submission(config, validation, "corrected")
    assert (chosen["ensemble"], chosen["method"], chosen["model"]) == ("b", "stack", "b_stack")
    assert chosen["validation_item_accuracy"]["a"] == 0.5
    # ties: configured order, the vote first
    tie = {"a": {"vote_item_accuracy": 0.9, "cross_fitted_item_accuracy": 0.9}, "b": validation["b"]}
    assert choose_submission(config, tie, "corrected")["model"] == "a"
    fixed = choose_submission({**config, "submit": "a"}, validation, "corrected")
    assert (fixed["model"], fixed["method"]) == ("a", "vote")


def test_errors_table_breakdowns():
    truth = pd.DataFrame(
        {
            "indoml_id": [1, 2, 3, 4],
            **_paths("a", "a", "b", "b"),
            "retailer": ["r1", "r2", "r1", "r9"],
            "description": ["short", "a much longer description here, 40 chars", "mid length text", "x"],
        }
    )
    predictions = pd.DataFrame({"indoml_id": [4, 3, 2, 1], **_paths("a", "b", "a", "b")})
    train = pd.DataFrame({"retailer": ["r1"]})
    table = errors_table(predictions, truth, train, "test")
    confused = table[table["breakdown"] == "confused paths"]
    assert confused["rows"].sum() == 2 and confused["value"].str.contains("→").all()
    by = table.set_index(["breakdown", "value"])["item_accuracy"]
    assert by[("supergroup", "a_s")] == 0.5 and by[("supergroup", "b_s")] == 0.5
    assert by[("retailer", "seen")] == 0.5 and by[("retailer", "unseen")] == 0.5
    assert by[("description length (characters)", "1-10")] == 0.0
    assert by[("description length (characters)", "31+")] == 1.0

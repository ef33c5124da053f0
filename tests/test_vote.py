from collections import defaultdict

import numpy as np
import pandas as pd
import pytest

from prodcat import LEVELS
from prodcat.data.hierarchy import Hierarchy
from prodcat.ensemble.vote import vote_predictions
from prodcat.runtime.errors import InputError

NAMES = ["m0", "m1", "m2"]

# Most frequent children: () → A; A → a1; (A, a1) → m1; (A, a1, m1) → b1.
# Each of A, (A, a1), (A, a1, m1) has three children, so that every level can split three ways;
# brand b1 sits under two modules.
PATHS = [
    ("A", "a1", "m1", "b1", 10),
    ("A", "a1", "m1", "b2", 5),
    ("A", "a1", "m1", "b8", 4),
    ("A", "a1", "m2", "b3", 3),
    ("A", "a1", "m7", "b9", 1),
    ("A", "a2", "m3", "b4", 8),
    ("A", "a3", "m8", "b1", 1),
    ("B", "b1g", "m4", "b5", 7),
    ("B", "b2g", "m5", "b6", 2),
    ("C", "c1", "m6", "b7", 1),
]
FULL = {  # one valid full path per split label
    "supergroup": [("A", "a1", "m1", "b1"), ("B", "b1g", "m4", "b5"), ("C", "c1", "m6", "b7")],
    "group": [("A", "a1", "m1", "b1"), ("A", "a2", "m3", "b4"), ("A", "a3", "m8", "b1")],
    "module": [("A", "a1", "m1", "b1"), ("A", "a1", "m2", "b3"), ("A", "a1", "m7", "b9")],
    "brand": [("A", "a1", "m1", "b1"), ("A", "a1", "m1", "b2"), ("A", "a1", "m1", "b8")],
}


@pytest.fixture(scope="module")
def hierarchy():
    return Hierarchy(pd.DataFrame(PATHS, columns=[*LEVELS, "count"]))


def frames(*model_paths, ids=None):
    """One predictions table per model from per-row label tuples (None = no label)."""
    ids = list(range(1, len(model_paths[0]) + 1)) if ids is None else ids
    return [
        pd.DataFrame(
            {"indoml_id": pd.Series(ids, dtype="int64"), **{lv: [p[d] for p in paths] for d, lv in enumerate(LEVELS)}}
        )
        for paths in model_paths
    ]


def accuracy(best_at: dict[str, int] | None = None, tie_at: dict[str, tuple[int, int]] | None = None):
    """Accuracies where model 0 is best by default; best_at moves the best to another model
    at one level; tie_at gives two models the same best accuracy at one level."""
    acc = {name: {lv: 0.5 - 0.1 * k for lv in LEVELS} for k, name in enumerate(NAMES)}
    for level, k in (best_at or {}).items():
        acc[NAMES[k]][level] = 0.9
    for level, pair in (tie_at or {}).items():
        for k in pair:
            acc[NAMES[k]][level] = 0.9
    return acc


def path_of(out, i=0):
    return tuple(out.loc[i, list(LEVELS)])


def test_clear_majority(hierarchy):
    out = vote_predictions(
        frames([("A", "a1", "m1", "b2")], [("A", "a1", "m1", "b2")], [("B", "b1g", "m4", "b5")]), NAMES, hierarchy
    )
    assert list(out.columns) == ["indoml_id", *LEVELS, "vote_fallback_levels", "vote_agreement"]
    assert path_of(out) == ("A", "a1", "m1", "b2")
    assert out.loc[0, "vote_fallback_levels"] == ""
    assert out.loc[0, "vote_agreement"] == 2


@pytest.mark.parametrize("level", LEVELS)
def test_three_way_split_best_model_at_that_level_then_model_order(hierarchy, level):
    preds = frames(*[[path] for path in FULL[level]])
    # no accuracies: the first model in model order wins
    assert path_of(vote_predictions(preds, NAMES, hierarchy)) == FULL[level][0]
    # model 2 is best at this level (model 0 is best at every other level)
    out = vote_predictions(preds, NAMES, hierarchy, accuracy(best_at={level: 2}))
    assert path_of(out) == FULL[level][2]
    assert out.loc[0, "vote_agreement"] == 1
    # models 1 and 2 tie on accuracy at this level: model order decides
    assert path_of(vote_predictions(preds, NAMES, hierarchy, accuracy(tie_at={level: (2, 1)}))) == FULL[level][1]
    # reordering the models changes which one "comes first" only through model_names
    assert path_of(vote_predictions(preds[::-1], NAMES[::-1], hierarchy)) == FULL[level][2]


def test_no_valid_vote_under_the_chosen_parent_falls_back_to_the_most_frequent_child(hierarchy):
    preds = frames(
        [("A", "b1g", "m4", "b5")],  # group, module and brand of B
        [("A", "nope", None, "b2")],  # unknown group; b2 is valid under the fallback (A, a1, m1)
        [("B", "b1g", "m4", "b5")],
    )
    out = vote_predictions(preds, NAMES, hierarchy)
    assert path_of(out) == ("A", "a1", "m1", "b2")
    assert out.loc[0, "vote_fallback_levels"] == "group,module"
    assert out.loc[0, "vote_agreement"] == 0


def test_votes_for_a_label_under_another_parent_are_not_counted(hierarchy):
    # b4 sits under (A, a2, m3) only; two votes for it lose to one valid vote for b8
    preds = frames([("A", "a1", "m1", "b4")], [("A", "a1", "m1", "b4")], [("A", "a1", "m1", "b8")])
    out = vote_predictions(preds, NAMES, hierarchy)
    assert path_of(out) == ("A", "a1", "m1", "b8")
    assert out.loc[0, "vote_fallback_levels"] == ""


@pytest.mark.parametrize("missing", [None, float("nan"), pd.NA])
def test_missing_votes_are_ignored(hierarchy, missing):
    preds = frames(
        [(missing, missing, missing, missing), ("A", "a2", "m3", missing)],
        [(missing, missing, missing, missing), ("B", "b1g", "m4", "b5")],
        [("C", "c1", "m6", "b7"), ("B", "b2g", "m5", "b6")],
    )
    for frame in preds:
        frame[list(LEVELS)] = frame[list(LEVELS)].astype(object)
    out = vote_predictions(preds, NAMES, hierarchy, accuracy())
    # row 1: one vote against two missing ones, although model 0 is the most accurate
    assert path_of(out, 0) == ("C", "c1", "m6", "b7")
    # row 2: B wins 2-1; groups b1g and b2g tie and model 1 is more accurate than model 2;
    # then only model 1's module and brand are valid
    assert path_of(out, 1) == ("B", "b1g", "m4", "b5")
    assert out["vote_fallback_levels"].tolist() == ["", ""]


def test_all_missing_falls_back_at_every_level(hierarchy):
    empty = (None, None, None, None)
    out = vote_predictions(frames([empty], [empty], [empty]), NAMES, hierarchy)
    assert path_of(out) == ("A", "a1", "m1", "b1")
    assert out.loc[0, "vote_fallback_levels"] == "supergroup,group,module,brand"
    assert out.loc[0, "vote_agreement"] == 0


def test_weighted_votes(hierarchy):
    path_a, path_b = ("A", "a1", "m1", "b1"), ("B", "b1g", "m4", "b5")
    preds = frames([path_a], [path_b], [path_b])
    acc = {name: {lv: a for lv in LEVELS} for name, a in zip(NAMES, [0.9, 0.4, 0.4])}
    assert path_of(vote_predictions(preds, NAMES, hierarchy, acc)) == path_b  # 2 votes to 1
    assert path_of(vote_predictions(preds, NAMES, hierarchy, acc, weighted=True)) == path_a  # 0.9 > 0.8
    # 0.1 + 0.2 equals 0.3 exactly after rounding, so the tie rule (best model: m0) decides
    acc = {name: {lv: a for lv in LEVELS} for name, a in zip(NAMES, [0.3, 0.1, 0.2])}
    assert path_of(vote_predictions(preds, NAMES, hierarchy, acc, weighted=True)) == path_a
    with pytest.raises(ValueError, match="level_accuracy"):
        vote_predictions(preds, NAMES, hierarchy, weighted=True)
    del acc["m2"]["brand"]
    with pytest.raises(ValueError, match="brand accuracy for model 'm2'"):
        vote_predictions(preds, NAMES, hierarchy, acc)


def test_rows_are_aligned_by_id_in_the_first_models_order(hierarchy):
    a, b = ("A", "a1", "m1", "b2"), ("B", "b2g", "m5", "b6")
    first, second, third = frames([a, b, a], [a, b, b], [b, a, a], ids=[30, 10, 20])
    out = vote_predictions([first, second.iloc[::-1], third.iloc[[1, 2, 0]]], NAMES, hierarchy)
    assert out["indoml_id"].tolist() == [30, 10, 20]
    assert out["indoml_id"].dtype == np.int64
    assert [path_of(out, i) for i in range(3)] == [a, b, a]
    assert out["vote_agreement"].tolist() == [2, 2, 2]


def test_mismatched_or_malformed_inputs_name_the_model(hierarchy):
    path = ("A", "a1", "m1", "b1")
    first, second, third = frames([path, path], [path, path], [path, path])
    with pytest.raises(InputError, match="m2.*indoml_id 2"):
        vote_predictions([first, second, third.iloc[:1]], NAMES, hierarchy)
    extra = frames([path, path, path])[0]
    with pytest.raises(InputError, match="m1.*indoml_id 3"):
        vote_predictions([first, extra, third], NAMES, hierarchy)
    with pytest.raises(InputError, match="m1.*duplicate indoml_id 1"):
        vote_predictions([first, second.assign(indoml_id=[1, 1]), third], NAMES, hierarchy)
    with pytest.raises(InputError, match="m0.*module"):
        vote_predictions([first.drop(columns="module"), second, third], NAMES, hierarchy)
    with pytest.raises(ValueError, match="model names"):
        vote_predictions([first, second, third], NAMES[:2], hierarchy)


# ---- agreement with a row-by-row reference on a large random input --------------------------


def reference_vote(predictions, names, hierarchy, level_accuracy=None, weighted=False):
    """The documented rules, one row and one level at a time, with plain Python."""
    known = {tuple(p[: d + 1]) for p in hierarchy.path_set() for d in range(4)}
    by_id = [
        {row[0]: row[1:] for row in frame[["indoml_id", *LEVELS]].itertuples(index=False, name=None)}
        for frame in predictions
    ]
    records = []
    for row_id in predictions[0]["indoml_id"]:
        votes = [table[row_id] for table in by_id]
        chosen, fallback = (), []
        for depth, level in enumerate(LEVELS):
            if level_accuracy is None:
                order, weight = list(range(len(names))), [1] * len(names)
            else:
                acc = [level_accuracy[n][level] for n in names]
                order = sorted(range(len(names)), key=lambda k: (-acc[k], k))
                weight = [round(a * 1_000_000) if weighted else 1 for a in acc]
            score = defaultdict(int)
            for k, vote in enumerate(votes):
                label = vote[depth]
                if isinstance(label, str) and chosen + (label,) in known:
                    score[label] += weight[k]
            if score:
                top = max(score.values())
                label = next(votes[k][depth] for k in order if score.get(votes[k][depth]) == top)
            else:
                label = hierarchy.children(chosen)[0]
                fallback.append(level)
            chosen += (label,)
        agreement = sum(tuple(v) == chosen for v in votes)
        records.append((row_id, *chosen, ",".join(fallback), agreement))
    return pd.DataFrame(records, columns=["indoml_id", *LEVELS, "vote_fallback_levels", "vote_agreement"])


def random_hierarchy(rng):
    paths, brands = [], [f"brand {i}" for i in range(40)]
    for s in range(5):
        for g in range(rng.integers(1, 5)):
            for m in range(rng.integers(1, 4)):
                for b in rng.choice(brands, size=rng.integers(1, 5), replace=False):
                    # small counts: many frequency ties, so the alphabetical fallback rule matters
                    paths.append((f"sg {s}", f"g {s}.{g}", f"m {s}.{g}.{m}", str(b), int(rng.integers(1, 4))))
    return Hierarchy(pd.DataFrame(paths, columns=[*LEVELS, "count"]))


def random_predictions(rng, hierarchy, n_rows, n_models):
    paths = hierarchy.paths[list(LEVELS)].to_numpy(dtype=object)
    truth = paths[rng.integers(0, len(paths), n_rows)]
    ids = rng.permutation(np.arange(10 * n_rows))[:n_rows]
    frames_ = []
    for k in range(n_models):
        labels = truth.copy()
        for d, level in enumerate(LEVELS):
            vocab = np.array(hierarchy.labels(level) + ["unseen label"], dtype=object)
            draw = rng.random(n_rows)
            labels[:, d] = np.where(draw < 0.25, vocab[rng.integers(0, len(vocab), n_rows)], labels[:, d])
            labels[:, d] = np.where(draw > 0.9, None, labels[:, d])
        frame = pd.DataFrame(labels, columns=list(LEVELS))
        frame.insert(0, "indoml_id", ids)
        frames_.append(frame.sample(frac=1, random_state=k) if k else frame)
    return frames_


@pytest.mark.parametrize("mode", ["plain", "accuracy", "weighted"])
def test_agrees_with_the_reference_on_random_input(mode):
    rng = np.random.default_rng({"plain": 1, "accuracy": 2, "weighted": 3}[mode])
    hierarchy = random_hierarchy(rng)
    names = ["w", "x", "y", "z"]
    predictions = random_predictions(rng, hierarchy, 5000, len(names))
    # accuracies from a small set, so that models often tie on accuracy as well
    level_accuracy = (
        None if mode == "plain" else {n: {lv: float(rng.choice([0.3, 0.4, 0.6, 0.7])) for lv in LEVELS} for n in names}
    )
    weighted = mode == "weighted"
    expected = reference_vote(predictions, names, hierarchy, level_accuracy, weighted)
    got = vote_predictions(predictions, names, hierarchy, level_accuracy, weighted)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    # the input is hard enough to exercise every rule
    assert (got["vote_fallback_levels"] != "").mean() > 0.05
    assert set(got["vote_agreement"]) >= {0, 1, 2, 3}

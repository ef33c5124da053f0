"""The learned arbiter: candidates and features, cross-fitting that never scores a row with a model
that saw it, JSON save/load without pickle, determinism, and that it beats a vote that loses to its
best member."""

import json

import numpy as np
import pandas as pd
import pytest

from prodcat import LEVELS
from prodcat.data.hierarchy import Hierarchy
from prodcat.ensemble.calibration import unseen_path_share
from prodcat.ensemble.stack import Layout, StackModel, cross_fit_stack, fit_stack, fold_of_rows
from prodcat.ensemble.vote import vote_predictions
from prodcat.runtime.errors import InputError

PATHS = [
    ("dairy", "milk", "fresh milk", "glenmoor"),
    ("dairy", "milk", "fresh milk", "receipt all"),
    ("dairy", "milk", "long life milk", "glenmoor"),
    ("dairy", "cheese", "hard cheese", "crumbco"),
    ("dairy", "cheese", "soft cheese", "crumbco"),
    ("snacks", "crisps", "potato crisps", "crunchco"),
    ("snacks", "crisps", "potato crisps", "receipt all"),
    ("snacks", "nuts", "salted nuts", "nutfield"),
]
COUNTS = [40, 30, 20, 15, 10, 8, 5, 2]


@pytest.fixture(scope="module")
def hierarchy():
    return Hierarchy(pd.DataFrame([(*p, c) for p, c in zip(PATHS, COUNTS)], columns=[*LEVELS, "count"]))


def table(ids, paths, **scores):
    frame = pd.DataFrame({"indoml_id": ids})
    for d, level in enumerate(LEVELS):
        frame[level] = [p[d] if p is not None else None for p in paths]
    for column, values in scores.items():
        frame[column] = values
    return frame


def synthetic_members(n_rows, seed, accuracy=(0.85, 0.45, 0.45), shared_error=0.7):
    """Truth and member tables: member 0 is right with its accuracy and knows when it is unsure
    (its logprob is lower when wrong); the weak members, when wrong, mostly agree on the same wrong
    path, so they outvote member 0 and the hard vote falls below it."""
    rng = np.random.default_rng(seed)
    truth_idx = rng.choice(len(PATHS), size=n_rows, p=np.array(COUNTS) / sum(COUNTS))
    decoy = (truth_idx + 1 + rng.integers(0, len(PATHS) - 1, n_rows)) % len(PATHS)  # a wrong path per row
    ids = np.arange(100, 100 + n_rows)
    truth = table(ids, [PATHS[i] for i in truth_idx])
    members = []
    for m, acc in enumerate(accuracy):
        right = rng.random(n_rows) < acc
        if m == 0:
            wrong_path = (truth_idx + 1 + rng.integers(0, len(PATHS) - 1, n_rows)) % len(PATHS)
        else:
            own = (truth_idx + 1 + rng.integers(0, len(PATHS) - 1, n_rows)) % len(PATHS)
            wrong_path = np.where(rng.random(n_rows) < shared_error, decoy, own)
        chosen = np.where(right, truth_idx, wrong_path)
        logprob = (
            np.where(right, rng.normal(-1.0, 0.6, n_rows), rng.normal(-3.0, 0.6, n_rows))
            if m == 0
            else rng.normal(-2.0, 1.0, n_rows)
        )
        members.append(table(ids, [PATHS[i] for i in chosen], logprob=logprob, logprob_per_token=logprob / 10))
    return truth, members


def item_accuracy(pred, truth):
    merged = truth.merge(pred, on="indoml_id", suffixes=("", "_pred"))
    return float(np.all([merged[level] == merged[f"{level}_pred"] for level in LEVELS], axis=0).mean())


NAMES = ["strong", "weak1", "weak2"]


def test_candidates_and_features_of_a_hand_made_row(hierarchy):
    # row 0: strong and weak1 propose path 0, weak2 path 2; row 1: strong path 5, weak1 an invalid
    # path (it proposes nothing), weak2 path 6; row 2: nobody proposes a valid path
    ids = [1, 2, 3]
    invalid = ("snacks", "crisps", "no such module", "crunchco")
    members = [
        table(ids, [PATHS[0], PATHS[5], None], logprob=[-1.0, -2.0, -9.0]),
        table(ids, [PATHS[0], invalid, invalid], logprob=[-3.0, -1.0, -9.0]),
        table(ids, [PATHS[2], PATHS[6], None]),
    ]
    truth = table(ids, [PATHS[0], PATHS[6], PATHS[3]])
    model = fit_stack(members, NAMES, truth, hierarchy, {"inner_folds": 2, "folds": 2})
    assert (
        model.feature_names
        == Layout(tuple(NAMES), {"strong": ["logprob"], "weak1": ["logprob"], "weak2": []}, {}, False).feature_names()
    )
    from prodcat.ensemble.stack import _features, _PathLookup, _read_members, _with_context

    lookup = _PathLookup(hierarchy)
    arrays = _read_members(members, NAMES, lookup, model.layout.score_columns)
    arrays = _with_context(arrays, members, NAMES, hierarchy, lookup, model.statistics.level_accuracy, {}, None)
    row, slot, path, features = _features(arrays, model.layout, model.statistics, lookup)
    f = dict(zip(model.feature_names, features.T))
    # each member's distinct valid path, in member order (slot = member + 1); row 2 falls back to
    # the vote's path (slot 0): weak1's valid snacks > crisps, the most frequent module there, its brand
    assert list(zip(row.tolist(), slot.tolist(), path.tolist())) == [
        (0, 1, 0),
        (0, 3, 2),
        (1, 1, 5),
        (1, 3, 6),
        (2, 0, 5),
    ]
    assert f["is_vote"][0] == 1 and f["is_vote"][1] == 0 and f["is_vote"][4] == 1
    assert f["strong.proposed"][0] == 1 and f["weak1.proposed"][0] == 1 and f["weak2.proposed"][0] == 0
    assert f["support_share"][0] == pytest.approx(2 / 3) and f["support_share"][4] == 0
    # path 0 against the members' labels: weak2's path 2 shares supergroup, group and brand, not module
    assert f["agree_supergroup"][0] == 1 and f["agree_group"][0] == 1
    assert f["agree_module"][0] == pytest.approx(2 / 3) and f["agree_brand"][0] == pytest.approx(1.0)
    assert f["log_path_count"][0] == pytest.approx(np.log1p(40))
    assert f["weak2.proposed"][1] == 1 and f["strong.proposed"][1] == 0 and f["strong.logprob_rank"][1] == 0
    # strong and weak2 are right once, weak1 never: strong ranks first (member order breaks the tie)
    assert model.statistics.item_accuracy == {
        "strong": pytest.approx(1 / 3),
        "weak1": pytest.approx(1 / 3),
        "weak2": pytest.approx(1 / 3),
    }
    assert f["best_proposer_rank"][0] == 1.0 and f["best_proposer_rank"][1] == pytest.approx(1 / 3)
    out = model.predict(members, NAMES, hierarchy)
    assert tuple(out.loc[2, list(LEVELS)]) == PATHS[5] and out.loc[2, "stack_proposers"] == ""


def test_candidate_scores_let_members_speak_about_paths_they_did_not_write(hierarchy):
    from prodcat.ensemble.stack import _features, _PathLookup, _read_members, _with_context

    ids = [1, 2]
    members = [table(ids, [PATHS[0], PATHS[5]]), table(ids, [PATHS[1], PATHS[5]])]
    scores = {
        "a": table(
            [1, 1, 2],
            [PATHS[0], PATHS[1], PATHS[5]],
            logprob=[-2.0, -1.0, -500.0],
            logprob_per_token=[-0.1, -0.05, -50.0],
        )
    }
    truth = table(ids, [PATHS[1], PATHS[5]])
    model = fit_stack(members, ["a", "b"], truth, hierarchy, {"folds": 2, "inner_folds": 2}, candidate_scores=scores)
    assert model.layout.candidate_columns == {"a": ["logprob", "logprob_per_token"]}
    lookup = _PathLookup(hierarchy)
    arrays = _read_members(members, ["a", "b"], lookup, model.layout.score_columns)
    arrays = _with_context(
        arrays, members, ["a", "b"], hierarchy, lookup, model.statistics.level_accuracy, scores, None
    )
    _, _, path, features = _features(arrays, model.layout, model.statistics, lookup)
    f = dict(zip(model.feature_names, features.T))
    assert path.tolist() == [0, 1, 5]
    # a prefers b's path 1 over its own path 0: gap 0 and favourite for path 1, gap -1 for path 0
    assert f["a.candidate_logprob"].tolist() == [-2.0, -1.0, -200.0]  # floored
    assert f["a.candidate_gap"].tolist() == [-1.0, 0.0, 0.0]
    assert f["a.candidate_is_favourite"].tolist() == [0.0, 1.0, 1.0]
    assert f["a.candidate_logprob_per_token"].tolist() == [-0.1, -0.05, -20.0]
    # a candidate the scores do not cover is an error naming the member
    with pytest.raises(InputError, match="file a: candidate scores lack the path"):
        model.predict(members, ["a", "b"], hierarchy, candidate_scores={"a": scores["a"].iloc[:2]})


def test_stack_beats_a_vote_that_loses_to_its_best_member(hierarchy):
    truth, members = synthetic_members(600, seed=0)
    strong = item_accuracy(members[0], truth)
    vote = item_accuracy(vote_predictions(members, NAMES, hierarchy), truth)
    assert vote < strong - 0.05  # the setting the arbiter is for
    out, _, _ = cross_fit_stack(members, NAMES, truth, hierarchy, {"folds": 5})
    assert item_accuracy(out, truth) >= strong + 0.01
    # fit on one set, applied to fresh rows
    test_truth, test_members = synthetic_members(400, seed=1)
    test_members = [m.assign(indoml_id=m["indoml_id"] + 10_000) for m in test_members]
    test_truth = test_truth.assign(indoml_id=test_truth["indoml_id"] + 10_000)
    model = fit_stack(members, NAMES, truth, hierarchy)
    assert (
        item_accuracy(model.predict(test_members, NAMES, hierarchy), test_truth)
        >= item_accuracy(test_members[0], test_truth) + 0.01
    )


def test_cross_fitting_never_scores_a_row_with_a_model_that_saw_it(hierarchy):
    truth, members = synthetic_members(203, seed=2)
    out, fold, models = cross_fit_stack(members, NAMES, truth, hierarchy, {"folds": 4, "seed": 3})
    ids = members[0]["indoml_id"].to_numpy()
    assert out["indoml_id"].tolist() == ids.tolist()
    assert sorted(np.bincount(fold).tolist()) == [50, 51, 51, 51]
    for f, model in enumerate(models):
        held_out = set(ids[fold == f].tolist())
        assert held_out and not held_out & set(model.trained_on.tolist())
        assert set(model.trained_on.tolist()) == set(ids.tolist()) - held_out
        # and the held-out rows' output is that model's
        rows = [m[m["indoml_id"].isin(held_out)] for m in members]
        expected = model.predict(rows, NAMES, hierarchy).set_index("indoml_id")
        got = out.set_index("indoml_id").loc[expected.index]
        pd.testing.assert_frame_equal(got[list(LEVELS)], expected[list(LEVELS)])
    # folds depend on the ids, not on the input order
    assert (fold_of_rows(ids[::-1], 4, 3) == fold[::-1]).all()


def test_save_load_round_trip_is_json_and_predicts_identically(hierarchy, tmp_path):
    truth, members = synthetic_members(300, seed=4)
    model = fit_stack(members, NAMES, truth, hierarchy, {"C": 0.5})
    path = tmp_path / "stack.json"
    model.save(path)
    saved = json.loads(path.read_text())  # plain JSON: nothing to unpickle
    assert saved["members"] == NAMES and len(saved["features"]) == len(model.feature_names)
    loaded = StackModel.load(path)
    _, fresh = synthetic_members(200, seed=5)
    pd.testing.assert_frame_equal(loaded.predict(fresh, NAMES, hierarchy), model.predict(fresh, NAMES, hierarchy))
    np.testing.assert_array_equal(loaded.coef, model.coef)
    # a broken or foreign file is an input error naming it
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="bad.json"):
        StackModel.load(tmp_path / "bad.json")
    saved["format_version"] = 99
    (tmp_path / "other.json").write_text(json.dumps(saved))
    with pytest.raises(InputError, match="format_version"):
        StackModel.load(tmp_path / "other.json")


def test_fit_and_predict_are_deterministic_and_ignore_row_and_member_order(hierarchy):
    truth, members = synthetic_members(300, seed=6)
    a = fit_stack(members, NAMES, truth, hierarchy)
    b = fit_stack(members, NAMES, truth.sample(frac=1.0, random_state=1), hierarchy)
    np.testing.assert_array_equal(a.coef, b.coef)
    _, fresh = synthetic_members(100, seed=7)
    expected = a.predict(fresh, NAMES, hierarchy)
    shuffled = [m.sample(frac=1.0, random_state=k) for k, m in enumerate(fresh)]
    got = (
        a.predict(shuffled[::-1], NAMES[::-1], hierarchy)
        .set_index("indoml_id")
        .loc[expected["indoml_id"]]
        .reset_index()
    )
    pd.testing.assert_frame_equal(got, expected)
    first, _, _ = cross_fit_stack(members, NAMES, truth, hierarchy)
    second, _, _ = cross_fit_stack(members, NAMES, truth, hierarchy)
    pd.testing.assert_frame_equal(first, second)


def test_bad_inputs_name_what_is_wrong(hierarchy):
    truth, members = synthetic_members(50, seed=8)
    model = fit_stack(members, NAMES, truth, hierarchy)
    with pytest.raises(InputError, match="logprob"):
        model.predict([members[0].drop(columns=["logprob"]), *members[1:]], NAMES, hierarchy)
    with pytest.raises(ValueError, match="weak2"):
        model.predict(members[:2], NAMES[:2], hierarchy)
    with pytest.raises(InputError, match="no labels for indoml_id"):
        fit_stack(members, NAMES, truth.iloc[1:], hierarchy)
    with pytest.raises(InputError, match="weak1"):
        fit_stack([members[0], members[1].iloc[1:], members[2]], NAMES, truth, hierarchy)
    with pytest.raises(ValueError, match="folds"):
        cross_fit_stack(members, NAMES, truth, hierarchy, {"folds": 1})


def candidate_scores_of(members, truth, seed):
    """A member's log-probability of every path any member proposed: higher for the true path, noisy."""
    rng = np.random.default_rng(seed)
    union = pd.concat([m[["indoml_id", *LEVELS]] for m in members]).drop_duplicates().reset_index(drop=True)
    right = union.merge(truth, on=["indoml_id", *LEVELS], how="left", indicator=True)["_merge"].eq("both").to_numpy()
    union["logprob"] = np.where(right, -1.0, -2.5) + rng.normal(0.0, 1.0, len(union))
    union["logprob_per_token"] = union["logprob"] / 20
    return union


def test_cli_fits_cross_fits_and_applies_and_refuses_bad_input(hierarchy, tmp_path, capsys):
    from prodcat.cli import main

    hierarchy.to_json(tmp_path / "hierarchy.json")
    truth, members = synthetic_members(120, seed=9)
    rows = truth.assign(
        description=[f"{b[:4]} {m}" for b, m in zip(truth["brand"], truth["module"])], retailer="r", price=1.0
    )
    rows.to_parquet(tmp_path / "val.parquet")
    named = []
    for name, frame in zip(NAMES, members):
        frame.to_parquet(tmp_path / f"{name}.parquet")
        named.append(f"{name}={tmp_path / f'{name}.parquet'}")
    scores = candidate_scores_of(members, truth, seed=10)
    scores.to_parquet(tmp_path / "weak1.candidates.parquet")
    with_scores = ["--scores", f"weak1={tmp_path / 'weak1.candidates.parquet'}"]
    common = ["--hierarchy", str(tmp_path / "hierarchy.json")]
    assert (
        main(
            [
                "stack-fit",
                *common,
                "--truth",
                str(tmp_path / "val.parquet"),
                "--model",
                str(tmp_path / "m.json"),
                "--out",
                str(tmp_path / "cv.parquet"),
                "--folds",
                "3",
                "--C",
                "0.5,2",
                "--descriptions",
                *with_scores,
                *named,
            ]
        )
        == 0
    )
    saved = json.loads((tmp_path / "m.json").read_text())
    assert (
        saved["params"]["C"] == [0.5, 2.0] and saved["descriptions"] and list(saved["candidate_columns"]) == ["weak1"]
    )
    kwargs = dict(candidate_scores={"weak1": scores}, rows=rows)
    expected, _, _ = cross_fit_stack(members, NAMES, truth, hierarchy, {"folds": 3, "C": [0.5, 2.0]}, **kwargs)
    written = pd.read_parquet(tmp_path / "cv.parquet")
    # the same decisions; the written table's probability is at the fitted temperature, with its confidence
    decisions = [c for c in expected.columns if c != "stack_probability"]
    pd.testing.assert_frame_equal(written[decisions], expected[decisions])
    assert written["confidence"].between(0, 1).all() and saved["calibration"]["temperature"] > 0
    assert saved["validation"]["cross_fitted_item_accuracy"] == pytest.approx(item_accuracy(expected, truth))
    apply = ["stack-apply", *common, "--model", str(tmp_path / "m.json")]
    assert (
        main(
            [
                *apply,
                "--out",
                str(tmp_path / "a.parquet"),
                "--rows",
                str(tmp_path / "val.parquet"),
                *with_scores,
                *named[::-1],
            ]
        )
        == 0
    )
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "a.parquet"),
        StackModel.load(tmp_path / "m.json").predict(members, NAMES, hierarchy, **kwargs),
    )
    capsys.readouterr()
    # a member the model does not know, a missing model, missing scores or rows, too few rows for the
    # folds: exit 2, a message naming the file and what is wrong, nothing written
    out = ["--out", str(tmp_path / "x.parquet")]
    bad = [named[0], named[1], f"other={tmp_path / 'weak2.parquet'}"]
    assert main([*apply, *out, "--rows", str(tmp_path / "val.parquet"), *with_scores, *bad]) == 2
    err = capsys.readouterr().err
    assert "m.json" in err and "weak2" in err and "other" in err
    assert main(["stack-apply", *common, "--model", str(tmp_path / "nope.json"), *out, *named]) == 2
    assert "nope.json" in capsys.readouterr().err
    assert main([*apply, *out, "--rows", str(tmp_path / "val.parquet"), *named]) == 2
    assert "--scores" in capsys.readouterr().err
    assert main([*apply, *out, *with_scores, *named]) == 2
    assert "--rows" in capsys.readouterr().err
    assert not (tmp_path / "x.parquet").exists()
    assert (
        main(
            [
                "stack-fit",
                *common,
                "--truth",
                str(tmp_path / "val.parquet"),
                "--model",
                str(tmp_path / "m2.json"),
                "--out",
                str(tmp_path / "cv2.parquet"),
                "--folds",
                "500",
                *named,
            ]
        )
        == 2
    )
    assert "--folds 500" in capsys.readouterr().err
    assert not (tmp_path / "m2.json").exists() and not (tmp_path / "cv2.parquet").exists()


def test_an_arbiter_that_cannot_tell_better_defers_to_the_best_member(hierarchy):
    # the weak members are right only when the strong one is, and nobody's confidence means anything:
    # no ranking beats the strong member, so the model keeps its answers
    rng = np.random.default_rng(11)
    truth, members = synthetic_members(240, seed=12)
    strong_right = (members[0][list(LEVELS)].to_numpy() == truth[list(LEVELS)].to_numpy()).all(axis=1)
    for m in (1, 2):
        frame = members[m].copy()
        wrong = ~strong_right | (rng.random(len(frame)) < 0.5)
        frame.loc[wrong, list(LEVELS)] = members[0].loc[wrong, list(LEVELS)].to_numpy()
        frame.loc[wrong, "brand"] = np.where(frame.loc[wrong, "brand"] == "glenmoor", "receipt all", "glenmoor")
        frame["logprob"] = rng.normal(-2.0, 1.0, len(frame))
        members[m] = frame
    members[0] = members[0].assign(logprob=rng.normal(-2.0, 1.0, len(truth)))
    model = fit_stack(members, NAMES, truth, hierarchy)
    assert model.selection["chosen"] == "defer to the best member" and model.selection["deferred_to"] == "strong"
    out = model.predict(members, NAMES, hierarchy)
    pd.testing.assert_frame_equal(out[list(LEVELS)], members[0][list(LEVELS)])
    cross, _, _ = cross_fit_stack(members, NAMES, truth, hierarchy)
    assert item_accuracy(cross, truth) == item_accuracy(members[0], truth)


def test_report_sets_vote_and_stack_beside_the_best_member_at_the_same_stage():
    from prodcat.report.tables import ensemble_comparison, ensemble_section

    records = [
        ("a", "constrained", 0.50),
        ("b", "raw", 0.70),
        ("b", "constrained", 0.99),  # b's constrained is its raw
        ("e", "constrained", 0.60),
        ("e_stack", "constrained", 0.72),
    ]
    metrics = pd.DataFrame(
        [
            {"model": m, "stage": s, "split": split, "item_accuracy": acc + (0.01 if split == "test" else 0)}
            for m, s, acc in records
            for split in ("val", "test")
        ]
    )
    comparisons = [
        {"ensemble": "e", "stacked": "e_stack", "stage": "constrained", "members": {"a": "constrained", "b": "raw"}}
    ]
    table = ensemble_comparison(metrics, comparisons)
    assert table["split"].tolist() == ["val", "test"] and (table["best_member"] == "b").all()
    assert table["best_member_accuracy"].tolist() == pytest.approx([0.70, 0.71])
    assert table["stack_minus_best_member"].tolist() == pytest.approx([0.02, 0.02])
    assert table["stack_minus_vote"].tolist() == pytest.approx([0.12, 0.12])
    text = ensemble_section(table, {"ensemble": "e", "stage": "constrained", "method": "stack", "model": "e_stack"})
    assert (
        "combined by **stack**" in text
        and "submission/e_stack.predict" in text
        and "| e | constrained | val | b |" in text
    )


def ranked_alternatives(member, truth, k, seed, truth_rank_p=(0.6, 0.3, 0.1)):
    """A member's k best paths per row: its prediction first, then other paths; when its
    prediction is wrong the truth is at rank 2 or 3 (it was a close call)."""
    rng = np.random.default_rng(seed)
    index = {p: i for i, p in enumerate(PATHS)}
    records = []
    for (_, pred), (_, true) in zip(member.iterrows(), truth.iterrows()):
        first, right = index[tuple(pred[list(LEVELS)])], index[tuple(true[list(LEVELS)])]
        rest = [i for i in rng.permutation(len(PATHS)) if i != first]
        if right != first and rng.random() < 0.9:
            rest.remove(right)
            rest.insert(int(rng.random() < truth_rank_p[2] / (truth_rank_p[1] + truth_rank_p[2])), right)
        for r, i in enumerate([first, *rest][:k], start=1):
            records.append(
                {"indoml_id": pred["indoml_id"], "rank": r, **dict(zip(LEVELS, PATHS[i])), "logprob": -float(r)}
            )
    return pd.DataFrame(records)


def test_ranked_alternatives_widen_the_candidates_and_let_the_arbiter_take_a_runner_up(hierarchy, tmp_path):
    from prodcat.ensemble.stack import _features, _PathLookup, _read_members, _with_context

    # hand-made: a proposes path 0, b path 1; a's ranked list is 0, 2, 1: path 2 is a new candidate
    # (after the members' own), path 1 is not added twice
    ids = [1]
    members = [table(ids, [PATHS[0]]), table(ids, [PATHS[1]])]
    listed = table([1, 1, 1], [PATHS[0], PATHS[2], PATHS[1]]).assign(rank=[1, 2, 3])
    truth = table(ids, [PATHS[2]])
    model = fit_stack(members, ["a", "b"], truth, hierarchy, {"folds": 2, "inner_folds": 2}, alternatives={"a": listed})
    assert model.layout.alternatives == {"a": 3} and "a.alternative_reciprocal_rank" in model.feature_names
    lookup = _PathLookup(hierarchy)
    arrays = _read_members(members, ["a", "b"], lookup, model.layout.score_columns)
    arrays = _with_context(
        arrays,
        members,
        ["a", "b"],
        hierarchy,
        lookup,
        model.statistics.level_accuracy,
        {},
        None,
        {"a": listed},
        model.layout.alternatives,
    )
    row, slot, path, features = _features(arrays, model.layout, model.statistics, lookup)
    assert list(zip(slot.tolist(), path.tolist())) == [(1, 0), (2, 1), (4, 2)]
    assert dict(zip(model.feature_names, features.T))["a.alternative_reciprocal_rank"].tolist() == pytest.approx(
        [1.0, 1 / 3, 0.5]
    )
    # the model needs what it was fit with
    with pytest.raises(InputError, match="ranked alternatives"):
        model.predict(members, ["a", "b"], hierarchy)
    with pytest.raises(InputError, match="column 'rank', row 2: ranked alternatives need integer values, got 2.5"):
        fit_stack(members, ["a", "b"], truth, hierarchy, alternatives={"a": listed.assign(rank=[1, 2.5, 3])})
    # ranks 1, 2, ... per id: a gap or a repeat (a rank of 10**9 would be a gap) is refused, naming the row
    for ranks, row in (([1, 2, 10**9], 3), ([1, 1, 2], 2), ([2, 3, 4], 1)):
        with pytest.raises(InputError, match=f"file a, column 'rank', row {row}: indoml_id 1: ranks must be 1, 2"):
            fit_stack(members, ["a", "b"], truth, hierarchy, alternatives={"a": listed.assign(rank=ranks)})

    # synthetic: the strong member's runner-up is often right, and a weak member's scores of every
    # candidate say which; the candidates of the members' predictions alone cannot reach it
    truth, members = synthetic_members(600, seed=13)
    listed = ranked_alternatives(members[0], truth, 3, seed=14)
    scores = candidate_scores_of(
        [*members, listed[[c for c in listed if c not in ("rank", "logprob")]]], truth, seed=15
    )
    strong = item_accuracy(members[0], truth)
    without, _, _ = cross_fit_stack(members, NAMES, truth, hierarchy, candidate_scores={"weak1": scores})
    kwargs = dict(candidate_scores={"weak1": scores}, alternatives={"strong": listed})
    crossed, _, _ = cross_fit_stack(members, NAMES, truth, hierarchy, **kwargs)
    assert item_accuracy(crossed, truth) >= max(item_accuracy(without, truth), strong) + 0.02
    # saved and loaded, it predicts the same with the same alternatives
    model = fit_stack(members, NAMES, truth, hierarchy, **kwargs)
    model.save(tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text())["alternatives"] == {"strong": 3}
    pd.testing.assert_frame_equal(
        StackModel.load(tmp_path / "m.json").predict(members, NAMES, hierarchy, **kwargs),
        model.predict(members, NAMES, hierarchy, **kwargs),
    )


def test_abbreviation_score_finds_receipt_shortenings_of_a_brand():
    from prodcat.ensemble.stack import abbreviation_score

    assert abbreviation_score("nvsh rum 35 cl", "nevish") == pytest.approx(4 / 6)
    assert abbreviation_score("uncl hrbys cl 1.5lt", "uncle harbys") == pytest.approx(9 / 11)  # two words run on
    assert abbreviation_score("2 crspdy ext", "crispday") == pytest.approx(6 / 8)
    # the first letter must match, letters must come in order, single letters and numbers do not count
    assert abbreviation_score("nvsh rum", "ralana") == 0.0
    assert abbreviation_score("hsvn", "nevish") == 0.0
    assert abbreviation_score("n 4 x", "nevish") == 0.0
    assert abbreviation_score("nevish gin", "nevish") == 1.0 and abbreviation_score("anything", "") == 0.0


def test_cli_takes_ranked_alternatives_and_apply_refuses_a_model_without_them(hierarchy, tmp_path, capsys):
    from prodcat.cli import main

    hierarchy.to_json(tmp_path / "hierarchy.json")
    truth, members = synthetic_members(90, seed=16)
    truth.assign(description="x", retailer="r", price=1.0).to_parquet(tmp_path / "val.parquet")
    named = []
    for name, frame in zip(NAMES, members):
        frame.to_parquet(tmp_path / f"{name}.parquet")
        named.append(f"{name}={tmp_path / f'{name}.parquet'}")
    listed = ranked_alternatives(members[0], truth, 2, seed=17)
    listed.to_parquet(tmp_path / "strong.alternatives.parquet")
    alternatives = ["--alternatives", f"strong={tmp_path / 'strong.alternatives.parquet'}"]
    common = ["--hierarchy", str(tmp_path / "hierarchy.json")]
    fit = ["stack-fit", *common, "--truth", str(tmp_path / "val.parquet"), "--folds", "3"]
    assert (
        main([*fit, "--model", str(tmp_path / "m.json"), "--out", str(tmp_path / "cv.parquet"), *alternatives, *named])
        == 0
    )
    expected, _, _ = cross_fit_stack(members, NAMES, truth, hierarchy, {"folds": 3}, alternatives={"strong": listed})
    decisions = [c for c in expected.columns if c != "stack_probability"]
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "cv.parquet")[decisions], expected[decisions])
    # --train: the same decisions; the confidence scaled by the training paths' Good–Turing unseen share
    train = truth.iloc[: len(truth) // 3].assign(description="x", retailer="r", price=1.0)
    train.to_parquet(tmp_path / "train.parquet")
    share = unseen_path_share(train)
    assert 0 < share < 1
    scaled = ["--model", str(tmp_path / "m2.json"), "--out", str(tmp_path / "cv2.parquet")]
    assert main([*fit, "--train", str(tmp_path / "train.parquet"), *scaled, *alternatives, *named]) == 0
    assert StackModel.load(tmp_path / "m2.json").calibration["unseen_path_share"] == pytest.approx(share)
    with_share, without = pd.read_parquet(tmp_path / "cv2.parquet"), pd.read_parquet(tmp_path / "cv.parquet")
    pd.testing.assert_frame_equal(with_share[decisions], without[decisions])
    np.testing.assert_allclose(with_share["confidence"], (1 - share) * without["confidence"])
    apply = ["stack-apply", *common, "--model", str(tmp_path / "m.json"), "--out", str(tmp_path / "a.parquet")]
    assert main([*apply, *alternatives, *named]) == 0
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "a.parquet"),
        StackModel.load(tmp_path / "m.json").predict(members, NAMES, hierarchy, alternatives={"strong": listed}),
    )
    capsys.readouterr()
    # without the alternatives it was fit with; alternatives of a non-member; a table without ranks
    assert main([*apply[:-1], str(tmp_path / "x.parquet"), *named]) == 2
    assert "m.json" in (err := capsys.readouterr().err) and "--alternatives" in err
    assert (
        main(
            [
                *apply[:-1],
                str(tmp_path / "x.parquet"),
                "--alternatives",
                f"other={tmp_path / 'strong.alternatives.parquet'}",
                *named,
            ]
        )
        == 2
    )
    assert "other" in capsys.readouterr().err
    listed.drop(columns=["rank"]).to_parquet(tmp_path / "norank.parquet")
    assert (
        main(
            [
                *fit,
                "--model",
                str(tmp_path / "m3.json"),
                "--out",
                str(tmp_path / "cv3.parquet"),
                "--alternatives",
                f"strong={tmp_path / 'norank.parquet'}",
                *named,
            ]
        )
        == 2
    )
    assert "norank.parquet" in (err := capsys.readouterr().err) and "rank" in err
    assert not any((tmp_path / f).exists() for f in ("x.parquet", "m3.json", "cv3.parquet"))

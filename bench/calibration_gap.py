"""Why a model's confidence, fit on validation, misses on test: the validation → test accuracy gap
and its parts, and how other calibrators would have done.

For a finished run (its data/, predictions/ and, on the synthetic sample, data/sample/names.parquet):

1. The share of rows whose label path is unseen in training: the Good–Turing estimate from the
   training rows (what the confidence is scaled by), validation (0 by the split's design), test.
2. With the sample's true product names: the share of rows whose product is unseen in training, on
   validation, on test, and on i.i.d. 10 % hold-outs of the training file (`--holdouts` of them).
3. Per member: item accuracy on validation and test, on the rows whose path is seen, and on the
   rows whose product is seen / unseen.
4. Per member: calibrators fit on validation at the submitted stage, compared by 5-fold cross-validated
   ECE and log loss on validation (how one would choose), with their test ECE after the Good–Turing
   scaling: isotonic on the answer's probability (the workflow's), Platt scaling on its logit,
   bagged isotonic (50 bootstrap fits averaged), isotonic per `corrected` flag, and isotonic on
   the member's teacher-forced probability of its final path (its `candidates` table, where the run
   has one).

    python bench/calibration_gap.py --results results [--stage corrected] [--holdouts 20]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from prodcat import LEVELS  # noqa: E402
from prodcat.ensemble.calibration import (  # noqa: E402
    expected_calibration_error,
    item_correct,
    raw_score,
    unseen_path_share,
)

MEMBERS = ("byt5", "mmbyt5", "flant5", "charngram")


def _paths(frame: pd.DataFrame) -> pd.Series:
    return frame[list(LEVELS)].astype(str).agg("|".join, axis=1)


def _isotonic(score, right):
    from sklearn.isotonic import IsotonicRegression

    fit = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(score, right)
    return lambda s, group=None: fit.predict(s)


def _platt(score, right):
    from sklearn.linear_model import LogisticRegression

    def logit(s):
        s = np.clip(s, 1e-6, 1 - 1e-6)
        return np.log(s / (1 - s))[:, None]

    fit = LogisticRegression(C=1e6).fit(logit(score), right)
    return lambda s, group=None: fit.predict_proba(logit(s))[:, 1]


def _bagged(score, right, fits=50):
    rng = np.random.default_rng(0)
    maps = [_isotonic(score[i], right[i]) for i in (rng.integers(0, len(score), len(score)) for _ in range(fits))]
    return lambda s, group=None: np.mean([m(s) for m in maps], axis=0)


def _per_group(score, right, group, min_rows=30):
    pooled = _isotonic(score, right)
    maps = {g: _isotonic(score[group == g], right[group == g]) for g in (False, True) if (group == g).sum() >= min_rows}

    def apply(s, g):
        out = np.empty(len(s))
        for value in (False, True):
            if (g == value).any():
                out[g == value] = maps.get(value, pooled)(s[g == value])
        return out

    return apply


CALIBRATORS = {"isotonic": _isotonic, "platt": _platt, "bagged_isotonic": _bagged, "per_corrected": _per_group}


def _cross_validated(fit, score, right, group, folds=5):
    from sklearn.model_selection import StratifiedKFold

    out = np.zeros(len(right))
    for a, b in StratifiedKFold(folds, shuffle=True, random_state=0).split(score, right):
        model = fit(score[a], right[a], group[a]) if fit is _per_group else fit(score[a], right[a])
        out[b] = model(score[b], group[b])
    p = np.clip(out, 1e-4, 1 - 1e-4)
    return expected_calibration_error(out, right), float(-np.mean(right * np.log(p) + (1 - right) * np.log(1 - p)))


def _member(results: Path, model: str, split: str, stage: str, truth: pd.DataFrame):
    table = pd.read_parquet(results / "predictions" / model / f"{split}.{stage}.parquet")
    scores = {"answer": raw_score(table)[0]}
    candidates = results / "predictions" / model / f"{split}.candidates.parquet"
    if candidates.exists():  # the member's own probability of its final path, where it was scored
        scored = table[["indoml_id", *LEVELS]].merge(
            pd.read_parquet(candidates)[["indoml_id", *LEVELS, "logprob"]], on=["indoml_id", *LEVELS], how="left"
        )
        scores["final_path"] = np.exp(np.clip(scored["logprob"].fillna(-50.0).to_numpy(), -50.0, 0.0))
    group = table["corrected"].astype(bool).to_numpy() if "corrected" in table else np.zeros(len(table), bool)
    return table, scores, group, item_correct(truth, table).astype(np.float64)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", required=True)
    ap.add_argument("--stage", default="corrected")
    ap.add_argument("--holdouts", type=int, default=20)
    args = ap.parse_args(argv)
    results = Path(args.results)
    rows = {s: pd.read_parquet(results / "data" / f"{s}.parquet") for s in ("train", "val", "test")}
    train_paths = set(_paths(rows["train"]))
    share = unseen_path_share(rows["train"])
    seen_path = {s: _paths(rows[s]).isin(train_paths).to_numpy() for s in ("val", "test")}
    print(
        f"label path unseen: Good–Turing from train {share:.2%}; val {1 - seen_path['val'].mean():.2%}; "
        f"test {1 - seen_path['test'].mean():.2%}"
    )

    names_file = REPO / "data" / "sample" / "names.parquet"
    seen_product = None
    if names_file.exists():
        name = pd.read_parquet(names_file).drop_duplicates("indoml_id").set_index("indoml_id")["name"]
        train_names = set(name.reindex(rows["train"]["indoml_id"]))
        seen_product = {s: name.reindex(rows[s]["indoml_id"]).isin(train_names).to_numpy() for s in ("val", "test")}
        labelled = pd.concat([rows["train"], rows["val"]])["indoml_id"].to_numpy()
        rng = np.random.default_rng(0)
        holdout = []
        for _ in range(args.holdouts):
            out = rng.random(len(labelled)) < 0.1
            holdout.append((~name.reindex(labelled[out]).isin(set(name.reindex(labelled[~out])))).mean())
        print(
            f"product unseen: val {1 - seen_product['val'].mean():.2%}; test {1 - seen_product['test'].mean():.2%}; "
            f"i.i.d. 10 % hold-outs of the labelled rows {np.mean(holdout):.2%} (mean of {args.holdouts})"
        )

    accuracy, calibrators = [], []
    for model in MEMBERS:
        if not (results / "predictions" / model).is_dir():
            continue
        loaded = {s: _member(results, model, s, args.stage, rows[s]) for s in ("val", "test")}
        for s, (_, _, _, right) in loaded.items():
            entry = {"model": model, "split": s, "all": right.mean(), "path seen": right[seen_path[s]].mean()}
            if seen_product is not None:
                entry["product seen"] = right[seen_product[s]].mean()
                entry["product unseen"] = right[~seen_product[s]].mean()
            accuracy.append(entry)
        (_, val_scores, val_group, val_right), (_, test_scores, test_group, test_right) = loaded["val"], loaded["test"]
        for score_name in val_scores:
            for name, fit in CALIBRATORS.items():
                if score_name != "answer" and name != "isotonic":
                    continue
                score, group = val_scores[score_name], val_group
                cv_ece, cv_log_loss = _cross_validated(fit, score, val_right, group)
                model_fit = fit(score, val_right, group) if fit is _per_group else fit(score, val_right)
                test_confidence = model_fit(test_scores[score_name], test_group) * (1 - share)
                calibrators.append(
                    {
                        "model": model,
                        "calibrator": f"{name} ({score_name})",
                        "cv_ece": cv_ece,
                        "cv_log_loss": cv_log_loss,
                        "test_ece": expected_calibration_error(test_confidence, test_right),
                    }
                )
    print("\nitem accuracy")
    print(pd.DataFrame(accuracy).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("\ncalibrators (fit on validation; cross-validated there; test ECE after the Good–Turing scaling)")
    print(pd.DataFrame(calibrators).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

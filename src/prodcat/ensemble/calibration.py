"""Calibrated confidence: a probability in [0, 1] that a row's predicted path is right.

Every prediction table carries a raw score that ranks rows well but is no probability: a labeler's
log-probability (seq2seq) or log posterior (charngram) of its answer, the vote's agreement count,
the stack's softmax probability over its candidates (`stack_probability`). `fit_calibration` maps
that score to the share of validation rows that are right with isotonic regression (scikit-learn:
monotone, so the ranking of rows and every decision stay as they are); the map is stored as JSON
(its thresholds) and `apply` evaluates it with np.interp, which is exactly what
`IsotonicRegression(out_of_bounds="clip").predict` computes, so test rows and new files get the
fitted model's confidence without scikit-learn or a pickle.

Validation rows understate one kind of error. The split keeps at least one row of every label path
in train, so every validation row's path is known, while a new row's path may be none of the
training paths, and then no model here can be right (every prediction is a known path). The
Good–Turing estimate of that chance is the share of training rows whose path occurs once
(`unseen_path_share`: 2.6 % of the default run's training rows; 2.9 % of its test rows had an
unseen path). The fitted map is scaled by (1 - that share), stored with it as
`unseen_path_share`, so its confidence is the chance of being right on a new row.

`expected_calibration_error`: the mean over 10 equal-width confidence bins of |accuracy - mean
confidence|, weighted by the bins' shares of rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from prodcat import LEVELS
from prodcat.runtime.errors import InputError

CONFIDENCE = "confidence"
FORMAT_VERSION = 1
# A sequence probability below exp(-50) is 0 for every purpose here; keeps exp() finite.
LOGPROB_FLOOR = -50.0


def raw_score(table: pd.DataFrame, source="predictions") -> tuple[np.ndarray, str]:
    """(the raw confidence score of each row, which column it comes from). Larger = more likely
    right: the stack's candidate probability, the vote's agreement count, else the labeler's
    probability of its answer (exp of `logprob`; 0 where it has none, e.g. a failed parse)."""
    for column in ("stack_probability", "vote_agreement"):
        if column in table.columns:
            values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            return np.nan_to_num(values, nan=0.0), column
    if "logprob" in table.columns:
        logprob = pd.to_numeric(table["logprob"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        logprob = np.clip(np.nan_to_num(logprob, nan=LOGPROB_FLOOR, neginf=LOGPROB_FLOOR), LOGPROB_FLOOR, 0.0)
        return np.exp(logprob), "logprob"
    raise InputError(
        source, "no confidence score: expected a stack_probability, vote_agreement or logprob column", column="logprob"
    )


def item_correct(truth: pd.DataFrame, predictions: pd.DataFrame, source="truth") -> np.ndarray:
    """Whether each prediction row's four labels all equal the truth's (rows matched on indoml_id)."""
    position = pd.Index(truth["indoml_id"].to_numpy(dtype=np.int64)).get_indexer(
        predictions["indoml_id"].to_numpy(dtype=np.int64)
    )
    if (position < 0).any():
        at = int(np.argmax(position < 0))
        raise InputError(source, f"no labels for indoml_id {predictions['indoml_id'].iloc[at]}", column="indoml_id")
    right = np.ones(len(predictions), dtype=bool)
    for level in LEVELS:
        expected = truth[level].astype(str).to_numpy()[position]
        right &= predictions[level].astype(str).to_numpy() == expected
    return right


def unseen_path_share(train: pd.DataFrame) -> float:
    """Good–Turing estimate of the chance that a new row's label path is none of `train`'s: the
    share of training rows whose path occurs exactly once (0 for no rows)."""
    if len(train) == 0:
        return 0.0
    counts = train.groupby(list(LEVELS), sort=False).size().to_numpy()
    return float((counts == 1).sum() / len(train))


def fit_calibration(score: np.ndarray, correct: np.ndarray, source: str, unseen_share: float = 0.0) -> dict:
    """Isotonic regression of correctness on the raw score, scaled by (1 - unseen_share), as a
    JSON-able dict."""
    from sklearn.isotonic import IsotonicRegression

    score = np.asarray(score, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    if len(score) == 0:
        raise ValueError("calibration needs at least one row")
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(score, correct)
    calibration = {
        "format_version": FORMAT_VERSION,
        "method": "isotonic",
        "score": source,
        "x": iso.X_thresholds_.tolist(),
        "y": iso.y_thresholds_.tolist(),
        "rows": int(len(score)),
        "unseen_path_share": _checked_share(unseen_share, "unseen_share"),
    }
    calibration["fit_ece"] = expected_calibration_error(apply_calibration(calibration, score), correct)
    return calibration


def apply_calibration(calibration: dict, score: np.ndarray) -> np.ndarray:
    """The calibrated confidence of raw scores (clipped to the fitted range, as sklearn does)."""
    x = np.asarray(calibration["x"], dtype=np.float64)
    y = np.asarray(calibration["y"], dtype=np.float64)
    score = np.asarray(score, dtype=np.float64)
    seen = 1.0 - float(calibration.get("unseen_path_share", 0.0))  # absent in files written before it
    if len(x) == 1:
        return np.full(len(score), float(y[0]) * seen)
    return np.clip(np.interp(score, x, y), 0.0, 1.0) * seen


def _checked_share(value, what) -> float:
    if not (isinstance(value, (int, float, np.floating)) and 0.0 <= float(value) <= 1.0):
        raise ValueError(f"{what} must be a number in [0, 1], got {value!r}")
    return float(value)


def check_calibration(obj, source) -> dict:
    """A calibration read from JSON, checked (so a hand-edited file fails with its name)."""
    try:
        ok = (
            isinstance(obj, dict)
            and obj.get("format_version") == FORMAT_VERSION
            and obj.get("method") == "isotonic"
            and len(obj["x"]) == len(obj["y"]) >= 1
            and np.all(np.diff(np.asarray(obj["x"], dtype=np.float64)) >= 0)
        )
        if ok and "unseen_path_share" in obj:
            _checked_share(obj["unseen_path_share"], "unseen_path_share")
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(source, f"malformed calibration: {exc!r}") from exc
    if not ok:
        raise InputError(source, f"not an isotonic calibration of format_version {FORMAT_VERSION}")
    return obj


def with_confidence(table: pd.DataFrame, calibration: dict, source="predictions") -> pd.DataFrame:
    """The table with a `confidence` column from its raw score (same rows, same decisions)."""
    score, column = raw_score(table, source)
    if column != calibration["score"]:
        raise InputError(source, f"the calibration was fit on {calibration['score']}, the table scores by {column}")
    return table.assign(**{CONFIDENCE: apply_calibration(calibration, score)})


def _bin_of(confidence: np.ndarray, bins: int) -> np.ndarray:
    """Each confidence's equal-width bin, 0 .. bins-1 (exactly 1 falls in the last)."""
    return np.minimum((confidence * bins).astype(np.int64), bins - 1)


def _binned_error(which: np.ndarray, confidence_sums: np.ndarray, correct, bins: int) -> float:
    # share * |accuracy - mean confidence| of a bin = |rows right - confidence sum| / all rows
    right_sums = np.bincount(which, weights=correct, minlength=bins)
    return float(np.abs(right_sums - confidence_sums).sum() / len(which))


def expected_calibration_error(confidence, correct, bins: int = 10) -> float:
    """Sum over equal-width bins of (share of rows) * |accuracy - mean confidence|; a confidence of
    exactly 1 falls in the last bin."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    if len(confidence) == 0:
        return float("nan")
    which = _bin_of(confidence, bins)
    return _binned_error(which, np.bincount(which, weights=confidence, minlength=bins), correct, bins)


def ece_of_a_calibrated_model(confidence, bins: int = 10, quantile: float = 0.95, draws: int = 200, seed: int = 0):
    """The `quantile` of the ECE that a perfectly calibrated model with these confidences shows on
    this many rows: its rows are right with probability = confidence, drawn `draws` times (seeded,
    so deterministic). An ECE below it is within sampling noise; a few hundred rows give ~0.03."""
    confidence = np.asarray(confidence, dtype=np.float64)
    if len(confidence) == 0:
        return float("nan")
    rng = np.random.default_rng(seed)
    which = _bin_of(confidence, bins)  # the bins and their confidence sums are the same in every draw
    confidence_sums = np.bincount(which, weights=confidence, minlength=bins)
    eces = [
        _binned_error(which, confidence_sums, (rng.random(len(confidence)) < confidence).astype(np.float64), bins)
        for _ in range(draws)
    ]
    return float(np.quantile(eces, quantile))


def reliability_bins(confidence, correct, bins: int = 10) -> pd.DataFrame:
    """Per equal-width bin: rows, mean confidence, accuracy (NaN for an empty bin)."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    which = _bin_of(confidence, bins)
    out = []
    for b in range(bins):
        mine = which == b
        out.append(
            {
                "bin_low": b / bins,
                "bin_high": (b + 1) / bins,
                "rows": int(mine.sum()),
                "mean_confidence": float(confidence[mine].mean()) if mine.any() else float("nan"),
                "accuracy": float(correct[mine].mean()) if mine.any() else float("nan"),
            }
        )
    return pd.DataFrame(out)


def coverage_curve(confidence, correct) -> pd.DataFrame:
    """Keeping the k most confident rows, k = 1..n: coverage k/n and their item accuracy (ties in
    confidence keep the input order, so the curve is deterministic)."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    order = np.argsort(-confidence, kind="stable")
    kept = np.arange(1, len(order) + 1)
    return pd.DataFrame(
        {
            "coverage": kept / max(len(order), 1),
            "threshold": confidence[order],
            "accuracy": np.cumsum(correct[order]) / kept,
        }
    )


def accuracy_at_coverage(confidence, correct, coverage: float = 0.8) -> float:
    """Item accuracy of the ceil(coverage * n) most confident rows."""
    n = len(confidence)
    if n == 0:
        return float("nan")
    k = max(1, int(np.ceil(coverage * n - 1e-9)))
    return float(coverage_curve(confidence, correct)["accuracy"].iloc[k - 1])


# ---- the stack: a softmax over its candidates, with a fitted temperature -----------------------
def softmax_top(row: np.ndarray, score: np.ndarray, temperature: float) -> np.ndarray:
    """Per candidate: its softmax probability among its row's candidates at `temperature`."""
    z = score / temperature
    top = np.full(int(row.max()) + 1 if len(row) else 0, -np.inf)
    np.maximum.at(top, row, z)
    e = np.exp(z - top[row])
    total = np.zeros(len(top))
    np.add.at(total, row, e)
    return e / total[row]


def fit_temperature(row: np.ndarray, score: np.ndarray, target: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of the true candidate, over the
    rows whose truth is a candidate (bounded search over log T in [-4, 4])."""
    from scipy.optimize import minimize_scalar

    has_truth = np.zeros(int(row.max()) + 1 if len(row) else 0, dtype=bool)
    has_truth[row[target]] = True
    keep = has_truth[row]
    if not keep.any():
        return 1.0
    r, s, t = row[keep], score[keep], target[keep]
    _, r = np.unique(r, return_inverse=True)

    def nll(log_t):
        return -np.log(np.maximum(softmax_top(r, s, float(np.exp(log_t)))[t], 1e-300)).mean()

    return float(np.exp(minimize_scalar(nll, bounds=(-4.0, 4.0), method="bounded").x))

"""Where to trust the predictions: calibration per model (ECE, accuracy of the most confident
rows), its figures (reliability diagram, coverage–accuracy curve) and the submitted model's errors
(most confused paths, accuracy per supergroup, seen/unseen retailer, description length)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from prodcat import LEVELS
from prodcat.ensemble.calibration import (
    CONFIDENCE,
    accuracy_at_coverage,
    coverage_curve,
    ece_of_a_calibrated_model,
    expected_calibration_error,
    item_correct,
    reliability_bins,
)

BINS = 10
COVERAGE = 0.8  # the share of most confident rows whose accuracy the report states
# description length bands, in characters: (label, lowest, highest)
LENGTH_BANDS = [("1-10", 1, 10), ("11-20", 11, 20), ("21-30", 21, 30), ("31+", 31, 10**9)]
CALIBRATION_COLUMNS = [
    "model",
    "split",
    "rows",
    "item_accuracy",
    "mean_confidence",
    "ece",
    "ece_noise_p95",
    "accuracy_top80",
    "submitted",
]


def scored(table: pd.DataFrame, truth: pd.DataFrame, source) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, item correctness) of a predictions table with a confidence column."""
    if CONFIDENCE not in table.columns:
        raise ValueError(f"{source}: no {CONFIDENCE} column")
    return table[CONFIDENCE].to_numpy(dtype=np.float64), item_correct(truth, table, source)


def calibration_table(entries, submitted: str) -> pd.DataFrame:
    """entries: (model, split, confidence, correct). One row per entry."""
    rows = []
    for model, split, confidence, correct in entries:
        rows.append(
            {
                "model": model,
                "split": split,
                "rows": len(confidence),
                "item_accuracy": float(np.mean(correct)),
                "mean_confidence": float(np.mean(confidence)),
                "ece": expected_calibration_error(confidence, correct, BINS),
                "ece_noise_p95": ece_of_a_calibrated_model(confidence, BINS),
                "accuracy_top80": accuracy_at_coverage(confidence, correct, COVERAGE),
                "submitted": "yes" if model == submitted else "",
            }
        )
    return pd.DataFrame(rows, columns=CALIBRATION_COLUMNS)


def _pyplot():
    from prodcat.report.plots import _pyplot as pyplot

    return pyplot()


def _grid(n, plt):
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.1 * rows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return fig, axes.ravel()


def reliability_figure(entries, submitted: str, out_path, split: str = "test") -> None:
    """Per model (panel): accuracy against mean confidence in 10 equal-width bins (bar width =
    bin, the diagonal = perfect calibration), titled with the expected calibration error."""
    plt = _pyplot()
    mine = [e for e in entries if e[1] == split]
    fig, axes = _grid(len(mine), plt)
    for ax, (model, _, confidence, correct) in zip(axes, mine):
        bins = reliability_bins(confidence, correct, BINS)
        filled = bins[bins["rows"] > 0]
        ax.bar(filled["bin_low"], filled["accuracy"], width=1 / BINS, align="edge", color="#4c72b0", alpha=0.8)
        ax.plot(filled["mean_confidence"], filled["accuracy"], "o", color="black", markersize=3)
        ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=1)
        ece = expected_calibration_error(confidence, correct, BINS)
        star = " (submitted)" if model == submitted else ""
        ax.set_title(f"{model}{star}\nECE {ece:.3f}, n={len(confidence)}", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence", fontsize=8)
        ax.set_ylabel("item accuracy", fontsize=8)
    fig.suptitle(f"Reliability on {split} ({BINS} bins)")
    fig.tight_layout()
    fig.savefig(out_path)
    plt.close(fig)


def coverage_figure(entries, submitted: str, out_path, split: str = "test") -> None:
    """Item accuracy of the most confident rows against the share kept, one line per model; a dot
    marks each model's accuracy at 80 % coverage (the legend gives it)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for model, s, confidence, correct in entries:
        if s != split:
            continue
        curve = coverage_curve(confidence, correct)
        at = accuracy_at_coverage(confidence, correct, COVERAGE)
        width = 2.5 if model == submitted else 1.2
        (line,) = ax.plot(
            curve["coverage"], curve["accuracy"], linewidth=width, label=f"{model}: {at:.3f} at {COVERAGE:.0%}"
        )
        ax.plot([COVERAGE], [at], "o", color=line.get_color())
    ax.axvline(COVERAGE, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("share of rows kept (most confident first)")
    ax.set_ylabel("item accuracy of the rows kept")
    ax.set_xlim(0, 1)
    ax.set_title(f"Coverage vs accuracy on {split} (thicker: the submitted {submitted})")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(out_path)
    plt.close(fig)


ERROR_COLUMNS = ["split", "breakdown", "value", "rows", "item_accuracy"]


def _path(frame: pd.DataFrame) -> pd.Series:
    return frame[list(LEVELS)].astype(str).agg(" > ".join, axis=1)


def errors_table(
    predictions: pd.DataFrame, truth: pd.DataFrame, train: pd.DataFrame, split: str, top_confused: int = 10
) -> pd.DataFrame:
    """The submitted model's errors on one split: the most confused (true path → predicted path)
    pairs (rows = how often; item_accuracy empty), then item accuracy per true supergroup, per
    seen / unseen retailer (seen: present in the training rows) and per description length band."""
    position = pd.Index(truth["indoml_id"].to_numpy(dtype=np.int64)).get_indexer(
        predictions["indoml_id"].to_numpy(dtype=np.int64)
    )
    rows = truth.iloc[position].reset_index(drop=True)
    correct = item_correct(truth, predictions, split)
    out = []
    wrong = ~correct
    pairs = (
        pd.DataFrame({"true": _path(rows)[wrong].to_numpy(), "predicted": _path(predictions)[wrong].to_numpy()})
        .value_counts()
        .head(top_confused)
    )
    for (true, predicted), count in pairs.items():
        out.append((split, "confused paths", f"{true} → {predicted}", int(count), float("nan")))

    def by(breakdown, keys):
        frame = pd.DataFrame({"key": keys, "right": correct})
        for key, group in frame.groupby("key", sort=True):
            out.append((split, breakdown, str(key), len(group), float(group["right"].mean())))

    by("supergroup", rows["supergroup"].astype(str).to_numpy())
    seen = set(train["retailer"].astype(str)) if "retailer" in train.columns else set()
    if "retailer" in rows.columns:
        by("retailer", np.where(rows["retailer"].astype(str).isin(seen), "seen", "unseen"))
    length = rows["description"].astype(str).str.len().to_numpy()
    band = np.full(len(length), LENGTH_BANDS[-1][0], dtype=object)
    for label, low, high in LENGTH_BANDS:
        band[(length >= low) & (length <= high)] = label
    by("description length (characters)", band)
    return pd.DataFrame(out, columns=ERROR_COLUMNS)

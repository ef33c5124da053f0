"""Item accuracy (the leaderboard score) and macro F1 per level, as the organisers computed them
(scikit-learn `f1_score(average="macro", zero_division=1.0)`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from . import LEVELS

MISSING = "<missing>"  # a prediction with no label (parse failure) is simply wrong


def align(truth: pd.DataFrame, predictions: pd.DataFrame, name: str = "predictions") -> pd.DataFrame:
    """Predictions joined to the truth on indoml_id; every truth row must have a prediction."""
    merged = truth[["indoml_id", *LEVELS]].merge(
        predictions[["indoml_id", *LEVELS]], on="indoml_id", how="left", suffixes=("_true", "_pred"), indicator=True
    )
    missing = merged["_merge"] != "both"
    if missing.any():
        raise ValueError(f"{name}: no prediction for {int(missing.sum())} rows, e.g. indoml_id {merged.loc[missing, 'indoml_id'].iloc[0]}")
    return merged


def score(truth: pd.DataFrame, predictions: pd.DataFrame, name: str = "predictions") -> dict:
    merged = align(truth, predictions, name)
    result = {"n": len(merged)}
    all_right = np.ones(len(merged), dtype=bool)
    for level in LEVELS:
        y_true = merged[f"{level}_true"].astype(str).to_numpy()
        y_pred = merged[f"{level}_pred"].astype(object).where(merged[f"{level}_pred"].notna(), MISSING).astype(str).to_numpy()
        all_right &= y_true == y_pred
        result[f"f1_{level}"] = float(f1_score(y_true, y_pred, average="macro", zero_division=1.0))
        result[f"accuracy_{level}"] = float(np.mean(y_true == y_pred)) if len(merged) else float("nan")
    result["item_accuracy"] = float(all_right.mean()) if len(merged) else float("nan")
    if "parse_ok" in predictions.columns:
        result["parse_failures"] = int((~predictions["parse_ok"].astype(bool)).sum())
    else:
        result["parse_failures"] = 0
    return result


def majority_path_predictions(hierarchy, ids) -> pd.DataFrame:
    """The baseline: every row gets the most frequent training path."""
    path = hierarchy.majority_path()
    table = pd.DataFrame({"indoml_id": np.asarray(ids)})
    for level, label in zip(LEVELS, path):
        table[level] = label
    return table

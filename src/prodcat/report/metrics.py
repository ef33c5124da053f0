"""Item accuracy (the leaderboard score) and macro F1 per level, as the organisers computed them
(scikit-learn `f1_score(average="macro", zero_division=1.0)`).

Predictions are matched to the truth on indoml_id: every truth row needs exactly one prediction
(a repeated or a missing id is an InputError naming the predictions file); predictions for ids
outside the truth are ignored and counted (`ignored_predictions`). With the training rows'
retailers, the item accuracy on the truth rows whose retailer was never seen in training is
reported too (`item_accuracy_unseen_retailer`, over `n_unseen_retailer` rows; NaN when none).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from prodcat import LEVELS
from prodcat.runtime.errors import InputError

MISSING = "<missing>"  # a prediction with no label (parse failure) is simply wrong


def align(truth: pd.DataFrame, predictions: pd.DataFrame, name: str = "predictions") -> pd.DataFrame:
    """Predictions joined to the truth on indoml_id, in truth order: every truth row must have
    exactly one prediction; `_merge` says which prediction rows matched (`ignored_predictions` of
    `score` counts the others)."""
    ids = predictions["indoml_id"]
    duplicated = ids.duplicated().to_numpy()
    if duplicated.any():
        i = int(duplicated.argmax())
        raise InputError(
            name, f"duplicate indoml_id {ids.iloc[i]}: one prediction per row", column="indoml_id", row=i + 1
        )
    merged = truth[["indoml_id", *LEVELS]].merge(
        predictions[["indoml_id", *LEVELS]],
        on="indoml_id",
        how="left",
        suffixes=("_true", "_pred"),
        indicator=True,
        validate="one_to_one",
    )
    missing = merged["_merge"] != "both"
    if missing.any():
        raise InputError(
            name,
            f"no prediction for {int(missing.sum())} of the {len(truth)} truth rows, e.g. indoml_id "
            f"{merged.loc[missing, 'indoml_id'].iloc[0]}",
            column="indoml_id",
        )
    return merged


def score(truth: pd.DataFrame, predictions: pd.DataFrame, name: str = "predictions", seen_retailers=None) -> dict:
    merged = align(truth, predictions, name)
    matched = predictions["indoml_id"].isin(truth["indoml_id"]).to_numpy()
    result = {"n": len(merged), "ignored_predictions": int((~matched).sum())}
    all_right = np.ones(len(merged), dtype=bool)
    for level in LEVELS:
        y_true = merged[f"{level}_true"].astype(str).to_numpy()
        y_pred = (
            merged[f"{level}_pred"]
            .astype(object)
            .where(merged[f"{level}_pred"].notna(), MISSING)
            .astype(str)
            .to_numpy()
        )
        all_right &= y_true == y_pred
        result[f"f1_{level}"] = float(f1_score(y_true, y_pred, average="macro", zero_division=1.0))
        result[f"accuracy_{level}"] = float(np.mean(y_true == y_pred)) if len(merged) else float("nan")
    result["item_accuracy"] = float(all_right.mean()) if len(merged) else float("nan")
    if seen_retailers is not None:
        unseen = ~truth["retailer"].isin(set(seen_retailers)).to_numpy()
        result["n_unseen_retailer"] = int(unseen.sum())
        result["item_accuracy_unseen_retailer"] = float(all_right[unseen].mean()) if unseen.any() else float("nan")
    if "parse_ok" in predictions.columns:
        result["parse_failures"] = int((~predictions.loc[matched, "parse_ok"].astype(bool)).sum())
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

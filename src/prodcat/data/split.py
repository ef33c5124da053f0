"""Group-stratified train/validation split (README stage `split`).

Rows are shuffled first (the datathon's training file is sorted by label), then grouped by their
4-label path; from each group of n rows, n·fraction rows go to validation, rounded stochastically
(floor(n·fraction + u), u uniform) so that the overall fraction is right in expectation while small
groups are not all forced to give one row. At least one row of every group stays in train, so every
validation label at every level also occurs in train. Deterministic for a given seed, and
independent of the input's row order: rows are put in indoml_id order (ids are unique within a
file) before the shuffle, so the same rows in another order give the same split.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from prodcat import LEVELS


def split_group_stratified(
    rows: pd.DataFrame, fraction: float = 0.1, seed: int = 42
) -> tuple[pd.DataFrame, pd.DataFrame]:
    if not 0.0 < fraction < 1.0:  # also refuses NaN
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    missing = [level for level in LEVELS if level not in rows.columns]
    if missing:
        raise ValueError(f"split needs labelled rows; missing columns: {', '.join(missing)}")
    if rows["indoml_id"].duplicated().any():
        raise ValueError("split needs unique indoml_id values (ingest checks them)")
    rng = np.random.default_rng(seed)
    canonical = rows.sort_values("indoml_id", kind="mergesort").reset_index(drop=True)
    shuffled = canonical.iloc[rng.permutation(len(canonical))].reset_index(drop=True)
    group_id = shuffled.groupby(list(LEVELS), sort=True).ngroup().to_numpy()
    sizes = np.bincount(group_id)
    n_val = np.minimum(np.floor(sizes * fraction + rng.random(len(sizes))).astype(int), sizes - 1)
    # Rows are already in random order, so the first n_val rows of each group are a random draw.
    rank_in_group = shuffled.groupby(group_id).cumcount().to_numpy()
    is_val = rank_in_group < n_val[group_id]
    return shuffled[~is_val].reset_index(drop=True), shuffled[is_val].reset_index(drop=True)


def split_report(train: pd.DataFrame, val: pd.DataFrame) -> dict:
    """Sizes and label coverage; `val_labels_missing_from_train` is 0 at every level by design."""
    report = {
        "train_rows": len(train),
        "val_rows": len(val),
        "val_fraction": len(val) / max(len(train) + len(val), 1),
        "train_paths": int(train.groupby(list(LEVELS)).ngroups),
        "val_paths": int(val.groupby(list(LEVELS)).ngroups) if len(val) else 0,
        "levels": {},
    }
    for level in LEVELS:
        train_labels, val_labels = set(train[level]), set(val[level])
        report["levels"][level] = {
            "train_labels": len(train_labels),
            "val_labels": len(val_labels),
            "val_labels_missing_from_train": len(val_labels - train_labels),
        }
    return report

"""The review queue: the rows a person should check, with the candidates to choose from.

Rows whose calibrated confidence is below a threshold, least confident first: confidence is the
chance the answer is right, so the least confident rows are the likeliest to be wrong, and a person
who works down the list corrects the most errors per row looked at (and can stop at any point).
Ties: by indoml_id. Each row lists its best candidates (the submitted answer first) and who
proposed each one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from prodcat import LEVELS
from prodcat.runtime.errors import UsageError

TOP_CANDIDATES = 3
ROW_COLUMNS = ("description", "retailer", "price")


def check_threshold(value) -> float:
    """A review threshold P in (0, 1] (a UsageError, exit 2, otherwise)."""
    try:
        p = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"--review-below expects a number in (0, 1], got {value!r}") from None
    if not (0.0 < p <= 1.0):  # also refuses nan
        raise UsageError(f"--review-below expects a number in (0, 1], got {value!r}")
    return p


def vote_candidates(voted: pd.DataFrame, members: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """A vote's candidates per row: its answer first, then the members' other paths by how many
    members propose them (ties: member order); columns indoml_id, rank, the four levels, proposers."""
    ids = voted["indoml_id"].to_numpy(dtype=np.int64)
    parts = []
    for order, (name, table) in enumerate(members.items()):
        position = pd.Index(table["indoml_id"].to_numpy(dtype=np.int64)).get_indexer(ids)
        part = table.iloc[position][list(LEVELS)].astype(str).reset_index(drop=True)
        parts.append(part.assign(indoml_id=ids, row=np.arange(len(ids)), member=name, order=order))
    long = pd.concat(parts, ignore_index=True)
    chosen = voted[list(LEVELS)].astype(str).reset_index(drop=True).assign(row=np.arange(len(ids)))
    grouped = (
        long.groupby(["row", *LEVELS], sort=False)
        .agg(proposers=("member", ",".join), support=("member", "size"), first=("order", "min"))
        .reset_index()
    )
    grouped = pd.concat(
        [
            chosen.merge(grouped, on=["row", *LEVELS], how="left").assign(is_answer=1),
            grouped.merge(chosen, on=["row", *LEVELS], how="left", indicator=True)
            .query("_merge == 'left_only'")
            .drop(columns="_merge")
            .assign(is_answer=0),
        ],
        ignore_index=True,
    )
    grouped["proposers"] = grouped["proposers"].fillna("")
    grouped["support"] = grouped["support"].fillna(0)
    grouped = grouped.sort_values(
        ["row", "is_answer", "support", "first"], ascending=[True, False, False, True], kind="stable"
    )
    grouped["rank"] = grouped.groupby("row").cumcount() + 1
    grouped["indoml_id"] = ids[grouped["row"].to_numpy()]
    return grouped[["indoml_id", "rank", *LEVELS, "proposers"]].reset_index(drop=True)


def review_queue(
    predictions: pd.DataFrame,
    candidates: pd.DataFrame,
    below: float,
    rows: pd.DataFrame | None = None,
    top: int = TOP_CANDIDATES,
) -> pd.DataFrame:
    """The rows of `predictions` whose confidence is below `below`, least confident first, each with
    its `top` best candidates (one line per candidate): review_order, indoml_id, confidence, the
    row's description, retailer and price when `rows` has them, candidate_rank, the four levels,
    proposers (and the candidate's stack_probability when the candidates have it)."""
    flagged = predictions.loc[predictions["confidence"] < below, ["indoml_id", "confidence"]]
    flagged = flagged.sort_values(["confidence", "indoml_id"], kind="stable").reset_index(drop=True)
    flagged["review_order"] = np.arange(1, len(flagged) + 1)
    if rows is not None:
        extra = [c for c in ROW_COLUMNS if c in rows.columns]
        flagged = flagged.merge(rows[["indoml_id", *extra]], on="indoml_id", how="left")
    keep = [c for c in ("indoml_id", "rank", *LEVELS, "proposers", "stack_probability") if c in candidates.columns]
    listed = candidates.loc[candidates["rank"] <= top, keep].rename(columns={"rank": "candidate_rank"})
    out = flagged.merge(listed, on="indoml_id", how="left")
    out = out.sort_values(["review_order", "candidate_rank"], kind="stable").reset_index(drop=True)
    first = ["review_order", "indoml_id", "confidence"]
    return out[first + [c for c in out.columns if c not in first]]

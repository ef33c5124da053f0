"""The datathon's submission file: JSON lines, one object per row with exactly the keys
indoml_id (int), supergroup, group, module, brand (non-empty strings).

A submission must be complete, so a missing label is an error naming the row rather than a
silent placeholder; the file is written atomically (a temporary file, then a rename).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from prodcat import LEVELS
from prodcat.data.io import write_json_lines
from prodcat.runtime.errors import InputError

SUBMISSION_COLUMNS = ("indoml_id", *LEVELS)


def write_submission(predictions: pd.DataFrame, path, *, source="predictions") -> None:
    """Write `predictions` (extra columns are dropped) as a submission at `path`.

    `source` names where the predictions came from (the CLI passes the file) in the InputError
    raised for a missing column, a non-integer or duplicate id, or a missing or empty label.
    """
    for column in SUBMISSION_COLUMNS:
        if column not in predictions.columns:
            raise InputError(source, "missing column needed for a submission", column=column)
    ids = predictions["indoml_id"]
    if not pd.api.types.is_integer_dtype(ids.dtype):
        raise InputError(source, f"indoml_id must be integers, got dtype {ids.dtype}", column="indoml_id")
    duplicated = ids.duplicated().to_numpy()
    if duplicated.any():
        i = int(duplicated.argmax())
        raise InputError(source, f"duplicate indoml_id {ids.iloc[i]}", column="indoml_id", row=i + 1)
    for level in LEVELS:
        good = np.fromiter(
            (isinstance(v, str) and v.strip() != "" for v in predictions[level]), dtype=bool, count=len(predictions)
        )
        if not good.all():
            i = int((~good).argmax())
            raise InputError(
                source,
                f"indoml_id {ids.iloc[i]} has no {level} label ({predictions[level].iloc[i]!r}); a submission "
                "must be complete",
                column=level,
                row=i + 1,
            )
    table = pd.DataFrame({"indoml_id": ids.astype("int64").to_numpy()})
    for level in LEVELS:
        table[level] = predictions[level].astype(object).to_numpy()
    write_json_lines(table, path)

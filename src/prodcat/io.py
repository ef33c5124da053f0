"""Reading, validating and writing the tables that pass between rules.

Rows table (Parquet): indoml_id int64 unique, description non-empty string, retailer string,
price float64 (missing stays missing) and, for labelled data, supergroup/group/module/brand.
Input may be Parquet or the datathon's JSON lines (.features / .labels / .jsonl / .json).
Every problem raises InputError naming the file, the column and the row (1-based record number),
and every write goes through a temporary file so that a failure leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path

import pandas as pd

from . import LEVELS
from .errors import InputError

FEATURE_COLUMNS = ("indoml_id", "description", "retailer", "price")
JSON_SUFFIXES = {".features", ".labels", ".jsonl", ".json", ".predict"}


def read_table(path) -> pd.DataFrame:
    """A Parquet or JSON-lines file as a DataFrame (values as stored; validate separately)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    if path.suffix == ".parquet":
        try:
            return pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise InputError(path, f"cannot read as Parquet: {exc}") from exc
    if path.suffix in JSON_SUFFIXES:
        return _read_json_lines(path)
    raise InputError(path, f"unknown file type {path.suffix!r}: expected .parquet or JSON lines ({', '.join(sorted(JSON_SUFFIXES))})")


def _read_json_lines(path: Path) -> pd.DataFrame:
    records = []
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(path, f"not valid JSON ({exc.msg})", row=number) from exc
                if not isinstance(record, dict):
                    raise InputError(path, "expected a JSON object per line", row=number)
                records.append(record)
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not UTF-8 text: {exc}") from exc
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc}") from exc
    return pd.DataFrame.from_records(records)


def _require_columns(df: pd.DataFrame, columns, path) -> None:
    for column in columns:
        if column not in df.columns:
            raise InputError(path, f"missing column (has: {', '.join(map(str, df.columns)) or 'none'})", column=column)


def _validate_ids(values: pd.Series, path) -> pd.Series:
    out = []
    for i, value in enumerate(values, start=1):
        if isinstance(value, bool) or value is None:
            raise InputError(path, f"expected an integer id, got {value!r}", column="indoml_id", row=i)
        if isinstance(value, float):
            if math.isnan(value) or not value.is_integer():
                raise InputError(path, f"expected an integer id, got {value!r}", column="indoml_id", row=i)
            value = int(value)
        elif isinstance(value, str):
            if not value.strip().lstrip("-").isdigit():
                raise InputError(path, f"expected an integer id, got {value!r}", column="indoml_id", row=i)
            value = int(value)
        else:
            try:
                value = int(value)
            except (TypeError, ValueError):
                raise InputError(path, f"expected an integer id, got {value!r}", column="indoml_id", row=i) from None
        out.append(value)
    ids = pd.Series(out, index=values.index, dtype="int64")
    duplicated = ids.duplicated()
    if duplicated.any():
        i = int(duplicated.to_numpy().argmax())
        raise InputError(path, f"duplicate indoml_id {ids.iloc[i]}", column="indoml_id", row=i + 1)
    return ids


def _validate_strings(values: pd.Series, column: str, path, *, allow_empty: bool) -> pd.Series:
    for i, value in enumerate(values, start=1):
        if not isinstance(value, str):
            raise InputError(path, f"expected a string, got {value!r}", column=column, row=i)
        if not allow_empty and not value.strip():
            raise InputError(path, "expected a non-empty string", column=column, row=i)
    return values.astype("string[python]").astype(object)


def parse_price(value, path, row: int) -> float:
    """A price as float; None/NaN/"" are missing (NaN). Strings like "1.99" are parsed."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return math.nan
    if isinstance(value, bool):
        raise InputError(path, f"expected a price, got {value!r}", column="price", row=row)
    if isinstance(value, str):
        text = value.strip().strip('"').strip()
        if text == "" or text.lower() in {"nan", "na", "null", "none"}:
            return math.nan
        try:
            price = float(text)
        except ValueError:
            raise InputError(path, f"expected a number or a numeric string, got {value!r}", column="price", row=row) from None
    else:
        try:
            price = float(value)
        except (TypeError, ValueError):
            raise InputError(path, f"expected a number, got {value!r}", column="price", row=row) from None
    if math.isinf(price) or price < 0:
        raise InputError(path, f"expected a finite non-negative price, got {value!r}", column="price", row=row)
    return price


def validate_features(df: pd.DataFrame, path) -> pd.DataFrame:
    _require_columns(df, FEATURE_COLUMNS, path)
    out = pd.DataFrame(index=df.index)
    out["indoml_id"] = _validate_ids(df["indoml_id"], path)
    out["description"] = _validate_strings(df["description"], "description", path, allow_empty=False)
    out["retailer"] = _validate_strings(df["retailer"], "retailer", path, allow_empty=True)
    out["price"] = pd.Series(
        [parse_price(v, path, i) for i, v in enumerate(df["price"].tolist(), start=1)], index=df.index, dtype="float64"
    )
    return out


def validate_labels(df: pd.DataFrame, path) -> pd.DataFrame:
    _require_columns(df, ("indoml_id", *LEVELS), path)
    out = pd.DataFrame(index=df.index)
    out["indoml_id"] = _validate_ids(df["indoml_id"], path)
    for level in LEVELS:
        out[level] = _validate_strings(df[level], level, path, allow_empty=False)
    return out


def ingest(features_path, labels_path=None) -> pd.DataFrame:
    """Validated rows: features, joined with labels on indoml_id when labels are given (or when
    the features file carries the four label columns itself)."""
    raw = read_table(features_path)
    if raw.empty:
        raise InputError(features_path, "the file has no rows")
    rows = validate_features(raw, features_path)
    inline_labels = all(level in raw.columns for level in LEVELS)
    if labels_path is not None:
        labels = validate_labels(read_table(labels_path), labels_path)
        known = set(rows["indoml_id"])
        orphan = ~labels["indoml_id"].isin(known)
        if orphan.any():
            i = int(orphan.to_numpy().argmax())
            raise InputError(
                labels_path,
                f"labels for indoml_id {labels['indoml_id'].iloc[i]} which is not in {features_path}",
                column="indoml_id", row=i + 1,
            )
        missing = ~rows["indoml_id"].isin(set(labels["indoml_id"]))
        if missing.any():
            i = int(missing.to_numpy().argmax())
            raise InputError(
                features_path,
                f"indoml_id {rows['indoml_id'].iloc[i]} has no labels in {labels_path}",
                column="indoml_id", row=i + 1,
            )
        rows = rows.merge(labels, on="indoml_id", how="left", validate="one_to_one")
    elif inline_labels:
        labels = validate_labels(raw, features_path)
        for level in LEVELS:
            rows[level] = labels[level]
    return rows.reset_index(drop=True)


def read_rows(path, *, labelled: bool = False) -> pd.DataFrame:
    """A rows table written by `ingest` (or any file ingest accepts), validated again."""
    rows = ingest(path)
    if labelled and not all(level in rows.columns for level in LEVELS):
        raise InputError(path, f"expected labelled rows with columns {', '.join(LEVELS)}")
    return rows


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to `path`; it replaces `path` only if the block succeeds, so a
    failure never leaves a half-written output behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_parquet(df: pd.DataFrame, path) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def write_text(text: str, path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(obj, path) -> None:
    write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=_json_default) + "\n", path)


def write_json_lines(df: pd.DataFrame, path) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for record in df.to_dict(orient="records"):
            handle.write(json.dumps(record, ensure_ascii=False, default=_json_default) + "\n")


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value)}")


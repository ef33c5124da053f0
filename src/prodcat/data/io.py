"""Reading, validating and writing the tables that pass between rules.

Rows table (Parquet): indoml_id int64 unique, description non-empty string, retailer string,
price float64 (missing stays missing) and, for labelled data, supergroup/group/module/brand.
Input may be Parquet or the datathon's JSON lines (.features / .labels / .jsonl / .json).
Every problem raises InputError naming the file, the column and the row (1-based record number).

Every write goes through a temporary file next to the output, fsynced and then renamed over it, so
that a failure (or a crash, or a SIGTERM: the temporary files are removed then) leaves nothing
half-written; `atomic_paths` does the same for several outputs that must appear together.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import threading
from pathlib import Path

import numpy as np
import pandas as pd

from prodcat import LEVELS
from prodcat.runtime.errors import InputError, OutputError, UsageError

FEATURE_COLUMNS = ("indoml_id", "description", "retailer", "price")
JSON_SUFFIXES = {".features", ".labels", ".jsonl", ".json", ".predict"}
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_ID_TEXT = re.compile(r"[+-]?[0-9]+")  # ASCII digits only: int() also reads '²'-like digits and '_'
# A receipt line above this price is a data error (the real training prices stay below 1,000); such
# a value would also squash every other price in the multimodal labeler's min-max scaler.
MAX_PRICE = 1_000_000.0


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
    raise InputError(
        path, f"unknown file type {path.suffix!r}: expected .parquet or JSON lines ({', '.join(sorted(JSON_SUFFIXES))})"
    )


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
                for key, value in record.items():
                    _check_text(key, path, key, number)
                    if isinstance(value, str):
                        _check_text(value, path, key, number)
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


def parse_id(value, path, row: int, column: str = "indoml_id") -> int:
    """An id as a Python int: an integer, an integral float or a decimal string ("12", "-3"),
    within int64. Anything else (None, NaN, bool, "1.5", "--5", "²", 2**70) is an InputError."""
    parsed = None
    if isinstance(value, bool) or value is None:
        parsed = None
    elif isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            parsed = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if _ID_TEXT.fullmatch(text):
            parsed = int(text)
    elif isinstance(value, int) or hasattr(value, "__index__"):  # Python and NumPy integers
        parsed = int(value)
    elif hasattr(value, "is_integer") and hasattr(value, "__float__"):  # NumPy floats
        return parse_id(float(value), path, row, column)
    if parsed is None:
        raise InputError(path, f"expected an integer id, got {value!r}", column=column, row=row)
    if not INT64_MIN <= parsed <= INT64_MAX:
        raise InputError(path, f"id {value!r} is outside the 64-bit integer range", column=column, row=row)
    return parsed


def _ids_at_once(values: pd.Series) -> pd.Series | None:
    """The ids as int64 when the column is a NumPy integer or float column that `parse_id` accepts
    throughout (whole-column checks); None otherwise (then `parse_id` words the problem)."""
    dtype = values.dtype
    if not isinstance(dtype, np.dtype) or dtype.kind not in "iuf":
        return None  # object, string, bool or nullable columns: value by value
    array = values.to_numpy()
    if dtype.kind == "u" and len(array) and array.max() > INT64_MAX:
        return None
    if dtype.kind == "f":
        # as parse_id: finite, integral and within int64 (2**63 is the first float beyond it)
        if not (np.isfinite(array).all() and (array == np.trunc(array)).all()):
            return None
        if len(array) and not (array.min() >= INT64_MIN and array.max() < 2.0**63):
            return None
    return pd.Series(array.astype("int64"), index=values.index)


def _validate_ids(values: pd.Series, path) -> pd.Series:
    ids = _ids_at_once(values)
    if ids is None:
        ids = pd.Series(
            [parse_id(v, path, i) for i, v in enumerate(values.tolist(), start=1)], index=values.index, dtype="int64"
        )
    duplicated = ids.duplicated()
    if duplicated.any():
        i = int(duplicated.to_numpy().argmax())
        first = int(ids.eq(ids.iloc[i]).to_numpy().argmax())
        raise InputError(
            path, f"duplicate indoml_id {ids.iloc[i]} (first at row {first + 1})", column="indoml_id", row=i + 1
        )
    return ids


def _check_text(value: str, path, column: str, row: int) -> None:
    """Text that can be written as UTF-8: JSON may carry a lone surrogate (\\ud800), which Python
    reads but no file format can store."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(
            path,
            f"not valid Unicode text: {value[exc.start]!r} (a lone surrogate) at position {exc.start + 1}",
            column=column,
            row=row,
        ) from None


def _all_text(values: np.ndarray) -> bool:
    """Every value a str that can be written as UTF-8 (no lone surrogate), checked at once."""
    if set(map(type, values)) - {str}:
        return False
    try:
        "".join(values).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# A string of Python white space only (what str.strip empties), in Arrow's (RE2) regex syntax:
# the 29 code points of str.isspace (tests/test_validation_agreement.py checks all of Unicode).
ARROW_BLANK = (
    r"^[\t\n\x0b\x0c\r \x1c-\x1f\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]*$"
)


def _strings_ok(values: pd.Series, allow_empty: bool) -> bool:
    """Whether `_validate_strings` would accept the column, checked on whole columns (False:
    it walks the column to name the first bad row)."""
    dtype = values.dtype
    if isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow":  # valid UTF-8 by construction
        if values.isna().any():
            return False
        import pyarrow as pa
        import pyarrow.compute as pc

        return allow_empty or not pc.any(pc.match_substring_regex(pa.array(values), ARROW_BLANK)).as_py()
    array = values.to_numpy(dtype=object)
    if not _all_text(array):
        return False
    # an empty or all-white-space string strips to "" (str.strip, as in the row check)
    return allow_empty or all(map(str.strip, pd.unique(array)))


def _validate_strings(values: pd.Series, column: str, path, *, allow_empty: bool) -> pd.Series:
    if _strings_ok(values, allow_empty):
        return values.astype("string[python]").astype(object)
    for i, value in enumerate(values, start=1):
        if not isinstance(value, str):
            raise InputError(path, f"expected a string, got {value!r}", column=column, row=i)
        if not allow_empty and not value.strip():
            raise InputError(path, "expected a non-empty string", column=column, row=i)
        _check_text(value, path, column, i)
    return values.astype("string[python]").astype(object)


def _validate_labels_text(values: pd.Series, column: str, path) -> pd.Series:
    """Labels become the seq2seq target text `sg | g | m | b`: refuse what would break it."""
    from prodcat.data.target_text import label_problem

    values = _validate_strings(values, column, path, allow_empty=False)
    if not any(map(label_problem, pd.unique(values.to_numpy()))):  # each distinct label once
        return values
    for i, value in enumerate(values, start=1):
        problem = label_problem(value)
        if problem:
            raise InputError(path, f"label {value!r} {problem}", column=column, row=i)
    return values


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
            raise InputError(
                path, f"expected a number or a numeric string, got {value!r}", column="price", row=row
            ) from None
    else:
        try:
            price = float(value)
        except (TypeError, ValueError):
            raise InputError(path, f"expected a number, got {value!r}", column="price", row=row) from None
    if math.isnan(price):  # float("nan") of a numeric value: missing, like a null
        return math.nan
    if math.isinf(price) or price < 0 or price >= MAX_PRICE:
        raise InputError(
            path, f"expected a finite non-negative price below {MAX_PRICE:,.0f}, got {value!r}", column="price", row=row
        )
    return price


def validate_features(df: pd.DataFrame, path) -> pd.DataFrame:
    _require_columns(df, FEATURE_COLUMNS, path)
    out = pd.DataFrame(index=df.index)
    out["indoml_id"] = _validate_ids(df["indoml_id"], path)
    out["description"] = _validate_strings(df["description"], "description", path, allow_empty=False)
    out["retailer"] = _validate_strings(df["retailer"], "retailer", path, allow_empty=True)
    prices = _prices_at_once(df["price"])
    if prices is None:
        prices = pd.Series(
            [parse_price(v, path, i) for i, v in enumerate(df["price"].tolist(), start=1)],
            index=df.index,
            dtype="float64",
        )
    out["price"] = prices
    return out


def _prices_at_once(values: pd.Series) -> pd.Series | None:
    """The prices as float64 when the column is a NumPy number column that `parse_price` accepts
    throughout (NaN is missing); None otherwise (then `parse_price` words the problem)."""
    if not isinstance(values.dtype, np.dtype) or values.dtype.kind not in "iuf":
        return None  # strings, objects, bools: value by value
    prices = values.to_numpy().astype("float64")
    present = prices[~np.isnan(prices)]
    if not ((present >= 0) & (present < MAX_PRICE)).all():  # also refuses ±inf
        return None
    return pd.Series(prices, index=values.index)


def validate_labels(df: pd.DataFrame, path) -> pd.DataFrame:
    _require_columns(df, ("indoml_id", *LEVELS), path)
    out = pd.DataFrame(index=df.index)
    out["indoml_id"] = _validate_ids(df["indoml_id"], path)
    for level in LEVELS:
        out[level] = _validate_labels_text(df[level], level, path)
    return out


def ingest(features_path, labels_path=None) -> pd.DataFrame:
    """Validated rows: features, joined with labels on indoml_id when labels are given (or when
    the features file carries the four label columns itself)."""
    raw = read_table(features_path)
    if raw.empty:
        raise InputError(features_path, "the file has no rows")
    rows = validate_features(raw, features_path)
    inline_labels = all(level in raw.columns for level in LEVELS)
    partial = [level for level in LEVELS if level not in raw.columns]
    if labels_path is None and 0 < len(partial) < len(LEVELS):
        raise InputError(
            features_path,
            f"has some label columns but not all four ({', '.join(LEVELS)}): missing column",
            column=partial[0],
        )
    if labels_path is not None:
        labels = validate_labels(read_table(labels_path), labels_path)
        known = set(rows["indoml_id"])
        orphan = ~labels["indoml_id"].isin(known)
        if orphan.any():
            i = int(orphan.to_numpy().argmax())
            raise InputError(
                labels_path,
                f"labels for indoml_id {labels['indoml_id'].iloc[i]} which is not in {features_path}",
                column="indoml_id",
                row=i + 1,
            )
        missing = ~rows["indoml_id"].isin(set(labels["indoml_id"]))
        if missing.any():
            i = int(missing.to_numpy().argmax())
            raise InputError(
                features_path,
                f"indoml_id {rows['indoml_id'].iloc[i]} has no labels in {labels_path}",
                column="indoml_id",
                row=i + 1,
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
    missing = [level for level in LEVELS if level not in rows.columns]
    if labelled and missing:
        raise InputError(
            path, f"expected labelled rows with columns {', '.join(LEVELS)}: missing column", column=missing[0]
        )
    return rows


def validate_predictions(table: pd.DataFrame, path) -> pd.DataFrame:
    """A predictions table (indoml_id + the four levels, other columns kept): ids as by ingest
    (integers, unique), each label a string or missing (a parse failure)."""
    missing = [c for c in ("indoml_id", *LEVELS) if c not in table.columns]
    if missing:
        raise InputError(path, f"not a predictions table: missing {', '.join(missing)}", column=missing[0])
    table = table.copy()
    table["indoml_id"] = _validate_ids(table["indoml_id"], path).to_numpy()
    for level in LEVELS:
        if _labels_or_missing(table[level]):
            continue
        for i, value in enumerate(table[level].tolist(), start=1):
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            if not isinstance(value, str):
                raise InputError(path, f"expected a label (string) or nothing, got {value!r}", column=level, row=i)
            _check_text(value, path, level, i)
    return table


def _labels_or_missing(values: pd.Series) -> bool:
    """Whether every value is a str that can be written as UTF-8, None or a float NaN — what the
    row loop of `validate_predictions` accepts — checked on the whole column."""
    dtype = values.dtype
    if isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow":
        # Arrow holds valid UTF-8 only; a missing value is NaN (pandas' default "str") or pd.NA
        return isinstance(dtype.na_value, float) or not values.isna().any()
    array = values.to_numpy(dtype=object)
    if set(map(type, array)) - {str, float, type(None)}:
        return False  # pd.NA, NumPy scalars, numbers of other types: the row loop decides
    missing = pd.isna(array)  # None and NaN here
    return _all_text(array[~missing])


def read_predictions(path) -> pd.DataFrame:
    return validate_predictions(read_table(path), path)


def read_json(path, what: str = "JSON"):
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found" if not path.exists() else "not a file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(path, f"cannot read {what}: {exc}") from None


def read_level_accuracy(path, models) -> dict[str, dict[str, float]]:
    """`{model: {level: validation accuracy}}` for at least `models` (other models may be present),
    every accuracy a number in [0, 1]."""
    obj = read_json(path, "a level-accuracy JSON")
    if not isinstance(obj, dict):
        raise InputError(path, f"expected a JSON object {{model: {{level: accuracy}}}}, got {type(obj).__name__}")
    for model in models:
        if model not in obj:
            raise InputError(
                path, f"no accuracies for model {model!r} (has: {', '.join(map(str, obj)) or 'none'})", key=model
            )
        levels = obj[model]
        if not isinstance(levels, dict):
            raise InputError(path, f"expected an object {{level: accuracy}}, got {levels!r}", key=model)
        for level in LEVELS:
            value = levels.get(level)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                problem = "missing" if level not in levels else f"got {value!r}"
                raise InputError(path, f"expected an accuracy in [0, 1] ({problem})", key=f"{model}.{level}")
    return obj


def check_output_path(path) -> None:
    """Refuse an output path that cannot be written (a folder, a folder under a file) before work starts."""
    _prepare_output(Path(path))


# ---- atomic writes -------------------------------------------------------------------------
_live_temps: set[Path] = set()  # temporary files being written now, removed on SIGTERM
_sigterm_hooked = False


def _remove_live_temps_on_sigterm() -> None:
    """Make SIGTERM (Snakemake cancelling a job, Slurm's time limit, `kill`) remove the temporary
    files being written before the process dies as it would have died. Python's default action
    for SIGTERM ends the process without running `finally` blocks, which would leave them."""
    global _sigterm_hooked
    if _sigterm_hooked or threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is signal.SIG_IGN:
        return

    def on_sigterm(signum, frame):
        for tmp in list(_live_temps):
            with contextlib.suppress(OSError):
                tmp.unlink()
        if callable(previous):
            previous(signum, frame)
            return
        signal.signal(signum, signal.SIG_DFL)  # then die of the signal, exit status 128 + 15
        os.kill(os.getpid(), signum)

    signal.signal(signal.SIGTERM, on_sigterm)
    _sigterm_hooked = True


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _prepare_output(path: Path) -> None:
    if path.is_dir():
        raise InputError(path, "is a folder; expected the path of an output file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(path, f"cannot create the output's folder: {exc.strerror or exc}") from None


@contextlib.contextmanager
def atomic_paths(*paths):
    """Yield one temporary path per output (next to it). When the block succeeds, each is fsynced
    and then renamed over its output, so the outputs appear together; when it fails, or on SIGTERM,
    the temporary files are removed and no output is touched. Every output folder is created (or
    refused) before the block runs, so a bad path fails before any work is done."""
    paths = [Path(p) for p in paths]
    if len({p.resolve() for p in paths}) != len(paths):
        raise ValueError(f"the outputs must be distinct files, got {', '.join(map(str, paths))}")
    for path in paths:
        _prepare_output(path)
    temps = [path.with_name(f".{path.name}.{os.getpid()}.tmp") for path in paths]
    _remove_live_temps_on_sigterm()
    _live_temps.update(temps)
    try:
        try:
            yield temps
            for tmp in temps:
                _fsync(tmp)  # the data is on disk before the rename makes it visible
        except OSError as exc:  # disk full, quota, permission: name the output, not a temp file
            failed = next((str(p) for t, p in zip(temps, paths) if str(t) == str(exc.filename)), None)
            raise OutputError(failed or ", ".join(map(str, paths)), exc) from exc
        renamed = []
        try:
            for tmp, path in zip(temps, paths):
                tmp.replace(path)
                renamed.append(path)
        except OSError as exc:
            for path in renamed:  # all or nothing
                path.unlink(missing_ok=True)
            raise OutputError(path, exc) from None
        for folder in {path.parent for path in paths}:
            with contextlib.suppress(OSError):  # some file systems cannot fsync a folder
                _fsync(folder)
    finally:
        for tmp in temps:
            with contextlib.suppress(OSError):
                tmp.unlink()
            _live_temps.discard(tmp)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to `path`; it replaces `path` only if the block succeeds, so a
    failure never leaves a half-written output behind (see `atomic_paths`)."""
    with atomic_paths(path) as (tmp,):
        yield tmp


def parquet_to(df: pd.DataFrame, path) -> None:
    """Write Parquet to `path` as is (inside `atomic_paths`; otherwise use `write_parquet`)."""
    df.to_parquet(path, index=False)


def json_to(obj, path) -> None:
    Path(path).write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=_json_default) + "\n", encoding="utf-8")


def write_parquet(df: pd.DataFrame, path) -> None:
    with atomic_path(path) as tmp:
        parquet_to(df, tmp)


def write_text(text: str, path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(obj, path) -> None:
    with atomic_path(path) as tmp:
        json_to(obj, tmp)


def write_json_lines(df: pd.DataFrame, path) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for record in df.to_dict(orient="records"):
            handle.write(json.dumps(record, ensure_ascii=False, default=_json_default) + "\n")


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value)}")


def parse_named_paths(items) -> list[tuple[str, str]]:
    """NAME=PATH command-line pairs (NAME defaults to the file's stem); names must be non-empty
    and distinct (a UsageError says which are not)."""
    named = []
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            name, path = Path(item).stem, item
        if not name or not path:
            raise UsageError(f"expected [NAME=]PATH with a non-empty name and path, got {item!r}")
        named.append((name, path))
    seen = {}
    for name, path in named:
        if name in seen:
            raise UsageError(f"{seen[name]} and {path} are both named {name!r}; name them apart with NAME=PATH")
        seen[name] = path
    return named

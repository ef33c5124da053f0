"""The label hierarchy: every known (supergroup, group, module, brand) path with its training count.

supergroup → group → module is a strict tree; a brand may sit under several modules. The JSON
written by `prodcat hierarchy` is `{"levels": [...], "paths": [[sg, g, m, b, count], ...]}`; the
nested form of the IndoML label space (sg → g → m → [brands], see shared/indoml2024) is read too,
with every count set to 1. Both are validated against `hierarchy.schema.json` (next to this
module): labels are non-empty strings that can be part of a target text, counts are integers ≥ 1;
an error names the file and the path's row (1-based) and column, or the nested keys. The schema
is the contract; a valid file is recognised by whole-list checks that give the schema's verdict
(`_conforms`), and jsonschema walks the file only when something is wrong, to word the error.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from prodcat import LEVELS
from prodcat.runtime.errors import InputError


@dataclass
class Hierarchy:
    """Known label paths, ordered by count (descending) then lexicographically: a fixed order
    that every tie rule downstream can rely on."""

    paths: pd.DataFrame  # columns: *LEVELS, count
    _children: dict = field(default=None, repr=False)

    def __post_init__(self):
        df = self.paths[list(LEVELS) + ["count"]].copy()
        for level in LEVELS:
            df[level] = df[level].astype(str)
        df["count"] = df["count"].astype("int64")
        df = df.groupby(list(LEVELS), as_index=False, sort=False)["count"].sum()
        df = df.sort_values(["count", *LEVELS], ascending=[False] + [True] * 4, kind="mergesort")
        self.paths = df.reset_index(drop=True)
        self._children = None

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_frame(cls, rows: pd.DataFrame) -> Hierarchy:
        counts = rows.groupby(list(LEVELS), sort=False).size().rename("count").reset_index()
        return cls(counts)

    @classmethod
    def from_json(cls, path) -> Hierarchy:
        path = Path(path)
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(path, "file not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(path, f"cannot read a hierarchy JSON: {exc}") from exc
        _validate(obj, path)
        if "paths" in obj:
            df = pd.DataFrame([record[:4] + [int(record[4])] for record in obj["paths"]], columns=[*LEVELS, "count"])
        else:  # nested IndoML form
            records = [
                (sg, g, m, b, 1)
                for sg, groups in obj.items()
                for g, modules in groups.items()
                for m, brands in modules.items()
                for b in brands
            ]
            df = pd.DataFrame(records, columns=[*LEVELS, "count"])
        return cls(df)

    def to_json(self, path) -> None:
        records = [[*r[:4], int(r[4])] for r in self.paths.itertuples(index=False, name=None)]
        text = json.dumps({"levels": list(LEVELS), "paths": records}, ensure_ascii=False, indent=0)
        from prodcat.data.io import write_text

        write_text(text, path)

    # ---- queries ------------------------------------------------------------------------
    @property
    def n_paths(self) -> int:
        return len(self.paths)

    def labels(self, level: str) -> list[str]:
        """Distinct labels of one level, most frequent first (ties: alphabetical)."""
        counts = self.paths.groupby(level, sort=False)["count"].sum()
        return _ordered(counts)

    def children(self, parents: tuple[str, ...]) -> list[str]:
        """Labels of level len(parents) under the given parent labels, most frequent first.
        children(()) are the supergroups."""
        if self._children is None:
            self._build_children()
        return self._children.get(tuple(parents), [])

    def path_set(self) -> set[tuple[str, str, str, str]]:
        return set(self.paths[list(LEVELS)].itertuples(index=False, name=None))

    def majority_path(self) -> tuple[str, str, str, str]:
        return tuple(self.paths.iloc[0][list(LEVELS)])

    def _build_children(self) -> None:
        children: dict[tuple, list[str]] = {}
        for depth in range(len(LEVELS)):
            counts = self.paths.groupby(list(LEVELS[: depth + 1]), sort=False)["count"].sum()
            items = [(key if isinstance(key, tuple) else (key,), int(n)) for key, n in counts.items()]
            # parent, then count descending, then label: the deterministic child order
            for key, _ in sorted(items, key=lambda kv: (kv[0][:-1], -kv[1], kv[0][-1])):
                children.setdefault(key[:-1], []).append(key[-1])
        self._children = children


def _ordered(counts: pd.Series) -> list[str]:
    """Keys by count descending, then alphabetically (deterministic tie rule)."""
    items = sorted(counts.items(), key=lambda kv: (-int(kv[1]), str(kv[0])))
    return [str(k) for k, _ in items]


@functools.cache
def _validator():
    import jsonschema

    return jsonschema.Draft202012Validator(_schema())


@functools.cache
def _schema() -> dict:
    return json.loads(Path(__file__).with_name("hierarchy.schema.json").read_text(encoding="utf-8"))


@functools.cache
def _label_rules():
    """The schema's label rule (`$defs.label`: a pattern, and a pattern it must not match) as
    compiled regular expressions, as jsonschema applies them (`re.search`)."""
    rule = _schema()["$defs"]["label"]
    return re.compile(rule["pattern"]), re.compile(rule["not"]["pattern"])


def _labels_ok(labels) -> bool:
    """Every label is a string that the schema's label rule and `label_problem` accept."""
    from prodcat.data.target_text import label_problem

    labels = list(labels)
    if set(map(type, labels)) != {str}:
        return False
    labels = set(labels)  # each distinct label once: a few thousand, however many paths
    required, forbidden = _label_rules()
    return all(required.search(label) and not forbidden.search(label) and not label_problem(label) for label in labels)


def _counts_ok(counts) -> bool:
    """Every count a JSON-schema integer (an int, not a bool, or an integral float) >= 1."""
    types = set(map(type, counts))
    if not types <= {int, float}:
        return False
    if float in types and not all(c.is_integer() for c in counts if type(c) is float):  # rare: 3.0
        return False
    return min(counts) >= 1


def _conforms(obj) -> bool:
    """Whether the hierarchy is valid: the verdict of `_walk` (the schema, then `_check_labels`),
    found with operations on whole lists and on each distinct label once, instead of the schema's
    walk through every path (tests/test_validation_agreement.py checks that both agree)."""
    if type(obj) is not dict:
        return False
    if "paths" in obj:  # the schema's `if`: then `$defs/flat`
        flat = _schema()["$defs"]["flat"]
        if not set(obj) <= set(flat["properties"]):
            return False
        if "levels" in obj and not (
            type(obj["levels"]) is list and obj["levels"] == flat["properties"]["levels"]["const"]
        ):
            return False
        paths = obj["paths"]
        if type(paths) is not list or not paths or set(map(type, paths)) != {list} or set(map(len, paths)) != {5}:
            return False
        *labels, counts = zip(*paths)
        return _counts_ok(counts) and _labels_ok(itertools.chain(*labels))
    # `$defs/nested`: supergroup → group → module → non-empty list of brands, every level non-empty
    groups = list(obj.values())
    if not groups or set(map(type, groups)) != {dict} or not all(groups):
        return False
    modules = [m for g in groups for m in g.values()]
    if set(map(type, modules)) != {dict} or not all(modules):
        return False
    brands = [b for m in modules for b in m.values()]
    if set(map(type, brands)) != {list} or not all(brands):
        return False
    keys = itertools.chain(obj, *groups, *modules)
    return _labels_ok(itertools.chain(keys, *brands))


def _validate(obj, path) -> None:
    """InputError for the first schema violation in document order: the row (1-based) and column
    of a path in the `paths` form, the chain of keys in the nested form.

    A valid hierarchy is recognised by `_conforms` (milliseconds for the real label space); only
    an invalid one is walked with jsonschema (seconds), which finds and words the first error."""
    if not _conforms(obj):
        _walk(obj, path)


def _walk(obj, path) -> None:
    """The full check, one value at a time: jsonschema's walk, then `_check_labels`."""
    from prodcat.data.target_text import label_problem

    errors = sorted(_validator().iter_errors(obj), key=lambda e: [str(k) for k in e.absolute_path])
    if not errors:
        _check_labels(obj, path)  # what a JSON schema cannot say: text that no file can store
        return
    error = errors[0]
    where = list(error.absolute_path)
    instance = error.instance
    if isinstance(instance, str) and label_problem(instance):
        message = f"label {instance!r} {label_problem(instance)}"
    elif error.validator == "type":
        message = f"expected {_EXPECTED.get(str(error.validator_value), error.validator_value)}, got {_short(instance)}"
    elif error.validator in ("minItems", "maxItems") and len(where) == 2:
        message = f"expected [supergroup, group, module, brand, count], got {_short(instance)}"
    else:
        message = error.message
    if isinstance(obj, dict) and "paths" in obj:
        if len(where) >= 2 and isinstance(where[1], int):
            column = [*LEVELS, "count"][where[2]] if len(where) > 2 else None
            raise InputError(path, message, row=where[1] + 1, column=column)
        raise InputError(path, message, key=".".join(map(str, where)) or None)
    raise InputError(path, message, key=" → ".join(map(str, where)) or None)


def _check_labels(obj, path) -> None:
    from prodcat.data.target_text import label_problem

    if "paths" in obj:
        for i, record in enumerate(obj["paths"], start=1):
            for level, label in zip(LEVELS, record):
                if label_problem(label):
                    raise InputError(path, f"label {label!r} {label_problem(label)}", row=i, column=level)
        return
    for sg, groups in obj.items():
        for g, modules in groups.items():
            for m, brands in modules.items():
                for key, label in [*((k, k) for k in (sg, g, m)), *((f"{m} → {i}", b) for i, b in enumerate(brands))]:
                    if label_problem(label):
                        raise InputError(path, f"label {label!r} {label_problem(label)}", key=f"{sg} → {g} → {key}")


_EXPECTED = {"string": "a label (string)", "integer": "an integer count", "array": "a list", "object": "a JSON object"}


def _short(value) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."

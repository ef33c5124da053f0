"""The label hierarchy: every known (supergroup, group, module, brand) path with its training count.

supergroup → group → module is a strict tree; a brand may sit under several modules. The JSON
written by `prodcat hierarchy` is `{"levels": [...], "paths": [[sg, g, m, b, count], ...]}`; the
nested form of the IndoML label space (sg → g → m → [brands], see shared/indoml2024) is read too,
with every count set to 1.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from . import LEVELS
from .errors import InputError


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
    def from_frame(cls, rows: pd.DataFrame) -> "Hierarchy":
        counts = rows.groupby(list(LEVELS), sort=False).size().rename("count").reset_index()
        return cls(counts)

    @classmethod
    def from_json(cls, path) -> "Hierarchy":
        path = Path(path)
        try:
            obj = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(path, f"cannot read a hierarchy JSON: {exc}") from exc
        if isinstance(obj, dict) and "paths" in obj:
            records = obj["paths"]
            bad = [i for i, r in enumerate(records) if not (isinstance(r, list) and len(r) == 5)]
            if bad:
                raise InputError(path, "expected [supergroup, group, module, brand, count]", row=bad[0])
            df = pd.DataFrame(records, columns=[*LEVELS, "count"])
        elif isinstance(obj, dict):  # nested IndoML form
            records = [
                (sg, g, m, b, 1)
                for sg, groups in obj.items()
                for g, modules in groups.items()
                for m, brands in modules.items()
                for b in brands
            ]
            df = pd.DataFrame(records, columns=[*LEVELS, "count"])
        else:
            raise InputError(path, "expected a JSON object with 'paths' or a nested sg→g→m→[brands] object")
        if df.empty:
            raise InputError(path, "the hierarchy has no paths")
        return cls(df)

    def to_json(self, path) -> None:
        records = [[*r[:4], int(r[4])] for r in self.paths.itertuples(index=False, name=None)]
        text = json.dumps({"levels": list(LEVELS), "paths": records}, ensure_ascii=False, indent=0)
        from .io import write_text

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


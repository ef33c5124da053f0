"""Synthetic labeler predictions: true hierarchy paths with the kinds of damage a seq2seq labeler does.

Each level of each row is corrupted independently with one of: a typo (character insert, delete or
substitute), a truncation, a wrong sibling (another valid child of the true parent, so the path no
longer fits together), or, for brands only, an invented pseudo-word. A whole row may instead be a
parse failure (all four labels missing, parse_ok False), as the target parser reports it.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from prodcat import LEVELS  # noqa: E402
from prodcat.data.hierarchy import Hierarchy  # noqa: E402
from prodcat.data.target_text import SEPARATOR, format_target, label_problem  # noqa: E402

DEFAULT_RATES = {
    "typo": 0.08,  # per level
    "truncate": 0.03,  # per level
    "sibling": 0.05,  # per level
    "invent": 0.06,  # brand level only
    "parse_failure": 0.02,  # per row
}
_LEVEL_KINDS = ("typo", "truncate", "sibling", "invent")
_ALPHABET = "abcdefghijklmnopqrstuvwxyz"
_CONSONANTS = "bcdfghjklmnprstvz"
_VOWELS = "aeiou"


def corrupt_paths(
    hierarchy: Hierarchy, n_rows: int, seed: int, rates: dict[str, float] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(truth, predictions) for n_rows paths drawn with probability proportional to their count.

    truth: indoml_id + LEVELS; predictions: indoml_id + LEVELS (str or None) + text + parse_ok.
    """
    rates = {**DEFAULT_RATES, **(rates or {})}
    unknown = set(rates) - set(DEFAULT_RATES)
    if unknown:
        raise ValueError(f"unknown corruption kind(s): {', '.join(sorted(unknown))}")
    if sum(rates[k] for k in _LEVEL_KINDS) > 1:
        raise ValueError("per-level corruption rates add up to more than 1")

    rng = np.random.default_rng(seed)
    text_rng = random.Random(seed)
    counts = hierarchy.paths["count"].to_numpy(dtype=float)
    drawn = rng.choice(len(counts), size=n_rows, p=counts / counts.sum())
    truth = hierarchy.paths.iloc[drawn][list(LEVELS)].reset_index(drop=True)
    truth.insert(0, "indoml_id", np.arange(n_rows, dtype=np.int64))

    true_labels = truth[list(LEVELS)].to_numpy(dtype=object)
    predicted = true_labels.copy()
    thresholds = np.cumsum([rates[k] for k in _LEVEL_KINDS])
    for depth, level in enumerate(LEVELS):
        kind_of_row = np.searchsorted(thresholds, rng.random(n_rows), side="right")
        for row in np.flatnonzero(kind_of_row < len(_LEVEL_KINDS)):
            kind = _LEVEL_KINDS[kind_of_row[row]]
            if kind == "invent" and level != "brand":
                continue
            parents = tuple(true_labels[row, :depth])
            # an edit may leave outer white space (the target parser strips it) or form " | "
            damaged = _corrupt(true_labels[row, depth], kind, parents, hierarchy, text_rng).strip()
            predicted[row, depth] = damaged if not label_problem(damaged) else _pseudo_word(text_rng)

    texts = [format_target(labels) for labels in predicted]
    failed = rng.random(n_rows) < rates["parse_failure"]
    for row in np.flatnonzero(failed):  # a generation cut off before the brand
        texts[row] = texts[row][: texts[row].rindex(SEPARATOR)]
    predicted[failed] = None
    predictions = pd.DataFrame(predicted, columns=list(LEVELS))
    predictions.insert(0, "indoml_id", truth["indoml_id"])
    predictions["text"] = texts
    predictions["parse_ok"] = ~failed
    return truth, predictions


def _corrupt(label: str, kind: str, parents: tuple, hierarchy: Hierarchy, rng: random.Random) -> str:
    if kind == "typo":
        return _typo(label, rng)
    if kind == "truncate":
        return label[: rng.randrange(1, len(label))] if len(label) > 1 else _typo(label, rng)
    if kind == "sibling":
        siblings = [c for c in hierarchy.children(parents) if c != label]
        return rng.choice(siblings) if siblings else label
    return _pseudo_word(rng)


def _typo(label: str, rng: random.Random) -> str:
    """One or two random character edits."""
    chars = list(label)
    for _ in range(rng.choice((1, 1, 2))):
        edit = rng.choice(("insert", "delete", "substitute")) if len(chars) > 1 else "insert"
        pos = rng.randrange(len(chars) + (edit == "insert"))
        if edit == "insert":
            chars.insert(pos, rng.choice(_ALPHABET))
        elif edit == "delete":
            del chars[pos]
        else:
            chars[pos] = rng.choice(_ALPHABET)
    return "".join(chars)


def _pseudo_word(rng: random.Random) -> str:
    return "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(rng.randint(2, 4)))

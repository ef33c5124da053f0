"""The text a seq2seq labeler learns to write, and its parser.

`supergroup: A | group: B | module: C | brand: D`. Labels may contain commas, colons and `&`; the
separator " | " is reserved (a label containing it is refused when the target is built), so the
parse is unambiguous. A generation that does not have the four keys in order (a truncated output,
a missing key) is a parse failure: it is counted and its labels stay missing, never guessed.
"""

from __future__ import annotations

import re

from . import LEVELS

SEPARATOR = " | "
_PATTERN = re.compile(
    r"^\s*" + re.escape(SEPARATOR).join(rf"{level}: (.*?)" for level in LEVELS) + r"\s*$",
    re.DOTALL,
)


def format_target(labels) -> str:
    """labels: a sequence of 4 strings in LEVELS order."""
    labels = list(labels)
    if len(labels) != len(LEVELS):
        raise ValueError(f"expected {len(LEVELS)} labels, got {len(labels)}")
    for level, label in zip(LEVELS, labels):
        if SEPARATOR in label or "\n" in label:
            raise ValueError(f"{level} label {label!r} contains the reserved separator {SEPARATOR!r} or a newline")
    return SEPARATOR.join(f"{level}: {label}" for level, label in zip(LEVELS, labels))


def parse_target(text: str) -> tuple[str, str, str, str] | None:
    """The four labels, or None when the text is not a complete target."""
    match = _PATTERN.match(text)
    if match is None:
        return None
    labels = tuple(part.strip() for part in match.groups())
    if any(label == "" or SEPARATOR in label for label in labels):
        return None
    return labels

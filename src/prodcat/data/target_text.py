"""The text a seq2seq labeler learns to write, and its parser.

`supergroup | group | module | brand`, e.g. `baby care | baby feeding accessories | baby feeding
accessories | dr browns`. The paper's `supergroup: A, group: B, ...` spells the level names out in
every target; they carry no information, and dropping them makes targets ~40 % shorter, which is
what a byte-level decoder pays for in training and in generation. Labels may contain commas, colons
and `&`; the separator " | " is reserved (a label containing it is refused when the target is
built), so the parse is unambiguous. A generation that does not split into four non-empty labels (a
truncated output, a missing level) is a parse failure: counted, its labels left missing, never guessed.
"""

from __future__ import annotations

from prodcat import LEVELS

SEPARATOR = " | "


def label_problem(label: str) -> str | None:
    """Why a label cannot be part of a target text (None when it can). Ingest and the hierarchy
    loader refuse such labels, so that training never meets one."""
    if not label.strip():
        return "is empty"
    if SEPARATOR in label:
        return f"contains the reserved separator {SEPARATOR!r} of the target text"
    if "\n" in label or "\r" in label:
        return "contains a line break"
    if label != label.strip():
        return "has leading or trailing white space"
    try:
        label.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode text (a lone surrogate)"
    return None


def format_target(labels) -> str:
    """labels: a sequence of 4 strings in LEVELS order."""
    labels = list(labels)
    if len(labels) != len(LEVELS):
        raise ValueError(f"expected {len(LEVELS)} labels, got {len(labels)}")
    for level, label in zip(LEVELS, labels):
        problem = label_problem(label)
        if problem:
            raise ValueError(f"{level} label {label!r} {problem}")
    return SEPARATOR.join(labels)


def parse_target(text: str) -> tuple[str, str, str, str] | None:
    """The four labels, or None when the text is not a complete target."""
    parts = tuple(part.strip() for part in text.strip().split(SEPARATOR))
    if len(parts) != len(LEVELS) or any(not part for part in parts):
        return None
    return parts


def salvage_target(text: str | None) -> tuple[str | None, str | None, str | None, str | None]:
    """What can be read from a text that failed to parse, for correction to work from: the leading
    parts in level order, and — when there are more than four parts (a small model repeating
    itself) — the last part as the brand. Empty parts and absent levels are None."""
    if not text:
        return (None,) * len(LEVELS)
    parts = [part.strip() or None for part in text.strip().split(SEPARATOR)]
    if len(parts) > len(LEVELS):
        parts = parts[: len(LEVELS) - 1] + parts[-1:]
    return tuple(parts + [None] * (len(LEVELS) - len(parts)))

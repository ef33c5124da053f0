"""Chat prompts for name synthesis and the cleaning of what the models answer.

The teacher sees the receipt line, its price and all four labels (the labels are what let it expand
the shorthand); the student (namer) sees only the line and the price, because at test time that is
all there is. Templates come from the config so that prompt wording is a parameter of the run, not
code; DEFAULT_TEMPLATES mirrors the prompts described in the PRMAS report, with the instructions
before the row's fields: then all teacher prompts (and all student prompts) begin with the same
tokens, whose key/value cache generation computes once per job (`generation.PrefixCache`).
"""

from __future__ import annotations

import math
import re
import string

from prodcat import LEVELS

TEMPLATE_KEYS = ("system", "teacher_user", "student_user")
TEACHER_FIELDS = ("description", "price", *LEVELS)
STUDENT_FIELDS = ("description", "price")

DEFAULT_TEMPLATES: dict[str, str] = {
    "system": (
        "You are a product name generator for retail receipts. Given a short, abbreviated receipt line, "
        "you write the full product name a shopper would recognise. You answer with the product name only."
    ),
    "teacher_user": (
        "Write the single most complete product name for the receipt line below. Expand every abbreviation, "
        "split run-together words into separate words, and use the categories and the brand given below. "
        "Answer with the product name only and nothing else.\n\n"
        "Receipt line: {description}\n"
        "Price: {price}\n"
        "Supergroup: {supergroup}\n"
        "Group: {group}\n"
        "Module: {module}\n"
        "Brand: {brand}"
    ),
    "student_user": (
        "Write the single most complete product name for the receipt line below. Expand every abbreviation "
        "and split run-together words into separate words. "
        "Answer with the product name only and nothing else.\n\n"
        "Receipt line: {description}\n"
        "Price: {price}"
    ),
}

# A runaway answer is longer than RUNAWAY_FACTOR × the description + RUNAWAY_SLACK characters.
RUNAWAY_FACTOR = 4
RUNAWAY_SLACK = 60
# ...or repeats itself: one word RUNAWAY_REPEAT times in a row, or (from RUNAWAY_MIN_WORDS words on)
# fewer than half of its words distinct.
RUNAWAY_REPEAT = 4
RUNAWAY_MIN_WORDS = 8

# A name is an expansion of its receipt line: one with fewer than SHORT_FACTOR × the description's
# non-space characters lost the product (a collapsed model writes one or two tokens) and is "short".
SHORT_FACTOR = 0.5

ANSWER_STATUSES = ("ok", "empty", "runaway", "short")


def validate_templates(templates: dict) -> dict[str, str]:
    """The templates, checked: all three keys, and only the placeholders each prompt can fill."""
    allowed = {"system": (), "teacher_user": TEACHER_FIELDS, "student_user": STUDENT_FIELDS}
    for key in TEMPLATE_KEYS:
        if key not in templates or not isinstance(templates[key], str) or not templates[key].strip():
            raise ValueError(f"prompt templates: {key!r} must be a non-empty string")
        used = {name for _, name, _, _ in string.Formatter().parse(templates[key]) if name is not None}
        unknown = used - set(allowed[key])
        if unknown:
            raise ValueError(
                f"prompt template {key!r} uses unknown placeholder(s) {sorted(unknown)}; "
                f"allowed: {', '.join(allowed[key]) or 'none'}"
            )
    return {key: templates[key] for key in TEMPLATE_KEYS}


def format_price(price) -> str:
    """A price for a prompt: two decimals, or "unknown" when missing (None, NaN, empty)."""
    if price is None or (isinstance(price, str) and not price.strip()):
        return "unknown"
    value = float(price)
    if math.isnan(value):
        return "unknown"
    return f"{value:.2f}"


def _fields(row, names) -> dict[str, str]:
    values = {name: row[name] for name in names if name != "price"}
    values["price"] = format_price(row.get("price") if hasattr(row, "get") else row["price"])
    return values


def teacher_messages(row, templates: dict) -> list[dict[str, str]]:
    """System + user message that give the teacher the description, the price and all four labels."""
    templates = validate_templates(templates)
    return [
        {"role": "system", "content": templates["system"]},
        {"role": "user", "content": templates["teacher_user"].format_map(_fields(row, TEACHER_FIELDS))},
    ]


def student_messages(row, templates: dict) -> list[dict[str, str]]:
    """System + user message with only what exists at test time: description and price."""
    templates = validate_templates(templates)
    return [
        {"role": "system", "content": templates["system"]},
        {"role": "user", "content": templates["student_user"].format_map(_fields(row, STUDENT_FIELDS))},
    ]


_PREFIX = re.compile(
    r"^(?:here\s+is\s+|here's\s+)?(?:the\s+)?(?:(?:full|complete|expanded|most\s+complete|final)\s+)?"
    r"(?:product\s+name|name|answer)\s*(?:is\s*[:\-–—]?|[:\-–—])\s*",
    re.IGNORECASE,
)
_LIST_MARKER = re.compile(r"^(?:[-*•>#]+|\d+[.)])\s+")
_MARKDOWN = re.compile(r"\*\*|__|`")
_EXPLANATION = re.compile(
    r"\s*(?:\((?:note|this|explanation|i|based|assuming)\b[^)]*\)?"
    r"|(?:\s[-–—]|[.:;,])\s+(?:note|this|explanation|i|it|based|assuming)\b).*$",
    re.IGNORECASE,
)
# Opening quote → its closing quote. Apostrophe-like quotes close at their last occurrence, so that
# a possessive inside the name ('Reese's Pieces') does not end it.
_QUOTE_PAIRS = {'"': '"', "“": "”", "«": "»", "'": "'", "‘": "’"}
_QUOTES = "".join(sorted(set(_QUOTE_PAIRS) | set(_QUOTE_PAIRS.values())))


def _unquote(text: str) -> str:
    closing = _QUOTE_PAIRS.get(text[:1])
    if closing is None:
        return text
    end = text.rfind(closing, 1) if closing in "'’" else text.find(closing, 1)
    return text[1:end] if end > 0 else text[1:]


def _clean_line(line: str) -> str:
    text = _MARKDOWN.sub("", line).strip()
    text = _LIST_MARKER.sub("", text).strip()
    text = _PREFIX.sub("", text).strip()
    text = _unquote(text).strip()
    text = _EXPLANATION.sub("", text).strip()
    return text.strip(_QUOTES + " ").rstrip(".").strip()


def _is_runaway(name: str, description: str) -> bool:
    if len(name) > RUNAWAY_FACTOR * len(description) + RUNAWAY_SLACK:
        return True
    words = name.lower().split()
    run = 1
    for previous, word in zip(words, words[1:]):
        run = run + 1 if word == previous else 1
        if run >= RUNAWAY_REPEAT:
            return True
    return len(words) >= RUNAWAY_MIN_WORDS and len(set(words)) * 2 < len(words)


def _is_short(name: str, description: str) -> bool:
    return len("".join(name.split())) < SHORT_FACTOR * len("".join(description.split()))


def clean_answer(text: str | None, fallback: str) -> tuple[str, str]:
    """The name in a model's answer, and a status: "ok", "empty", "runaway" or "short".

    Takes the first line that still has text after stripping markdown, list markers, "Product name:"
    style prefixes, quotes and trailing explanations. An empty, runaway (too long for the description
    `fallback`, or repeating itself) or short answer (less than half the description: not an
    expansion of it) is replaced by `fallback`, so no row is ever dropped; the status lets the
    caller count them.
    """
    for line in (text or "").splitlines():
        name = _clean_line(line)
        if name:
            if _is_runaway(name, fallback):
                return fallback, "runaway"
            if _is_short(name, fallback):
                return fallback, "short"
            return name, "ok"
    return fallback, "empty"

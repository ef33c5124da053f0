"""The whole-column validation checks (issue 23) give the verdict of the row-by-row ones.

`hierarchy._conforms` must accept exactly what the full walk (`hierarchy._walk`: the JSON schema,
then the label rules) accepts, on the hand-made bad hierarchies of the probe table and of the
bad-input tests and on generated ones. The io checks must accept only what the row loops accept,
with the same values out (they may hand a column to the row loop, which then words the problem).
"""

from __future__ import annotations

import copy
import math
import os
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_bad_input_properties import HIERARCHY, Raw, bad_hierarchy

from prodcat.data import hierarchy as H
from prodcat.data import io
from prodcat.runtime.errors import InputError

SETTINGS = settings(
    max_examples=int(os.environ.get("PRODCAT_HYPOTHESIS_CASES", "300")),
    deadline=None,
    database=None,
    derandomize=not os.environ.get("PRODCAT_HYPOTHESIS_RANDOM"),
    suppress_health_check=[HealthCheck.too_slow],
)
PATHS = [("food", "dairy", "milk", "moo"), ("food", "dairy", "cheese", "moo"), ("home", "clean", "soap", "suds")]
NESTED = {"food": {"dairy": {"milk": ["moo"], "cheese": ["moo"]}}, "home": {"clean": {"soap": ["suds"]}}}


def walk_accepts(obj) -> bool:
    try:
        H._walk(obj, "h.json")
    except InputError:
        return False
    return True


def assert_agree(obj) -> None:
    assert H._conforms(obj) == walk_accepts(obj), repr(obj)


# the probe table's bad hierarchies (bench/probe_bad_input.py) and tests/test_hierarchy.py's
PROBE_CASES = [
    {"paths": [["food", "dairy", None, "moo", 3], [*PATHS[2], 1]]},
    {"food": {"dairy": {"milk": "moo"}}},
    {"paths": [["food", "dairy", "milk", "moo", "many"]]},
    {"paths": [["food", "dairy", "milk", "moo", 0]]},
    {"paths": {"food": 1}},
    {"paths": [[*PATHS[0], 1], list(PATHS[1])]},
    {"paths": []},
    {"paths": [["food", "dairy", "milk", "mo | o", 1]]},
    [[*PATHS[0], 1]],
    {"food": ["dairy"]},
    {"paths": [["food", "dairy", "milk", "moo", 2.5]]},
    {"paths": [["food ", "dairy", "milk", "moo", 1]]},
    {"food": {"dairy": {"milk": ["moo", 7]}}},
    {"food": {"dairy": {"milk": []}}},
    {"food": {"da\nry": {"milk": ["moo"]}}},
    # valid ones, and what only the label rules (not the schema) refuse
    {"levels": ["supergroup", "group", "module", "brand"], "paths": [[*p, 4] for p in PATHS]},
    {"paths": [[*PATHS[0], 3.0]]},
    {"paths": [[*PATHS[0], 2**70]]},
    NESTED,
    {"paths": [["food", "dairy", "milk", "moo\n", 1]]},  # the schema's `$` matches before a final \n
    {"paths": [["food", "dairy", "milk", "m\ud800o", 1]]},
    {"paths": [[*PATHS[0], True]]},
    {"levels": ["supergroup"], "paths": [[*PATHS[0], 1]]},
    {"paths": [[*PATHS[0], 1]], "other": 1},
    {},
    {"levels": ["supergroup", "group", "module", "brand"]},
]


@pytest.mark.parametrize("obj", PROBE_CASES, ids=range(len(PROBE_CASES)))
def test_fast_check_agrees_with_the_schema_walk_on_hand_made_cases(obj):
    assert_agree(obj)


def test_the_real_label_space_is_accepted_without_the_walk(monkeypatch, tmp_path):
    """A valid file never reaches jsonschema (it took seconds per load for 12,885 paths)."""

    def no_walk(obj, path):
        raise AssertionError("the full walk ran for a valid hierarchy")

    monkeypatch.setattr(H, "_walk", no_walk)
    path = tmp_path / "h.json"
    H.Hierarchy(pd.DataFrame([(*p, 2) for p in PATHS], columns=[*H.LEVELS, "count"])).to_json(path)
    assert H.Hierarchy.from_json(path).n_paths == 3


@SETTINGS
@given(bad=bad_hierarchy())
def test_fast_check_agrees_on_the_bad_input_tests_hierarchies(bad):
    obj, _ = bad
    if not isinstance(obj, Raw):  # a truncated file is refused by the JSON parser, before both
        assert_agree(obj)
        assert not H._conforms(obj)


# ---- generated near-valid hierarchies -------------------------------------------------------------
CHARS = st.sampled_from([*"ab |-", "\n", "\r", "\t", "\u00a0", "\x1c", "\u2028", "\x85", "\ud800", "é"])
texts = st.text(CHARS, max_size=5)
non_strings = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.floats(), st.just([]), st.just({}), st.just(["x"])
)
# labels one edit away from valid: what the schema's pattern and the label rules tell apart
near_labels = st.builds(
    lambda before, word, after: before + word + after,
    st.sampled_from(["", "", " ", "\n", "\ud800", "\x1c", "\u00a0"]),
    st.sampled_from(["moo", "a b", "a | b", "a|b", "x\ny", "x\ry", "x\u2028y", "a  | b"]),
    st.sampled_from(["", "", " ", "\n", "\r", "\ud800", "\x85", "\t", "\n\n"]),
)
labels = st.one_of(near_labels, texts, non_strings)
counts = st.one_of(
    st.sampled_from([1.0, 3.0, 0.0, -1.0, 0.5, True, False, None, "3", [], {}, math.nan, math.inf, 2**70, 0, -2]),
    st.integers(-3, 2**70),
    st.floats(),
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), texts),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(texts, inner, max_size=3)),
    max_leaves=8,
)


@st.composite
def flat_hierarchies(draw):
    obj = copy.deepcopy(HIERARCHY) if draw(st.booleans()) else {"paths": [[*p, 1] for p in PATHS]}
    rows = obj["paths"]
    for _ in range(draw(st.integers(0, 2))):
        change = draw(st.sampled_from(["cell"] * 6 + ["row", "paths", "levels", "key"]))
        if change == "cell" and isinstance(rows, list) and rows and isinstance(rows[0], list):
            row, column = draw(st.integers(0, len(rows) - 1)), draw(st.integers(0, 4))
            if isinstance(rows[row], list) and column < len(rows[row]):
                rows[row][column] = draw(counts if column == 4 else labels)
        elif change == "row" and isinstance(rows, list) and rows:
            i = draw(st.integers(0, len(rows) - 1))
            rows[i] = draw(st.one_of(st.lists(labels, max_size=6), json_values))
        elif change == "paths":
            obj["paths"] = rows = draw(st.one_of(st.just([]), json_values))
        elif change == "levels":
            obj["levels"] = draw(st.one_of(st.just(["supergroup", "group", "module", "brand"]), json_values))
        elif change == "key":
            obj[draw(texts)] = draw(json_values)
    return obj


@st.composite
def nested_hierarchies(draw):
    obj = copy.deepcopy(NESTED)
    for _ in range(draw(st.integers(0, 2))):
        sg = draw(st.sampled_from(sorted(obj))) if obj else None
        change = draw(st.sampled_from(["brand"] * 3 + ["brands", "key", "key", "group", "module", "top"]))
        if sg is None or change == "top":
            obj[draw(texts)] = draw(json_values)
        elif not isinstance(obj[sg], dict) or not obj[sg]:
            obj[sg] = draw(json_values)
        else:
            g = draw(st.sampled_from(sorted(obj[sg])))
            modules = obj[sg][g]
            if change == "group" or not isinstance(modules, dict) or not modules:
                obj[sg][g] = draw(st.one_of(st.just({}), json_values))
                continue
            m = draw(st.sampled_from(sorted(modules)))
            if change == "module":
                modules[m] = draw(st.one_of(st.just([]), json_values))
            elif change == "brands":
                modules[m] = draw(st.lists(labels, max_size=3))
            elif change == "key":
                modules[draw(st.one_of(near_labels, texts))] = modules.pop(m)
            elif isinstance(modules[m], list) and modules[m]:
                modules[m][draw(st.integers(0, len(modules[m]) - 1))] = draw(labels)
    return obj


@SETTINGS
@given(obj=st.one_of(flat_hierarchies(), nested_hierarchies(), json_values))
def test_fast_check_agrees_with_the_schema_walk_on_generated_hierarchies(obj):
    assert_agree(obj)


# ---- io: whole-column checks accept only what the row loops accept, with the same values ----------
cells = st.one_of(
    st.integers(-(2**64), 2**64),
    st.floats(),
    texts,
    st.sampled_from(["12", " 7 ", "-3", "1.99", "", "nan", None, True, "x"]),
    st.just(math.nan),
)
typed_columns = st.one_of(
    st.lists(st.integers(-(2**63), 2**63 - 1), max_size=6).map(lambda v: pd.Series(v, dtype="int64")),
    st.lists(st.integers(0, 2**64 - 1), max_size=6).map(lambda v: pd.Series(v, dtype="uint64")),
    st.lists(st.floats(), max_size=6).map(lambda v: pd.Series(v, dtype="float64")),
    st.lists(st.one_of(texts, st.none()), max_size=6).map(lambda v: pd.Series(v, dtype=object)),
    st.lists(st.one_of(texts.filter(lambda t: "\ud800" not in t), st.none()), max_size=6).map(
        lambda v: pd.Series(v, dtype="str")  # pandas' default for text (Arrow: no lone surrogates)
    ),
    st.lists(st.one_of(st.sampled_from(["a", "b c", " "]), st.none()), max_size=6).map(
        lambda v: pd.Series(v, dtype="string[pyarrow]")
    ),
    st.lists(st.booleans(), min_size=1, max_size=6).map(pd.Series),
    st.lists(cells, max_size=6).map(lambda v: pd.Series(v, dtype=object)),
)


@SETTINGS
@given(column=typed_columns)
def test_whole_column_table_checks_accept_only_what_the_row_loops_accept(column):
    ids = io._ids_at_once(column)
    if ids is not None:
        expected = [io.parse_id(v, "t", i) for i, v in enumerate(column.tolist(), start=1)]
        assert ids.dtype == np.int64 and ids.tolist() == expected
    prices = io._prices_at_once(column)
    if prices is not None:
        expected = [io.parse_price(v, "t", i) for i, v in enumerate(column.tolist(), start=1)]
        np.testing.assert_array_equal(prices.to_numpy(), np.array(expected, dtype="float64"))
    for allow_empty in (True, False):
        if io._strings_ok(column, allow_empty):
            for i, value in enumerate(column, start=1):
                assert isinstance(value, str) and (allow_empty or value.strip())
                io._check_text(value, "t", "c", i)
    if io._labels_or_missing(column):
        table = pd.DataFrame({"indoml_id": range(len(column)), **dict.fromkeys(H.LEVELS, column)})
        table = table.astype({level: column.dtype for level in H.LEVELS})
        with mock.patch.object(io, "_labels_or_missing", return_value=False):  # the row loop only
            io.validate_predictions(table, "t")


def test_the_arrow_blank_pattern_is_python_white_space():
    """`io.ARROW_BLANK` matches a string exactly when str.strip empties it, for every code point
    an Arrow string can hold (all but the surrogates)."""
    import sys

    import pyarrow as pa
    import pyarrow.compute as pc

    chars = [chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF]
    matched = pc.match_substring_regex(pa.array(chars), io.ARROW_BLANK).to_pylist()
    assert [c for c, m in zip(chars, matched) if m] == [c for c in chars if c.isspace()]
    samples = ["", " ", "\t\u3000", "a", " a ", "\x1c\x85b"]
    assert pc.match_substring_regex(pa.array(samples), io.ARROW_BLANK).to_pylist() == [not s.strip() for s in samples]

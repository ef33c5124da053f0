import pytest

from prodcat.target_text import format_target, parse_target


@pytest.mark.parametrize("labels", [
    ("biscuits & confectionery & snacks", "chocolate novelties", "chocolate novelties", "cadbury creme egg"),
    ("a, b: c", "group: not a key", "m, with, commas", "brand: x & y"),
    ("sg", "g", "m", "b"),
])
def test_round_trip_with_commas_colons_and_ampersands(labels):
    assert parse_target(format_target(labels)) == labels


def test_truncated_or_malformed_text_is_a_parse_failure():
    text = format_target(("sg", "g", "m", "brand"))
    assert parse_target(text[: text.index(" | brand")]) is None
    assert parse_target("supergroup: a | group: b | brand: c | module: d") is None
    assert parse_target("") is None
    assert parse_target("supergroup:  | group: b | module: c | brand: d") is None


def test_reserved_separator_is_refused():
    with pytest.raises(ValueError, match="reserved separator"):
        format_target(("a | b", "g", "m", "b"))
    with pytest.raises(ValueError):
        format_target(("a", "b", "c"))

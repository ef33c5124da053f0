import pytest

from prodcat.data.target_text import format_target, parse_target


@pytest.mark.parametrize(
    "labels",
    [
        ("biscuits & confectionery & snacks", "chocolate novelties", "chocolate novelties", "cadbury creme egg"),
        ("a, b: c", "group: not a key", "m, with, commas", "brand: x & y"),
        ("sg", "g", "m", "b"),
        ("a|b", "c |d", "e", "f"),
    ],
)
def test_round_trip_with_commas_colons_and_ampersands(labels):
    assert parse_target(format_target(labels)) == labels


def test_truncated_or_malformed_text_is_a_parse_failure():
    text = format_target(("sg", "g", "m", "brand"))
    assert parse_target(text[: text.rindex(" | ")]) is None
    assert parse_target(text + " | extra") is None
    assert parse_target("") is None
    assert parse_target(" | g | m | b") is None
    assert parse_target("sg | g |  | b") is None


def test_reserved_separator_and_bad_labels_are_refused():
    with pytest.raises(ValueError, match="reserved separator"):
        format_target(("a | b", "g", "m", "b"))
    with pytest.raises(ValueError):
        format_target(("", "g", "m", "b"))
    with pytest.raises(ValueError):
        format_target(("a", "b", "c"))


def test_salvage_reads_what_it_can_from_unparsable_text():
    from prodcat.data.target_text import salvage_target

    assert salvage_target("sg | g | m") == ("sg", "g", "m", None)
    assert salvage_target("sg | g | m | m | brand") == ("sg", "g", "m", "brand")
    assert salvage_target("sg |  | m") == ("sg", None, "m", None)
    assert salvage_target("") == (None, None, None, None)

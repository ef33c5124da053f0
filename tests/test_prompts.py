"""Prompts for the teacher and the namer, their chat rendering, and the cleaning of answers."""

import math

import pandas as pd
import pytest

from prodcat.names.prompts import (
    DEFAULT_TEMPLATES,
    clean_answer,
    format_price,
    student_messages,
    teacher_messages,
    validate_templates,
)
from prodcat.standins.tiny_llama import build_tiny_tokenizer

ROW = pd.Series(
    {
        "indoml_id": 7,
        "description": "cad 5 pk creme egg 197 g",
        "retailer": "r12",
        "price": 1.5,
        "supergroup": "confectionery",
        "group": "chocolate",
        "module": "seasonal chocolate",
        "brand": "cadbury",
    }
)
SYSTEM = DEFAULT_TEMPLATES["system"]


def test_teacher_prompt_has_description_price_and_all_four_labels():
    assert teacher_messages(ROW, DEFAULT_TEMPLATES) == [
        {"role": "system", "content": SYSTEM},
        {
            "role": "user",
            "content": "Write the single most complete product name for the receipt line below. Expand every "
            "abbreviation, split run-together words into separate words, and use the categories and the brand "
            "given below. Answer with the product name only and nothing else.\n\n"
            "Receipt line: cad 5 pk creme egg 197 g\n"
            "Price: 1.50\n"
            "Supergroup: confectionery\n"
            "Group: chocolate\n"
            "Module: seasonal chocolate\n"
            "Brand: cadbury",
        },
    ]


def test_student_prompt_has_no_labels_and_unknown_price():
    row = {**ROW.to_dict(), "price": math.nan}
    messages = student_messages(row, DEFAULT_TEMPLATES)
    assert messages[0] == {"role": "system", "content": SYSTEM}
    assert messages[1]["content"].endswith("\n\nReceipt line: cad 5 pk creme egg 197 g\nPrice: unknown")
    for label in ("confectionery", "chocolate", "cadbury"):
        assert label not in messages[1]["content"]


@pytest.mark.parametrize(
    "price, text",
    [(1.5, "1.50"), (2, "2.00"), ("3.999", "4.00"), (None, "unknown"), (math.nan, "unknown"), ("", "unknown")],
)
def test_format_price(price, text):
    assert format_price(price) == text


def test_templates_from_config_are_checked():
    with pytest.raises(ValueError, match="student_user"):
        validate_templates({"system": "s", "teacher_user": "{description}"})
    # A student prompt that could see a label would leak the answer at training time only.
    with pytest.raises(ValueError, match=r"unknown placeholder.*brand"):
        validate_templates({"system": "s", "teacher_user": "{brand}", "student_user": "{description} {brand}"})
    custom = {
        "system": "Name it.",
        "teacher_user": "{description} [{brand}]",
        "student_user": "{description} @ {price}",
    }
    assert teacher_messages(ROW, custom)[1]["content"] == "cad 5 pk creme egg 197 g [cadbury]"
    assert student_messages(ROW, custom)[1]["content"] == "cad 5 pk creme egg 197 g @ 1.50"


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer([ROW["description"], "Cadbury Creme Egg 5 Pack 197 g", *DEFAULT_TEMPLATES.values()])


def test_tiny_tokenizer_renders_the_llama31_chat_format(tokenizer):
    custom = {"system": "Name it.", "teacher_user": "{description}", "student_user": "{description} @ {price}"}
    text = tokenizer.apply_chat_template(student_messages(ROW, custom), add_generation_prompt=True, tokenize=False)
    assert text == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
        "Name it.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\ncad 5 pk creme egg 197 g @ 1.50<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert tokenizer.eos_token == "<|eot_id|>"
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text


def test_prompt_tokens_are_a_prefix_of_prompt_plus_answer(tokenizer):
    # trl finds the completion where the two tokenizations diverge; they must not diverge early.
    prompt = student_messages(ROW, DEFAULT_TEMPLATES)
    full = prompt + [{"role": "assistant", "content": "Cadbury Creme Egg 5 Pack 197 g"}]
    prompt_ids = tokenizer(
        tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False), add_special_tokens=False
    )["input_ids"]
    full_text = tokenizer.apply_chat_template(full, tokenize=False)
    full_ids = tokenizer(full_text, add_special_tokens=False)["input_ids"]
    assert full_ids[: len(prompt_ids)] == prompt_ids
    assert full_text.endswith("Cadbury Creme Egg 5 Pack 197 g<|eot_id|>")


DESCRIPTION = "cad 5 pk creme egg 197 g"


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("Cadbury Creme Egg 5 Pack 197 g", "Cadbury Creme Egg 5 Pack 197 g"),
        ('"Cadbury Creme Egg 5 Pack 197 g"', "Cadbury Creme Egg 5 Pack 197 g"),
        ("“Cadbury Creme Egg” (note: pack size guessed)", "Cadbury Creme Egg"),
        ("**Product name:** Cadbury Creme Egg 5 Pack", "Cadbury Creme Egg 5 Pack"),
        ("The product name is Cadbury Creme Egg", "Cadbury Creme Egg"),
        ("Here is the product name:\n\nCadbury Creme Egg 5 Pack", "Cadbury Creme Egg 5 Pack"),
        ("Cadbury Creme Egg 5 Pack\n\nThis name expands the abbreviations cad and pk.", "Cadbury Creme Egg 5 Pack"),
        ("Cadbury Creme Egg 5 Pack (This expands 'cad' to Cadbury)", "Cadbury Creme Egg 5 Pack"),
        ("Cadbury Creme Egg - This is a chocolate egg", "Cadbury Creme Egg"),
        ('"Cadbury Creme Egg". This name is complete.', "Cadbury Creme Egg"),
        ("1. Cadbury Creme Egg.", "Cadbury Creme Egg"),
        ("'Reese's Pieces 170 g'", "Reese's Pieces 170 g"),
        ("Coca-Cola (Classic) 2 L", "Coca-Cola (Classic) 2 L"),  # a parenthesis that is part of the name
        ("Lay's - Classic Salted", "Lay's - Classic Salted"),
    ],
)
def test_clean_answer_keeps_the_name(answer, expected):
    assert clean_answer(answer, DESCRIPTION) == (expected, "ok")


@pytest.mark.parametrize(
    "answer, status",
    [
        ("", "empty"),
        (None, "empty"),
        ("  \n \n", "empty"),
        ('""', "empty"),
        ("Product name:", "empty"),
        ("x" * (4 * len(DESCRIPTION) + 61), "runaway"),
        ("egg egg egg egg", "runaway"),
        ("creme egg pack creme egg pack creme egg pack creme", "runaway"),
        ("egg", "short"),
        ("**Cadbury**", "short"),
    ],
)
def test_clean_answer_falls_back_to_the_description(answer, status):
    assert clean_answer(answer, DESCRIPTION) == (DESCRIPTION, status)


def test_short_limit_is_half_the_description_without_spaces():
    letters = len("".join(DESCRIPTION.split()))
    just_enough = "z" * -(-letters // 2)
    assert clean_answer(just_enough, DESCRIPTION) == (just_enough, "ok")
    too_short = "z" * (-(-letters // 2) - 1)
    assert clean_answer(too_short, DESCRIPTION) == (DESCRIPTION, "short")


def test_runaway_limit_scales_with_the_description():
    long_but_fine = "y" * (4 * len(DESCRIPTION) + 60)
    assert clean_answer(long_but_fine, DESCRIPTION) == (long_but_fine, "ok")


@pytest.mark.parametrize("build", [teacher_messages, student_messages])
def test_default_prompts_share_all_their_instructions_as_a_token_prefix(tokenizer, build):
    """The fixed text comes before the row's fields, so the token ids that two rows' prompts share
    run through the whole instruction up to the receipt line (the prefix generation reuses)."""
    other = {**ROW.to_dict(), "description": "hnz bkd beans 415g", "price": 0.99, "brand": "heinz"}
    ids = [
        tokenizer(
            tokenizer.apply_chat_template(build(row, DEFAULT_TEMPLATES), add_generation_prompt=True, tokenize=False),
            add_special_tokens=False,
        )["input_ids"]
        for row in (ROW, other)
    ]
    shared = next(k for k, (a, b) in enumerate(zip(*ids)) if a != b)
    text = tokenizer.decode(ids[0][:shared])
    assert text.startswith("<|begin_of_text|>") and SYSTEM in text
    assert "Answer with the product name only and nothing else.\n\nReceipt line:" in text
    assert "cad" not in text.rsplit("Receipt line:", 1)[1]

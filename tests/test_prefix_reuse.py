"""Shared-prefix generation: the prefix all of a job's prompts share is run through the model once
and its key/value cache reused by every batch; the answers are those of full prompts.

Equality is checked on greedy token ids and measured on the scores behind them: every step that a
run with reuse and one without both take is compared, the largest score difference is bounded, and
a token may differ only where the run without reuse had a near tie (its top two scores closer than
twice that bound) — what float rounding can flip and nothing else. Unit tests use a tiny random
Llama (plain, LoRA PEFT, 8-bit); the slow test uses the .test run's pretrained stand-in and its
trained namer on the .test rows.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from tests.test_rebuilds import merged_test_config
from tests.test_sharding import sharpened_tiny_llama, varied_rows

from prodcat.names import generation
from prodcat.names.prompts import student_messages, teacher_messages

REPO = Path(__file__).resolve().parents[1]
# The instructions first, the fields last, as config.yaml's templates.
TEMPLATES = {
    "system": "Name the product.",
    "teacher_user": "Expand the line, use the labels.\n{description} | {price} | {supergroup} | {group} | {module} | "
    "{brand}",
    "student_user": "Expand the line.\n{description} | {price}",
}
# fp32 on a CPU: a score computed from a cached prefix differs from the full prompt's by rounding only
FP32_SCORE_TOLERANCE = 1e-4

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def rows():
    """24 rows whose prompts have many different lengths (1 to 9 words), some prices missing."""
    return varied_rows(np.arange(24, dtype="int64"), seed=5)


@pytest.fixture(scope="module")
def base(tmp_path_factory, rows):
    """A tiny random Llama whose answers depend on the prompt (test_sharding.sharpened_tiny_llama):
    equal answers then mean something."""
    return sharpened_tiny_llama(tmp_path_factory.mktemp("tiny") / "llama", [*rows["description"], *TEMPLATES.values()])


def recorded_run(model, tokenizer, chats, **gen) -> tuple[list[list[int]], list[torch.Tensor]]:
    """`generation.generate_token_ids` with `gen`, and the scores of every step of every batch."""
    scores = []
    generate = model.generate

    def recording(**kwargs):
        output = generate(**kwargs, output_scores=True, return_dict_in_generate=True)
        scores.append(torch.stack(output.scores, dim=1).float())
        return output.sequences

    model.generate = recording
    try:
        return generation.generate_token_ids(model, tokenizer, chats, **gen), scores
    finally:
        del model.generate


def compare_reuse(model, tokenizer, chats, *, batch_size, max_new_tokens, num_beams=1) -> dict:
    """Generates `chats` with and without prefix reuse through `generation.generate_token_ids`,
    recording the scores of every step, and measures how far apart the two runs are.

    Returns the token ids of both runs, the largest score difference over the steps both runs took
    with the same tokens so far (`max_score_difference`), and per row whose tokens differ the step
    and the run-without-reuse's margin between its token and the other run's (`flips`)."""
    gen = {"batch_size": batch_size, "max_new_tokens": max_new_tokens, "num_beams": num_beams}
    runs = {reuse: recorded_run(model, tokenizer, chats, reuse_prefix=reuse, **gen) for reuse in (False, True)}
    (without, scores_without), (with_reuse, scores_with) = runs[False], runs[True]
    batches = generation.shard_batches(generation.prompt_lengths(tokenizer, chats), batch_size)
    deviation, flips = 0.0, []
    if num_beams == 1:  # a greedy step's scores belong to one row (a beam's do not)
        for batch, off, on in zip(batches, scores_without, scores_with):
            for j, row in enumerate(batch):
                steps = min(off.shape[1], on.shape[1], len(without[row]) + 1, len(with_reuse[row]) + 1)
                for step in range(steps):
                    a, b = off[j, step], on[j, step]
                    deviation = max(deviation, float((a - b).abs().max()))
                    if int(a.argmax()) != int(b.argmax()):
                        flips.append((int(row), step, float(a.max() - a[int(b.argmax())])))
                        break
    return {
        "without": without,
        "with": with_reuse,
        "max_score_difference": deviation,
        "flips": flips,
        "rows_differing": sum(x != y for x, y in zip(without, with_reuse)),
    }


def assert_rounding_only(measured: dict, tolerance: float, max_flip_share: float = 0.0) -> None:
    """Scores within `tolerance`; a differing row only at a near tie (margin ≤ 2 × the measured
    deviation), and at most `max_flip_share` of the rows."""
    print(
        f"max score difference {measured['max_score_difference']:.2e} (greedy steps only), "
        f"{measured['rows_differing']} of {len(measured['without'])} rows differ: {measured['flips']}"
    )
    assert measured["max_score_difference"] <= tolerance
    for row, step, margin in measured["flips"]:
        assert margin <= 2 * measured["max_score_difference"], (row, step, margin)
    assert measured["rows_differing"] <= max_flip_share * len(measured["without"])


# ---- the plan: prefix, lengths, prefilled tokens ------------------------------------------------


def test_prompt_plan_finds_the_token_prefix_all_prompts_share(base, rows):
    _, tokenizer = generation.load_causal_lm(base)
    chats = generation.Chats(rows, teacher_messages, TEMPLATES)
    ids = generation._prompt_ids(tokenizer, list(chats))
    lengths, prefix = generation.prompt_plan(tokenizer, chats, chunk_size=5)
    assert lengths.tolist() == [len(x) for x in ids] == generation.prompt_lengths(tokenizer, chats).tolist()
    assert all(x[: len(prefix)] == prefix for x in ids)
    # the longest such prefix: one more token and some prompt disagrees
    assert len({tuple(x[: len(prefix) + 1]) for x in ids}) > 1
    # measured, not assumed: it covers the system prompt and the instruction, and no row's field
    text = tokenizer.decode(prefix)
    assert "Name the product." in text and "Expand the line, use the labels." in text
    assert not any(description in text for description in rows["description"])
    # one prompt (or identical ones) keeps its last token out of the prefix: generation needs it
    one = generation.Chats(rows.head(1), teacher_messages, TEMPLATES)
    assert generation.prompt_plan(tokenizer, one)[1] == ids[0][:-1]
    assert generation.prompt_plan(tokenizer, generation.Chats(rows.head(0), teacher_messages, TEMPLATES))[1] == []


def test_prefilled_tokens_count_the_prefix_once_and_pads_per_batch():
    lengths = np.array([10, 12, 11, 15, 10])
    batches = [np.array([3, 1]), np.array([2, 0]), np.array([4])]
    # without reuse each batch is padded to its longest prompt: 2*15 + 2*11 + 10
    assert generation.prefilled_tokens(lengths, batches) == 62
    # with a 6-token prefix: the prefix once, then the suffixes padded: 6 + 2*9 + 2*5 + 4
    assert generation.prefilled_tokens(lengths, batches, prefix_length=6) == 38
    # beam search prefills every beam (the prefix still once)
    assert generation.prefilled_tokens(lengths, batches, prefix_length=6, num_beams=3) == 6 + 3 * 32
    assert generation.prefilled_tokens(lengths, [], prefix_length=6) == 0


def test_rule_log_says_the_prefix_and_the_tokens_saved(base, rows, caplog):
    model, tokenizer = generation.load_causal_lm(base)
    chats = generation.Chats(rows, student_messages, TEMPLATES)
    lengths, prefix = generation.prompt_plan(tokenizer, chats)
    batches = generation.shard_batches(lengths, 8)
    saved = generation.prefilled_tokens(lengths, batches) - generation.prefilled_tokens(lengths, batches, len(prefix))
    assert saved == len(prefix) * (len(rows) - 1)  # each row's copy of the prefix but the one computed
    with caplog.at_level("INFO", logger="prodcat.names.generation"):
        generation.generate_token_ids(model, tokenizer, chats, batch_size=8, max_new_tokens=2)
    assert f"shared prefix {len(prefix)} tokens (computed once, reused by every batch)" in caplog.text
    assert f"prompts: {len(rows)} rows of {lengths.min()}-{lengths.max()} tokens" in caplog.text
    assert f"{saved} saved of the {generation.prefilled_tokens(lengths, batches)} without reuse" in caplog.text


# ---- the same answers with and without reuse ----------------------------------------------------


@pytest.mark.parametrize("batch_size, num_beams", [(5, 1), (1, 1), (24, 1), (4, 2)])
def test_reuse_gives_the_answers_of_full_prompts(base, rows, batch_size, num_beams):
    """Batches of 5 (padded between prefix and suffix), of 1 (no padding), one batch of all rows,
    and beam search (the cache copied for every beam)."""
    model, tokenizer = generation.load_causal_lm(base)
    assert model.dtype == torch.float32
    chats = generation.Chats(rows, teacher_messages, TEMPLATES)
    measured = compare_reuse(model, tokenizer, chats, batch_size=batch_size, max_new_tokens=6, num_beams=num_beams)
    assert_rounding_only(measured, FP32_SCORE_TOLERANCE)
    assert measured["with"] == measured["without"]
    assert len({tuple(x) for x in measured["without"]}) > len(rows) // 2  # answers differ from row to row


def test_reuse_works_through_a_lora_peft_model(base, rows):
    from peft import LoraConfig, get_peft_model

    model, tokenizer = generation.load_causal_lm(base)
    torch.manual_seed(0)
    # random (not zero) LoRA B matrices, so that the adapter changes the answers
    peft_model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    )
    peft_model.eval()
    chats = generation.Chats(rows[["description", "price"]], student_messages, TEMPLATES)
    measured = compare_reuse(peft_model, tokenizer, chats, batch_size=5, max_new_tokens=6)
    assert_rounding_only(measured, FP32_SCORE_TOLERANCE)
    assert measured["with"] == measured["without"]
    with peft_model.disable_adapter():
        plain = generation.generate_token_ids(peft_model, tokenizer, chats, batch_size=5, max_new_tokens=6)
    assert plain != measured["with"]  # the adapter was in the path


def test_reuse_with_an_8bit_model(base, rows):
    """LLM.int8 quantizes each call's activations over the rows it is given (per-row scales, outlier
    columns found over the whole call), so an 8-bit model's answers already depend on the batch:
    here batches of 1 instead of 5 change 2 of the 24 rows without any reuse. A prefix run alone is
    one more such call: measured, the scores move by at most 0.08 and 2 rows flip, each at a near
    tie; the bounds below leave a little room (0.1, 15 % of the rows)."""
    model, tokenizer = generation.load_causal_lm(base, load_in_8bit=True, device="cpu")
    chats = generation.Chats(rows[["description", "price"]], student_messages, TEMPLATES)
    measured = compare_reuse(model, tokenizer, chats, batch_size=5, max_new_tokens=6)
    assert_rounding_only(measured, tolerance=0.1, max_flip_share=0.15)
    one_by_one = generation.generate_token_ids(
        model, tokenizer, chats, batch_size=1, max_new_tokens=6, reuse_prefix=False
    )
    batching = sum(a != b for a, b in zip(one_by_one, measured["without"]))
    print(f"8-bit, batches of 1 vs 5 without reuse: {batching} rows differ")


def test_sharded_names_with_reuse_equal_one_shard_without(base, rows):
    """Every shard reuses the prefix of the whole split's prompts, so the sharding guarantee holds
    with reuse, and the names equal those generated without it."""
    gen = {"batch_size": 4, "max_new_tokens": 6}
    plain = generation.generate_teacher_names(base, rows, TEMPLATES, {**gen, "reuse_prefix": False})
    parts = [generation.generate_teacher_names(base, rows, TEMPLATES, gen, shard=k, shards=3) for k in range(3)]
    pd.testing.assert_frame_equal(generation.gather_shards(rows["indoml_id"], parts), plain)
    assert plain["answer"].nunique() > len(rows) // 2


# ---- the .test run's stand-in and namer ---------------------------------------------------------


def reuse_on_test_run(results, config) -> dict:
    """compare_reuse for the teacher (train rows) and the student (val and test rows) of a finished
    .test run, with the run's generation settings."""
    from prodcat.data.io import read_rows

    measured = {}
    jobs = [
        ("teacher", "train", results / "models" / "base" / "llama", teacher_messages, "teacher"),
        ("student", "val", results / "models" / "namer" / "merged", student_messages, "student"),
        ("student", "test", results / "models" / "namer" / "merged", student_messages, "student"),
    ]
    for kind, split, model_dir, build, key in jobs:
        rows = read_rows(results / "data" / f"{split}.parquet", labelled=kind == "teacher")
        rows = rows.assign(price=rows["price"] if "price" in rows else np.nan)
        model, tokenizer = generation.load_causal_lm(model_dir)
        fields = ["description", "price", *(["supergroup", "group", "module", "brand"] if kind == "teacher" else [])]
        chats = generation.Chats(rows[fields], build, config["namer"]["templates"])
        gen = config["namer"][key]
        measured[(kind, split)] = compare_reuse(
            model, tokenizer, chats, batch_size=gen["batch_size"], max_new_tokens=gen["max_new_tokens"]
        )
    return measured


@pytest.mark.slow
def test_reuse_gives_the_same_names_on_the_test_run(finished_test_run):
    results, _ = finished_test_run
    for (kind, split), measured in reuse_on_test_run(results, merged_test_config()).items():
        print(kind, split, end=": ")
        assert_rounding_only(measured, FP32_SCORE_TOLERANCE)
        assert measured["with"] == measured["without"], (kind, split)

"""The Llama stand-in's pretraining: rows drawn apart from the run's, and a teacher that then writes
expansions of the receipt line rather than echoing it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from prodcat import LEVELS
from prodcat.data.io import ingest, read_table
from prodcat.standins import synthetic

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = ROOT / ".test" / "data"
TEST_SEED = 7  # .test/data: make-sample --seed 7 (Makefile, target sample)


@pytest.fixture(scope="module")
def run_rows() -> pd.DataFrame:
    """The .test sample's training rows with their labels, as ingest reads them: what the workflow
    checks the pretraining rows against (its train and validation rows; the test rows number from 0
    too, like the competition's, so ids are unique within a file only)."""
    return ingest(TEST_DATA / "train.features", TEST_DATA / "train.labels")


def test_pretraining_rows_are_a_fresh_draw_apart_from_the_run(run_rows):
    rows = synthetic.pretraining_rows(TEST_SEED, 600, seed=1, run_rows=run_rows)
    assert len(rows) == 600 and rows["indoml_id"].is_unique
    # ids no make-sample row has (they count from 0): apart from train, validation and test alike
    assert set(rows["indoml_id"]) == set(range(-600, 0)) and run_rows["indoml_id"].min() >= 0
    # the sample's products (a pretrained LLM knows them) ...
    catalogue = synthetic.generate_catalogue(TEST_SEED)
    assert set(rows[list(LEVELS)].itertuples(index=False, name=None)) <= set(catalogue.paths)
    assert {"description", "price", "name"} <= set(rows.columns)
    # ... but not the sample's rows: another random stream than make-sample's, even at its seed
    sample, _ = synthetic.generate_rows(catalogue, n_train=600, n_test=0, seed=1)
    fresh = set(zip(rows["description"], rows["retailer"], rows["price"].round(2)))
    drawn = set(zip(sample["description"], sample["retailer"], sample["price"].round(2)))
    assert len(fresh & drawn) < 0.5 * len(fresh)
    again = synthetic.pretraining_rows(TEST_SEED, 600, seed=1, run_rows=run_rows)
    pd.testing.assert_frame_equal(rows, again)
    other = synthetic.pretraining_rows(TEST_SEED, 600, seed=2, run_rows=run_rows)
    assert not rows["description"].equals(other["description"])


def test_pretraining_rows_refuse_data_of_another_catalogue(run_rows):
    with pytest.raises(ValueError, match=r"catalogue of make-sample --seed 20241 lacks .*indoml_id"):
        synthetic.pretraining_rows(20241, 10, seed=1, run_rows=run_rows)
    # unlabelled rows (hidden test labels) cannot be checked, but still get disjoint ids
    unlabelled = run_rows.drop(columns=list(LEVELS))
    rows = synthetic.pretraining_rows(20241, 10, seed=1, run_rows=unlabelled)
    assert not set(rows["indoml_id"]) & set(unlabelled["indoml_id"])


def test_pretrained_standin_expands_receipt_lines_where_the_random_one_echoes_them(tmp_path, run_rows):
    """pretrain_tiny_llama, then teacher names through the real generation path: clearly closer to
    the true product names than the receipt lines, few fallbacks; the random-init stand-in's answers
    all fall back to the description. One supergroup of the catalogue only, so that a small model
    learns it in seconds (the .test workflow run checks the whole catalogue)."""
    from prodcat.names.generation import generate_teacher_names
    from prodcat.names.prompts import DEFAULT_TEMPLATES
    from prodcat.names.quality import chrf
    from prodcat.standins.tiny_llama import build_tiny_llama, pretrain_tiny_llama
    from prodcat.workflow import tokenizer_corpus

    truth = read_table(TEST_DATA / "names.jsonl")
    truth = truth[truth["split"] == "train"].set_index("indoml_id")["name"]
    train = run_rows
    supergroup = train["supergroup"].value_counts().index[0]
    held_out = train[train["supergroup"] == supergroup].head(100)
    pretraining = synthetic.pretraining_rows(TEST_SEED, 4000, seed=1, run_rows=run_rows)
    pretraining = pretraining[pretraining["supergroup"] == supergroup]
    base = build_tiny_llama(
        tmp_path / "llama",
        tokenizer_corpus(train, DEFAULT_TEMPLATES),
        vocab_size=600,
        hidden_size=64,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        intermediate_size=128,
    )
    generate = {"batch_size": 64, "max_new_tokens": 32}
    references = truth.reindex(held_out["indoml_id"]).tolist()
    floor = chrf(held_out["description"].tolist(), references)

    echoed = generate_teacher_names(base, held_out, DEFAULT_TEMPLATES, generate)
    assert (echoed["status"] != "ok").mean() > 0.9

    summary = pretrain_tiny_llama(
        base, pretraining, DEFAULT_TEMPLATES, {"steps": 200, "batch_size": 16, "learning_rate": 1e-2}
    )
    assert summary["loss_last"] < 0.5 * summary["loss_first"]
    names = generate_teacher_names(base, held_out, DEFAULT_TEMPLATES, generate)
    assert (names["status"] != "ok").mean() < 0.2
    score = chrf(names["name"].tolist(), references)
    print(f"pretrained teacher: chrF {score:.1f} against the receipt lines' {floor:.1f}")
    assert score > floor + 5, (score, floor)


def test_standin_pretraining_on_data_of_another_catalogue_names_the_config_keys(tmp_path, run_rows):
    from prodcat.data.io import write_parquet
    from prodcat.workflow import pretrain_llama_standin

    train = tmp_path / "train.parquet"
    write_parquet(run_rows, train)
    warmup = {"enabled": True, "catalogue_seed": 20241, "rows_seed": 1, "steps": 1, "batch_size": 1}
    with pytest.raises(ValueError, match=r"tiny.llama.warmup.catalogue_seed .*tiny.llama.warmup.enabled: false"):
        pretrain_llama_standin(tmp_path / "llama", [str(train)], warmup, {})
    assert not (tmp_path / "llama").exists()


def test_answer_loss_with_a_shared_prompt_start_equals_the_whole_prompts(tmp_path):
    """The pretraining runs the prompts' common beginning once a step: same loss, same gradients."""
    import torch

    from prodcat.standins.tiny_llama import answer_loss, build_tiny_llama

    base = build_tiny_llama(
        tmp_path / "llama",
        ["the same start then something else"] * 3,
        vocab_size=300,
        hidden_size=32,
        num_layers=2,
        num_heads=2,
        num_kv_heads=1,
        intermediate_size=64,
    )
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    prompts = [[5, 6, 7, 8, 9, 10], [5, 6, 7, 8, 11], [5, 6, 7, 8, 12, 13, 14, 15]]
    answers = [[20, 21, 3], [22, 3], [23, 24, 25, 3]]
    results = []
    for shared in (0, 4):
        model.zero_grad()
        loss = answer_loss(model, prompts, answers, pad_id=1, shared=shared)
        loss.backward()
        results.append((loss.item(), [p.grad.clone() for p in model.parameters()]))
    (whole, whole_grads), (split, split_grads) = results
    assert split == pytest.approx(whole, rel=1e-5)
    for a, b in zip(whole_grads, split_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)

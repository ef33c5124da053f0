"""The shared labeler machinery on a tiny ByT5 stand-in: train, save, predict, resume."""

import json

import pandas as pd
import pytest
import torch
from transformers import TrainerCallback

from prodcat import LEVELS
from prodcat.labelers.seq2seq import make_examples, predict_seq2seq, train_seq2seq
from prodcat.standins.tiny_seq2seq import build_tiny_byt5

DIMS = {"d_model": 32, "d_ff": 64, "num_layers": 1, "num_heads": 2, "dropout_rate": 0.0}
# every training setting, as the config schema completes them (prodcat.labelers.seq2seq reads them all)
PARAMS = {
    "per_device_train_batch_size": 8,
    "per_device_eval_batch_size": None,
    "gradient_accumulation_steps": 1,
    "learning_rate": 3e-3,
    "weight_decay": 0.0,
    "num_train_epochs": 3,
    "early_stopping_patience": 2,
    "warmup_steps": 0,
    "lr_scheduler_type": "linear",
    "max_source_length": 32,
    "max_target_length": 96,
    "seed": 1,
    "logging_steps": 2,
    "keep_checkpoints": False,
}


@pytest.fixture(scope="module")
def tiny_byt5(tmp_path_factory):
    return build_tiny_byt5(tmp_path_factory.mktemp("base") / "byt5", DIMS)


def rows(n=24):
    paths = [("sg a", "g, x", "m: 1", "b & c"), ("sg b", "g y", "m 2", "receipt all")]
    return pd.DataFrame(
        [
            {
                "indoml_id": i,
                "description": f"item {i % 2}",
                "retailer": "r",
                "price": 1.0,
                **dict(zip(LEVELS, paths[i % 2])),
            }
            for i in range(n)
        ]
    )


def test_label_padding_is_masked_and_long_targets_are_refused(tiny_byt5):
    from transformers import AutoTokenizer, DataCollatorForSeq2Seq

    tokenizer = AutoTokenizer.from_pretrained(tiny_byt5)
    examples = make_examples(tokenizer, rows(4), "description", max_source_length=32, max_target_length=96)
    batch = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100)(examples)
    lengths = [len(e["labels"]) for e in examples]
    assert min(lengths) < max(lengths)
    shortest = lengths.index(min(lengths))
    assert (batch["labels"][shortest, min(lengths) :] == -100).all()
    with pytest.raises(ValueError, match="max_target_length"):
        make_examples(tokenizer, rows(4), "description", max_source_length=32, max_target_length=20)


def test_train_then_predict_writes_parsed_table(tiny_byt5, tmp_path):
    summary = train_seq2seq(tiny_byt5, rows(), rows(8), tmp_path / "model", tmp_path / "ckpt", PARAMS)
    assert (tmp_path / "model" / "model.safetensors").exists()
    assert not (tmp_path / "ckpt").exists(), "checkpoints are removed after a successful run"
    saved = json.loads((tmp_path / "model" / "train_summary.json").read_text())
    assert saved["best_eval_loss"] == summary["best_eval_loss"] and summary["train_gflops_per_step"] > 0
    losses = [h["eval_loss"] for h in summary["log_history"] if "eval_loss" in h]
    assert len(losses) == 3
    table, info = predict_seq2seq(
        tmp_path / "model", rows(6), {"batch_size": 4, "num_beams": 2, "max_new_tokens": 8, "max_source_length": 32}
    )
    assert table["indoml_id"].tolist() == list(range(6))
    assert {"text", "parse_ok", "finished", *LEVELS} <= set(table.columns)
    # 8 bytes cannot hold a full target: every row is an unfinished parse failure, never a label
    assert info["parse_failures"] == 6 and info["unfinished"] == 6
    assert table["supergroup"].isna().all()
    assert info["predict_gflops_per_batch"] is None  # FLOPs are counted only on request

    counted, counted_info = predict_seq2seq(
        tmp_path / "model",
        rows(6),
        {"batch_size": 4, "num_beams": 2, "max_new_tokens": 8, "max_source_length": 32},
        count_batch_flops=True,
    )
    assert counted_info["predict_gflops_per_batch"] > 0
    pd.testing.assert_frame_equal(counted, table)  # the counting pass changes nothing


class KillAfterFirstSave(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        raise KeyboardInterrupt("simulated kill")


def test_killed_run_resumes_from_its_last_checkpoint(tiny_byt5, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        train_seq2seq(
            tiny_byt5,
            rows(),
            rows(8),
            tmp_path / "model",
            tmp_path / "ckpt",
            PARAMS,
            extra_callbacks=[KillAfterFirstSave()],
        )
    assert list((tmp_path / "ckpt").glob("checkpoint-*"))
    summary = train_seq2seq(tiny_byt5, rows(), rows(8), tmp_path / "model", tmp_path / "ckpt", PARAMS)
    assert summary["resumed_from"] and summary["resumed_from"].endswith("checkpoint-3")
    assert summary["global_step"] == 9  # 3 epochs × 3 steps: continued, not restarted


def test_checkpoints_of_another_run_are_not_resumed(tiny_byt5, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        train_seq2seq(
            tiny_byt5,
            rows(),
            rows(8),
            tmp_path / "model",
            tmp_path / "ckpt",
            PARAMS,
            extra_callbacks=[KillAfterFirstSave()],
        )
    changed = {**PARAMS, "learning_rate": 1e-3, "num_train_epochs": 1}
    summary = train_seq2seq(tiny_byt5, rows(), rows(8), tmp_path / "model", tmp_path / "ckpt", changed)
    assert summary["resumed_from"] is None and summary["global_step"] == 3


def test_multimodal_labeler_trains_and_predicts_with_unseen_retailer_and_missing_price(tiny_byt5, tmp_path):
    train = rows()
    train["retailer"] = [f"shop{i % 3}" for i in range(len(train))]
    params = {**PARAMS, "num_train_epochs": 1, "side_dim": 4, "fusion": "prepend", "retailer_dropout": 0.3}
    summary = train_seq2seq(tiny_byt5, train, rows(8), tmp_path / "model", tmp_path / "ckpt", params, kind="multimodal")
    assert summary["kind"] == "multimodal"
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["retailers"] == ["shop0", "shop1", "shop2"] and config["fusion"] == "prepend"
    assert config["retailer_dropout"] == 0.3
    # the UNKNOWN retailer (row 0) was trained: it moved from the initial model's (same seed)
    from transformers import set_seed

    from prodcat.labelers.seq2seq import load_base_model, load_trained_model

    set_seed(PARAMS["seed"])
    initial, _ = load_base_model(tiny_byt5, "multimodal", train, params)
    trained, _ = load_trained_model(tmp_path / "model")
    before = initial.side_fusion.retailer_embedding.weight.detach()
    after = trained.side_fusion.retailer_embedding.weight.detach()
    assert not torch.allclose(after[0], before[0])
    new = rows(4)
    new["retailer"] = ["never seen", "shop1", "shop2", "shop0"]
    new.loc[0, "price"] = float("nan")
    table, info = predict_seq2seq(
        tmp_path / "model", new, {"batch_size": 2, "num_beams": 2, "max_new_tokens": 8, "max_source_length": 32}
    )
    assert info["kind"] == "multimodal" and len(table) == 4 and table["text"].notna().all()


# ---- "auto" lengths (issue 16): the longest training text + margin, within the model's limit -------
def test_auto_lengths_follow_the_training_texts_and_explicit_values_stay(tiny_byt5):
    from transformers import AutoTokenizer

    from prodcat.data.target_text import format_target
    from prodcat.labelers.seq2seq import resolve_training_lengths

    tokenizer = AutoTokenizer.from_pretrained(tiny_byt5)
    train, val = rows(), rows(8)
    val.loc[0, "description"] = "a validation description longer than any in training"
    longest_source = len(val.loc[0, "description"].encode()) + 1  # bytes + EOS
    longest_target = max(len(format_target(p).encode()) + 1 for p in train[list(LEVELS)].itertuples(index=False))
    auto = resolve_training_lengths(
        tokenizer, None, [train, val], "description", {"max_source_length": "auto", "max_target_length": "auto"}
    )
    assert auto == {
        "max_source_length": longest_source + 8,  # 10 % of 54 is under the minimum margin of 8
        "max_target_length": longest_target + 8,
    }
    explicit = resolve_training_lengths(
        tokenizer, None, [train, val], "description", {"max_source_length": 17, "max_target_length": 300}
    )
    assert explicit == {"max_source_length": 17, "max_target_length": 300}
    long_rows = rows(2).assign(description="x" * 200)  # 201 bytes with EOS: a 10 % margin, 21
    assert (
        resolve_training_lengths(
            tokenizer, None, [long_rows], "description", {"max_source_length": "auto", "max_target_length": 96}
        )["max_source_length"]
        == 222
    )
    tokenizer.model_max_length = 30  # a model with a limit: auto stays within it
    capped = resolve_training_lengths(
        tokenizer, None, [train], "description", {"max_source_length": "auto", "max_target_length": "auto"}
    )
    assert capped == {"max_source_length": len("item 0") + 1 + 8, "max_target_length": 30}
    with pytest.raises(ValueError, match="set it to auto"):  # and a target that does not fit says so
        make_examples(tokenizer, train, "description", **capped)


def test_auto_lengths_are_recorded_in_training_and_read_by_prediction(tiny_byt5, tmp_path, caplog):
    import logging

    from prodcat.labelers.seq2seq import resolve_prediction_lengths

    params = {**PARAMS, "num_train_epochs": 1, "max_source_length": "auto", "max_target_length": "auto"}
    with caplog.at_level(logging.INFO, logger="prodcat.labelers.seq2seq"):
        summary = train_seq2seq(tiny_byt5, rows(), rows(8), tmp_path / "model", tmp_path / "ckpt", params)
    assert summary["max_source_length"] == len("item 0") + 1 + 8
    assert summary["max_target_length"] == len("sg b | g y | m 2 | receipt all") + 1 + 8
    assert "max_target_length auto: the longest training target is 31 tokens; with the margin 39" in caplog.text
    auto = {"batch_size": 4, "num_beams": 1, "max_new_tokens": "auto", "max_source_length": "auto"}
    assert resolve_prediction_lengths(tmp_path / "model", auto) == (15, 39)
    assert resolve_prediction_lengths(tmp_path / "model", {**auto, "max_new_tokens": 5}) == (15, 5)
    with caplog.at_level(logging.INFO, logger="prodcat.labelers.seq2seq"):
        table, _ = predict_seq2seq(tmp_path / "model", rows(4), auto)
    assert len(table) == 4 and "max_new_tokens auto: 39, as in training" in caplog.text
    (tmp_path / "model" / "train_summary.json").write_text("{}")
    with pytest.raises(ValueError, match="max_source_length: auto needs the lengths the model was trained with"):
        resolve_prediction_lengths(tmp_path / "model", auto)

"""Tests for the multimodal ByT5 labeler (retailer + price fused into the encoder states)."""

from __future__ import annotations

import logging
import math
import random

import pytest
import torch
from datasets import Dataset
from transformers import (
    AutoModelForSeq2SeqLM,
    ByT5Tokenizer,
    DataCollatorForSeq2Seq,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    T5Config,
    T5ForConditionalGeneration,
    T5Model,
)

from prodcat.labelers.mmt5 import (
    UNKNOWN_RETAILER_ID,
    MultimodalSeq2SeqCollator,
    MultimodalT5Config,
    MultimodalT5ForConditionalGeneration,
    encode_side_features,
    load_labeler_model,
)

FUSIONS = ("first", "prepend")
TINY_T5 = dict(
    vocab_size=384,  # the ByT5 byte vocabulary
    d_model=48,
    d_kv=12,
    d_ff=96,
    num_layers=1,
    num_heads=4,
    dropout_rate=0.0,
    feed_forward_proj="gated-gelu",
    decoder_start_token_id=0,
    pad_token_id=0,
    eos_token_id=1,
)
RETAILERS = ["north", "south", "east", "west"]
LETTERS = {"north": "a", "south": "b", "east": "c", "west": "d", None: "u"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tokenizer():
    return ByT5Tokenizer()


def text_model(seed: int = 0, **overrides) -> T5ForConditionalGeneration:
    torch.manual_seed(seed)
    return T5ForConditionalGeneration(T5Config(**{**TINY_T5, **overrides}))


def multimodal_model(fusion: str = "first", seed: int = 0) -> MultimodalT5ForConditionalGeneration:
    model = MultimodalT5ForConditionalGeneration.from_text_model(
        text_model(seed), RETAILERS, price_min=1.0, price_max=100.0, fusion=fusion
    )
    return model.eval()


def encode_batch(tokenizer, model, texts, retailers, prices):
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    retailer_ids, price_values = encode_side_features(model.config, retailers, prices)
    return dict(batch, retailer_ids=retailer_ids, prices=price_values)


def strip_generation(ids: list[int]) -> list[int]:
    """Generated ids without the decoder start token, up to and including the first EOS."""
    ids = ids[1:]
    return ids[: ids.index(1) + 1] if 1 in ids else ids


# --- config and side-feature encoding -------------------------------------------------------


def test_config_rejects_settings_the_side_layers_cannot_represent():
    with pytest.raises(Exception, match="fusion"):
        MultimodalT5Config(**TINY_T5, fusion="middle")
    with pytest.raises(Exception, match="duplicates"):
        MultimodalT5Config(**TINY_T5, retailers=["a", "a"])
    with pytest.raises(Exception, match="price_max"):
        MultimodalT5Config(**TINY_T5, price_min=5.0, price_max=1.0)


def test_encode_side_features_maps_unknown_retailers_and_missing_prices():
    config = MultimodalT5Config(**TINY_T5, retailers=["a", "b"])
    retailer_ids, prices = encode_side_features(config, ["b", "a", "zzz", None], [2.5, None, math.nan, 0])
    assert retailer_ids.dtype == torch.long and retailer_ids.tolist() == [2, 1, UNKNOWN_RETAILER_ID, 0]
    assert prices.dtype == torch.float32
    assert prices[0].item() == 2.5 and prices[3].item() == 0.0
    assert math.isnan(prices[1].item()) and math.isnan(prices[2].item())
    with pytest.raises(ValueError):
        encode_side_features(config, ["a"], [1.0, 2.0])


# --- construction, save/load and the plain-T5 refusal ---------------------------------------


def test_from_text_model_copies_every_text_weight_and_setting(tmp_path):
    plain = text_model(seed=3)
    model = MultimodalT5ForConditionalGeneration.from_text_model(
        plain, ["west", "east", "west", None], price_min=0.5, price_max=9.0, side_dim=4
    )
    plain_state, state = plain.state_dict(), model.state_dict()
    assert set(state) - set(plain_state) == {k for k in state if k.startswith("side_fusion.")}
    assert all(torch.equal(plain_state[k], state[k]) for k in plain_state)
    ignored = {"model_type", "architectures", "transformers_version"}
    side = {"retailers", "side_dim", "price_min", "price_max", "fusion", "retailer_dropout"}
    plain_fields = {k: v for k, v in plain.config.to_dict().items() if k not in ignored}
    fields = {k: v for k, v in model.config.to_dict().items() if k not in ignored | side}
    assert fields == plain_fields
    assert model.config.retailers == ["east", "west"]  # sorted, de-duplicated, None dropped
    assert model.side_fusion.retailer_embedding.num_embeddings == 3  # + the UNKNOWN bucket
    assert model.side_fusion.fusion.in_features == TINY_T5["d_model"] + 2 * 4

    plain.save_pretrained(tmp_path / "plain")
    from_path = MultimodalT5ForConditionalGeneration.from_text_model(str(tmp_path / "plain"), ["a"], 0.0, 1.0)
    assert torch.equal(from_path.shared.weight, plain.shared.weight)
    with pytest.raises(TypeError):
        MultimodalT5ForConditionalGeneration.from_text_model(model, ["a"], 0.0, 1.0)


def test_fresh_fusion_layer_keeps_the_text_state_and_mixes_in_side_features(tokenizer):
    model = multimodal_model()
    weight = model.side_fusion.fusion.weight
    d_model = TINY_T5["d_model"]
    assert torch.equal(weight[:, :d_model], torch.eye(d_model))
    assert weight[:, d_model:].abs().sum() > 0  # side features reach the decoder from step one


@pytest.mark.parametrize("fusion", FUSIONS)
def test_save_and_load_round_trip_every_weight_and_setting(tmp_path, tokenizer, fusion):
    model = multimodal_model(fusion, seed=1)
    with torch.no_grad():  # make every side weight distinctive
        for param in model.side_fusion.parameters():
            param.add_(torch.randn_like(param))
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()

    for loaded in (
        MultimodalT5ForConditionalGeneration.from_pretrained(tmp_path),
        AutoModelForSeq2SeqLM.from_pretrained(tmp_path),
        load_labeler_model(str(tmp_path)),
    ):
        assert type(loaded) is MultimodalT5ForConditionalGeneration
        state, loaded_state = model.state_dict(), loaded.state_dict()
        assert state.keys() == loaded_state.keys()
        assert all(torch.equal(state[k], loaded_state[k]) for k in state)
        unsaved = {"_name_or_path"}  # where it was loaded from
        assert {k: v for k, v in loaded.config.to_dict().items() if k not in unsaved} == {
            k: v for k, v in model.config.to_dict().items() if k not in unsaved
        }

    batch = encode_batch(tokenizer, model, ["cad 5 pk egg", "milk"], ["north", None], [3.5, None])
    loaded = MultimodalT5ForConditionalGeneration.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        labels = batch["input_ids"]
        assert torch.equal(model(**batch, labels=labels).logits, loaded(**batch, labels=labels).logits)


def test_plain_t5_loader_refuses_a_multimodal_checkpoint(tmp_path, caplog):
    multimodal_model().save_pretrained(tmp_path / "mm")
    transformers_logger = logging.getLogger("transformers")  # does not propagate to the root logger
    transformers_logger.addHandler(caplog.handler)
    try:
        with pytest.raises(RuntimeError):
            T5ForConditionalGeneration.from_pretrained(tmp_path / "mm")
    finally:
        transformers_logger.removeHandler(caplog.handler)
    assert "prodcat multimodal labeler checkpoint" in caplog.text  # in the load report
    with pytest.raises(RuntimeError):
        T5Model.from_pretrained(tmp_path / "mm")

    plain = text_model()
    plain.save_pretrained(tmp_path / "plain")  # plain checkpoints still load with the plain class
    plain_dir = tmp_path / "plain"
    for loaded in (T5ForConditionalGeneration.from_pretrained(plain_dir), load_labeler_model(str(plain_dir))):
        assert type(loaded) is T5ForConditionalGeneration
        assert torch.equal(loaded.shared.weight, plain.shared.weight)


# --- side features at prediction time -------------------------------------------------------


@pytest.mark.parametrize("fusion", FUSIONS)
def test_unseen_retailer_and_missing_price_use_their_learned_vectors(tokenizer, fusion):
    model = multimodal_model(fusion)
    texts = ["egg"] * 6
    retailers = ["never-seen", None, "north", "north", "north", "north"]
    prices = [None, math.nan, 1.0, -50.0, 100.0, 1e6]
    batch = encode_batch(tokenizer, model, texts, retailers, prices)
    assert batch["retailer_ids"][:2].tolist() == [UNKNOWN_RETAILER_ID] * 2
    with torch.no_grad():
        states = model.get_encoder()(**batch).last_hidden_state
    expected_positions = batch["input_ids"].shape[1] + (fusion == "prepend")
    assert states.shape[1] == expected_positions and torch.isfinite(states).all()
    fused = states[:, 0]
    assert torch.equal(fused[0], fused[1])  # unknown bucket + missing vector, whatever the spelling
    assert torch.equal(fused[2], fused[3])  # below the training range clips to price_min
    assert torch.equal(fused[4], fused[5])  # above it clips to price_max
    assert not torch.allclose(fused[1], fused[2])  # and neither is a missing price

    generated = model.generate(**batch, num_beams=3, max_new_tokens=4)
    assert generated.shape[0] == len(texts)


def test_forward_and_generate_require_the_side_features(tokenizer):
    model = multimodal_model()
    batch = tokenizer(["egg"], return_tensors="pt")
    with pytest.raises(ValueError, match="retailer_ids and prices"):
        model(**batch, labels=batch["input_ids"])
    with pytest.raises(ValueError, match="retailer_ids and prices"):
        model.generate(**batch, max_new_tokens=2)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_padding_leaves_each_row_unchanged(tokenizer, fusion):
    """The (extended) attention mask hides padding from the decoder in both fusion modes."""
    model = multimodal_model(fusion)
    texts, retailers, prices = ["a much longer receipt line", "egg"], ["south", "east"], [12.0, None]
    batch = encode_batch(tokenizer, model, texts, retailers, prices)
    labels = tokenizer(["sg: x"] * 2, return_tensors="pt").input_ids
    with torch.no_grad():
        together = model(**batch, labels=labels).logits
        for row in range(2):
            one = slice(row, row + 1)
            alone = encode_batch(tokenizer, model, texts[one], retailers[one], prices[one])
            assert torch.allclose(model(**alone, labels=labels[row : row + 1]).logits[0], together[row], atol=1e-5)


def test_collator_pads_labels_with_minus_100_and_batches_side_features(tokenizer):
    collator = MultimodalSeq2SeqCollator(tokenizer)
    features = [
        {"input_ids": tokenizer(text).input_ids, "labels": tokenizer(label).input_ids, "retailer_ids": rid, "prices": p}
        for text, label, rid, p in [("egg", "a0", 2, 3.5), ("milk 1l", "b", 0, None)]
    ]
    batch = collator(features)
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (2, 8)
    assert batch["labels"].tolist()[1] == tokenizer("b").input_ids + [-100]
    assert batch["retailer_ids"].dtype == torch.long and batch["retailer_ids"].tolist() == [2, 0]
    assert batch["prices"][0].item() == 3.5 and math.isnan(batch["prices"][1].item())
    with pytest.raises(KeyError, match="prices"):
        collator([{k: v for k, v in features[0].items() if k != "prices"}])


# --- retailer dropout: the UNKNOWN retailer is trained (issue 16) ------------------------------


@pytest.mark.parametrize("dropout, unknown_moves", [(0.0, False), (0.5, True)])
def test_retailer_dropout_trains_the_unknown_retailer_row(tokenizer, dropout, unknown_moves):
    """Every training row has a known retailer: without dropout the UNKNOWN row's gradient is
    exactly 0 and an unseen retailer at prediction meets its random initial vector."""
    model = MultimodalT5ForConditionalGeneration.from_text_model(
        text_model(), RETAILERS, price_min=1.0, price_max=100.0, retailer_dropout=dropout
    ).train()
    assert model.config.retailer_dropout == dropout
    before = model.side_fusion.retailer_embedding.weight.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    batch = encode_batch(tokenizer, model, ["egg"] * 8, RETAILERS * 2, [5.0] * 8)
    assert UNKNOWN_RETAILER_ID not in batch["retailer_ids"].tolist()
    labels = tokenizer(["ab"] * 8, return_tensors="pt").input_ids
    torch.manual_seed(0)
    for _ in range(3):
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    after = model.side_fusion.retailer_embedding.weight.detach()
    assert torch.equal(after[0], before[0]) is not unknown_moves
    assert not torch.equal(after[1:], before[1:])  # the known retailers train either way


def test_retailer_dropout_is_off_at_prediction(tokenizer, tmp_path):
    model = MultimodalT5ForConditionalGeneration.from_text_model(
        text_model(), RETAILERS, price_min=1.0, price_max=100.0, retailer_dropout=0.9
    ).eval()
    batch = encode_batch(tokenizer, model, ["egg"] * 4, RETAILERS, [5.0] * 4)
    unknown = dict(batch, retailer_ids=torch.zeros(4, dtype=torch.long))
    with torch.no_grad():
        first = model.get_encoder()(**batch).last_hidden_state
        again = model.get_encoder()(**batch).last_hidden_state
        hidden = model.get_encoder()(**unknown).last_hidden_state
    assert torch.equal(first, again)
    assert not torch.allclose(first[:, 0], hidden[:, 0])
    model.save_pretrained(tmp_path)
    assert MultimodalT5ForConditionalGeneration.from_pretrained(tmp_path).config.retailer_dropout == 0.9
    with pytest.raises(Exception, match="retailer_dropout"):
        MultimodalT5Config(**TINY_T5, retailer_dropout=1.0)


# --- a task only the side features can solve -------------------------------------------------


def synthetic_rows(seed: int, n: int) -> list[tuple[str | None, float | None]]:
    """(retailer, price) pairs; 15% unknown retailers, 20% missing prices."""
    rng = random.Random(seed)
    return [
        (
            None if rng.random() < 0.15 else rng.choice(RETAILERS),
            None if rng.random() < 0.2 else round(rng.uniform(1.0, 100.0), 2),
        )
        for _ in range(n)
    ]


def synthetic_target(retailer: str | None, price: float | None) -> str:
    """The label depends only on the retailer and the price band (input text is constant)."""
    band = "m" if price is None else ("1" if price >= 50 else "0")
    return LETTERS.get(retailer, "u") + band


def synthetic_dataset(tokenizer, config, rows) -> Dataset:
    retailer_ids, _ = encode_side_features(config, [r for r, _ in rows], [p for _, p in rows])
    return Dataset.from_list(
        [
            {
                "input_ids": tokenizer("item").input_ids,
                "labels": tokenizer(synthetic_target(r, p)).input_ids,
                "retailer_ids": int(rid),
                "prices": p,
            }
            for (r, p), rid in zip(rows, retailer_ids)
        ]
    )


def train_and_score(model, collator, tokenizer, tmp_dir, encoding_config) -> float:
    """Seq2SeqTrainer for 140 steps, then exact-match accuracy of predict_with_generate."""
    args = Seq2SeqTrainingArguments(
        output_dir=str(tmp_dir),
        per_device_train_batch_size=32,
        per_device_eval_batch_size=100,
        num_train_epochs=14,
        learning_rate=4e-3,
        seed=0,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        predict_with_generate=True,
        generation_max_length=6,
    )
    train_rows, test_rows = synthetic_rows(0, 320), synthetic_rows(1, 200)
    trainer = Seq2SeqTrainer(
        model=model,
        args=args,
        train_dataset=synthetic_dataset(tokenizer, encoding_config, train_rows),
        data_collator=collator,
        processing_class=tokenizer,
    )
    trainer.train()
    predictions = trainer.predict(synthetic_dataset(tokenizer, encoding_config, test_rows)).predictions
    texts = tokenizer.batch_decode(predictions, skip_special_tokens=True)
    return sum(t == synthetic_target(r, p) for t, (r, p) in zip(texts, test_rows)) / len(test_rows)


@pytest.fixture(scope="module", params=FUSIONS)
def trained(request, tokenizer, tmp_path_factory):
    prices = [p for _, p in synthetic_rows(0, 320) if p is not None]
    model = MultimodalT5ForConditionalGeneration.from_text_model(
        text_model(), RETAILERS, price_min=min(prices), price_max=max(prices), fusion=request.param
    )
    collator = MultimodalSeq2SeqCollator(tokenizer)
    accuracy = train_and_score(model, collator, tokenizer, tmp_path_factory.mktemp("mm"), model.config)
    return model.eval(), accuracy


@pytest.fixture(scope="module")
def plain_accuracy(tokenizer, tmp_path_factory):
    collator = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100)
    encoding_config = MultimodalT5Config(**TINY_T5, retailers=sorted(RETAILERS))  # Trainer drops the ids
    return train_and_score(text_model(), collator, tokenizer, tmp_path_factory.mktemp("plain"), encoding_config)


def test_only_the_multimodal_model_learns_a_retailer_and_price_task(trained, plain_accuracy):
    _, accuracy = trained
    assert accuracy >= 0.9
    assert plain_accuracy <= 0.3  # 15 equally plausible labels for one constant input


def test_beam_search_decodes_from_the_fused_states(trained, tokenizer):
    model, _ = trained
    retailers = ["north", "south", "east", "west", "a retailer never seen"]
    batch = encode_batch(tokenizer, model, ["item"] * 5, retailers, [70.0] * 5)
    out = model.generate(
        **batch,
        num_beams=3,
        num_return_sequences=3,
        length_penalty=0.0,
        max_new_tokens=4,
        output_scores=True,
        return_dict_in_generate=True,
    )
    best = tokenizer.batch_decode(out.sequences[::3], skip_special_tokens=True)
    assert best == ["a1", "b1", "c1", "d1", "u1"]  # only the retailer differs between rows

    # every returned beam's score is its log-probability under a plain forward pass
    expanded = {k: v.repeat_interleave(3, dim=0) for k, v in batch.items()}
    with torch.no_grad():
        for row, sequence in enumerate(out.sequences.tolist()):
            tokens = torch.tensor([strip_generation(sequence)])
            decoder_input_ids = torch.cat([torch.zeros((1, 1), dtype=torch.long), tokens[:, :-1]], dim=1)
            inputs = {k: v[row : row + 1] for k, v in expanded.items()}
            logits = model(**inputs, decoder_input_ids=decoder_input_ids).logits
            log_prob = logits.log_softmax(-1).gather(-1, tokens.unsqueeze(-1)).sum()
            assert log_prob.item() == pytest.approx(out.sequences_scores[row].item(), abs=1e-4)


def test_greedy_generate_matches_step_by_step_forward(trained, tokenizer):
    model, _ = trained
    rows = [("north", 10.0), ("west", None), (None, 99.0), ("east", 90.0)]  # prices far from the 50 cut
    texts = ["item", "a longer line 250 g", "x", "item"]
    batch = encode_batch(tokenizer, model, texts, [r for r, _ in rows], [p for _, p in rows])
    generated = [strip_generation(s) for s in model.generate(**batch, max_new_tokens=4).tolist()]

    decoded = torch.zeros((len(rows), 1), dtype=torch.long)
    with torch.no_grad():
        for _ in range(4):
            logits = model(**batch, decoder_input_ids=decoded).logits[:, -1]
            decoded = torch.cat([decoded, logits.argmax(-1, keepdim=True)], dim=1)
    assert generated == [strip_generation(s) for s in decoded.tolist()]
    item_rows = [i for i, text in enumerate(texts) if text == "item"]  # the trained input
    expected = [synthetic_target(*rows[i]) for i in item_rows]
    assert [tokenizer.decode(generated[i][:-1]) for i in item_rows] == expected


def test_side_feature_parameter_overhead_follows_the_formula():
    model = multimodal_model()
    d, s, r = TINY_T5["d_model"], 8, len(RETAILERS)
    expected = (r + 1) * s + (s + s) + s + (d + 2 * s) * d + d
    assert sum(p.numel() for p in model.side_fusion.parameters()) == expected

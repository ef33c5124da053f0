"""Confidence with every prediction: the seq2seq labelers' log-probabilities (free, constrained,
beam search), charngram's posterior and margin, and corrections that keep them and flag changes."""

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, LogitsProcessorList

from prodcat import LEVELS
from prodcat.data.hierarchy import Hierarchy
from prodcat.data.target_text import format_target
from prodcat.ensemble.correct import correct_predictions
from prodcat.labelers.constrained import PathTrie, constrained_logits_processor, max_target_tokens
from prodcat.labelers.seq2seq import generated_token_logprobs, predict_seq2seq
from prodcat.standins.tiny_seq2seq import build_tiny_byt5

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DIMS = {"d_model": 32, "d_ff": 64, "num_layers": 1, "num_heads": 2, "dropout_rate": 0.0}
SOURCES = ["cad 5 pk creme egg 197 g", "milk 1l", "x", "dr browns bottle 250ml", "zzz 9"]
PATHS = [
    ("dairy", "milk", "fresh milk", "glenmoor"),
    ("dairy", "milk", "fresh milk", "receipt all"),
    ("dairy", "cheese", "hard cheese", "glenmoor"),
    ("snacks", "crisps", "potato crisps", "crunchco"),
]


@pytest.fixture(scope="module")
def byt5_dir(tmp_path_factory):
    return build_tiny_byt5(tmp_path_factory.mktemp("byt5"), DIMS)


@pytest.fixture(scope="module")
def hierarchy():
    return Hierarchy(pd.DataFrame([(*p, 10 - k) for k, p in enumerate(PATHS)], columns=[*LEVELS, "count"]))


def teacher_forced_logprobs(model, batch, sequences, eos):
    """Sum of log P(token | source, earlier tokens) over each sequence's tokens up to its first EOS."""
    with torch.no_grad():
        logits = model(**batch, decoder_input_ids=sequences[:, :-1]).logits
    target = sequences[:, 1:]
    token = torch.log_softmax(logits.float(), dim=-1).gather(2, target[:, :, None])[:, :, 0]
    is_eos = target == eos
    counted = (torch.cumsum(is_eos.long(), dim=1) - is_eos.long()) == 0
    return (token * counted).sum(dim=1), counted.sum(dim=1)


@pytest.mark.parametrize("num_beams", [1, 3])
@pytest.mark.parametrize("constrained", [False, True])
def test_generated_log_probability_equals_teacher_forced_scoring(byt5_dir, hierarchy, num_beams, constrained):
    model, tokenizer = AutoModelForSeq2SeqLM.from_pretrained(byt5_dir).eval(), AutoTokenizer.from_pretrained(byt5_dir)
    eos = model.generation_config.eos_token_id
    batch = tokenizer(SOURCES, padding=True, return_tensors="pt")
    trie = PathTrie.from_hierarchy(hierarchy, tokenizer)
    kwargs = dict(num_beams=num_beams, do_sample=False, max_new_tokens=max_target_tokens(trie) if constrained else 12)
    if constrained:
        kwargs["logits_processor"] = LogitsProcessorList([constrained_logits_processor(trie)])
    with torch.no_grad():
        out = model.generate(**batch, **kwargs, return_dict_in_generate=True, output_logits=True)
    scores, counted = generated_token_logprobs(model, out, eos)
    expected, lengths = teacher_forced_logprobs(model, batch, out.sequences, eos)
    torch.testing.assert_close(scores.sum(dim=1), expected, rtol=1e-4, atol=1e-4)
    assert counted.sum(dim=1).tolist() == lengths.tolist()
    assert (scores <= 0).all() and (scores.sum(dim=1) < 0).all()
    if constrained:
        # the raw logits, not the trie-renormalised ones: an untrained model is far from sure of a path
        assert (scores.sum(dim=1) < -5).all()


def test_prediction_table_carries_the_scores_for_free_and_constrained_decoding(byt5_dir, hierarchy):
    rows = pd.DataFrame({"indoml_id": np.arange(len(SOURCES)), "description": SOURCES, "retailer": "r", "price": 1.0})
    params = {"batch_size": 2, "num_beams": 1, "max_new_tokens": 10, "max_source_length": 32}
    free, _ = predict_seq2seq(byt5_dir, rows, params)
    constrained, _ = predict_seq2seq(byt5_dir, rows, params, hierarchy=hierarchy, constrained=True)
    model, tokenizer = AutoModelForSeq2SeqLM.from_pretrained(byt5_dir).eval(), AutoTokenizer.from_pretrained(byt5_dir)
    for table in (free, constrained):
        assert {"logprob", "logprob_per_token", "logprob_min", "n_tokens"} <= set(table.columns)
        assert (table["logprob"] < 0).all() and (table["n_tokens"] >= 1).all()
        np.testing.assert_allclose(table["logprob_per_token"] * table["n_tokens"], table["logprob"], rtol=1e-9)
        assert (table["logprob_min"] >= table["logprob"] - 1e-9).all() and (table["logprob_min"] <= 0).all()
    # free generation stops at max_new_tokens: 10 tokens and no end
    assert (free["n_tokens"][~free["finished"]] == 10).all()
    # a constrained row's score is the model's own log-probability of the path's target text
    eos = model.generation_config.eos_token_id
    for i, row in constrained.iterrows():
        target = tokenizer(text_target=[format_target(tuple(row[list(LEVELS)]))], return_tensors="pt")["input_ids"]
        sequence = torch.cat([torch.zeros((1, 1), dtype=torch.long), target], dim=1)  # decoder start token 0
        expected, length = teacher_forced_logprobs(model, tokenizer([SOURCES[i]], return_tensors="pt"), sequence, eos)
        assert row["logprob"] == pytest.approx(float(expected), abs=1e-4)
        assert row["n_tokens"] == int(length)


def test_charngram_logprob_is_the_log_posterior_of_the_chosen_path_and_margin_its_log_odds():
    from tests.test_charngram import PARAMS as CHARNGRAM_PARAMS
    from tests.test_charngram import make_rows

    from prodcat.labelers.charngram import train_charngram

    train, test = make_rows(20, seed=1), make_rows(4, seed=2, start_id=10_000)
    labeler = train_charngram(train, Hierarchy.from_frame(train), params=CHARNGRAM_PARAMS)
    table = labeler.predict(test.drop(columns=list(LEVELS)))
    scores = labeler._scores(labeler.featurizer.transform(test)).astype(np.float64)
    log_posterior = scores - np.logaddexp.reduce(scores, axis=1, keepdims=True)
    ranked = np.sort(scores, axis=1)
    np.testing.assert_allclose(table["logprob"], log_posterior.max(axis=1), atol=1e-4)
    np.testing.assert_allclose(table["margin"], ranked[:, -1] - ranked[:, -2], atol=1e-3)
    assert (table["logprob"] <= 0).all() and (table["margin"] >= 0).all()
    # the confidence says something: rows it gets right are on average surer than rows it gets wrong
    right = (table[list(LEVELS)].to_numpy() == test[list(LEVELS)].to_numpy()).all(axis=1)
    assert right.any() and not right.all()
    assert table["logprob"][right].mean() > table["logprob"][~right].mean()


@pytest.mark.parametrize("method", ["topdown", "joint"])
def test_correction_keeps_the_scores_and_flags_the_rows_it_changed(hierarchy, method):
    predictions = pd.DataFrame(
        {
            "indoml_id": [1, 2, 3],
            "supergroup": ["dairy", "dairy", None],
            "group": ["milk", "milk", None],
            "module": ["fresh milk", "fresh milk", None],
            "brand": ["glenmoor", "glenmor", None],
            "text": ["", "", "garbage"],
            "parse_ok": [True, True, False],
            "logprob": [-0.5, -3.0, -40.0],
            "logprob_per_token": [-0.01, -0.05, -0.4],
        }
    )
    out = correct_predictions(predictions, hierarchy, method)
    pd.testing.assert_frame_equal(out[["logprob", "logprob_per_token"]], predictions[["logprob", "logprob_per_token"]])
    assert out["corrected"].tolist() == [False, True, True]
    assert out["corrected_levels"].tolist() == ["", "brand", "supergroup,group,module,brand"]


def test_score_paths_gives_the_generation_log_probability_of_a_path_and_scores_any_other(byt5_dir, hierarchy):
    from prodcat.labelers.seq2seq import score_seq2seq_paths

    rows = pd.DataFrame({"indoml_id": np.arange(len(SOURCES)), "description": SOURCES, "retailer": "r", "price": 1.0})
    params = {"batch_size": 3, "num_beams": 1, "max_new_tokens": 10, "max_source_length": 32}
    constrained, _ = predict_seq2seq(byt5_dir, rows, params, hierarchy=hierarchy, constrained=True)
    # every row against every path, in a shuffled order
    paths = pd.DataFrame([(i, *p) for i in rows["indoml_id"] for p in PATHS], columns=["indoml_id", *LEVELS])
    paths = paths.sample(frac=1.0, random_state=0).reset_index(drop=True)
    scored = score_seq2seq_paths(byt5_dir, rows, paths, params)
    pd.testing.assert_frame_equal(scored[["indoml_id", *LEVELS]], paths)
    own = scored.merge(constrained, on=["indoml_id", *LEVELS], suffixes=("", "_generated"))
    assert len(own) == len(rows)
    np.testing.assert_allclose(own["logprob"], own["logprob_generated"], atol=1e-4)
    assert (own["n_tokens"] == own["n_tokens_generated"]).all()
    assert (scored["logprob"] < 0).all()
    np.testing.assert_allclose(scored["logprob_per_token"] * scored["n_tokens"], scored["logprob"], rtol=1e-9)
    with pytest.raises(Exception, match="indoml_id 99"):
        score_seq2seq_paths(byt5_dir, rows, paths.assign(indoml_id=99), params)


def test_score_paths_with_auto_lengths_reads_the_lengths_the_model_was_trained_with(byt5_dir, tmp_path):
    import json
    import shutil

    from prodcat.labelers.seq2seq import score_seq2seq_paths

    rows = pd.DataFrame({"indoml_id": np.arange(len(SOURCES)), "description": SOURCES, "retailer": "r", "price": 1.0})
    paths = pd.DataFrame([(i, *p) for i in rows["indoml_id"] for p in PATHS], columns=["indoml_id", *LEVELS])
    auto = {"batch_size": 4, "num_beams": 1, "max_new_tokens": "auto", "max_source_length": "auto"}
    with pytest.raises(ValueError, match="max_source_length: auto needs the lengths the model was trained with"):
        score_seq2seq_paths(byt5_dir, rows, paths, auto)
    trained = shutil.copytree(byt5_dir, tmp_path / "trained")
    # a source limit shorter than some descriptions, so that the limit read is the one applied
    (trained / "train_summary.json").write_text(json.dumps({"max_source_length": 8, "max_target_length": 40}))
    numbers = score_seq2seq_paths(byt5_dir, rows, paths, {**auto, "max_new_tokens": 40, "max_source_length": 8})
    pd.testing.assert_frame_equal(score_seq2seq_paths(trained, rows, paths, auto), numbers)
    assert not np.allclose(
        score_seq2seq_paths(byt5_dir, rows, paths, {**auto, "max_new_tokens": 40, "max_source_length": 64})["logprob"],
        numbers["logprob"],
    )


def test_charngram_score_paths_is_its_log_posterior_of_any_path():
    from tests.test_charngram import PARAMS as CHARNGRAM_PARAMS
    from tests.test_charngram import make_rows

    from prodcat.labelers.charngram import train_charngram

    train, test = make_rows(20, seed=1), make_rows(2, seed=2, start_id=10_000)
    hierarchy = Hierarchy.from_frame(train)
    labeler = train_charngram(train, hierarchy, params=CHARNGRAM_PARAMS)
    predicted = labeler.predict(test)
    known = hierarchy.paths[list(LEVELS)]
    paths = pd.concat([known.assign(indoml_id=i) for i in test["indoml_id"]], ignore_index=True)
    paths = pd.concat(
        [
            paths,
            pd.DataFrame(
                [
                    {
                        "indoml_id": int(test["indoml_id"].iloc[0]),
                        "supergroup": "no",
                        "group": "such",
                        "module": "path",
                        "brand": "x",
                    }
                ]
            ),
        ],
        ignore_index=True,
    )
    scored = labeler.score_paths(test, paths)
    assert np.isneginf(scored["logprob"].iloc[-1])
    finite = scored.iloc[:-1]
    # a distribution over the known paths per row, whose best is the predicted path with its logprob
    np.testing.assert_allclose(np.exp(finite["logprob"]).groupby(finite["indoml_id"]).sum(), 1.0, rtol=1e-5)
    best = finite.loc[finite.groupby("indoml_id")["logprob"].idxmax()].set_index("indoml_id")
    mine = predicted.set_index("indoml_id")
    assert (best[list(LEVELS)] == mine.loc[best.index, list(LEVELS)]).all().all()
    np.testing.assert_allclose(best["logprob"], mine.loc[best.index, "logprob"], atol=1e-4)

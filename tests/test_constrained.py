"""Hierarchy-constrained decoding: the trie admits exactly the known paths, for byte and
SentencePiece tokenizers, and constrained generation on untrained models only emits known paths."""

import random

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, ByT5Tokenizer, LogitsProcessorList

from prodcat import LEVELS
from prodcat.data.hierarchy import Hierarchy
from prodcat.data.target_text import format_target, parse_target
from prodcat.labelers.constrained import (
    PathTrie,
    constrained_logits_processor,
    max_target_tokens,
    prefix_allowed_tokens_fn,
)
from prodcat.labelers.mmt5 import MultimodalT5ForConditionalGeneration, encode_side_features
from prodcat.standins.tiny_seq2seq import build_tiny_byt5, build_tiny_flant5

DIMS = {"d_model": 32, "d_ff": 64, "num_layers": 1, "num_heads": 2, "dropout_rate": 0.0}
SYLLABLES = ["ba", "ko", "mi", "ru", "te", "san", "lo", "pe", "di", "& co", "2", "x"]
SEEDS = (0, 1, 2)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def random_label(rng: random.Random) -> str:
    words = ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3))) for _ in range(rng.randint(1, 3))]
    return " ".join(words).strip()


def random_hierarchy(seed: int) -> Hierarchy:
    """2–3 supergroups, 1–3 groups each, 1–3 modules each, 1–4 brands each; brands are drawn
    from a shared pool (a brand under several modules), counts are random."""
    rng = random.Random(seed)
    brand_pool = sorted({random_label(rng) for _ in range(12)})
    records = []
    for sg in {random_label(rng) for _ in range(rng.randint(2, 3))}:
        for g in {random_label(rng) for _ in range(rng.randint(1, 3))}:
            for m in {random_label(rng) for _ in range(rng.randint(1, 3))}:
                for b in rng.sample(brand_pool, rng.randint(1, 4)):
                    records.append((sg, g, m, b, rng.randint(1, 50)))
    return Hierarchy(pd.DataFrame(sorted(records), columns=[*LEVELS, "count"]))


def path_list(hierarchy: Hierarchy) -> list[tuple]:
    return list(hierarchy.paths[list(LEVELS)].itertuples(index=False, name=None))


def non_paths(hierarchy: Hierarchy, rng: random.Random, per_kind: int = 8) -> dict[str, list[str]]:
    """Target texts of things that are not paths, `per_kind` of each kind: a valid supergroup +
    group with a module (and brand) of another group, a path missing its brand, a path cut inside
    its brand, a random mix of labels."""
    paths, known = path_list(hierarchy), hierarchy.path_set()
    kinds = {"foreign module": [], "no brand": [], "cut brand": [], "mix": []}
    for sg, g, m, b in paths:
        foreign = [
            (m2, b2) for sg2, g2, m2, b2 in paths if (sg2, g2) != (sg, g) and m2 not in hierarchy.children((sg, g))
        ]
        if foreign:
            kinds["foreign module"].append(format_target((sg, g, *rng.choice(foreign))))
        kinds["no brand"].append(" | ".join((sg, g, m)))
        cut = b[: rng.randint(1, len(b) - 1)].strip() if len(b) > 1 else ""
        if cut and (sg, g, m, cut) not in known:
            kinds["cut brand"].append(format_target((sg, g, m, cut)))
        mix = tuple(rng.choice(hierarchy.labels(level)) for level in LEVELS)
        if mix not in known:
            kinds["mix"].append(format_target(mix))
    return {kind: rng.sample(texts, min(per_kind, len(texts))) for kind, texts in kinds.items()}


@pytest.fixture(scope="module")
def byte_tokenizer():
    return ByT5Tokenizer()


@pytest.fixture(scope="module")
def flant5_dir(tmp_path_factory):
    texts = [format_target(p) for seed in SEEDS for p in path_list(random_hierarchy(seed))]
    return build_tiny_flant5(tmp_path_factory.mktemp("flant5"), texts, DIMS, vocab_size=150)


@pytest.fixture(scope="module")
def byt5_dir(tmp_path_factory):
    return build_tiny_byt5(tmp_path_factory.mktemp("byt5"), DIMS)


@pytest.fixture(scope="module", params=["byte", "sentencepiece"])
def tokenizer(request, byte_tokenizer, flant5_dir):
    return byte_tokenizer if request.param == "byte" else AutoTokenizer.from_pretrained(flant5_dir)


# ---- the trie -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_trie_admits_every_path_and_ends_it_with_eos(tokenizer, seed):
    hierarchy = random_hierarchy(seed)
    trie = PathTrie.from_hierarchy(hierarchy, tokenizer)
    sequences = tokenizer(text_target=[format_target(p) for p in path_list(hierarchy)])["input_ids"]
    assert max_target_tokens(trie) == max(len(s) for s in sequences)
    for path, seq in zip(path_list(hierarchy), sequences):  # every step on the way: the next test
        assert seq[-1] == tokenizer.eos_token_id
        assert trie.allowed_next(seq) == [tokenizer.pad_token_id]  # finished: pad only
        assert trie.allowed_next(seq + [tokenizer.pad_token_id] * 2) == [tokenizer.pad_token_id]
        assert trie.path_of(seq + [tokenizer.pad_token_id]) == path


@pytest.mark.parametrize("seed", SEEDS)
def test_allowed_next_is_exactly_the_continuations_of_known_targets(tokenizer, seed):
    hierarchy = random_hierarchy(seed)
    trie = PathTrie.from_hierarchy(hierarchy, tokenizer)
    sequences = tokenizer(text_target=[format_target(p) for p in path_list(hierarchy)])["input_ids"]
    prefixes = {tuple(s[:k]) for s in sequences for k in range(len(s))}
    for prefix in prefixes:
        expected = sorted({s[len(prefix)] for s in sequences if tuple(s[: len(prefix)]) == prefix})
        assert trie.allowed_next(list(prefix)) == expected


@pytest.mark.parametrize("seed", SEEDS)
def test_non_paths_are_rejected_at_the_first_deviating_token(tokenizer, seed):
    hierarchy = random_hierarchy(seed)
    trie = PathTrie.from_hierarchy(hierarchy, tokenizer)
    sequences = tokenizer(text_target=[format_target(p) for p in path_list(hierarchy)])["input_ids"]
    kinds = non_paths(hierarchy, random.Random(seed))
    assert all(kinds.values()), {kind: len(texts) for kind, texts in kinds.items()}
    for fake in tokenizer(text_target=[text for texts in kinds.values() for text in texts])["input_ids"]:
        # the first deviation: the longest prefix shared with any known target
        shared = max(
            next((k for k, (a, b) in enumerate(zip(fake, s)) if a != b), min(len(fake), len(s))) for s in sequences
        )
        assert shared < len(fake)
        for k in range(shared):
            assert fake[k] in trie.allowed_next(fake[:k])
        assert fake[shared] not in trie.allowed_next(fake[:shared])
        # off the trie: only EOS, unless the deviation was an early EOS (then finished: pad)
        ended = fake[shared] == tokenizer.eos_token_id
        assert trie.allowed_next(fake[: shared + 1]) == [tokenizer.pad_token_id if ended else tokenizer.eos_token_id]
        assert trie.path_of(fake) is None


def test_targets_must_end_with_eos(byte_tokenizer):
    with pytest.raises(ValueError, match="EOS"):
        PathTrie([[5, 6]], [("a", "b", "c", "d")], eos_token_id=1, pad_token_id=0)
    with pytest.raises(ValueError, match="EOS"):
        PathTrie([[5, 1, 6, 1]], [("a", "b", "c", "d")], eos_token_id=1, pad_token_id=0)


def test_paths_that_tokenize_alike_map_to_the_more_frequent_one():
    trie = PathTrie([[5, 1], [5, 1], [6, 1]], [("a",) * 4, ("b",) * 4, ("c",) * 4], eos_token_id=1, pad_token_id=0)
    assert trie.n_ambiguous == 1
    assert trie.path_of([5, 1]) == ("a",) * 4 and trie.path_of([6, 1]) == ("c",) * 4
    assert trie.path_of([5]) is None and trie.path_of([7, 1]) is None


# ---- the generate adapters ------------------------------------------------------------------


def test_adapters_agree_with_allowed_next_while_beams_reorder(tokenizer):
    """Random decoding histories (on and off the trie, finished and padded), rows shuffled at every
    step as beam search does: the incremental states of both adapters (the processor's vectorised
    one, the per-row one) always match a walk from the root."""
    hierarchy = random_hierarchy(0)
    trie = PathTrie.from_hierarchy(hierarchy, tokenizer)
    vocab = len(tokenizer)
    rng = np.random.default_rng(0)
    processor, allowed = constrained_logits_processor(trie), prefix_allowed_tokens_fn(trie)
    rows = 12
    decoded = np.zeros((rows, 1), dtype=np.int64)  # the decoder start token
    for _ in range(max_target_tokens(trie) + 3):
        scores = torch.from_numpy(rng.normal(size=(rows, vocab)).astype(np.float32))
        out = processor(torch.from_numpy(decoded), scores)
        for row in range(rows):
            finite = torch.isfinite(out[row]).nonzero().flatten().tolist()
            assert finite == trie.allowed_next(decoded[row, 1:].tolist()) == allowed(0, torch.from_numpy(decoded[row]))
            assert torch.equal(out[row, finite], scores[row, finite])
        # mostly follow the constraint, sometimes leave it (1 in 10), then reorder like beams
        choices = [
            rng.choice(f) if rng.random() > 0.1 else int(rng.integers(vocab))
            for f in (torch.isfinite(out[r]).nonzero().flatten().numpy() for r in range(rows))
        ]
        decoded = np.concatenate([decoded, np.array(choices)[:, None]], axis=1)[rng.permutation(rows)]
        decoded[rng.integers(rows)] = decoded[rng.integers(rows)]  # two beams from one parent


def test_logits_processor_forces_the_constraint_when_every_allowed_token_is_minus_inf(byte_tokenizer):
    trie = PathTrie.from_hierarchy(random_hierarchy(0), byte_tokenizer)
    processor = constrained_logits_processor(trie)
    out = processor(torch.zeros((1, 1), dtype=torch.long), torch.full((1, 384), -float("inf")))
    assert torch.isfinite(out[0]).nonzero().flatten().tolist() == trie.allowed_next([])
    with pytest.raises(ValueError, match="scores"):
        processor(torch.zeros((1, 1), dtype=torch.long), torch.zeros((1, 50)))


def test_prefix_allowed_tokens_fn_strips_the_start_token_and_matches_allowed_next(byte_tokenizer):
    hierarchy = random_hierarchy(1)
    trie = PathTrie.from_hierarchy(hierarchy, byte_tokenizer)
    allowed = prefix_allowed_tokens_fn(trie)
    seq = byte_tokenizer(text_target=format_target(path_list(hierarchy)[0]))["input_ids"]
    for k in range(len(seq) + 2):
        prefix = (seq + [0, 0])[:k]
        assert allowed(0, torch.tensor([0, *prefix])) == trie.allowed_next(prefix)


# ---- constrained generation on untrained models ---------------------------------------------

SOURCES = ["cad 5 pk creme egg 197 g", "milk 1l", "x", "dr browns bottle 250ml", "zzz 9", "a much longer line 12 pk"]


def generate_texts(model, tokenizer, trie, num_beams, adapter, **side):
    batch = tokenizer(SOURCES, padding=True, return_tensors="pt")
    constraint = (
        dict(logits_processor=LogitsProcessorList([constrained_logits_processor(trie)]))
        if adapter == "processor"
        else dict(prefix_allowed_tokens_fn=prefix_allowed_tokens_fn(trie))
    )
    out = model.generate(
        **batch, **side, **constraint, num_beams=num_beams, do_sample=False, max_new_tokens=max_target_tokens(trie)
    )
    return out, tokenizer.batch_decode(out, skip_special_tokens=True)


def assert_only_known_paths(out, texts, trie, hierarchy):
    known = hierarchy.path_set()
    for row, text in zip(out.tolist(), texts):
        assert parse_target(text) in known, text
        assert trie.path_of(row[1:]) == parse_target(text)


@pytest.mark.parametrize("num_beams", [1, 3])
@pytest.mark.parametrize("adapter", ["processor", "prefix_fn"])
def test_untrained_byt5_generates_only_known_paths(byt5_dir, num_beams, adapter):
    hierarchy = random_hierarchy(2)
    model, tokenizer = AutoModelForSeq2SeqLM.from_pretrained(byt5_dir).eval(), AutoTokenizer.from_pretrained(byt5_dir)
    trie = PathTrie.from_hierarchy(hierarchy, tokenizer)
    with torch.no_grad():
        out, texts = generate_texts(model, tokenizer, trie, num_beams, adapter)
        assert_only_known_paths(out, texts, trie, hierarchy)
        free = model.generate(
            **tokenizer(SOURCES, padding=True, return_tensors="pt"),
            num_beams=num_beams,
            max_new_tokens=max_target_tokens(trie),
        )
    assert not any(
        parse_target(t) in hierarchy.path_set() for t in tokenizer.batch_decode(free, skip_special_tokens=True)
    )


@pytest.mark.parametrize("num_beams", [1, 3])
def test_untrained_flant5_generates_only_known_paths(flant5_dir, num_beams):
    hierarchy = random_hierarchy(0)
    model, tokenizer = (
        AutoModelForSeq2SeqLM.from_pretrained(flant5_dir).eval(),
        AutoTokenizer.from_pretrained(flant5_dir),
    )
    trie = PathTrie.from_hierarchy(hierarchy, tokenizer)
    with torch.no_grad():
        out, texts = generate_texts(model, tokenizer, trie, num_beams, "processor")
    assert_only_known_paths(out, texts, trie, hierarchy)


@pytest.mark.parametrize("num_beams", [1, 3])
def test_untrained_multimodal_byt5_generates_only_known_paths(byt5_dir, num_beams):
    hierarchy = random_hierarchy(1)
    model = MultimodalT5ForConditionalGeneration.from_text_model(str(byt5_dir), ["north", "south"], 1.0, 100.0).eval()
    tokenizer = AutoTokenizer.from_pretrained(byt5_dir)
    trie = PathTrie.from_hierarchy(hierarchy, tokenizer)
    retailer_ids, prices = encode_side_features(
        model.config, ["north", None, "south", "x", "north", "south"], [3.0, None, 250.0, 1.0, 7.5, None]
    )
    with torch.no_grad():
        out, texts = generate_texts(
            model, tokenizer, trie, num_beams, "processor", retailer_ids=retailer_ids, prices=prices
        )
    assert_only_known_paths(out, texts, trie, hierarchy)


def test_every_returned_beam_is_a_known_path(byt5_dir):
    hierarchy = random_hierarchy(0)
    model, tokenizer = AutoModelForSeq2SeqLM.from_pretrained(byt5_dir).eval(), AutoTokenizer.from_pretrained(byt5_dir)
    trie = PathTrie.from_hierarchy(hierarchy, tokenizer)
    with torch.no_grad():
        out = model.generate(
            **tokenizer(SOURCES[:3], padding=True, return_tensors="pt"),
            num_beams=3,
            num_return_sequences=3,
            max_new_tokens=max_target_tokens(trie),
            logits_processor=LogitsProcessorList([constrained_logits_processor(trie)]),
        )
    texts = tokenizer.batch_decode(out, skip_special_tokens=True)
    assert_only_known_paths(out, texts, trie, hierarchy)
    assert all(len(set(texts[i : i + 3])) == 3 for i in range(0, 9, 3))  # three different paths per row

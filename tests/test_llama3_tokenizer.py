"""The real Llama-3.1 tokenizer built offline (llama-models' BPE file + TikTokenConverter)."""

import pytest
from transformers import AutoTokenizer

from prodcat.standins.llama3_tokenizer import build_llama31_tokenizer, llama31_special_tokens, stop_token_ids


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    folder = build_llama31_tokenizer(tmp_path_factory.mktemp("llama31"))
    return AutoTokenizer.from_pretrained(folder)  # as a saved folder loads


def test_special_tokens_have_the_ids_of_llama31(tokenizer):
    expected = {
        "<|begin_of_text|>": 128000,
        "<|end_of_text|>": 128001,
        "<|reserved_special_token_0|>": 128002,
        "<|reserved_special_token_1|>": 128003,
        "<|finetune_right_pad_id|>": 128004,
        "<|reserved_special_token_2|>": 128005,
        "<|start_header_id|>": 128006,
        "<|end_header_id|>": 128007,
        "<|eom_id|>": 128008,
        "<|eot_id|>": 128009,
        "<|python_tag|>": 128010,
        "<|reserved_special_token_3|>": 128011,
        "<|reserved_special_token_247|>": 128255,
    }
    assert {token: tokenizer.convert_tokens_to_ids(token) for token in expected} == expected
    assert len(tokenizer) == 128_256 and len(llama31_special_tokens()) == 256
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id) == (128004, 128009, 128000)
    assert stop_token_ids(tokenizer) == [128001, 128008, 128009]


def test_text_round_trips_through_the_real_ranks(tokenizer):
    text = "INDOMIE GRG SPCL 85G 3x Rp12.500 - minyak goreng 2L\n\tsusu UHT"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert max(ids) < 128_000 and tokenizer.decode(ids) == text
    # known ids of the Llama-3 BPE: "Hello" 9906, " world" 1917; plain encoding prepends <|begin_of_text|>
    assert tokenizer("Hello world")["input_ids"] == [128000, 9906, 1917]


def test_chat_template_renders_llama31_headers(tokenizer):
    chat = [{"role": "system", "content": "Name it."}, {"role": "user", "content": "INDOMIE GRG"}]
    text = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    assert text == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nName it.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nINDOMIE GRG<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids[:5] == [128000, 128006, 9125, 128007, 271] and ids[-4:] == [128006, 78191, 128007, 271]

"""Name synthesis end to end on a tiny random Llama: teacher, LoRA namer, merged model, inference."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from prodcat import LEVELS
from prodcat.names import generation, lora, quality
from prodcat.names.prompts import ANSWER_STATUSES, student_messages
from prodcat.standins.tiny_llama import build_tiny_llama

# Short prompts keep the sequences (and so the CPU time) small; the default templates are tested in
# test_prompts.py.
TEMPLATES = {
    "system": "Name the product.",
    "teacher_user": "{description} | {price} | {supergroup} | {group} | {module} | {brand}",
    "student_user": "{description} | {price}",
}
PAIRS = [
    ("cad 5 pk creme egg 197 g", "Cadbury Creme Egg 5 Pack 197 g"),
    ("hnz bkd beans 415g", "Heinz Baked Beans 415 g"),
    ("tsco wht brd 800g", "Tesco White Bread 800 g"),
    ("cc zero 2l btl", "Coca-Cola Zero 2 L Bottle"),
    ("walk crsp salt 6pk", "Walkers Crisps Salted 6 Pack"),
    ("pg tips 80 bags", "PG Tips 80 Tea Bags"),
]
GEN = {"batch_size": 8, "max_new_tokens": 8}
FAST_TRAIN = {
    "r": 8,
    "alpha": 16,
    "learning_rate": 1e-2,
    "per_device_train_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "gradient_checkpointing": False,
    "logging_steps": 1,
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def rows():
    n = 24
    return pd.DataFrame(
        {
            "indoml_id": np.arange(100, 100 + n, dtype="int64"),
            "description": [PAIRS[i % 6][0] for i in range(n)],
            "retailer": "r1",
            "price": [np.nan if i % 4 == 0 else 1.0 + i for i in range(n)],
            "supergroup": "food",
            "group": "grocery",
            "module": "misc",
            "brand": [PAIRS[i % 6][1].split()[0].lower() for i in range(n)],
            "name": [PAIRS[i % 6][1] for i in range(n)],
        }
    )


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    texts = [d for pair in PAIRS for d in pair] + list(TEMPLATES.values())
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "llama", texts)


def _safetensors_dtypes(model_dir):
    from safetensors import safe_open

    dtypes, names = set(), []
    for path in sorted(model_dir.glob("*.safetensors")):
        with safe_open(path, framework="pt") as handle:
            for name in handle.keys():
                names.append(name)
                dtypes.add(handle.get_slice(name).get_dtype())
    return dtypes, names


def test_tiny_llama_loads_like_the_real_model(base):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base)
    tokenizer = AutoTokenizer.from_pretrained(base)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert tokenizer.eos_token == "<|eot_id|>" and tokenizer.bos_token == "<|begin_of_text|>"
    assert tokenizer.convert_tokens_to_ids("<|eot_id|>") in model.generation_config.eos_token_id
    assert _safetensors_dtypes(base)[0] == {"BF16"}


def test_batched_generation_matches_one_at_a_time(base, rows):
    model, tokenizer = generation.load_causal_lm(base)
    assert model.dtype == torch.float32 and tokenizer.padding_side == "left"
    chats = [student_messages(row, TEMPLATES) for _, row in rows.head(10).iterrows()]
    # Prompts of different lengths, so batches are padded and reordered.
    assert len({len(str(c)) for c in chats}) > 1
    batched = generation.generate_names(model, tokenizer, chats, batch_size=4, max_new_tokens=6)
    single = generation.generate_names(model, tokenizer, chats, batch_size=1, max_new_tokens=6)
    assert batched == single
    assert len(batched) == 10 and all(isinstance(text, str) for text in batched)


def test_synthesize_names_keeps_every_row(base, rows):
    names = generation.generate_teacher_names(base, rows.drop(columns="name"), TEMPLATES, GEN)
    assert list(names.columns) == ["indoml_id", "name", "status", "answer", "description", "price", *LEVELS]
    assert names["indoml_id"].tolist() == rows["indoml_id"].tolist()
    assert names["status"].isin(ANSWER_STATUSES).all()
    assert names["name"].str.strip().ne("").all()
    fallback = names["status"] != "ok"
    assert (names.loc[fallback, "name"] == names.loc[fallback, "description"]).all()
    counts = generation.status_counts(names)
    assert sum(counts.values()) == len(rows)
    with pytest.raises(ValueError, match="unknown parameter"):
        generation.generate_teacher_names(base, rows, TEMPLATES, {"batch_sise": 4})


def test_answers_cut_off_by_max_new_tokens_lose_their_unfinished_line():
    rows = pd.DataFrame({"indoml_id": [1, 2, 3], "description": ["nm one", "nm two", "nm three"]})
    answers = [("Name One\n\nThis name expands the abbrev", True), ("Name Tw", True), ("Name Three", False)]
    names = generation._named(rows, answers)
    assert names["name"].tolist() == ["Name One", "nm two", "Name Three"]
    assert names["status"].tolist() == ["ok", "runaway", "ok"]


def test_train_namer_learns_merges_and_infers(base, rows, tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "namer"
    params = {**FAST_TRAIN, "max_steps": 12, "save_steps": 100, "gradient_checkpointing": True}
    metrics = lora.train_lora_namer(base, rows, out, params, templates=TEMPLATES)

    # Every row is trained on, none truncated: max_length is the longest sequence.
    assert metrics["train_rows"] == len(rows)
    assert metrics["max_length"] == metrics["longest_sequence"]
    # Completion-only loss on a repeated tiny set goes down.
    losses = [entry["loss"] for entry in metrics["log_history"] if "loss" in entry]
    assert len(losses) == 12
    assert np.mean(losses[-3:]) < losses[0] - 0.1
    assert json.loads((out / "trainer_log.json").read_text())["global_step"] == 12
    assert (out / "adapter" / "adapter_config.json").exists()

    merged_dir = out / "merged"
    dtypes, tensor_names = _safetensors_dtypes(merged_dir)
    assert dtypes == {"BF16"}
    assert not any("lora" in name for name in tensor_names)
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    assert type(merged).__name__ == "LlamaForCausalLM"
    assert not any("lora" in name for name, _ in merged.named_modules())
    # The merge changed the weights the adapter targets.
    original = AutoModelForCausalLM.from_pretrained(base)
    q_merged = merged.model.layers[0].self_attn.q_proj.weight
    assert not torch.equal(q_merged, original.model.layers[0].self_attn.q_proj.weight)

    inferred = generation.generate_student_names(
        merged_dir, rows[["indoml_id", "description", "price"]], TEMPLATES, GEN
    )
    assert list(inferred.columns) == ["indoml_id", "name", "status", "answer"]
    assert inferred["indoml_id"].tolist() == rows["indoml_id"].tolist()
    assert inferred["name"].str.strip().ne("").all()


def test_max_length_below_the_longest_sequence_is_refused(base, rows, tmp_path):
    with pytest.raises(ValueError, match="shorter than the longest training sequence"):
        lora.train_lora_namer(
            base, rows, tmp_path / "n", {**FAST_TRAIN, "max_steps": 1, "max_length": 8}, templates=TEMPLATES
        )


def test_training_resumes_from_the_last_checkpoint(base, rows, tmp_path):
    out, checkpoints = tmp_path / "namer", tmp_path / "ckpt"
    first = lora.train_lora_namer(
        base,
        rows,
        out,
        {**FAST_TRAIN, "max_steps": 2, "save_steps": 1},
        templates=TEMPLATES,
        checkpoint_dir=checkpoints,
    )
    assert first["resumed_from"] is None and first["global_step"] == 2
    assert (checkpoints / "checkpoint-2" / "trainer_state.json").exists()

    # A rerun asking for more steps (as after a kill) continues from step 2 instead of starting over.
    second = lora.train_lora_namer(
        base,
        rows,
        out,
        {**FAST_TRAIN, "max_steps": 4, "save_steps": 1},
        templates=TEMPLATES,
        checkpoint_dir=checkpoints,
    )
    assert second["resumed_from"] == str(checkpoints / "checkpoint-2")
    assert second["steps_this_run"] == 2 and second["global_step"] == 4
    steps = [entry["step"] for entry in second["log_history"] if "loss" in entry]
    assert steps == [1, 2, 3, 4]
    first_losses = [entry["loss"] for entry in first["log_history"] if "loss" in entry]
    assert [entry["loss"] for entry in second["log_history"] if "loss" in entry][:2] == first_losses


def test_8bit_loading_runs_on_cpu(base, rows):
    from bitsandbytes.nn import Linear8bitLt

    model, tokenizer = generation.load_causal_lm(base, load_in_8bit=True, device="cpu")
    assert any(isinstance(module, Linear8bitLt) for module in model.modules())
    chats = [student_messages(row, TEMPLATES) for _, row in rows.head(3).iterrows()]
    texts = generation.generate_names(model, tokenizer, chats, batch_size=3, max_new_tokens=4)
    assert len(texts) == 3


def test_8bit_base_trains_and_merges_unquantized(base, rows, tmp_path):
    metrics = lora.train_lora_namer(
        base, rows, tmp_path / "n", {**FAST_TRAIN, "max_steps": 2, "load_in_8bit": True}, templates=TEMPLATES
    )
    assert metrics["global_step"] == 2
    assert _safetensors_dtypes(tmp_path / "n" / "merged")[0] == {"BF16"}


def test_chrf():
    assert quality.chrf(["Cadbury Creme Egg"], ["Cadbury Creme Egg"]) == pytest.approx(100.0)
    assert quality.chrf(["xyz"], ["abc"]) == 0.0
    # "ab" vs "abc": orders 1 and 2 count (P=1, R=2/3 and P=1, R=1/2); averaged P=1, R=7/12;
    # F2 = 5*P*R / (4P + R) = 35/55.
    assert quality.chrf(["ab"], ["abc"]) == pytest.approx(100 * 35 / 55)
    # Whitespace is ignored, and statistics are pooled over the corpus.
    assert quality.chrf(["a b"], ["ab c"]) == pytest.approx(100 * 35 / 55)
    assert quality.chrf(["ab", "xyz"], ["abc", "xyz"]) > quality.chrf(["ab", "xyy"], ["abc", "xyz"])
    with pytest.raises(ValueError):
        quality.chrf(["a"], [])


def test_tiny_tokenizer_trained_on_whole_prompts_encodes_prose_like_llama3(rows):
    """The stand-in tokenizer is trained on every row's prompts, so the template's prose is
    encoded at a real Llama-3 tokenizer's density (≥ 3 characters per token), not letter by letter."""
    from prodcat.names.prompts import DEFAULT_TEMPLATES
    from prodcat.standins.tiny_llama import build_tiny_tokenizer
    from prodcat.workflow import tokenizer_corpus

    corpus = tokenizer_corpus(rows, DEFAULT_TEMPLATES)
    row = rows.iloc[1].to_dict()
    prompt = student_messages(row, DEFAULT_TEMPLATES)
    assert all(message["content"] in corpus for message in prompt)
    assert rows["description"].iloc[0] in corpus

    dense = build_tiny_tokenizer(corpus, vocab_size=600)
    sparse = build_tiny_tokenizer(tokenizer_corpus(rows) + list(DEFAULT_TEMPLATES.values()), vocab_size=600)
    text = prompt[0]["content"] + prompt[1]["content"]
    n_dense = len(dense(text, add_special_tokens=False)["input_ids"])
    n_sparse = len(sparse(text, add_special_tokens=False)["input_ids"])
    assert len(text) / n_dense >= 3.0
    assert n_dense < n_sparse

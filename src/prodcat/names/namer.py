"""Name synthesis with a chat LLM: teacher names, the LoRA namer (student), and its inference.

Steps 2-4 of the method: Llama-3.1-8B-Instruct, shown the four labels, writes a full product name
for each training row (teacher); a LoRA fine-tune of the same model learns to write that name from
the description and price alone (student); merged in 16-bit, it writes "inferred names" for the
validation and test rows, which a labeler then reads. Everything here also runs on the tiny
stand-in from `tiny_llama`, on a CPU.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from prodcat import LEVELS
from prodcat.data.io import write_json
from prodcat.names.prompts import ANSWER_STATUSES, clean_answer, student_messages, teacher_messages
from prodcat.runtime.checkpoints import run_signature
from prodcat.runtime.params import merge_params

log = logging.getLogger(__name__)

DEFAULT_GEN_PARAMS: dict = {"batch_size": 16, "max_new_tokens": 48, "num_beams": 1, "load_in_8bit": False}

# The PRMAS setup (their code: r=16, alpha=16, dropout 0, rsLoRA on all projections; AdamW, lr 3e-4,
# linear schedule, gradient accumulation and checkpointing, one epoch). 8-bit base is opt-in here
# because bitsandbytes on a CPU is slow; configs/paper.yaml turns it on.
DEFAULT_TRAIN_PARAMS: dict = {
    "r": 16,
    "alpha": 16,
    "dropout": 0.0,
    "use_rslora": True,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "load_in_8bit": False,
    "learning_rate": 3e-4,
    "lr_scheduler_type": "linear",
    "warmup_steps": 0,
    "weight_decay": 0.0,
    "per_device_train_batch_size": 8,
    "gradient_accumulation_steps": 4,
    "gradient_checkpointing": True,
    "num_train_epochs": 1,
    "max_steps": -1,
    "max_length": None,  # None: the longest training sequence, so that nothing is truncated or dropped
    "logging_steps": 10,
    "save_steps": 200,
    "save_total_limit": 2,
    "seed": 42,
}
GEN_PARAMS, TRAIN_PARAMS = "parameter(s) of the namer's generation", "parameter(s) of the namer's training"
# Parameters that may change between a run and its resumption without invalidating its checkpoints.
RESUMABLE_CHANGES = ("num_train_epochs", "max_steps", "logging_steps", "save_steps", "save_total_limit")


# ---- loading and generation ---------------------------------------------------------------
def load_causal_lm(path, *, load_in_8bit: bool = False, device: str | None = None, dtype=None):
    """(model, tokenizer) from a local directory, ready for generation.

    CUDA in bf16 when there is a GPU, else the CPU in fp32; `load_in_8bit` quantizes the linear
    layers with bitsandbytes (LLM.int8, which also runs on a CPU with bitsandbytes >= 0.45; the
    remaining weights are then fp16, the dtype its int8 matmul computes in). The tokenizer pads on
    the left, as batched decoder-only generation needs. `path` is a folder or a hub id.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    from prodcat.runtime.device import pick_device

    # a given device keeps its dtype choice: cuda as pick_device decides, the CPU fp32
    picked, picked_dtype = pick_device(prefer_cuda=device is None or device.startswith("cuda"))
    device = device or picked
    if dtype is None:
        dtype = torch.float16 if load_in_8bit else picked_dtype
    # Straight to the device in the target dtype (device_map): no full host copy first, no
    # fp32 intermediate; for the 8B model that is the difference between 16 and 32+ GB.
    quantization = BitsAndBytesConfig(load_in_8bit=True) if load_in_8bit else None
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=dtype, quantization_config=quantization, device_map={"": device}
    )
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        # Llama-3.1 ships no pad token but reserves one for fine-tuning.
        reserved = "<|finetune_right_pad_id|>"
        tokenizer.pad_token = reserved if reserved in tokenizer.get_vocab() else tokenizer.eos_token
    log.info(
        "loaded %s on %s, %s%s",
        path,
        device,
        str(dtype).removeprefix("torch."),
        ", 8-bit linear layers" if load_in_8bit else "",
    )
    return model, tokenizer


class Chats(Sequence):
    """The chat of each row, built when asked for, so a split's chats are never all held at once.

    `build(row, templates)` is `teacher_messages` or `student_messages`; a row is a dict of the
    fields the prompt reads, taken from column arrays (no per-row pandas access).
    """

    def __init__(self, rows: pd.DataFrame, build, templates: dict):
        self._columns = {column: rows[column].to_numpy() for column in rows.columns}
        self._length = len(rows)
        self._build = build
        self._templates = templates

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(self._length))]
        return self._build({column: values[i] for column, values in self._columns.items()}, self._templates)


def _prompt_ids(tokenizer, messages_list) -> list[list[int]]:
    # The chat template writes <|begin_of_text|> itself, so no special tokens are added on top.
    texts = [tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in messages_list]
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def _stop_ids(model, tokenizer) -> list[int]:
    configured = model.generation_config.eos_token_id
    ids = [configured] if isinstance(configured, int) else list(configured or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


# Prompts are tokenised this many at a time to measure them: memory stays flat however many rows.
LENGTH_CHUNK = 2048


def prompt_lengths(tokenizer, chats: Sequence, chunk_size: int | None = None) -> np.ndarray:
    """The token count of every chat's prompt, tokenised chunk by chunk (only the counts are kept)."""
    chunk_size = chunk_size or LENGTH_CHUNK
    lengths = np.zeros(len(chats), dtype=np.int32)
    for start in range(0, len(chats), chunk_size):
        ids = _prompt_ids(tokenizer, [chats[i] for i in range(start, min(start + chunk_size, len(chats)))])
        lengths[start : start + len(ids)] = [len(x) for x in ids]
    return lengths


def shard_batches(lengths, batch_size: int, shard: int = 0, shards: int = 1) -> list[np.ndarray]:
    """The batches (row positions) that shard `shard` of `shards` generates, in the order it runs them.

    All rows are sorted by prompt length, longest first (ties by position), so that a batch holds
    similar lengths and little padding, and cut into batches of `batch_size`; batch k belongs to
    shard k mod `shards`. The batches are the same whatever the shard count, and greedy decoding of
    a batch does not depend on what ran before it, so every row gets the same name from 1 shard or
    from 8. Round robin gives every shard the same mix of long and short prompts, and its first
    batch is among the longest, so a batch too large for the card fails at once.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if shards < 1 or not 0 <= shard < shards:
        raise ValueError(f"shard {shard} of {shards}: need 0 <= shard < shards")
    lengths = np.asarray(lengths)
    order = np.lexsort((np.arange(len(lengths)), -lengths.astype(np.int64)))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)][shard::shards]


def iter_generated(
    model,
    tokenizer,
    chats: Sequence,
    *,
    batch_size: int,
    max_new_tokens: int,
    num_beams: int = 1,
    shard: int = 0,
    shards: int = 1,
):
    """Yields (row positions, generated token ids) per batch of one shard (see `shard_batches`).

    Greedy (or beam) search, deterministic; each token list excludes the prompt and is cut at the
    first stop token. A batch's prompts are built and tokenised only when it runs.
    """
    import torch
    from transformers import GenerationConfig

    from prodcat.runtime.progress import log_progress

    batches = shard_batches(prompt_lengths(tokenizer, chats), batch_size, shard, shards)
    stop = _stop_ids(model, tokenizer)
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        num_beams=num_beams,
        do_sample=False,
        # Explicit neutral values, so that the sampling settings of the checkpoint's own generation
        # config (Llama-3.1: temperature 0.6, top_p 0.9) are not merged in.
        temperature=1.0,
        top_p=1.0,
        eos_token_id=stop,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    with torch.inference_mode():
        for batch in log_progress(batches, f"generate (shard {shard + 1}/{shards})"):
            prompts = _prompt_ids(tokenizer, [chats[i] for i in batch])
            encoded = tokenizer.pad({"input_ids": prompts}, return_tensors="pt").to(device)
            output = model.generate(**encoded, generation_config=config)
            new_tokens = output[:, encoded["input_ids"].shape[1] :].tolist()
            yield (
                batch,
                [tokens[: next((k for k, t in enumerate(tokens) if t in stop), len(tokens))] for tokens in new_tokens],
            )


def generate_token_ids(
    model, tokenizer, messages_list, *, batch_size: int, max_new_tokens: int, num_beams: int = 1
) -> list[list[int]]:
    """The generated token ids for each chat (prompt excluded, cut at the first stop token), in the
    input order; batched by prompt length as `iter_generated` does."""
    results: list[list[int] | None] = [None] * len(messages_list)
    for batch, ids in iter_generated(
        model, tokenizer, messages_list, batch_size=batch_size, max_new_tokens=max_new_tokens, num_beams=num_beams
    ):
        for i, tokens in zip(batch, ids):
            results[i] = tokens
    return results


def generate_names(
    model, tokenizer, messages_list, *, batch_size: int, max_new_tokens: int, num_beams: int = 1
) -> list[str]:
    """The raw answer text for each chat, in input order (batched, left-padded, greedy by default)."""
    ids = generate_token_ids(
        model, tokenizer, messages_list, batch_size=batch_size, max_new_tokens=max_new_tokens, num_beams=num_beams
    )
    return [tokenizer.decode(tokens, skip_special_tokens=True).strip() for tokens in ids]


def status_counts(names: pd.DataFrame) -> dict[str, int]:
    """How many answers were usable ("ok") and how many fell back to the description, by reason."""
    counts = Counter(names["status"])
    return {status: int(counts.get(status, 0)) for status in ANSWER_STATUSES}


def _require(rows: pd.DataFrame, columns, what: str) -> None:
    missing = [c for c in columns if c not in rows.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing} (has: {', '.join(map(str, rows.columns))})")


def _named(rows: pd.DataFrame, answers: list[tuple[str, bool]]) -> pd.DataFrame:
    """Cleaned names, with the answer as the model wrote it; an answer cut off by max_new_tokens
    loses its unfinished last line, and one with nothing before that line counts as runaway."""
    cleaned = []
    for (text, truncated), description in zip(answers, rows["description"]):
        if truncated:
            complete = text.rsplit("\n", 1)[0] if "\n" in text else ""
            name, status = clean_answer(complete, description)
            cleaned.append((name, "runaway" if status == "empty" else status))
        else:
            cleaned.append(clean_answer(text, description))
    return pd.DataFrame(
        {
            "indoml_id": rows["indoml_id"].astype("int64").to_numpy(),
            "name": [name for name, _ in cleaned],
            "status": [status for _, status in cleaned],
            "answer": [text for text, _ in answers],
        }
    )


def _run_chats(
    model_dir, chats: Sequence, gen_params: dict, *, shard: int = 0, shards: int = 1
) -> dict[int, tuple[str, bool]]:
    """Row position → (answer text, whether it hit max_new_tokens), for the rows of one shard.
    Answers are decoded batch by batch, so no token ids are held beyond a batch."""
    params = merge_params(DEFAULT_GEN_PARAMS, gen_params, GEN_PARAMS)
    model, tokenizer = load_causal_lm(model_dir, load_in_8bit=params["load_in_8bit"])
    answers: dict[int, tuple[str, bool]] = {}
    try:
        for batch, ids in iter_generated(
            model,
            tokenizer,
            chats,
            batch_size=params["batch_size"],
            max_new_tokens=params["max_new_tokens"],
            num_beams=params["num_beams"],
            shard=shard,
            shards=shards,
        ):
            for i, tokens in zip(batch, ids):
                # A stop token is cut off, so an answer as long as max_new_tokens never reached one.
                answers[int(i)] = (
                    tokenizer.decode(tokens, skip_special_tokens=True),
                    len(tokens) >= params["max_new_tokens"],
                )
    finally:
        del model
        gc.collect()
    return answers


def _shard_names(rows: pd.DataFrame, chats: Sequence, model_dir, gen_params: dict, shard: int, shards: int):
    """(the shard's rows in input order, their cleaned names)."""
    answers = _run_chats(model_dir, chats, gen_params, shard=shard, shards=shards)
    positions = sorted(answers)
    mine = rows.iloc[positions].reset_index(drop=True)
    return mine, _named(mine, [answers[i] for i in positions])


def generate_teacher_names(
    model_dir, rows: pd.DataFrame, templates: dict, gen_params: dict, *, shard: int = 0, shards: int = 1
) -> pd.DataFrame:
    """Teacher names for labelled rows: indoml_id, name, status, the raw answer and the prompt's
    source fields.

    With `shards` > 1, only the rows of shard `shard` (see `shard_batches`), in input order;
    `gather_shards` puts the shards back together. An empty or runaway answer becomes the
    description (status says which); the counts are logged and `status_counts` gives them.
    """
    _require(rows, ("indoml_id", "description", *LEVELS), "synthesize_names rows")
    rows = rows.reset_index(drop=True)
    price = rows["price"] if "price" in rows else pd.Series(math.nan, index=rows.index, dtype="float64")
    rows = rows.assign(price=price)
    mine, names = _shard_names(
        rows,
        Chats(rows[["description", "price", *LEVELS]], teacher_messages, templates),
        model_dir,
        gen_params,
        shard,
        shards,
    )
    names = pd.concat([names, mine[["description", "price", *LEVELS]]], axis=1)
    log.info(
        "teacher names, shard %d of %d (%d of %d rows): %s",
        shard + 1,
        shards,
        len(names),
        len(rows),
        status_counts(names),
    )
    return names


def generate_student_names(
    merged_dir, rows: pd.DataFrame, templates: dict, gen_params: dict, *, shard: int = 0, shards: int = 1
) -> pd.DataFrame:
    """Student (namer) names from description and price alone: indoml_id, name, status, answer (with
    `shards` > 1, the rows of shard `shard` only, as in `generate_teacher_names`)."""
    _require(rows, ("indoml_id", "description"), "infer_names rows")
    rows = rows.reset_index(drop=True)
    fields = ["description", *(["price"] if "price" in rows else [])]
    _, names = _shard_names(
        rows, Chats(rows[fields], student_messages, templates), merged_dir, gen_params, shard, shards
    )
    log.info(
        "inferred names, shard %d of %d (%d of %d rows): %s",
        shard + 1,
        shards,
        len(names),
        len(rows),
        status_counts(names),
    )
    return names


def gather_shards(row_ids, shards: list[pd.DataFrame], what: str = "names") -> pd.DataFrame:
    """The shards' names as one table in the order of `row_ids` (the split's indoml_id column):
    exactly what one shard would have written. Every row must come from exactly one shard."""
    # an empty shard (more shards than batches) has untyped columns: leave it out of the concat
    table = pd.concat([shard for shard in shards if len(shard)] or shards[:1], ignore_index=True)
    ids = pd.Index(pd.Series(row_ids, dtype="int64"))
    duplicated = table["indoml_id"].duplicated()
    if duplicated.any():
        raise ValueError(f"{what}: indoml_id {table.loc[duplicated, 'indoml_id'].iloc[0]} is in more than one shard")
    missing = ids.difference(pd.Index(table["indoml_id"]))
    if len(missing):
        raise ValueError(f"{what}: {len(missing)} row(s) in no shard, e.g. indoml_id {missing[0]}")
    extra = pd.Index(table["indoml_id"]).difference(ids)
    if len(extra):
        raise ValueError(f"{what}: indoml_id {extra[0]} is not a row of the split")
    return table.set_index("indoml_id").loc[ids].reset_index()


# ---- training -------------------------------------------------------------------------------
def _training_records(rows: pd.DataFrame, templates: dict) -> list[dict]:
    """Conversational prompt/completion rows: trl masks the prompt when completion_only_loss is set."""
    return [
        {"prompt": student_messages(row, templates), "completion": [{"role": "assistant", "content": str(row["name"])}]}
        for _, row in rows.iterrows()
    ]


def _sequence_lengths(tokenizer, records: list[dict]) -> list[int]:
    texts = [tokenizer.apply_chat_template(r["prompt"] + r["completion"], tokenize=False) for r in records]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def _run_signature(base_model_dir, rows: pd.DataFrame, templates: dict, params: dict) -> str:
    """What a checkpoint was trained from; checkpoints are resumed only when this matches."""
    fixed = {k: v for k, v in params.items() if k not in RESUMABLE_CHANGES}
    columns = [c for c in ("indoml_id", "description", "price", "name") if c in rows]
    return run_signature({"params": fixed, "templates": templates}, base_model_dir, [rows[columns]])


def _replace_dir(tmp: Path, final: Path) -> None:
    """Swap a fully written directory into place, so a crash never leaves a half-saved model."""
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def lora_config(params: dict):
    """The namer's LoRA (PEFT) configuration from its training parameters."""
    from peft import LoraConfig

    return LoraConfig(
        r=params["r"],
        lora_alpha=params["alpha"],
        lora_dropout=params["dropout"],
        use_rslora=params["use_rslora"],
        target_modules=list(params["target_modules"]),
        bias="none",
        task_type="CAUSAL_LM",
    )


TRAINING_FLOPS_METHOD = (
    "counted on the meta device: the base built from its config without memory, LoRA attached, "
    "one forward + backward of the first training batch (frozen base: no weight gradients; "
    "gradient checkpointing's recomputation included when on)"
)


def training_step_costs(base_model_dir, rows: pd.DataFrame, templates: dict, params: dict | None = None) -> dict:
    """Parameters (base + LoRA) and FLOPs of one namer training step, for Table 2, in no memory.

    The model is built on the meta device, so even the 8B base costs nothing; the batch has the
    shape of the first training batch (per_device_train_batch_size rows, padded to the longest).
    Matmuls count the same whatever the base's precision (8-bit or bf16)."""
    import torch
    from peft import get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from prodcat.runtime.efficiency import count_flops, count_parameters
    from prodcat.runtime.hub import local_model_dir

    params = merge_params(DEFAULT_TRAIN_PARAMS, params, TRAIN_PARAMS)
    base = local_model_dir(base_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(base)
    batch_rows = rows.reset_index(drop=True).head(params["per_device_train_batch_size"])
    length = max(_sequence_lengths(tokenizer, _training_records(batch_rows, templates)))
    with torch.device("meta"):
        # eager attention: its matmuls are counted as such (a fused kernel may hide them from the counter)
        model = AutoModelForCausalLM.from_config(
            AutoConfig.from_pretrained(base), dtype=torch.bfloat16, attn_implementation="eager"
        )
    model = get_peft_model(model, lora_config(params))
    if params["gradient_checkpointing"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    ids = torch.zeros((len(batch_rows), length), dtype=torch.long, device="meta")
    # A ready 4-d additive mask: building one from a 2-d mask reads tensor values, which meta
    # tensors do not have. Attention FLOPs do not depend on the mask's values.
    mask = torch.zeros((len(batch_rows), 1, length, length), dtype=torch.bfloat16, device="meta")

    def step():
        model(input_ids=ids, attention_mask=mask, labels=ids, use_cache=False).loss.backward()

    flops, _ = count_flops(step)
    return {
        "parameters": count_parameters(model),
        "train_gflops_per_step": flops / 1e9,
        "train_batch_size": len(batch_rows),
        "train_step_tokens": len(batch_rows) * length,
        "train_flops_method": TRAINING_FLOPS_METHOD,
    }


def train_lora_namer(
    base_model_dir,
    train_rows_with_names: pd.DataFrame,
    out_dir,
    params: dict | None = None,
    *,
    templates: dict | None = None,
    checkpoint_dir=None,
    profile: dict | None = None,
) -> dict:
    """LoRA fine-tune of the namer on (student prompt → synthesized name), then a merged 16-bit model.

    Writes out_dir/adapter (LoRA weights + tokenizer), out_dir/merged (base with the adapter merged
    in, bf16 safetensors + tokenizer) and out_dir/trainer_log.json (loss history). Checkpoints go to
    `checkpoint_dir` (default out_dir/checkpoints; under Snakemake put them outside the rule's
    output directory, which Snakemake deletes before a rerun) and a rerun of the same run resumes
    from the newest one. Returns the metrics written to trainer_log.json.
    """
    from prodcat.names.merge import merge_lora
    from prodcat.runtime.hub import local_model_dir

    metrics = train_lora(
        base_model_dir,
        train_rows_with_names,
        out_dir,
        params,
        templates=templates,
        checkpoint_dir=checkpoint_dir,
        profile=profile,
    )
    # Merged tensor by tensor from the base's safetensors (prodcat.names.merge): exact (fp32 sum, one
    # rounding to bf16), and it never holds the whole model, on the GPU or off it.
    merge_lora(local_model_dir(base_model_dir), Path(out_dir) / "adapter", Path(out_dir) / "merged")
    log.info("namer: adapter and merged bf16 model written to %s", out_dir)
    return metrics


# Namer training settings that are not SFTConfig fields, or that the namer reads itself (LoRA,
# the 8-bit base; gradient_checkpointing is SFTConfig's activation_checkpointing, max_length's
# null is the longest sequence); every other key goes to SFTConfig by name.
NAMER_SETTINGS = (
    "r",
    "alpha",
    "dropout",
    "use_rslora",
    "target_modules",
    "load_in_8bit",
    "gradient_checkpointing",
    "max_length",
)


def sft_config(params: dict, checkpoint_dir, max_length: int, device: str, dtype):
    """The namer's SFTConfig: its training parameters by TrainingArguments name (less
    NAMER_SETTINGS), saving every save_steps, no evaluation, the loss on the completion only, log
    lines instead of bars, bf16 on a GPU that has it."""
    import torch
    from trl import SFTConfig

    from prodcat.runtime.trainer import training_arguments

    return training_arguments(
        SFTConfig,
        {key: value for key, value in params.items() if key not in NAMER_SETTINGS},
        TRAIN_PARAMS,
        output_dir=str(checkpoint_dir),
        optim="adamw_torch",
        activation_checkpointing=params["gradient_checkpointing"],
        activation_checkpointing_kwargs={"use_reentrant": False},
        bf16=device == "cuda" and dtype == torch.bfloat16,
        logging_first_step=True,
        save_strategy="steps",
        eval_strategy="no",
        report_to="none",
        dataloader_pin_memory=device == "cuda",
        data_seed=params["seed"],
        max_length=max_length,
        completion_only_loss=True,
        disable_tqdm=True,  # progress goes through the logging callback instead
    )


def train_lora(
    base_model_dir,
    train_rows_with_names: pd.DataFrame,
    out_dir,
    params: dict | None = None,
    *,
    templates: dict | None = None,
    checkpoint_dir=None,
    profile: dict | None = None,
) -> dict:
    """The LoRA training of `train_lora_namer`, without the merge: writes out_dir/adapter and
    out_dir/trainer_log.json. `profile`: settings of prodcat.runtime.profiling (a few steps profiled,
    written to out_dir/profile, summarised under "profile")."""
    from datasets import Dataset
    from peft import prepare_model_for_kbit_training
    from trl import SFTTrainer

    from prodcat.names.prompts import DEFAULT_TEMPLATES
    from prodcat.runtime.device import pick_device
    from prodcat.runtime.trainer import run_trainer

    params = merge_params(DEFAULT_TRAIN_PARAMS, params, TRAIN_PARAMS)
    templates = dict(templates or DEFAULT_TEMPLATES)
    _require(train_rows_with_names, ("indoml_id", "description", "name"), "train_namer rows")
    rows = train_rows_with_names.reset_index(drop=True)
    if rows.empty:
        raise ValueError("train_namer: no training rows")
    out_dir = Path(out_dir)
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else out_dir / "checkpoints"
    out_dir.mkdir(parents=True, exist_ok=True)

    device, dtype = pick_device()
    if params["load_in_8bit"]:
        model, tokenizer = load_causal_lm(base_model_dir, load_in_8bit=True)
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=params["gradient_checkpointing"],
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    else:
        model, tokenizer = load_causal_lm(base_model_dir)
    tokenizer.padding_side = "right"

    records = _training_records(rows, templates)
    lengths = _sequence_lengths(tokenizer, records)
    longest = max(lengths)
    max_length = params["max_length"] or longest
    if max_length < longest:
        raise ValueError(
            f"namer max_length {max_length} is shorter than the longest training sequence ({longest} tokens); "
            "trl would truncate such rows and drop those left without an answer. Raise max_length or set it to null."
        )

    def check(trainer, resumed_from):
        if len(trainer.train_dataset) != len(records):
            raise RuntimeError(
                f"trl kept {len(trainer.train_dataset)} of {len(records)} training rows (max_length {max_length})"
            )
        log.info(
            "namer: %d rows, longest %d tokens, gradient checkpointing %s, resume from %s",
            len(records),
            longest,
            "on" if params["gradient_checkpointing"] else "off",
            resumed_from or "nothing",
        )

    run = run_trainer(
        SFTTrainer,
        sft_config(params, checkpoint_dir, max_length, device, dtype),
        signature=_run_signature(base_model_dir, rows, templates, params),
        profile=profile,
        profile_dir=out_dir,
        before_train=check,
        model=model,
        train_dataset=Dataset.from_list(records),
        processing_class=tokenizer,
        peft_config=lora_config(params),
    )
    trainer = run.trainer
    tmp_adapter = out_dir / "adapter.tmp"
    trainer.model.save_pretrained(tmp_adapter)
    tokenizer.save_pretrained(tmp_adapter)
    _replace_dir(tmp_adapter, out_dir / "adapter")
    metrics = {
        "train_rows": len(records),
        "max_length": max_length,
        "longest_sequence": longest,
        "resumed_from": run.resumed_from,
        "steps_this_run": run.steps_run,
        "global_step": trainer.state.global_step,
        "train_loss": run.result.training_loss,
        "train_runtime": run.result.metrics.get("train_runtime"),
        "params": params,
        "log_history": trainer.state.log_history,
        "profile": run.profile,
    }
    write_json(metrics, out_dir / "trainer_log.json")
    del trainer, run, model
    gc.collect()
    return metrics


# ---- scoring ----------------------------------------------------------------------------------
def _char_ngrams(text: str, n: int) -> Counter:
    text = "".join(text.split())
    return Counter(text[i : i + n] for i in range(len(text) - n + 1))


def chrf(hypotheses: list[str], references: list[str], *, order: int = 6, beta: float = 2.0) -> float:
    """Corpus chrF (0-100) as sacrebleu computes it by default.

    Character n-grams of orders 1..`order`, whitespace removed; matches and counts summed over the
    corpus per order; precision and recall averaged over the orders that have n-grams on both sides;
    then the F-score weighting recall `beta` times as much as precision.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"chrf: {len(hypotheses)} hypotheses but {len(references)} references")
    totals = [[0, 0, 0] for _ in range(order)]  # per order: hypothesis n-grams, reference n-grams, matches
    for hypothesis, reference in zip(hypotheses, references):
        for n in range(1, order + 1):
            hyp, ref = _char_ngrams(hypothesis, n), _char_ngrams(reference, n)
            totals[n - 1][0] += sum(hyp.values())
            totals[n - 1][1] += sum(ref.values())
            totals[n - 1][2] += sum((hyp & ref).values())
    precisions = [m / h for h, r, m in totals if h > 0 and r > 0]
    recalls = [m / r for h, r, m in totals if h > 0 and r > 0]
    if not precisions:
        return 0.0
    precision, recall = sum(precisions) / len(precisions), sum(recalls) / len(recalls)
    if precision + recall == 0:
        return 0.0
    factor = beta**2
    return 100.0 * (1 + factor) * precision * recall / (factor * precision + recall)

"""Teacher and student names from a chat LLM: loading, batched (sharded) generation, cleaning.

Steps 2 and 4 of the method: Llama-3.1-8B-Instruct, shown the four labels, writes a full product
name for each training row (teacher, `generate_teacher_names`); the merged LoRA namer writes
"inferred names" for the validation and test rows from the description and price alone (student,
`generate_student_names`), which a labeler then reads. A job runs the prefix that all its prompts
share (system prompt and instructions: the templates put the row's fields last) through the model
once and reuses its key/value cache in every batch (`PrefixCache`). Everything here also runs on
the tiny stand-in from `tiny_llama`, on a CPU.
"""

from __future__ import annotations

import gc
import logging
import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pandas as pd

from prodcat import LEVELS
from prodcat.names.prompts import ANSWER_STATUSES, clean_answer, student_messages, teacher_messages
from prodcat.runtime.params import merge_params

log = logging.getLogger(__name__)

DEFAULT_GEN_PARAMS: dict = {
    "batch_size": 16,
    "max_new_tokens": 48,
    "num_beams": 1,
    "load_in_8bit": False,
    "reuse_prefix": True,
}
GEN_PARAMS = "parameter(s) of the namer's generation"


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
    from prodcat.runtime.checkpoints import reading_model

    with reading_model(path, "a causal language model folder (config, safetensors weights, tokenizer)"):
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


def _common_prefix_length(a, b) -> int:
    n = min(len(a), len(b))
    return next((k for k in range(n) if a[k] != b[k]), n)


def prompt_plan(tokenizer, chats: Sequence, chunk_size: int | None = None) -> tuple[np.ndarray, list[int]]:
    """(the token count of every chat's prompt, the prompts' shared prefix), tokenised chunk by chunk.

    The shared prefix is the longest run of token ids that starts every prompt, measured on the
    rendered and tokenised prompts (what a merge at the first field does is the tokenizer's
    business), cut so that every prompt keeps at least one token after it: generation needs a
    last prompt token to compute the first answer token from.
    """
    chunk_size = chunk_size or LENGTH_CHUNK
    lengths = np.zeros(len(chats), dtype=np.int32)
    prefix: list[int] | None = None
    for start in range(0, len(chats), chunk_size):
        ids = _prompt_ids(tokenizer, [chats[i] for i in range(start, min(start + chunk_size, len(chats)))])
        lengths[start : start + len(ids)] = [len(x) for x in ids]
        for x in ids:
            prefix = list(x) if prefix is None else prefix[: _common_prefix_length(prefix, x)]
    if prefix is None:
        return lengths, []
    return lengths, prefix[: max(0, int(lengths.min()) - 1)]


def prompt_lengths(tokenizer, chats: Sequence, chunk_size: int | None = None) -> np.ndarray:
    """The token count of every chat's prompt, tokenised chunk by chunk (only the counts are kept)."""
    return prompt_plan(tokenizer, chats, chunk_size)[0]


def prefilled_tokens(lengths, batches, prefix_length: int = 0, num_beams: int = 1) -> int:
    """Prompt tokens the model runs through to generate these batches, pads included.

    Each batch is padded to its longest prompt, and beam search prefills every beam. Without a
    shared prefix (0) that is the whole padded batch; with one, the prefix runs once (one row) and
    each batch only its rows' suffixes, padded to the longest suffix.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    suffixes = sum((int(lengths[b].max()) - prefix_length) * len(b) * num_beams for b in batches if len(b))
    return int(suffixes) + (prefix_length if prefix_length and any(len(b) for b in batches) else 0)


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


class PrefixCache:
    """The key/value states of the prompts' shared prefix, computed once (one row, one forward
    pass) and copied into a fresh cache for each batch, which then prefills only its suffixes."""

    def __init__(self, model, prefix_ids: list[int]):
        import torch
        from transformers import DynamicCache

        self.ids = list(prefix_ids)
        self._config = model.config
        device = next(model.parameters()).device
        output = model(
            input_ids=torch.tensor([self.ids], device=device), cache=DynamicCache(config=model.config), use_cache=True
        )
        self._states = [(keys, values) for keys, values, *_ in output.cache]

    def __len__(self) -> int:
        return len(self.ids)

    def for_batch(self, rows: int):
        """A new cache holding the prefix for `rows` rows (expanded views; generation appends to
        copies, so the prefix's own states are never changed)."""
        from transformers import DynamicCache

        return DynamicCache(
            [(keys.expand(rows, -1, -1, -1), values.expand(rows, -1, -1, -1)) for keys, values in self._states],
            config=self._config,
        )


def _batch_inputs(tokenizer, prompts: list[list[int]], prefix_length: int, device) -> dict:
    """input_ids and attention_mask of a batch: left-padded prompts, or with a shared prefix
    [prefix, pads, suffix], the pads masked. The position ids that generate derives from the mask
    (its running count) then give each suffix the positions it has in its own unpadded prompt."""
    import torch

    if not prefix_length:
        return tokenizer.pad({"input_ids": prompts}, return_tensors="pt").to(device)
    suffixes = tokenizer.pad({"input_ids": [ids[prefix_length:] for ids in prompts]}, return_tensors="pt")
    prefix = torch.tensor([prompts[0][:prefix_length]]).expand(len(prompts), -1)
    return {
        "input_ids": torch.cat([prefix, suffixes["input_ids"]], dim=1).to(device),
        "attention_mask": torch.cat([torch.ones_like(prefix), suffixes["attention_mask"]], dim=1).to(device),
    }


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
    reuse_prefix: bool = True,
):
    """Yields (row positions, generated token ids) per batch of one shard (see `shard_batches`).

    Greedy (or beam) search, deterministic; each token list excludes the prompt and is cut at the
    first stop token. A batch's prompts are built and tokenised only when it runs. With
    `reuse_prefix`, the prefix that all of `chats`' prompts share (`prompt_plan`: all of them, not
    only this shard's, so every shard reuses the same prefix) is run through the model once and
    its cache reused by every batch, which feeds the model only its suffixes.
    """
    import torch
    from transformers import GenerationConfig

    from prodcat.runtime.progress import log_progress

    lengths, shared_ids = prompt_plan(tokenizer, chats)
    batches = shard_batches(lengths, batch_size, shard, shards)
    prefix_ids = shared_ids if reuse_prefix else []
    rows = sum(len(b) for b in batches)
    full = prefilled_tokens(lengths, batches, num_beams=num_beams)
    prefilled = prefilled_tokens(lengths, batches, len(prefix_ids), num_beams)
    log.info(
        "prompts: %d rows of %d-%d tokens (mean %.1f), shared prefix %d tokens (%s); this shard's %d rows "
        "prefill %d prompt tokens, pads included (%.1f per name): %d saved of the %d without reuse (%.1f per name)",
        len(lengths),
        lengths.min() if len(lengths) else 0,
        lengths.max() if len(lengths) else 0,
        lengths.mean() if len(lengths) else 0.0,
        len(shared_ids),
        "computed once, reused by every batch" if reuse_prefix else "not reused: reuse_prefix is off",
        rows,
        prefilled,
        prefilled / max(rows, 1),
        full - prefilled,
        full,
        full / max(rows, 1),
    )
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
        prefix = PrefixCache(model, prefix_ids) if prefix_ids and batches else None
        for batch in log_progress(batches, f"generate (shard {shard + 1}/{shards})"):
            prompts = _prompt_ids(tokenizer, [chats[i] for i in batch])
            encoded = _batch_inputs(tokenizer, prompts, len(prefix_ids), device)
            # generate does not expand a given cache for beam search: one row per beam
            cache = {"cache": prefix.for_batch(len(batch) * num_beams)} if prefix else {}
            output = model.generate(**encoded, **cache, generation_config=config)
            new_tokens = output[:, encoded["input_ids"].shape[1] :].tolist()
            yield (
                batch,
                [tokens[: next((k for k, t in enumerate(tokens) if t in stop), len(tokens))] for tokens in new_tokens],
            )


def generate_token_ids(
    model,
    tokenizer,
    messages_list,
    *,
    batch_size: int,
    max_new_tokens: int,
    num_beams: int = 1,
    reuse_prefix: bool = True,
) -> list[list[int]]:
    """The generated token ids for each chat (prompt excluded, cut at the first stop token), in the
    input order; batched by prompt length (and the shared prefix reused) as `iter_generated` does."""
    results: list[list[int] | None] = [None] * len(messages_list)
    for batch, ids in iter_generated(
        model,
        tokenizer,
        messages_list,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        num_beams=num_beams,
        reuse_prefix=reuse_prefix,
    ):
        for i, tokens in zip(batch, ids):
            results[i] = tokens
    return results


def generate_names(
    model,
    tokenizer,
    messages_list,
    *,
    batch_size: int,
    max_new_tokens: int,
    num_beams: int = 1,
    reuse_prefix: bool = True,
) -> list[str]:
    """The raw answer text for each chat, in input order (batched, left-padded, greedy by default)."""
    ids = generate_token_ids(
        model,
        tokenizer,
        messages_list,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        num_beams=num_beams,
        reuse_prefix=reuse_prefix,
    )
    return [tokenizer.decode(tokens, skip_special_tokens=True).strip() for tokens in ids]


def status_counts(names: pd.DataFrame) -> dict[str, int]:
    """How many answers were usable ("ok") and how many fell back to the description, by reason."""
    counts = Counter(names["status"])
    return {status: int(counts.get(status, 0)) for status in ANSWER_STATUSES}


def require_columns(rows: pd.DataFrame, columns, what: str) -> None:
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
            reuse_prefix=params["reuse_prefix"],
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
    require_columns(rows, ("indoml_id", "description", *LEVELS), "synthesize_names rows")
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
    require_columns(rows, ("indoml_id", "description"), "infer_names rows")
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

"""The paper run's GPU work counted exactly, and its hours on a named GPU: a plan you can rerun.

For every GPU rule of the configuration it counts, on the data, the tokens each job really runs:
teacher/student prompts rendered with the configured templates and the real Llama-3.1 tokenizer
and chat template (prodcat.standins.llama3_tokenizer), bytes for ByT5; prompt tokens prefilled
(length-sorted batches as prodcat.names.generation cuts them; with `reuse_prefix` the prompts'
common prefix once per job, then each row's remaining tokens), decoding steps (per batch: the
longest answer of the batch, measured name lengths, at most max_new_tokens), padded vs real tokens
per training epoch (the configured per-device batch, random batches or HF's length-grouped
sampler). FLOPs come from the parameter counts of the meta-device models
(prodcat.standins.paper_models). Hours follow from FIXED constants, not tuned:

- dense bf16 peak with fp32 accumulation: RTX 4090 82.6, A100 312, H100 SXM 989 TFLOP/s; memory
  bandwidth 1.01, 2.04, 3.35 TB/s;
- matmuls at 40 % of peak; LLM.int8 matmuls at a third of the bf16 rate;
- a decoding step takes the longer of its matmuls and reading the weights once (plus the batch's
  KV cache) at 70 % of bandwidth.

The total is the DAG's critical path on --gpus N (list scheduling, longest remaining path first).
With --gpus N the plan assumes the user sets namer.shards = N and resources.train_namer.gpus =
resources.train_labeler.gpus = N (data-parallel training: the same effective batch, the work split
over N GPUs, communication not counted). --baseline is the parent commit's code: no prefix reuse,
no length grouping, every training on one GPU (give it the parent's config).

Data: without --data, the real sizes (561,838 training and 184,664 test rows, the real description
length histogram of ../shared/indoml2024 and its label paths for the targets) and data/sample's rows
for everything a histogram lacks (template fields, names, token/char ratio of descriptions). With
--data DIR (a folder with train.parquet + test.parquet, or train.features/.labels + test.features,
and optionally names.parquet / names.jsonl): every count is exact on those rows. Flan-T5's
SentencePiece counts are approximated by the Llama-3 token count of the same text + 1 (eos): the
T5 tokenizer is not available offline; a 32k vocabulary splits finer, so Flan-T5's (small) share
is an undercount. Not counted: CPU rules (charngram, correction, vote, stack fit), model loading,
communication between GPUs, the attention of the T5 models (short sequences).

    PYTHONPATH=src .venv/bin/python bench/paper_plan.py --configfile configs/paper.yaml --gpu rtx4090 --gpus 1
"""

from __future__ import annotations

import argparse
import functools
import heapq
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "indoml2024"
REAL_TRAIN_ROWS, REAL_TEST_ROWS = 561_838, 184_664

GPUS = {  # dense bf16 TFLOP/s (fp32 accumulation), memory bandwidth TB/s
    "rtx4090": {"peak": 82.6e12, "bandwidth": 1.01e12},
    "a100": {"peak": 312e12, "bandwidth": 2.04e12},
    "h100": {"peak": 989e12, "bandwidth": 3.35e12},
}
MATMUL_EFFICIENCY = 0.40
BANDWIDTH_EFFICIENCY = 0.70
INT8_SLOWDOWN = 3.0
# HF's LengthGroupedSampler: megabatches of 50 batches, each sorted by length
MEGABATCH = 50
# score_candidates: at most the members' distinct proposals (3 seq2seq x raw/constrained +
# charngram) and charngram's 5 alternatives
CANDIDATES = 12


# ---- data --------------------------------------------------------------------------------------
def load_rows(data: Path | None):
    """(train rows with labels, test rows, names by indoml_id or None, description lengths to scale to)."""
    import pandas as pd

    from prodcat.data.io import ingest

    folder = data or REPO / "data" / "sample"
    if (folder / "train.parquet").exists():
        train, test = ingest(folder / "train.parquet"), ingest(folder / "test.parquet")
    elif (folder / "train.features").exists():
        train = ingest(folder / "train.features", folder / "train.labels")
        test = ingest(folder / "test.features")
    else:
        raise SystemExit(f"{folder}: expected train.parquet + test.parquet or train.features + train.labels")
    names = None
    if (folder / "names.parquet").exists():
        names = pd.read_parquet(folder / "names.parquet")
    elif (folder / "names.jsonl").exists():
        names = pd.read_json(folder / "names.jsonl", lines=True)
    if names is not None:
        names = dict(zip(names["indoml_id"], names["name"].astype(str)))
    return train, test, names


def real_description_lengths(seed: int = 0) -> np.ndarray | None:
    path = SHARED / "description_lengths.json"
    if not path.exists():
        return None
    histogram = json.loads(path.read_text())
    lengths = np.repeat([int(k) for k in histogram], list(histogram.values()))
    return np.random.default_rng(seed).permutation(lengths)


def real_target_bytes() -> np.ndarray | None:
    from prodcat.data.target_text import format_target

    path = SHARED / "hierarchy.json"
    if not path.exists():
        return None
    tree = json.loads(path.read_text())
    return np.array(
        [
            len(format_target((sg, g, m, b)).encode())
            for sg, groups in tree.items()
            for g, modules in groups.items()
            for m, brands in modules.items()
            for b in brands
        ]
    )


@dataclass
class Counts:
    """Per-row token counts of one split."""

    rows: int
    byt5_source: np.ndarray  # bytes + eos
    target_bytes: np.ndarray  # + eos
    t5_source: np.ndarray  # inferred name, Flan-T5 tokens (approximated)
    t5_target: np.ndarray
    teacher_prompt: np.ndarray  # Llama tokens of the rendered chat prompt
    student_prompt: np.ndarray
    answer: np.ndarray  # Llama tokens of the name + <|eot_id|>
    teacher_prefix: int = 0
    student_prefix: int = 0
    extra: dict = field(default_factory=dict)


def common_prefix(sequences) -> int:
    first = sequences[0]
    n = min(map(len, sequences))
    for other in sequences[1:]:
        k = 0
        while k < n and other[k] == first[k]:
            k += 1
        n = k
    return n


def measure(rows, names, templates, tokenizer) -> Counts:
    """Exact per-row counts on `rows` (labels needed for the teacher prompt: test rows get none)."""
    from prodcat import LEVELS
    from prodcat.data.target_text import format_target
    from prodcat.names.prompts import student_messages, teacher_messages

    records = rows.to_dict("records")
    labelled = all(level in rows.columns for level in LEVELS)

    def encode(texts):
        return tokenizer(texts, add_special_tokens=False)["input_ids"]

    def render(build):
        chats = [build(r, templates) for r in records]
        return encode([tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in chats])

    student = render(student_messages)
    teacher = render(teacher_messages) if labelled else student
    texts = [names.get(r["indoml_id"], r["description"]) if names else r["description"] for r in records]
    answer = np.array([len(ids) + 1 for ids in encode(texts)])
    targets = [format_target(tuple(r[level] for level in LEVELS)) if labelled else "" for r in records]
    target_bytes = np.array([len(t.encode()) + 1 for t in targets])
    t5_target = np.array([len(ids) + 1 for ids in encode(targets)])
    description_tokens = np.array([len(ids) for ids in encode([r["description"] for r in records])])
    return Counts(
        rows=len(records),
        byt5_source=np.array([len(r["description"].encode()) + 1 for r in records]),
        target_bytes=target_bytes,
        t5_source=answer.copy(),  # name tokens + eos ~ the Llama count + 1
        t5_target=t5_target,
        teacher_prompt=np.array([len(x) for x in teacher]),
        student_prompt=np.array([len(x) for x in student]),
        answer=answer,
        teacher_prefix=common_prefix(teacher),
        student_prefix=common_prefix(student),
        extra={
            "description_tokens": description_tokens,
            "description_chars": np.array([len(r["description"]) for r in records]),
        },
    )


def scale(sample: Counts, lengths: np.ndarray, targets: np.ndarray | None, seed: int) -> Counts:
    """Counts for rows with description lengths `lengths`: each real row takes a random sample row's
    template fields, name and target, and its own description (tokens = its characters x the
    sample's tokens per character; bytes = characters, ASCII)."""
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, sample.rows, len(lengths))
    ratio = sample.extra["description_tokens"].sum() / sample.extra["description_chars"].sum()
    own = np.rint(lengths * ratio).astype(int)
    delta = own - sample.extra["description_tokens"][pick]
    target_bytes = sample.target_bytes[pick]
    if targets is not None:
        target_bytes = rng.choice(targets, len(lengths)) + 1
    return Counts(
        rows=len(lengths),
        byt5_source=lengths + 1,
        target_bytes=target_bytes,
        t5_source=sample.t5_source[pick],
        t5_target=sample.t5_target[pick],
        teacher_prompt=sample.teacher_prompt[pick] + delta,
        student_prompt=sample.student_prompt[pick] + delta,
        answer=sample.answer[pick],
        teacher_prefix=sample.teacher_prefix,
        student_prefix=sample.student_prefix,
    )


def subset(counts: Counts, index: np.ndarray) -> Counts:
    arrays = {k: v[index] for k, v in vars(counts).items() if isinstance(v, np.ndarray)}
    return Counts(
        rows=len(index),
        teacher_prefix=counts.teacher_prefix,
        student_prefix=counts.student_prefix,
        extra={k: v[index] for k, v in counts.extra.items()},
        **arrays,
    )


def workload(config: dict, data: Path | None, tokenizer, seed: int = 0) -> dict[str, Counts]:
    """Counts for the train, val and test splits."""
    train, test, names = load_rows(data)
    templates = config["namer"]["templates"]
    train_counts = measure(train, names, templates, tokenizer)
    test_counts = measure(test, names, templates, tokenizer)
    if test_counts.target_bytes.max() <= 1:  # hidden test labels: targets as long as the training ones
        pick = np.random.default_rng(seed + 2).integers(0, train_counts.rows, test_counts.rows)
        test_counts.target_bytes, test_counts.t5_target = train_counts.target_bytes[pick], train_counts.t5_target[pick]
    fraction = float(config.get("split", {}).get("fraction", 0.1))
    if data is None:
        lengths = real_description_lengths(seed)
        if lengths is None:
            raise SystemExit(f"no --data and no {SHARED}: give --data DIR")
        targets = real_target_bytes()
        train_counts = scale(train_counts, lengths, targets, seed)
        test_lengths = np.random.default_rng(seed + 1).choice(lengths, REAL_TEST_ROWS)
        test_counts = scale(test_counts, test_lengths, targets, seed + 1)
        test_counts.teacher_prompt = test_counts.student_prompt  # no labels on test rows
    order = np.random.default_rng(seed).permutation(train_counts.rows)
    n_val = int(round(fraction * train_counts.rows))
    return {
        "train": subset(train_counts, order[n_val:]),
        "val": subset(train_counts, order[:n_val]),
        "test": test_counts,
    }


# ---- batching ----------------------------------------------------------------------------------
def sorted_batches(lengths: np.ndarray, batch: int) -> list[np.ndarray]:
    """prodcat.names.generation.shard_batches: longest first, cut into batches."""
    order = np.lexsort((np.arange(len(lengths)), -lengths))
    return [order[i : i + batch] for i in range(0, len(order), batch)]


def training_batches(lengths: np.ndarray, batch: int, grouped: bool, seed: int = 0) -> list[np.ndarray]:
    """One epoch's batches: a random order, or HF's LengthGroupedSampler (megabatches of
    min(50, n // (4 batch)) batches, each sorted longest first)."""
    order = np.random.default_rng(seed).permutation(len(lengths))
    if grouped:
        mega = max(1, min(MEGABATCH, len(lengths) // (4 * batch))) * batch
        order = np.concatenate(
            [
                chunk[np.argsort(-lengths[chunk], kind="stable")]
                for chunk in np.array_split(order, range(mega, len(order), mega))
            ]
        )
    return [order[i : i + batch] for i in range(0, len(order), batch)]


def padded(lengths: np.ndarray, batches) -> int:
    return int(sum(len(b) * lengths[b].max() for b in batches))


def expected_batch_max(lengths: np.ndarray, batch: int, cap: int) -> float:
    """E[max of `batch` draws] of the empirical distribution, capped: the decoding steps of a batch."""
    values = np.minimum(lengths, cap)
    top = int(values.max())
    cdf = np.array([(values <= k).mean() for k in range(top + 1)])
    return float(sum(1 - cdf[k - 1] ** batch for k in range(1, top + 1)))


# ---- models ------------------------------------------------------------------------------------
def model_sizes() -> dict:
    """Matmul parameters of each paper model (meta device): per-token forward FLOPs are twice these."""
    from prodcat.standins import paper_models

    sizes = {}
    for arch in ("byt5", "flant5"):
        model = paper_models.build(arch)
        cfg = model.config
        enc = sum(p.numel() for n, p in model.named_parameters() if n.startswith("encoder.") and p.dim() == 2)
        dec = sum(p.numel() for n, p in model.named_parameters() if n.startswith("decoder.") and p.dim() == 2)
        head = cfg.vocab_size * cfg.d_model
        total = paper_models.unique_parameters(model) + head  # as loaded: an untied lm_head
        sizes[arch] = {"encoder": enc, "decoder": dec, "head": head, "weights_bytes": 2 * total}
        sizes[arch]["kv_per_token"] = 2 * 2 * cfg.num_decoder_layers * cfg.num_heads * cfg.d_kv
    llama = paper_models.build("llama")
    cfg = llama.config
    body = sum(p.numel() for n, p in llama.named_parameters() if ".layers." in n and p.dim() == 2)
    head = cfg.vocab_size * cfg.hidden_size
    total = paper_models.unique_parameters(llama)
    sizes["llama"] = {
        "body": body,
        "head": head,
        "total": total,
        "layers": cfg.num_hidden_layers,
        "hidden": cfg.hidden_size,
        "weights_bytes_bf16": 2 * total,
        "weights_bytes_int8": body + 2 * (total - body),
        "kv_per_token": 2
        * 2
        * cfg.num_hidden_layers
        * cfg.num_key_value_heads
        * (cfg.hidden_size // cfg.num_attention_heads),
        "lora": 41_943_040,
    }
    return sizes


# ---- rules -------------------------------------------------------------------------------------
@dataclass
class Job:
    rule: str
    name: str
    seconds: float
    gpus: int = 1
    deps: list = field(default_factory=list)


def generation(counts: Counts, which: str, gen: dict, shards: int, sizes: dict, gpu: dict, reuse: bool) -> dict:
    """Teacher/student generation of one split over `shards` jobs."""
    llama = sizes["llama"]
    prompt = counts.teacher_prompt if which == "teacher" else counts.student_prompt
    prefix = (counts.teacher_prefix if which == "teacher" else counts.student_prefix) if reuse else 0
    batch, cap = int(gen["batch_size"]), int(gen["max_new_tokens"])
    int8 = bool(gen.get("load_in_8bit", False))
    rate = MATMUL_EFFICIENCY * gpu["peak"] / (INT8_SLOWDOWN if int8 else 1)
    batches = sorted_batches(prompt, batch)
    rest = prompt - prefix
    prefilled = padded(rest, batches) + prefix * shards  # the prefix once per job
    real = int(prompt.sum())
    attention = 4 * llama["layers"] * llama["hidden"]
    # causal attention of the rest over the prefix and itself
    prefill_flops = 2 * llama["body"] * prefilled + attention * sum(
        len(b) * (prefix * rest[b].max() + rest[b].max() ** 2 / 2) for b in batches
    )
    prefill_flops += 2 * llama["head"] * counts.rows  # logits of the last prompt token only
    steps = expected_batch_max(counts.answer, batch, cap)
    weights = llama["weights_bytes_int8" if int8 else "weights_bytes_bf16"]
    decode_seconds = decode_flops = 0.0
    for b in batches:
        rows, context = len(b), prompt[b].max() + steps / 2
        step_flops = 2 * (llama["body"] + llama["head"]) * rows + attention * context * rows
        step_bytes = weights + llama["kv_per_token"] * rows * context
        decode_seconds += steps * max(step_flops / rate, step_bytes / (BANDWIDTH_EFFICIENCY * gpu["bandwidth"]))
        decode_flops += steps * step_flops
    seconds = prefill_flops / rate + decode_seconds
    return {
        "rows": counts.rows,
        "prompt_tokens": real,
        "prefilled_tokens": prefilled,
        "shared_prefix": prefix,
        "prefilled_per_row": prefilled / counts.rows,
        "decode_steps_per_batch": round(steps, 1),
        "tokens": prefilled + int(steps * counts.rows),
        "flops": prefill_flops + decode_flops,
        "seconds": seconds,
        "jobs": shards,
    }


def train_namer(counts: Counts, train: dict, sizes: dict, gpu: dict, gpus: int, grouped: bool) -> dict:
    llama = sizes["llama"]
    lengths = counts.student_prompt + counts.answer
    batch = int(train["per_device_train_batch_size"])
    batches = training_batches(lengths, batch, grouped)
    tokens = padded(lengths, batches)
    epochs = float(train.get("num_train_epochs", 1))
    # frozen base: forward 2N, backward to the activations 2N, recomputed forward 2N with checkpointing
    passes = 3 if train.get("gradient_checkpointing", False) else 2
    per_token = passes * 2 * (llama["body"] + llama["head"]) + 6 * llama["lora"]
    attention = 4 * llama["layers"] * llama["hidden"] * passes
    flops = epochs * (per_token * tokens + attention * sum(len(b) * lengths[b].max() ** 2 / 2 for b in batches))
    rate = MATMUL_EFFICIENCY * gpu["peak"] / (INT8_SLOWDOWN if train.get("load_in_8bit", False) else 1)
    return {
        "rows": counts.rows,
        "real_tokens": int(lengths.sum() * epochs),
        "padded_tokens": int(tokens * epochs),
        "tokens": int(tokens * epochs),
        "flops": flops,
        "seconds": flops / rate / gpus,
        "gpus": gpus,
        "jobs": 1,
        "length_grouped": grouped,
    }


def labeler_lengths(counts: Counts, arch: str):
    if arch == "flant5":
        return counts.t5_source, counts.t5_target
    return counts.byt5_source, counts.target_bytes


def train_labeler(name, train_counts, val_counts, spec, sizes, gpu, gpus, grouped) -> dict:
    arch = spec["base"]
    size = sizes[arch]
    train = spec["train"]
    source, target = labeler_lengths(train_counts, arch)
    src_max, tgt_max = int(train.get("max_source_length", 10**9)), int(train.get("max_target_length", 10**9))
    source, target = np.minimum(source, src_max), np.minimum(target, tgt_max)
    batch = int(train["per_device_train_batch_size"])
    batches = training_batches(source, batch, grouped)  # HF groups by the input length
    src_tokens, tgt_tokens = padded(source, batches), padded(target, batches)
    epochs = float(train.get("num_train_epochs", 1))
    per_epoch = 6 * (size["encoder"] * src_tokens + (size["decoder"] + size["head"]) * tgt_tokens)
    vs, vt = labeler_lengths(val_counts, arch)
    vb = sorted_batches(vs, int(train.get("per_device_eval_batch_size") or batch))
    evaluation = 2 * (size["encoder"] * padded(vs, vb) + (size["decoder"] + size["head"]) * padded(vt, vb))
    flops = epochs * (per_epoch + evaluation)
    return {
        "rows": train_counts.rows,
        "real_tokens": int(epochs * (source.sum() + target.sum())),
        "padded_tokens": int(epochs * (src_tokens + tgt_tokens)),
        "tokens": int(epochs * (src_tokens + tgt_tokens)),
        "flops": flops,
        "seconds": flops / (MATMUL_EFFICIENCY * gpu["peak"]) / gpus,
        "gpus": gpus,
        "jobs": 1,
        "epochs": epochs,
        "length_grouped": grouped,
    }


def predict_labeler(counts: Counts, spec: dict, sizes: dict, gpu: dict, decodings: int) -> dict:
    arch = spec["base"]
    size = sizes[arch]
    predict = spec["predict"]
    source, target = labeler_lengths(counts, arch)
    source = np.minimum(source, int(predict.get("max_source_length", 10**9)))
    batch, cap = int(predict["batch_size"]), int(predict["max_new_tokens"])
    batches = sorted_batches(source, batch)
    rate = MATMUL_EFFICIENCY * gpu["peak"]
    enc_tokens = padded(source, batches)
    flops = 2 * size["encoder"] * enc_tokens
    seconds = flops / rate
    steps = expected_batch_max(target, batch, cap)
    for b in batches:
        step_flops = 2 * (size["decoder"] + size["head"]) * len(b)
        step_bytes = size["weights_bytes"] + size["kv_per_token"] * len(b) * (source[b].max() + steps / 2)
        step = max(step_flops / rate, step_bytes / (BANDWIDTH_EFFICIENCY * gpu["bandwidth"]))
        seconds += decodings * steps * step
        flops += decodings * steps * step_flops
    return {
        "rows": counts.rows,
        "tokens": int(enc_tokens + decodings * steps * counts.rows),
        "flops": flops,
        "seconds": seconds,
        "jobs": 1,
    }


def score_candidates(counts: Counts, spec: dict, sizes: dict, gpu: dict) -> dict:
    size = sizes[spec["base"]]
    source, target = labeler_lengths(counts, spec["base"])
    tokens = int(source.sum() + CANDIDATES * target.sum())
    flops = 2 * (size["encoder"] * source.sum() + CANDIDATES * (size["decoder"] + size["head"]) * target.sum())
    return {
        "rows": counts.rows,
        "tokens": tokens,
        "flops": float(flops),
        "seconds": flops / (MATMUL_EFFICIENCY * gpu["peak"]),
        "jobs": 1,
    }


# ---- the plan ----------------------------------------------------------------------------------
def settings(config: dict, gpus: int, baseline: bool) -> dict:
    namer = config["namer"]
    resources = config.get("resources", {})

    def grouped(train: dict, default: bool) -> bool:
        # the code's defaults: on for the namer, off for the labelers (their schema says why)
        return not baseline and bool(train.get("group_by_length", default))

    return {
        "shards": gpus if not baseline else int(namer.get("shards", 1)),
        "reuse": {w: not baseline and bool(namer[w].get("reuse_prefix", True)) for w in ("teacher", "student")},
        "namer_gpus": 1 if baseline else max(gpus, int(resources.get("train_namer", {}).get("gpus", 1))),
        "labeler_gpus": 1 if baseline else max(gpus, int(resources.get("train_labeler", {}).get("gpus", 1))),
        "grouped": grouped,
    }


def plan(config: dict, counts: dict[str, Counts], sizes: dict, gpu_name: str, gpus: int, baseline: bool) -> dict:
    gpu = GPUS[gpu_name]
    s = settings(config, gpus, baseline)
    namer = config["namer"]
    decodings = 2 if config.get("decoding", {}).get("constrained", False) else 1
    rules, jobs = [], []

    def add(rule, label, result, deps, job_gpus=1):
        # seconds: a training's wall time on its job_gpus; a generation's over all its shard jobs
        n = result.get("jobs", 1)
        result = dict(result, rule=label, hours=result["seconds"] / n / 3600)
        result["gpu_hours"] = result["seconds"] / 3600 * job_gpus
        rules.append(result)
        names = [f"{label}#{k}" for k in range(n)]
        for name in names:
            jobs.append(Job(rule, name, result["seconds"] / n, job_gpus, deps))
        return names

    synth = []
    for split in ("train", "val"):
        synth_split = add(
            "synthesize_names",
            f"synthesize_names[{split}]",
            generation(counts[split], "teacher", namer["teacher"], s["shards"], sizes, gpu, s["reuse"]["teacher"]),
            [],
        )
        synth.append(synth_split)
    namer_job = add(
        "train_namer",
        "train_namer",
        train_namer(counts["train"], namer["train"], sizes, gpu, s["namer_gpus"], s["grouped"](namer["train"], True)),
        synth[0],
        s["namer_gpus"],
    )
    infer = {}
    for split in ("val", "test"):
        infer[split] = add(
            "infer_names",
            f"infer_names[{split}]",
            generation(counts[split], "student", namer["student"], s["shards"], sizes, gpu, s["reuse"]["student"]),
            namer_job,
        )
    predicted = {"val": [], "test": []}
    seq2seq = {k: v for k, v in config["labelers"].items() if v.get("kind") in ("text", "multimodal")}
    for name, spec in seq2seq.items():
        names_dep = synth[0] + synth[1] if spec.get("source") == "name" else []
        trained = add(
            "train_labeler",
            f"train_labeler[{name}]",
            train_labeler(
                name,
                counts["train"],
                counts["val"],
                spec,
                sizes,
                gpu,
                s["labeler_gpus"],
                s["grouped"](spec["train"], False),
            ),
            names_dep,
            s["labeler_gpus"],
        )
        for split in ("val", "test"):
            deps = trained + (infer[split] if spec.get("source") == "name" else [])
            predicted[split] += add(
                "predict_labeler",
                f"predict_labeler[{name},{split}]",
                predict_labeler(counts[split], spec, sizes, gpu, decodings),
                deps,
            )
    if config.get("ensemble", {}).get("stack", True) is not False:
        for name, spec in seq2seq.items():
            for split in ("val", "test"):
                add(
                    "score_candidates",
                    f"score_candidates[{name},{split}]",
                    score_candidates(counts[split], spec, sizes, gpu),
                    predicted[split],
                )
    makespan = schedule(jobs, gpus)
    return {
        "gpu": gpu_name,
        "gpus": gpus,
        "baseline": baseline,
        "settings": {k: v for k, v in s.items() if k != "grouped"},
        "rules": rules,
        "gpu_hours": sum(r["gpu_hours"] for r in rules),
        "total_hours": makespan / 3600,
    }


def schedule(jobs: list[Job], gpus: int) -> float:
    """Makespan of the jobs on `gpus` GPUs: list scheduling, the longest remaining path first."""
    by_name = {j.name: j for j in jobs}
    children: dict[str, list[str]] = {j.name: [] for j in jobs}
    for j in jobs:
        for d in j.deps:
            children[d].append(j.name)
    tail: dict[str, float] = {}

    def path(name):
        if name not in tail:
            tail[name] = by_name[name].seconds + max((path(c) for c in children[name]), default=0.0)
        return tail[name]

    waiting = {j.name: len(j.deps) for j in jobs}
    ready = [(-path(j.name), j.name) for j in jobs if not j.deps]
    heapq.heapify(ready)
    running: list[tuple[float, str]] = []
    free, now = gpus, 0.0
    while ready or running:
        started = True
        while ready and started:
            started = False
            for k, (_, name) in enumerate(sorted(ready)):
                need = min(by_name[name].gpus, gpus)
                if need <= free:
                    ready.remove((-path(name), name))
                    heapq.heapify(ready)
                    free -= need
                    heapq.heappush(running, (now + by_name[name].seconds, name))
                    started = True
                    break
                if k == 0:
                    break  # the most urgent job waits for its GPUs: nothing overtakes it
        now, done = heapq.heappop(running)
        free += min(by_name[done].gpus, gpus)
        for c in children[done]:
            waiting[c] -= 1
            if waiting[c] == 0:
                heapq.heappush(ready, (-path(c), c))
    return now


def markdown(result: dict) -> str:
    label = "baseline (parent's code)" if result["baseline"] else "this commit"
    lines = [
        f"### {result['gpu']} x {result['gpus']}, {label}",
        "",
        "| rule | jobs x GPUs | tokens | padded/real | prefilled per row | FLOPs | GPU-hours | hours a job |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rules"]:
        ratio = f"{r['padded_tokens'] / r['real_tokens']:.2f}" if "padded_tokens" in r else ""
        per_row = f"{r['prefilled_per_row']:.0f} ({r['shared_prefix']} shared)" if "prefilled_per_row" in r else ""
        lines.append(
            f"| {r['rule']} | {r.get('jobs', 1)} x {r.get('gpus', 1)} | {r['tokens']:,} | {ratio} | {per_row} | "
            f"{r['flops']:.3g} | {r['gpu_hours']:.2f} | {r['hours']:.2f} |"
        )
    lines += [
        "",
        f"GPU-hours {result['gpu_hours']:.1f}; critical path on {result['gpus']} GPU(s): "
        f"**{result['total_hours']:.1f} h**",
    ]
    return "\n".join(lines)


@functools.cache
def llama_tokenizer():
    from prodcat.standins.llama3_tokenizer import build_llama31_tokenizer

    return build_llama31_tokenizer()


def load_config(paths: list[Path]) -> dict:
    from snakemake.utils import update_config

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for path in paths:
        update_config(config, yaml.safe_load(path.read_text()))
    return config


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--configfile", type=Path, nargs="+", required=True, help="merged over config.yaml, as snakemake does"
    )
    parser.add_argument("--data", type=Path, help="rows to count (default: the real sizes, see above)")
    parser.add_argument("--gpu", choices=sorted(GPUS), required=True)
    parser.add_argument("--gpus", type=int, default=1, help="GPUs; namer.shards and resources.*.gpus taken as this")
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="the parent commit's code: no prefix reuse, no length grouping, one GPU per training",
    )
    parser.add_argument("--json", type=Path, help="write the plan here")
    args = parser.parse_args(argv)
    if args.gpus < 1:
        parser.error("--gpus must be >= 1")
    config = load_config(args.configfile)
    counts = workload(config, args.data, llama_tokenizer())
    result = plan(config, counts, model_sizes(), args.gpu, args.gpus, args.baseline)
    print(markdown(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

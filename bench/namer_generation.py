"""Benchmark and scoring for the name-synthesis branch.

speed: rows/s and tokens/s of batched greedy generation through `prodcat.names.generation` (the code the
naming rules run: prompts tokenised a batch at a time), at several batch sizes, with the prompts
sorted by length over the whole split (what the rules do) and, with --unsorted, in input order
(batches of consecutive rows) for comparison. Prompts are the default config's teacher or student
chats over the bundled sample's rows (data/sample/train.parquet), read by a tiny random Llama built
here like the default run's stand-in: its tokenizer trained on every row's prompts (~190 tokens a
teacher prompt, ~160 a student one, as the Llama-3 tokenizer gives), or any local chat model via
--model. A random model rarely emits a stop token, so nearly every answer runs to
--max-new-tokens: the rates are for full-length answers. Outputs of every run are compared with
the first (greedy must agree), and the prompt padding of each batching is reported.

    python bench/namer_generation.py speed [--rows 512] [--batch-sizes 64,128,256] [--unsorted]
        [--kind teacher|student] [--max-new-tokens 32] [--threads 1] [--model DIR]

memory: peak Python memory (tracemalloc) of one naming job's generation (`generation._run_chats`, the
default teacher prompts, 2 new tokens) at several row counts; flat when nothing is held per row
beyond the answers (token ids live a chunk or a batch at a time).

    python bench/namer_generation.py memory [--rows 5000,10000]

prefix: shared-prefix reuse (namer.teacher/student.reuse_prefix) on one naming job: the prompts'
length and shared prefix (token ids, measured with the model's tokenizer), the prompt tokens the
job prefills per name (pads included, as `generation.prefilled_tokens` counts them) without and with
reuse, and the wall time of `generate_teacher_names` / `generate_student_names` without and with it
(alternating, --repeats times each; the names of both must agree). --model is the job's model
(e.g. a run's results/models/base/llama), --rows its rows (a run's results/data/train.parquet),
--configfile the templates and generation settings (config.yaml by default; a file merged over it).
Without --model, only the counts: with --tokenizer DIR's tokenizer, or else the tiny stand-in's,
trained on the rows' prompts as the workflow trains it.

    python bench/namer_generation.py prefix [--model DIR | --tokenizer DIR] --rows ROWS.parquet [--configfile FILE]
        [--kind teacher|student] [--repeats 3] [--threads 1]

score: chrF (orders 1-6, beta 2, as sacrebleu's default) of generated names against reference names,
joined on indoml_id; one row per --hyp file.

    python bench/namer_generation.py score --ref truth.parquet [--ref-column name]
        --hyp teacher_names.parquet --hyp student_names.parquet [--hyp-column name]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from prodcat.data.io import read_rows, read_table  # noqa: E402
from prodcat.names import generation, quality  # noqa: E402
from prodcat.names.prompts import student_messages, teacher_messages  # noqa: E402
from prodcat.standins.tiny_llama import build_tiny_llama, build_tiny_tokenizer  # noqa: E402
from prodcat.workflow import tokenizer_corpus  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _padding(lengths: np.ndarray, batches) -> float:
    """Padding tokens as a share of the padded prompt tokens of these batches."""
    padded = sum(int(lengths[b].max()) * len(b) for b in batches)
    return 1 - sum(int(lengths[b].sum()) for b in batches) / padded


def run_speed(args) -> None:
    import torch
    import yaml

    torch.set_num_threads(args.threads)
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    templates = config["namer"]["templates"]
    sample = read_rows(REPO / "data" / "sample" / "train.parquet", labelled=True)
    rows = sample.head(args.rows)
    build = teacher_messages if args.kind == "teacher" else student_messages
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model
        if model_dir is None:
            dims = config["tiny"]["llama"]
            model_dir = build_tiny_llama(Path(tmp) / "tiny", tokenizer_corpus(sample, templates), seed=0, **dims)
        model, tokenizer = generation.load_causal_lm(model_dir)
        chats = generation.Chats(rows, build, templates)
        lengths = generation.prompt_lengths(tokenizer, chats)
        generation.generate_token_ids(model, tokenizer, chats[:4], batch_size=4, max_new_tokens=4)  # warm-up
        runs, reference = [], None
        for batch_size in args.batch_sizes:
            for order in ["sorted", *(["input order"] if args.unsorted else [])]:
                start = time.perf_counter()
                if order == "sorted":
                    batches = generation.shard_batches(lengths, batch_size)
                    ids = generation.generate_token_ids(
                        model, tokenizer, chats, batch_size=batch_size, max_new_tokens=args.max_new_tokens
                    )
                else:  # consecutive rows, one generate call per batch (sorted within it: same padding)
                    batches = [np.arange(s, min(s + batch_size, len(chats))) for s in range(0, len(chats), batch_size)]
                    ids = [
                        t
                        for b in batches
                        for t in generation.generate_token_ids(
                            model,
                            tokenizer,
                            chats[int(b[0]) : int(b[-1]) + 1],
                            batch_size=len(b),
                            max_new_tokens=args.max_new_tokens,
                        )
                    ]
                seconds = time.perf_counter() - start
                reference = reference or ids
                runs.append(
                    (
                        batch_size,
                        order,
                        seconds,
                        sum(len(t) for t in ids),
                        _padding(lengths, batches),
                        sum(a == b for a, b in zip(ids, reference)),
                    )
                )
        n_params = sum(p.numel() for p in model.parameters())
    print(
        f"model: {args.model or 'tiny random Llama (config.yaml tiny.llama)'} ({n_params:,} parameters), "
        f"{len(rows)} {args.kind} prompts of {lengths.min()}-{lengths.max()} tokens (mean {lengths.mean():.0f}), "
        f"max_new_tokens {args.max_new_tokens}, device {next(model.parameters()).device}, "
        f"torch threads {args.threads}, {platform.processor() or platform.machine()}\n"
    )
    print(
        "| batch size | prompt order | seconds | rows/s | generated tokens/s | prompt padding | same output as first |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|")
    for batch_size, order, seconds, tokens, padding, same in runs:
        print(
            f"| {batch_size} | {order} | {seconds:.2f} | {len(rows) / seconds:,.1f} | {tokens / seconds:,.0f} | "
            f"{padding:.1%} | {same}/{len(rows)} |"
        )


def run_memory(args) -> None:
    import gc
    import tracemalloc

    import torch
    import yaml

    torch.set_num_threads(1)
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    templates = config["namer"]["templates"]
    sample = read_rows(REPO / "data" / "sample" / "train.parquet", labelled=True)
    rows_all = pd.concat([sample] * -(-max(args.rows) // len(sample)), ignore_index=True)
    print("| rows | peak traced Python memory (MiB) |\n|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_llama(
            Path(tmp) / "tiny", tokenizer_corpus(sample, templates), seed=0, **config["tiny"]["llama"]
        )
        for n in args.rows:
            chats = generation.Chats(rows_all.head(n), teacher_messages, templates)
            gc.collect()
            tracemalloc.start()
            generation._run_chats(model_dir, chats, {"batch_size": 64, "max_new_tokens": 2})
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            print(f"| {n} | {peak / 2**20:.1f} |")


def _merged_config(path) -> dict:
    import yaml

    def merge(base, override):
        return {
            **base,
            **{
                k: merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
                for k, v in override.items()
            },
        }

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    return merge(config, yaml.safe_load(Path(path).read_text()) or {}) if path else config


def run_prefix(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    config = _merged_config(args.configfile)
    templates, gen = config["namer"]["templates"], dict(config["namer"][args.kind])
    rows = read_rows(args.rows, labelled=args.kind == "teacher")
    fields = ["description", "price", *(["supergroup", "group", "module", "brand"] if args.kind == "teacher" else [])]
    build = teacher_messages if args.kind == "teacher" else student_messages
    if args.model:
        _, tokenizer = generation.load_causal_lm(args.model)
    elif args.tokenizer:  # counts only, with a given tokenizer (e.g. the real Llama-3.1 one)
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    else:  # the stand-in's tokenizer as the workflow trains it (on these rows' prompts); no timing
        tokenizer = build_tiny_tokenizer(
            tokenizer_corpus(rows, templates), vocab_size=config["tiny"]["llama"]["vocab_size"]
        )
    chats = generation.Chats(rows.assign(price=rows.get("price", np.nan))[fields], build, templates)
    lengths, prefix = generation.prompt_plan(tokenizer, chats)
    batches = generation.shard_batches(lengths, gen["batch_size"])
    beams = gen.get("num_beams", 1)
    per_name = {
        reuse: generation.prefilled_tokens(lengths, batches, len(prefix) if reuse else 0, beams) / len(rows)
        for reuse in (False, True)
    }
    name = generation.generate_teacher_names if args.kind == "teacher" else generation.generate_student_names
    seconds, names = {False: [], True: []}, {}
    for _ in range(args.repeats if args.model else 0):
        for reuse in (False, True):
            start = time.perf_counter()
            names[reuse] = name(args.model, rows, templates, {**gen, "reuse_prefix": reuse})
            seconds[reuse].append(time.perf_counter() - start)
    counted_with = args.model or f"none (counts only), tokenizer {args.tokenizer or 'of the tiny stand-in'}"
    print(
        f"{args.kind} job: {len(rows)} rows of {args.rows}, model {counted_with}, "
        f"batch_size {gen['batch_size']}, "
        f"max_new_tokens {gen['max_new_tokens']}, num_beams {beams}, torch threads {args.threads}, "
        f"{platform.processor() or platform.machine()}\n"
        f"prompts {lengths.min()}-{lengths.max()} tokens (mean {lengths.mean():.1f}), shared prefix {len(prefix)} "
        f"tokens: {tokenizer.decode(prefix)[-60:]!r}\n"
    )
    print("| reuse_prefix | prefilled prompt tokens per name | wall seconds (median of runs) | runs |")
    print("|---|---:|---:|---|")
    for reuse in (False, True):
        runs = ", ".join(f"{t:.1f}" for t in seconds[reuse])
        median = f"{np.median(seconds[reuse]):.1f}" if seconds[reuse] else "-"
        print(f"| {str(reuse).lower()} | {per_name[reuse]:.1f} | {median} | {runs} |")
    if names:
        same = int((names[False]["answer"] == names[True]["answer"]).sum())
        print(f"\nsame answer with and without reuse: {same}/{len(rows)} rows")


def run_score(args) -> None:
    reference = read_table(args.ref)[["indoml_id", args.ref_column]].rename(columns={args.ref_column: "reference"})
    print("| names | rows | chrF | exact match |\n|---|---:|---:|---:|")
    for path in args.hyp:
        hypothesis = read_table(path)[["indoml_id", args.hyp_column]].rename(columns={args.hyp_column: "hypothesis"})
        joined = hypothesis.merge(reference, on="indoml_id", how="inner")
        if joined.empty:
            raise SystemExit(f"{path}: no indoml_id in common with {args.ref}")
        hyp, ref = joined["hypothesis"].astype(str).tolist(), joined["reference"].astype(str).tolist()
        exact = np.mean([h.strip().lower() == r.strip().lower() for h, r in zip(hyp, ref)])
        print(f"| {path} | {len(joined)} | {quality.chrf(hyp, ref):.2f} | {exact:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    speed = commands.add_parser("speed", help="generation rows/s by batch size, prompts sorted by length or not")
    speed.add_argument("--rows", type=int, default=512, help="sample rows to name (default 512)")
    speed.add_argument(
        "--batch-sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[64, 128, 256],
        help="comma-separated (default 64,128,256; config.yaml uses 64)",
    )
    speed.add_argument("--unsorted", action="store_true", help="also run each batch size in input order")
    speed.add_argument("--kind", choices=["teacher", "student"], default="teacher")
    speed.add_argument("--max-new-tokens", type=int, default=32, help="default: config.yaml's 32")
    speed.add_argument("--threads", type=int, default=1)
    speed.add_argument("--model", help="a local chat model directory instead of the tiny random Llama")
    memory = commands.add_parser("memory", help="peak Python memory of generation by row count")
    memory.add_argument("--rows", type=lambda s: [int(x) for x in s.split(",")], default=[5000, 10000])
    prefix = commands.add_parser("prefix", help="prefilled tokens and wall time with and without prefix reuse")
    prefix.add_argument("--model", help="the job's chat model directory (none: the stand-in's tokenizer, no timing)")
    prefix.add_argument("--rows", required=True, help="the job's rows (Parquet, e.g. results/data/train.parquet)")
    prefix.add_argument("--tokenizer", help="without --model: count with this tokenizer folder (no timing)")
    prefix.add_argument("--configfile", help="a config merged over config.yaml (templates, namer.teacher/student)")
    prefix.add_argument("--kind", choices=["teacher", "student"], default="teacher")
    prefix.add_argument("--repeats", type=int, default=3)
    prefix.add_argument("--threads", type=int, default=1)
    score = commands.add_parser("score", help="chrF of generated names against reference names")
    score.add_argument("--ref", required=True)
    score.add_argument("--ref-column", default="name")
    score.add_argument("--hyp", action="append", required=True)
    score.add_argument("--hyp-column", default="name")
    args = parser.parse_args()
    {"speed": run_speed, "memory": run_memory, "prefix": run_prefix, "score": run_score}[args.command](args)


if __name__ == "__main__":
    main()

"""Benchmark and scoring for the name-synthesis branch.

speed: tokens/second of batched greedy generation (left padding, prompts sorted by length) against
one prompt at a time, on a tiny random Llama built here (or any local chat model via --model), with
the default student prompts over synthetic receipt lines. A random model rarely emits a stop token,
so nearly every answer runs to --max-new-tokens; only tokens before a stop token are counted.
Outputs of every batch size are compared with the one-at-a-time outputs (greedy must agree).

    python bench/namer_generation.py speed [--prompts 256] [--batch-sizes 1,8,32,64]
        [--max-new-tokens 24] [--threads 1] [--model DIR] [--hidden-size 64] [--layers 2]

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

from prodcat import namer  # noqa: E402
from prodcat.io import read_table  # noqa: E402
from prodcat.prompts import DEFAULT_TEMPLATES, student_messages  # noqa: E402
from prodcat.tiny_llama import build_tiny_llama  # noqa: E402

WORDS = ["cad", "crm", "egg", "hnz", "bkd", "beans", "tsco", "wht", "brd", "cc", "zero", "btl", "walk",
         "crsp", "salt", "pg", "tips", "bags", "choc", "mlk", "org", "frz", "pza", "chs", "ssg"]
SIZES = ["197g", "415g", "800g", "2l", "6pk", "80s", "1kg", "500ml", "12x330ml", "4pk"]


def synthetic_rows(n: int, seed: int) -> pd.DataFrame:
    """Receipt-like lines of 2-8 words plus a size, so that prompt lengths vary as in the data."""
    rng = np.random.default_rng(seed)
    descriptions = [
        " ".join([*rng.choice(WORDS, size=rng.integers(2, 9)), rng.choice(SIZES)]) for _ in range(n)
    ]
    prices = np.where(rng.random(n) < 0.1, np.nan, rng.uniform(0.5, 20, n).round(2))
    return pd.DataFrame({"indoml_id": np.arange(n, dtype="int64"), "description": descriptions, "price": prices})


def run_speed(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    rows = synthetic_rows(args.prompts, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model
        if model_dir is None:
            texts = [*rows["description"], *DEFAULT_TEMPLATES.values()]
            model_dir = build_tiny_llama(Path(tmp) / "tiny", texts, hidden_size=args.hidden_size, num_layers=args.layers,
                                         intermediate_size=2 * args.hidden_size)
        model, tokenizer = namer.load_causal_lm(model_dir)
        chats = [student_messages(row, DEFAULT_TEMPLATES) for _, row in rows.iterrows()]
        namer.generate_token_ids(model, tokenizer, chats[:4], batch_size=4, max_new_tokens=4)  # warm-up
        results, reference = [], None
        for batch_size in args.batch_sizes:
            start = time.perf_counter()
            ids = namer.generate_token_ids(model, tokenizer, chats, batch_size=batch_size, max_new_tokens=args.max_new_tokens)
            seconds = time.perf_counter() - start
            tokens = sum(len(t) for t in ids)
            if reference is None:
                reference = ids
            results.append((batch_size, seconds, tokens, sum(a == b for a, b in zip(ids, reference))))
        n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {args.model or 'tiny random Llama'} ({n_params:,} parameters), {args.prompts} prompts, "
          f"max_new_tokens {args.max_new_tokens}, device {next(model.parameters()).device}, "
          f"torch threads {args.threads}, {platform.processor() or platform.machine()}\n")
    base_rate = results[0][2] / results[0][1]
    print(f"| batch size | seconds | generated tokens | tokens/s | speed-up vs batch {results[0][0]} | same output as batch {results[0][0]} |")
    print("|---:|---:|---:|---:|---:|---:|")
    for batch_size, seconds, tokens, same in results:
        rate = tokens / seconds
        print(f"| {batch_size} | {seconds:.2f} | {tokens} | {rate:,.0f} | {rate / base_rate:.1f}x | {same}/{args.prompts} |")


def run_score(args) -> None:
    reference = read_table(args.ref)[["indoml_id", args.ref_column]].rename(columns={args.ref_column: "reference"})
    print(f"| names | rows | chrF | exact match |\n|---|---:|---:|---:|")
    for path in args.hyp:
        hypothesis = read_table(path)[["indoml_id", args.hyp_column]].rename(columns={args.hyp_column: "hypothesis"})
        joined = hypothesis.merge(reference, on="indoml_id", how="inner")
        if joined.empty:
            raise SystemExit(f"{path}: no indoml_id in common with {args.ref}")
        hyp, ref = joined["hypothesis"].astype(str).tolist(), joined["reference"].astype(str).tolist()
        exact = np.mean([h.strip().lower() == r.strip().lower() for h, r in zip(hyp, ref)])
        print(f"| {path} | {len(joined)} | {namer.chrf(hyp, ref):.2f} | {exact:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    speed = commands.add_parser("speed", help="batched vs one-at-a-time generation throughput")
    speed.add_argument("--prompts", type=int, default=256)
    speed.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 32, 64],
                       help="comma-separated; the first is the baseline (default 1,8,32,64)")
    speed.add_argument("--max-new-tokens", type=int, default=24)
    speed.add_argument("--threads", type=int, default=1)
    speed.add_argument("--model", help="a local chat model directory instead of the tiny random Llama")
    speed.add_argument("--hidden-size", type=int, default=64)
    speed.add_argument("--layers", type=int, default=2)
    speed.add_argument("--seed", type=int, default=0)
    score = commands.add_parser("score", help="chrF of generated names against reference names")
    score.add_argument("--ref", required=True)
    score.add_argument("--ref-column", default="name")
    score.add_argument("--hyp", action="append", required=True)
    score.add_argument("--hyp-column", default="name")
    args = parser.parse_args()
    run_speed(args) if args.command == "speed" else run_score(args)


if __name__ == "__main__":
    main()

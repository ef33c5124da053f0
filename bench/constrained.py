"""Benchmark hierarchy-constrained decoding on the real IndoML label space.

Measures, for the ByT5 byte tokenizer: trie build time and memory, the cost of one allowed-token
lookup (a single prefix walked from the root; one incremental decoding step for a batch of beams),
and generation constrained vs unconstrained on a tiny random ByT5 (rows/s; decoding steps, as an
untrained model never emits EOS unconstrained and so always runs to max_new_tokens, while under the
constraint a batch stops at its longest chosen path; ms per step; seconds spent computing the
constraint, which transformers' own per-row masking for prefix_allowed_tokens_fn comes on top of;
share of outputs that are known paths). Usage:

    python bench/constrained.py --hierarchy ../shared/indoml2024/hierarchy.json [--rows 256]
        [--batch-size 64] [--beams 1 3] [--threads 1] [--out result.json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from prodcat import LEVELS  # noqa: E402
from prodcat.data.hierarchy import Hierarchy  # noqa: E402
from prodcat.data.target_text import format_target, parse_target  # noqa: E402
from prodcat.labelers.constrained import (  # noqa: E402
    IncrementalStates,
    PathTrie,
    constrained_logits_processor,
    max_target_tokens,
    prefix_allowed_tokens_fn,
)

DIMS = {"d_model": 64, "d_ff": 128, "num_layers": 2, "num_heads": 4, "dropout_rate": 0.0}


def build(hierarchy: Hierarchy, tokenizer) -> tuple[PathTrie, dict]:
    paths = list(hierarchy.paths[list(LEVELS)].itertuples(index=False, name=None))
    started = time.perf_counter()
    sequences = tokenizer(text_target=[format_target(p) for p in paths])["input_ids"]
    tokenize_s = time.perf_counter() - started
    tracemalloc.start()
    started = time.perf_counter()
    trie = PathTrie(sequences, paths, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    build_s = time.perf_counter() - started  # tracemalloc slows Python code, not the NumPy work
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return trie, {
        "paths": len(paths),
        "nodes": trie.n_nodes,
        "tokens": int(sum(len(s) for s in sequences)),
        "max_target_tokens": max_target_tokens(trie),
        "ambiguous_paths": trie.n_ambiguous,
        "tokenize_s": tokenize_s,
        "build_s": build_s,
        "build_peak_mb": peak / 1e6,
        "trie_mb": trie.nbytes / 1e6,
    }


def lookups(trie: PathTrie, tokenizer, hierarchy: Hierarchy, rows: int, seed: int) -> dict:
    """Cold: one full-length prefix walked from the root. Incremental: `rows` decoder rows advanced
    along real targets one token per call (rows shuffled each step, as beams are), as the logits
    processor sees them; per-row: the same through prefix_allowed_tokens_fn."""
    rng = np.random.default_rng(seed)
    paths = list(hierarchy.paths[list(LEVELS)].itertuples(index=False, name=None))
    picked = [paths[i] for i in rng.choice(len(paths), rows)]
    sequences = tokenizer(text_target=[format_target(p) for p in picked])["input_ids"]
    width = max(len(s) for s in sequences)
    targets = np.full((rows, width), tokenizer.pad_token_id, dtype=np.int64)
    for i, s in enumerate(sequences):
        targets[i, : len(s)] = s
    longest = targets[np.argmax([len(s) for s in sequences])]

    repeats = 200
    started = time.perf_counter()
    for _ in range(repeats):
        trie.allowed_next(longest)
    cold_us = (time.perf_counter() - started) / repeats * 1e6

    states = IncrementalStates(trie)
    started = time.perf_counter()
    for t in range(width + 1):
        trie.allowed_pairs(states.rows(targets[rng.permutation(rows), :t]))
    step_ms = (time.perf_counter() - started) / (width + 1) * 1e3

    import torch

    allowed = prefix_allowed_tokens_fn(trie)
    decoded = torch.from_numpy(np.concatenate([np.zeros((rows, 1), dtype=np.int64), targets], axis=1))
    started = time.perf_counter()
    for t in range(1, width + 2):
        for row in range(rows):
            allowed(0, decoded[row, :t])
    per_row_us = (time.perf_counter() - started) / ((width + 1) * rows) * 1e6
    return {
        "lookup_rows": rows,
        "steps": width + 1,
        "cold_walk_us": cold_us,
        "cold_walk_tokens": len(longest),
        "incremental_step_ms": step_ms,
        "incremental_us_per_row": step_ms * 1e3 / rows,
        "prefix_fn_us_per_row": per_row_us,
    }


def sources(hierarchy: Hierarchy, n: int, seed: int) -> list[str]:
    """Receipt-like lines: a brand and module fragment and a quantity (the model is untrained;
    only their lengths matter)."""
    rng = random.Random(seed)
    paths = list(hierarchy.paths[list(LEVELS)].itertuples(index=False, name=None))
    return [
        f"{b[:8]} {m[:10]} {rng.randint(1, 12)} pk {rng.randint(50, 900)} g" for _, _, m, b in rng.choices(paths, k=n)
    ]


class Timed:
    """Wraps a logits processor or a prefix_allowed_tokens_fn and adds up the seconds spent in it."""

    def __init__(self, inner):
        self.inner, self.seconds = inner, 0.0

    def __call__(self, *args):
        started = time.perf_counter()
        out = self.inner(*args)
        self.seconds += time.perf_counter() - started
        return out


def generation(trie: PathTrie, hierarchy: Hierarchy, texts: list[str], batch_size: int, beams: list[int]) -> list[dict]:
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, LogitsProcessorList

    from prodcat.runtime.device import pick_device
    from prodcat.standins.tiny_seq2seq import build_tiny_byt5

    device, dtype = pick_device()
    known = hierarchy.path_set()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_byt5(Path(tmp) / "byt5", DIMS)
        model, tokenizer = AutoModelForSeq2SeqLM.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir)
    model.to(device=device, dtype=dtype).eval()
    modes = {
        "unconstrained": lambda timer: {},
        "logits processor": lambda timer: {
            "logits_processor": LogitsProcessorList([timer(constrained_logits_processor(trie))])
        },
        "prefix_allowed_tokens_fn": lambda timer: {"prefix_allowed_tokens_fn": timer(prefix_allowed_tokens_fn(trie))},
    }
    results = []
    for num_beams in beams:
        for mode, constraint in modes.items():
            steps, valid, timers = 0, 0, []

            def timer(inner, timers=timers):
                timers.append(Timed(inner))
                return timers[-1]

            started = time.perf_counter()
            with torch.inference_mode():
                for start in range(0, len(texts), batch_size):
                    batch = tokenizer(texts[start : start + batch_size], padding=True, return_tensors="pt").to(device)
                    out = model.generate(
                        **batch,
                        num_beams=num_beams,
                        do_sample=False,
                        max_new_tokens=max_target_tokens(trie),
                        **constraint(timer),
                    )
                    steps += out.shape[1] - 1  # decoding steps of this batch
                    valid += sum(
                        parse_target(t) in known for t in tokenizer.batch_decode(out, skip_special_tokens=True)
                    )
            seconds = time.perf_counter() - started
            in_constraint = sum(t.seconds for t in timers)
            results.append(
                {
                    "num_beams": num_beams,
                    "mode": mode,
                    "rows": len(texts),
                    "seconds": seconds,
                    "rows_per_s": len(texts) / seconds,
                    "decode_steps": steps,
                    "ms_per_step": seconds / steps * 1e3,
                    "constraint_seconds": in_constraint,
                    "constraint_share": in_constraint / seconds,
                    "known_paths": valid / len(texts),
                }
            )
    return results


def markdown(result: dict) -> str:
    b, lk = result["build"], result["lookup"]
    lines = [
        f"Trie over the ByT5 targets of {b['paths']:,} paths ({b['tokens']:,} tokens, longest "
        f"{b['max_target_tokens']}, {b['ambiguous_paths']} tokenizing alike)",
        "",
        "| measure | value |",
        "|---|---|",
        f"| trie nodes | {b['nodes']:,} |",
        f"| tokenize targets (ByT5Tokenizer) | {b['tokenize_s']:.2f} s |",
        f"| build trie from token ids | {b['build_s']:.2f} s |",
        f"| build peak memory (tracemalloc) | {b['build_peak_mb']:.1f} MB |",
        f"| trie arrays | {b['trie_mb']:.1f} MB |",
        f"| allowed_next, cold walk of {lk['cold_walk_tokens']} tokens | {lk['cold_walk_us']:.0f} µs |",
        f"| incremental step, {lk['lookup_rows']} rows (processor) | {lk['incremental_step_ms']:.2f} ms "
        f"({lk['incremental_us_per_row']:.1f} µs/row) |",
        f"| prefix_allowed_tokens_fn, per row call | {lk['prefix_fn_us_per_row']:.1f} µs |",
        "",
        f"Generation, tiny random ByT5 {DIMS}, max_new_tokens={b['max_target_tokens']}, "
        f"batch {result['batch_size']}, {result['threads']} torch thread(s), {result['device']}",
        "",
        "| beams | mode | rows/s | s | decoding steps (all batches) | ms/step | s in the constraint | known paths |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for g in result["generation"]:
        lines.append(
            f"| {g['num_beams']} | {g['mode']} | {g['rows_per_s']:.1f} | {g['seconds']:.1f} | "
            f"{g['decode_steps']} | {g['ms_per_step']:.1f} | {g['constraint_seconds']:.1f} "
            f"({g['constraint_share']:.0%}) | {g['known_paths']:.0%} |"
        )
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hierarchy", required=True, help="hierarchy JSON (ours or the nested IndoML form)")
    parser.add_argument("--rows", type=int, default=256, help="rows to generate for")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--lookup-rows", type=int, default=192, help="decoder rows per lookup step (batch x beams)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="also write the numbers as JSON")
    args = parser.parse_args(argv)

    import torch
    from transformers import ByT5Tokenizer

    from prodcat.runtime.device import describe_device

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    hierarchy = Hierarchy.from_json(args.hierarchy)
    tokenizer = ByT5Tokenizer()
    trie, built = build(hierarchy, tokenizer)
    result = {
        "build": built,
        "lookup": lookups(trie, tokenizer, hierarchy, args.lookup_rows, args.seed),
        "generation": generation(
            trie, hierarchy, sources(hierarchy, args.rows, args.seed), args.batch_size, args.beams
        ),
        "batch_size": args.batch_size,
        "threads": args.threads,
        "device": describe_device(),
    }
    print(markdown(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()

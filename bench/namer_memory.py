"""Peak memory of the namer's stages on a mid-size Llama stand-in, against its training step.

The stand-in has Llama-3.1-8B's real hidden size (4096), feed-forward (14336), head layout (32 query,
8 key/value heads) and vocabulary (128,256), with 2 layers instead of 32 (random bf16 weights). Each
stage runs in its own process and its peak RSS is read from the kernel (wait4), so the figures are
host memory on this CPU machine, the same quantity a GPU run would hold in device memory for the
model and its buffers:

  train             the paper's LoRA step: 8-bit base, gradient checkpointing, 2 optimizer steps
  merge             prodcat.names.merge.merge_lora: tensor by tensor from the safetensors, bf16
  merge_fp32_peft   what the namer did before: the base reloaded in fp32, PEFT merge_and_unload
  flops_meta        prodcat.names.lora.training_step_costs: the LoRA step's FLOPs on the meta device
  flops_fp32_full   what Table 2 did before: a full fp32 forward + backward of the merged model

    .venv/bin/python bench/namer_memory.py [--work /tmp/namer-memory] [--layers 2] [--batch 4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = ["imports", "train", "merge", "merge_fp32_peft", "flops_meta", "flops_fp32_full"]
TEMPLATES = None  # the default run's templates (config.yaml), read in run_stage


def templates():
    import yaml

    return yaml.safe_load((REPO / "config.yaml").read_text())["namer"]["templates"]


def build(work: Path, layers: int, rows: int) -> None:
    """The stand-in (real width, `layers` layers) with a tokenizer trained on the sample's prompts,
    and training rows with names (the sample's true names stand in for teacher names)."""
    import pandas as pd
    import torch

    from prodcat.data.io import ingest
    from prodcat.standins import paper_models
    from prodcat.standins.tiny_llama import build_tiny_tokenizer
    from prodcat.workflow import tokenizer_corpus

    train = ingest(REPO / "data/sample/train.parquet").head(rows)
    names = pd.read_parquet(REPO / "data/sample/names.parquet")
    train = train.merge(names[["indoml_id", "name"]], on="indoml_id")
    train.to_parquet(work / "rows.parquet")
    tokenizer = build_tiny_tokenizer(tokenizer_corpus(train, templates()), vocab_size=2000)
    ids = {
        token: tokenizer.convert_tokens_to_ids(token)
        for token in ("<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|finetune_right_pad_id|>")
    }
    torch.manual_seed(0)
    model = paper_models.build(
        "llama",
        device="cpu",
        dtype=torch.bfloat16,
        num_hidden_layers=layers,
        bos_token_id=ids["<|begin_of_text|>"],
        pad_token_id=ids["<|finetune_right_pad_id|>"],
        eos_token_id=[ids["<|end_of_text|>"], ids["<|eot_id|>"]],
    )
    model.config.attn_implementation = "sdpa"
    model.save_pretrained(work / "base")
    tokenizer.save_pretrained(work / "base")
    print(json.dumps({"parameters": sum(p.numel() for p in model.parameters())}))


def run_stage(stage: str, work: Path, batch: int) -> None:
    import pandas as pd
    import torch

    torch.set_num_threads(2)
    import peft  # noqa: F401
    import transformers  # noqa: F401
    import trl  # noqa: F401

    from prodcat.names import generation, lora

    rows = pd.read_parquet(work / "rows.parquet")
    params = {
        **lora.DEFAULT_TRAIN_PARAMS,
        "r": 16,
        "alpha": 16,
        "load_in_8bit": True,
        "gradient_checkpointing": True,
        "per_device_train_batch_size": batch,
        "gradient_accumulation_steps": 1,
        "max_steps": 2,
        "logging_steps": 1,
        "save_steps": 1000,
    }
    if stage == "imports":
        return
    if stage == "train":
        lora.train_lora(
            work / "base", rows, work / "namer", params, templates=templates(), checkpoint_dir=work / "checkpoints"
        )
    elif stage == "merge":
        from prodcat.names.merge import merge_lora

        merge_lora(work / "base", work / "namer" / "adapter", work / "merged")
    elif stage == "merge_fp32_peft":
        from peft import PeftModel

        base, tokenizer = generation.load_causal_lm(work / "base", dtype=torch.float32)
        merged = PeftModel.from_pretrained(base, work / "namer" / "adapter").merge_and_unload().to(torch.bfloat16)
        merged.save_pretrained(work / "merged_peft")
    elif stage == "flops_meta":
        print(json.dumps(lora.training_step_costs(work / "base", rows, templates(), params)))
    elif stage == "flops_fp32_full":
        from prodcat.names.prompts import student_messages
        from prodcat.runtime.efficiency import training_step_flops

        model, tokenizer = generation.load_causal_lm(work / "merged", dtype=torch.float32)
        tokenizer.padding_side = "right"
        texts = [
            tokenizer.apply_chat_template(
                student_messages(row, templates()) + [{"role": "assistant", "content": row["name"]}], tokenize=False
            )
            for _, row in rows.head(batch).iterrows()
        ]
        encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        encoded["labels"] = encoded["input_ids"].masked_fill(encoded["attention_mask"] == 0, -100)
        print(json.dumps({"train_gflops_per_step": training_step_flops(model, dict(encoded)) / 1e9}))
    else:
        raise SystemExit(f"unknown stage {stage!r}: expected one of {STAGES}")


def measure(args: list[str]) -> tuple[float, float, str]:
    """(peak RSS in MiB, seconds, stdout) of one child process."""
    started = time.time()
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"stage {args} failed with exit code {proc.returncode}")
    return usage.ru_maxrss / 1024, time.time() - started, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/namer-memory"))
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage == "build":
        return build(args.work, args.layers, args.rows)
    if args.stage:
        return run_stage(args.stage, args.work, args.batch)

    args.work.mkdir(parents=True, exist_ok=True)
    rss, seconds, out = measure(
        ["--stage", "build", "--work", str(args.work), "--layers", str(args.layers), "--rows", str(args.rows)]
    )
    print(
        f"stand-in: {json.loads(out.strip().splitlines()[-1])['parameters']:,} parameters "
        f"(hidden 4096, ffn 14336, heads 32/8, vocab 128256, {args.layers} layers), built in {seconds:.0f} s"
    )
    results = {}
    for stage in STAGES:
        rss, seconds, out = measure(["--stage", stage, "--work", str(args.work), "--batch", str(args.batch)])
        results[stage] = (rss, seconds, out.strip().splitlines()[-1] if out.strip() else "")
    train = results["train"][0]
    print("\n| stage | peak RSS (MiB) | ratio to train | seconds | output |\n|---|---|---|---|---|")
    for stage, (rss, seconds, out) in results.items():
        print(f"| {stage} | {rss:,.0f} | {rss / train:.2f} | {seconds:.0f} | {out[:120]} |")


if __name__ == "__main__":
    main()

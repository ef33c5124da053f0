"""The paper's CUDA path at real shapes, in one short run (for a lent GPU; `bench/gpu_check.sh`).

Random-init models at the real configurations (prodcat.standins.paper_models), through the project's own
code paths, in bf16 on CUDA:
  1. byt5-small and flan-t5-base: bf16-autocast training steps at batch 32 and the paper's lengths
     (seconds a step, peak CUDA memory against bench/paper_shapes.py's plan);
  2. the 8B-shaped Llama written as a checkpoint, then prodcat.names.lora.train_lora on it: the base
     (bf16, or 8-bit through bitsandbytes), gradient checkpointing and per-device batch of
     configs/paper.yaml's namer, LoRA r 16 on every projection, a few steps;
  3. prodcat.names.merge.merge_lora of that adapter (CPU) and teacher-style generation rows/s with
     prodcat.names.generation.generate_token_ids at batch 64 and 256 (bf16).
At the end (a known GPU, not --smoke) the measured share of peak FLOP/s and of memory bandwidth is
printed beside bench/paper_plan.py's fixed constants (40 % and 70 %).
The namer's training profiles 2 of its 4 steps (prodcat.runtime.profiling, CPU + CUDA activities): its
self CUDA time per step shows that Table 2's CUDA column fills on a GPU.

    python bench/gpu_check.py --out DIR [--smoke]

--smoke runs the same steps with narrow shapes (2 layers, small widths) on whatever device there
is, so that the script itself is tested on a CPU before a GPU's minutes are spent on it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GENERATION_STEPS = 48  # max_new_tokens of the generation check (random weights rarely stop earlier)


def cuda_peak_gib(reset: bool = False):
    import torch

    if not torch.cuda.is_available():
        return None
    peak = torch.cuda.max_memory_allocated() / 1024**3
    if reset:
        torch.cuda.reset_peak_memory_stats()
    return peak


def t5_steps(arch: str, smoke: bool, device: str) -> dict:
    import torch

    from prodcat.standins import paper_models

    narrow = {"num_layers": 2, "num_decoder_layers": 1, "d_model": 64, "d_ff": 128, "num_heads": 2} if smoke else {}
    batch, source, target = (4, 16, 24) if smoke else {"byt5": (32, 69, 166), "flant5": (32, 48, 64)}[arch]
    model = paper_models.build(arch, device=device, dropout_rate=0.0, **narrow)
    vocab = model.config.vocab_size
    inputs = {
        "input_ids": torch.randint(3, min(vocab, 300) - 1, (batch, source), device=device),
        "labels": torch.randint(3, min(vocab, 300) - 1, (batch, target), device=device),
    }
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    use_bf16 = device == "cuda"
    times = []
    cuda_peak_gib(reset=True)
    for _ in range(4):
        started = time.time()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=use_bf16):
            loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.time() - started)
    return {
        "model": arch,
        "batch": batch,
        "source": source,
        "target": target,
        "step_seconds": min(times[1:]),
        "peak_cuda_gib": cuda_peak_gib(reset=True),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def llama_checkpoint(work: Path, smoke: bool) -> Path:
    """A random-init Llama of the real shape (or a narrow one) saved as a checkpoint with a Llama-3.1-
    style tokenizer, so that the namer's own loading path (8-bit, device_map) is what runs."""
    import torch
    import yaml

    from prodcat.data.io import ingest
    from prodcat.standins import paper_models
    from prodcat.standins.tiny_llama import build_tiny_tokenizer
    from prodcat.workflow import tokenizer_corpus

    templates = yaml.safe_load((REPO / "config.yaml").read_text())["namer"]["templates"]
    rows = ingest(REPO / "data/sample/train.parquet").head(512)
    tokenizer = build_tiny_tokenizer(tokenizer_corpus(rows, templates), vocab_size=2000)
    ids = {
        t: tokenizer.convert_tokens_to_ids(t)
        for t in ("<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|finetune_right_pad_id|>")
    }
    narrow = (
        {
            "num_hidden_layers": 2,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "vocab_size": 4096,
        }
        if smoke
        else {}
    )
    model = paper_models.build(
        "llama",
        device="meta",
        **narrow,
        bos_token_id=ids["<|begin_of_text|>"],
        pad_token_id=ids["<|finetune_right_pad_id|>"],
        eos_token_id=[ids["<|end_of_text|>"], ids["<|eot_id|>"]],
    )
    model = model.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator, dtype=torch.float32).mul_(0.02).to(param.dtype))
    model.config.attn_implementation = "sdpa"
    out = work / "llama"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def namer_steps(base: Path, work: Path, smoke: bool) -> dict:
    import pandas as pd
    import yaml

    from prodcat.data.io import ingest
    from prodcat.names import generation, lora

    templates = yaml.safe_load((REPO / "config.yaml").read_text())["namer"]["templates"]
    rows = ingest(REPO / "data/sample/train.parquet").head(64)
    names = pd.read_parquet(REPO / "data/sample/names.parquet")[["indoml_id", "name"]]
    rows = rows.merge(names, on="indoml_id")
    # the base, checkpointing and per-device batch of configs/paper.yaml's namer (bf16 base now)
    paper = yaml.safe_load((REPO / "configs" / "paper.yaml").read_text())["namer"]["train"]
    params = {
        "r": 16,
        "alpha": 16,
        "load_in_8bit": paper["load_in_8bit"],
        "gradient_checkpointing": paper["gradient_checkpointing"],
        "per_device_train_batch_size": paper["per_device_train_batch_size"],
        "gradient_accumulation_steps": 1,
        "max_steps": 4,
        "logging_steps": 1,
        "save_steps": 1000,
    }
    cuda_peak_gib(reset=True)
    started = time.time()
    metrics = lora.train_lora(
        base,
        rows,
        work / "namer",
        params,
        templates=templates,
        checkpoint_dir=work / "ckpt",
        profile={"skip_first": 1, "warmup": 1, "steps": 2},
    )
    train = {
        "seconds": time.time() - started,
        "peak_cuda_gib": cuda_peak_gib(reset=True),
        "loss": metrics["train_loss"],
        "steps": metrics["global_step"],
        "profile": {
            k: metrics["profile"].get(k)
            for k in (
                "activities",
                "recorded_steps",
                "self_cpu_ms_per_step",
                "self_cuda_ms_per_step",
                "overhead_seconds",
                "error",
            )
        },
    }
    from prodcat.names.merge import merge_lora

    started = time.time()
    merge_lora(base, work / "namer" / "adapter", work / "merged")
    merge = {"seconds": time.time() - started}
    model, tokenizer = generation.load_causal_lm(work / "merged")
    from prodcat.names.prompts import teacher_messages

    chats = [teacher_messages(row, templates) for row in rows.to_dict("records")]
    generation = {}
    for batch in (64, 256):
        prompts = (chats * (batch // len(chats) + 1))[:batch]
        cuda_peak_gib(reset=True)
        started = time.time()
        generation.generate_token_ids(model, tokenizer, prompts, batch_size=batch, max_new_tokens=GENERATION_STEPS)
        seconds = time.time() - started
        generation[batch] = {"rows_per_second": batch / seconds, "peak_cuda_gib": cuda_peak_gib(reset=True)}
    key = "train_adapter_8bit" if params["load_in_8bit"] else "train_adapter_bf16"
    return {key: train, "merge": merge, "generation_bf16": generation}


# GPU names (torch.cuda.get_device_name) -> bench/paper_plan.py's GPU kinds
PLAN_KINDS = {"4090": "rtx4090", "A100": "a100", "H100": "h100"}


def load_paper_plan():
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("paper_plan", REPO / "bench" / "paper_plan.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["paper_plan"] = module
    spec.loader.exec_module(module)
    return module


def efficiencies(report: dict) -> dict | None:
    """The measured share of peak (T5 training steps: FLOPs from the meta-device parameter counts)
    and of memory bandwidth (bf16 generation: the weights read once per decoding step, prefill
    included, so a lower bound), beside bench/paper_plan.py's fixed constants. None for a device
    the plan does not know, or a smoke run (narrow shapes)."""
    kind = next((k for name, k in PLAN_KINDS.items() if name in report.get("device", "")), None)
    if kind is None or report.get("smoke"):
        return None
    plan = load_paper_plan()
    gpu, sizes = plan.GPUS[kind], plan.model_sizes()
    measured = {}
    for arch in ("byt5", "flant5"):
        r, size = report[arch], sizes[arch]
        flops = 6 * r["batch"] * (size["encoder"] * r["source"] + (size["decoder"] + size["head"]) * r["target"])
        measured[f"train_labeler[{arch}] matmul share of peak"] = flops / r["step_seconds"] / gpu["peak"]
    for batch, g in report.get("namer", {}).get("generation_bf16", {}).items():
        step = int(batch) / g["rows_per_second"] / GENERATION_STEPS
        measured[f"generation batch {batch}: weight reads, share of bandwidth"] = (
            sizes["llama"]["weights_bytes_bf16"] / step / gpu["bandwidth"]
        )
    return {
        "gpu": kind,
        "plan": {"matmul share of peak": plan.MATMUL_EFFICIENCY, "share of bandwidth": plan.BANDWIDTH_EFFICIENCY},
        "measured": measured,
    }


def print_efficiencies(result: dict) -> None:
    print(f"\n| {result['gpu']}: measured | value | bench/paper_plan.py's constant |\n|---|---|---|")
    for what, value in result["measured"].items():
        constant = result["plan"]["matmul share of peak" if "peak" in what else "share of bandwidth"]
        print(f"| {what} | {value:.2f} | {constant:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.out / "work"
    report = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu", "smoke": args.smoke}

    def save():
        (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1))
        print(json.dumps(report, indent=1), flush=True)

    for arch in ("byt5", "flant5"):
        report[arch] = t5_steps(arch, args.smoke, device)
        save()
    base = llama_checkpoint(work, args.smoke)
    report["namer"] = namer_steps(base, work, args.smoke)
    save()
    result = efficiencies(report)
    if result is not None:
        report["efficiency"] = result
        save()
        print_efficiencies(result)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

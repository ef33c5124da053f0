"""The paper's models at their real shapes: parameters, a memory plan per rule, and CPU timings.

1. Parameters of byt5-small, flan-t5-base, the multimodal ByT5 and Llama-3.1-8B + the paper's LoRA,
   counted on the meta device (prodcat.standins.paper_models), next to PRMAS's Table 2.
2. A GPU memory plan per rule of configs/paper.yaml (bf16; the namer's base in bf16 or 8-bit, at the
   configured batch, with and without gradient checkpointing): weights,
   gradients, optimizer state and activations. Weights, gradients and optimizer state follow from
   the parameter counts and dtypes; activations are MEASURED: the bytes autograd saves for the
   backward pass of one forward at the paper's batch and lengths (torch saved-tensor hooks, bf16
   autocast, on the CPU, real-size random-init models; Llama: one real-width layer, scaled to 32
   with gradient checkpointing). Generation: weights + KV cache at the configured batch.
3. For byt5-small and flan-t5-base at real size on this CPU (fp32): seconds per training step at
   batch 8 (the paper's 32 needs ~10 GB of host memory in fp32), peak RSS, and generation rows/s.

    .venv/bin/python bench/paper_shapes.py [--skip-cpu] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GIB = 1024**3
CPU_BATCH = 8  # the batch of the CPU timings (the memory plan uses the paper's)

# The paper's batch and lengths (configs/paper.yaml). Lengths are what a padded batch reaches on the
# competition data: descriptions are at most 68 characters (ByT5 bytes + eos), the longest target
# text is ~155-165 bytes; Flan-T5 reads inferred names (~16 SentencePiece tokens, 48 at most) and
# writes the target in ~45 tokens; a teacher/student prompt is ~200 Llama tokens plus the answer.
SHAPES = {
    "byt5": {"batch": 32, "source": 69, "target": 166, "predict_batch": 256},
    "flant5": {"batch": 32, "source": 48, "target": 64, "predict_batch": 256},
    "llama": {"train_batch": 8, "sequence": 256, "generate_batch": 64, "prompt": 210, "new_tokens": 48},
}


CUDA_OVERHEAD = GIB  # CUDA context, cuBLAS workspace and allocator slack of a training process


def namer_variants() -> list[tuple[bool, int, bool]]:
    """(8-bit base, per-device batch, gradient checkpointing) of the namer's training to plan: the
    parent commit's (8-bit, batch 8, checkpointing), configs/paper.yaml's, and bf16 at batch 8."""
    import yaml

    train = yaml.safe_load((REPO / "configs" / "paper.yaml").read_text())["namer"]["train"]
    configured = (
        bool(train["load_in_8bit"]),
        int(train["per_device_train_batch_size"]),
        bool(train["gradient_checkpointing"]),
    )
    variants = [(True, 8, True), (False, 8, True), (False, 8, False), configured]
    return list(dict.fromkeys(variants))


def saved_activation_bytes(model, batch: dict, *, autocast: bool = True) -> int:
    """Bytes autograd keeps for backward over one forward (unique storages, parameters excluded).
    Under bf16 autocast (the Trainer's mixed precision) that includes the bf16 copies of the fp32
    weights that autocast caches for the backward pass: GPU memory too."""
    import contextlib

    import torch

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    model.train()
    cast = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), cast:
        loss = model(**batch).loss
    del loss
    return sum(seen.values())


def t5_batch(model, batch: int, source: int, target: int) -> dict:
    import torch

    vocab = model.config.vocab_size
    return {
        "input_ids": torch.randint(3, vocab - 200, (batch, source)),
        "attention_mask": torch.ones(batch, source, dtype=torch.long),
        "labels": torch.randint(3, vocab - 200, (batch, target)),
    }


def t5_child(arch: str, out: Path) -> None:
    """Real-size random-init T5 on this CPU: activations, a timed training step, generation rows/s."""
    import torch

    from prodcat.standins import paper_models

    torch.manual_seed(0)
    torch.set_num_threads(2)
    shape = SHAPES[arch]
    model = paper_models.build(arch, device="cpu", dropout_rate=0.0)
    result = {
        "activation_bytes_bf16": saved_activation_bytes(
            model, t5_batch(model, shape["batch"], shape["source"], shape["target"])
        )
    }
    # Timing at a smaller batch: at batch 32 a real-size fp32 step holds ~10 GB here (activations of
    # 32 x 166-byte targets), more than a machine shared with other work should give.
    batch = t5_batch(model, CPU_BATCH, shape["source"], shape["target"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times = []
    for _ in range(2):  # the first step allocates the optimizer state
        started = time.time()
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.time() - started)
    result["train_step_seconds_fp32"] = times[-1]
    model.eval()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.inference_mode():
        started = time.time()
        # random weights rarely write eos: every row runs to max_new_tokens, the worst case
        model.generate(**inputs, max_new_tokens=shape["target"], min_new_tokens=shape["target"], do_sample=False)
        result["generate_rows_per_second_fp32"] = CPU_BATCH / (time.time() - started)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.write_text(json.dumps(result))


def llama_child(out: Path) -> None:
    """One real-width Llama layer (and the embedding + lm_head) at the namer's training batch: the
    activation bytes of a layer and of the head, to scale to 32 layers."""
    import torch

    from prodcat.standins import paper_models

    torch.manual_seed(0)
    torch.set_num_threads(2)
    shape = SHAPES["llama"]
    results = {}
    for layers in (1, 2):
        model = paper_models.build("llama", device="cpu", dtype=torch.bfloat16, num_hidden_layers=layers)
        for p in model.parameters():  # LoRA: the base is frozen; activations still need their grads
            p.requires_grad_(False)
        model.model.embed_tokens.weight.requires_grad_(True)  # so that the layers' inputs require grad
        ids = torch.randint(0, 128000, (shape["train_batch"], shape["sequence"]))
        results[layers] = saved_activation_bytes(model, {"input_ids": ids, "labels": ids}, autocast=False)
        del model
    per_layer = results[2] - results[1]
    out.write_text(json.dumps({"per_layer_bytes": per_layer, "head_bytes": results[1] - per_layer}))


def run_child(args: list[str]) -> dict:
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"paper_shapes_{os.getpid()}_{args[0]}.json"
    subprocess.run([sys.executable, __file__, "--child", *args, str(out)], check=True)
    result = json.loads(out.read_text())
    out.unlink()
    return result


def plan(counts: dict, t5: dict, llama_act: dict) -> list[dict]:
    """GPU memory per rule (GiB)."""
    from prodcat.standins import paper_models

    rows = []
    for arch, model in (("byt5", "byt5"), ("mmbyt5", "byt5"), ("flant5", "flant5")):
        n = counts[arch]["as_loaded"]
        act = t5[model]["activation_bytes_bf16"]
        # Trainer bf16 = mixed precision: fp32 master weights and gradients, AdamW's two fp32 moments
        rows.append(
            {
                "rule": f"train_labeler[{arch}]",
                "weights": 4 * n,
                "gradients": 4 * n,
                "optimizer": 8 * n,
                "activations": act,
                "note": f"batch {SHAPES[model]['batch']}, fp32 master weights + bf16 autocast",
            }
        )
        cfg = paper_models.config(model)
        shape = SHAPES[model]
        b = shape["predict_batch"]
        # decoder self-attention KV cache + cross-attention keys/values of the encoder states, bf16
        kv = b * 2 * 2 * cfg.num_decoder_layers * cfg.num_heads * cfg.d_kv * (shape["target"] + shape["source"])
        rows.append(
            {
                "rule": f"predict_labeler[{arch}]",
                "weights": 2 * n,
                "gradients": 0,
                "optimizer": 0,
                "activations": kv,
                "note": f"batch {b}, bf16, KV cache",
            }
        )
    llama = paper_models.config("llama")
    base = counts["llama_lora"]["base"]
    lora = counts["llama_lora"]["lora"]
    head = 2 * llama.vocab_size * llama.hidden_size  # embed_tokens + lm_head
    kv_per_token = (
        2 * llama.num_hidden_layers * llama.num_key_value_heads * (llama.hidden_size // llama.num_attention_heads) * 2
    )
    s = SHAPES["llama"]
    for rule, batch in (("synthesize_names / infer_names", s["generate_batch"]), ("  (same, batch 256)", 256)):
        rows.append(
            {
                "rule": rule,
                "weights": 2 * base,
                "gradients": 0,
                "optimizer": 0,
                "activations": kv_per_token * batch * (s["prompt"] + s["new_tokens"]),
                "note": f"batch {batch}, bf16, KV cache for {s['prompt']}+{s['new_tokens']} tokens",
            }
        )
    # LoRA weights, gradients and AdamW state in fp32 on either base. 8-bit base: int8 linear
    # weights; prepare_model_for_kbit_training keeps embedding, lm_head and norms in fp32. bf16 base
    # (PRMAS's choice): every weight in bf16. Activations scale with batch x sequence from the
    # measured batch (llama_child): gradient checkpointing keeps each layer's input (bf16) plus one
    # layer's activations at a time; without it every layer's. The head's measured bytes hold the
    # bf16 logits and what the loss saves (fp32 upcast / log-softmax); the backward adds the fp32
    # gradient of the logits (vocab 128,256), counted on top.
    measured_tokens = s["train_batch"] * s["sequence"]
    for eight_bit, batch, checkpointing in namer_variants():
        tokens = batch * s["sequence"]
        per_layer = llama_act["per_layer_bytes"] * tokens / measured_tokens
        head_act = llama_act["head_bytes"] * tokens / measured_tokens
        layers = (
            llama.num_hidden_layers * tokens * llama.hidden_size * 2 + per_layer
            if checkpointing
            else llama.num_hidden_layers * per_layer
        )
        logits_grad = tokens * llama.vocab_size * 4
        rows.append(
            {
                "rule": f"train_namer (LoRA, {'8-bit' if eight_bit else 'bf16'} base)",
                "weights": ((base - head) * 1 + head * 4 if eight_bit else 2 * base) + lora * 4,
                "gradients": lora * 4,
                "optimizer": lora * 8,
                "activations": layers + head_act + logits_grad + CUDA_OVERHEAD,
                "note": f"batch {batch} x {s['sequence']} tokens, gradient checkpointing "
                f"{'on' if checkpointing else 'off'}; activations include the fp32 logit gradient "
                f"({logits_grad / GIB:.2f} GiB) and {CUDA_OVERHEAD / GIB:.0f} GiB of CUDA context",
            }
        )
    rows.append(
        {
            "rule": "train_namer merge (CPU)",
            "weights": 2 * GIB + 4 * llama.intermediate_size * llama.hidden_size,
            "gradients": 0,
            "optimizer": 0,
            "activations": 0,
            "note": "host memory: one 2 GiB output shard + one fp32 tensor; no GPU",
        }
    )
    for row in rows:
        row["total"] = row["weights"] + row["gradients"] + row["optimizer"] + row["activations"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-cpu", action="store_true", help="parameters only (no real-size runs)")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, out = args.child[0], Path(args.child[-1])
        return llama_child(out) if kind == "llama" else t5_child(kind, out)

    from prodcat.standins.paper_models import parameter_counts

    counts = parameter_counts()
    print(
        "## Parameters (meta device) vs PRMAS Table 2\n\n| model | from config | as loaded from the hub | "
        "Table 2 | difference |\n|---|---|---|---|---|"
    )
    for model, c in counts.items():
        print(
            f"| {model} | {c['from_config']:,} | {c['as_loaded']:,} | {c['table2']:,} | "
            f"{c['as_loaded'] - c['table2']:+,} |"
        )
    figures = {"parameters": counts}
    if not args.skip_cpu:
        t5 = {arch: run_child([arch]) for arch in ("byt5", "flant5")}
        llama_act = run_child(["llama"])
        figures.update(cpu=t5, llama_activations=llama_act)
        print(
            f"\n## Real size on this CPU (fp32, 2 threads, random init, batch {CPU_BATCH})\n\n| model | train "
            "step (s) | "
            "peak RSS (MiB) | generation rows/s (every row to full length) |\n|---|---|---|---|"
        )
        for arch, r in t5.items():
            print(
                f"| {arch} | {r['train_step_seconds_fp32']:.1f} | {r['peak_rss_mib']:,.0f} | "
                f"{r['generate_rows_per_second_fp32']:.2f} |"
            )
        rows = plan(counts, t5, llama_act)
        figures["plan"] = rows
        print(
            "\n## GPU memory plan per rule (GiB)\n\n| rule | weights | gradients | optimizer | activations / "
            "KV | total | how |\n|---|---|---|---|---|---|---|"
        )
        for r in rows:
            print(
                f"| {r['rule']} | {r['weights'] / GIB:.2f} | {r['gradients'] / GIB:.2f} | {r['optimizer'] / GIB:.2f} | "
                f"{r['activations'] / GIB:.2f} | {r['total'] / GIB:.2f} | {r['note']} |"
            )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, default=str))


if __name__ == "__main__":
    main()

"""Merging a LoRA adapter into its base checkpoint, tensor by tensor, without loading the model.

PEFT's `merge_and_unload` needs the whole base model in memory, and an exact merge needs it
unquantized: for Llama-3.1-8B that is 16 GB in bf16 (32 GB in fp32), more than its 8-bit LoRA
training takes. Here the base's safetensors shards are read one tensor at a time; each LoRA target
W becomes W + scaling * B @ A, computed in fp32 and rounded to bf16 once; the result is written in
shards of at most `max_shard_bytes`. Peak memory is one output shard plus one fp32 tensor, on the
CPU; the GPU is not needed.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

ADAPTER_PREFIX = "base_model.model."
WEIGHTS_INDEX = "model.safetensors.index.json"
# Files of a model folder that are not weights and travel unchanged from the base.
CONFIG_FILES = ("config.json", "generation_config.json")


def lora_scaling(adapter_config: dict) -> float:
    r, alpha = adapter_config["r"], adapter_config["lora_alpha"]
    return alpha / math.sqrt(r) if adapter_config.get("use_rslora") else alpha / r


def _check_supported(adapter_config: dict, adapter_dir) -> None:
    problems = []
    if adapter_config.get("use_dora"):
        problems.append("DoRA")
    if adapter_config.get("modules_to_save"):
        problems.append(f"modules_to_save {adapter_config['modules_to_save']}")
    if adapter_config.get("bias", "none") != "none":
        problems.append(f"bias {adapter_config['bias']!r}")
    if adapter_config.get("rank_pattern") or adapter_config.get("alpha_pattern"):
        problems.append("per-module rank or alpha patterns")
    if adapter_config.get("fan_in_fan_out"):
        problems.append("fan_in_fan_out")
    if problems:
        raise ValueError(
            f"{adapter_dir}: the streaming merge supports plain LoRA on linear layers, not {', '.join(problems)}"
        )


def base_weight_files(base_dir) -> list[Path]:
    base_dir = Path(base_dir)
    index = base_dir / WEIGHTS_INDEX
    if index.exists():
        return [base_dir / name for name in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    single = base_dir / "model.safetensors"
    if not single.exists():
        raise FileNotFoundError(f"{base_dir}: no model.safetensors or {WEIGHTS_INDEX}")
    return [single]


def load_lora_pairs(adapter_dir) -> dict[str, tuple]:
    """{base weight name: (A, B)} from a PEFT adapter folder."""
    from safetensors.torch import load_file

    from prodcat.runtime.checkpoints import reading_model

    with reading_model(Path(adapter_dir), "a LoRA adapter folder (adapter_model.safetensors)", rule="train_namer"):
        tensors = load_file(Path(adapter_dir) / "adapter_model.safetensors")
    pairs: dict[str, list] = {}
    for key, tensor in tensors.items():
        if not key.startswith(ADAPTER_PREFIX) or not key.endswith((".lora_A.weight", ".lora_B.weight")):
            raise ValueError(f"{adapter_dir}: unexpected adapter tensor {key!r} (plain LoRA weights only)")
        module, which = key[len(ADAPTER_PREFIX) :].rsplit(".lora_", 1)
        pairs.setdefault(module + ".weight", [None, None])["AB".index(which[0])] = tensor
    incomplete = [name for name, (a, b) in pairs.items() if a is None or b is None]
    if incomplete:
        raise ValueError(f"{adapter_dir}: lora_A or lora_B missing for {incomplete[:3]}")
    return {name: (a, b) for name, (a, b) in pairs.items()}


def merge_lora(base_dir, adapter_dir, out_dir, *, dtype: str = "bfloat16", max_shard_bytes: int = 2 * 1024**3) -> dict:
    """Write base + LoRA adapter, merged, as a `dtype` safetensors model folder at out_dir.

    Tokenizer files come from the adapter folder (saved with the trained tokenizer), configs from
    the base. The folder is written beside out_dir and renamed into place when complete. Returns
    {"merged_tensors", "tensors", "shards"}."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file
    from transformers import AutoTokenizer

    base_dir, adapter_dir, out_dir = Path(base_dir), Path(adapter_dir), Path(out_dir)
    adapter_config = json.loads((adapter_dir / "adapter_config.json").read_text())
    _check_supported(adapter_config, adapter_dir)
    scaling = lora_scaling(adapter_config)
    pairs = load_lora_pairs(adapter_dir)
    target = getattr(torch, dtype)

    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shards: list[dict] = []
    current: dict = {}
    current_bytes = 0
    merged, total = set(), 0

    def flush():
        nonlocal current, current_bytes
        if current:
            shards.append(current)
            save_file(current, tmp / f"shard-{len(shards):05d}.safetensors", metadata={"format": "pt"})
            current, current_bytes = {}, 0

    for path in base_weight_files(base_dir):
        with safe_open(path, framework="pt") as handle:
            for name in handle.keys():
                tensor = handle.get_tensor(name)
                if name in pairs:
                    a, b = pairs[name]
                    if tuple(tensor.shape) != (b.shape[0], a.shape[1]):
                        raise ValueError(
                            f"{adapter_dir}: LoRA for {name} is {b.shape[0]}x{a.shape[1]}, the base weight "
                            f"{tuple(tensor.shape)}"
                        )
                    tensor = tensor.float().add_(b.float() @ a.float(), alpha=scaling)
                    merged.add(name)
                if tensor.is_floating_point():
                    tensor = tensor.to(target)
                size = tensor.numel() * tensor.element_size()
                if current and current_bytes + size > max_shard_bytes:
                    flush()
                current[name] = tensor.contiguous()
                current_bytes += size
                total += 1
    flush()
    unused = sorted(set(pairs) - merged)
    if unused:
        shutil.rmtree(tmp)
        raise ValueError(f"{adapter_dir}: {len(unused)} LoRA weights match no tensor of {base_dir}, e.g. {unused[:3]}")

    # the usual names: model.safetensors, or model-0000i-of-0000n.safetensors with an index
    n = len(shards)
    weight_map, total_size = {}, 0
    for i, shard in enumerate(shards, start=1):
        name = "model.safetensors" if n == 1 else f"model-{i:05d}-of-{n:05d}.safetensors"
        os.replace(tmp / f"shard-{i:05d}.safetensors", tmp / name)
        for key, tensor in shard.items():
            weight_map[key] = name
            total_size += tensor.numel() * tensor.element_size()
    if n > 1:
        (tmp / WEIGHTS_INDEX).write_text(
            json.dumps({"metadata": {"total_size": total_size}, "weight_map": weight_map}, indent=2) + "\n"
        )
    for name in CONFIG_FILES:
        if (base_dir / name).exists():
            shutil.copy2(base_dir / name, tmp / name)
    config = json.loads((tmp / "config.json").read_text())
    config.pop("torch_dtype", None)
    config["dtype"] = dtype
    (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    AutoTokenizer.from_pretrained(adapter_dir).save_pretrained(tmp)

    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    log.info(
        "merged %d LoRA weights (scaling %.4g) into %d tensors, %d shard(s), %s, at %s",
        len(merged),
        scaling,
        total,
        n,
        dtype,
        out_dir,
    )
    return {"merged_tensors": len(merged), "tensors": total, "shards": n}

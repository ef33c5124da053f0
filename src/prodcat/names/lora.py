"""The LoRA namer (step 3 of the method): a LoRA fine-tune of the teacher's model learns to write
the teacher's name from the description and price alone, through the shared Trainer runner
(prodcat.runtime.trainer), then merged into a 16-bit model (prodcat.names.merge); and the FLOPs
of one of its training steps for Table 2.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
from pathlib import Path

import pandas as pd

from prodcat.data.io import write_json
from prodcat.names.generation import load_causal_lm, require_columns
from prodcat.names.prompts import student_messages
from prodcat.runtime.checkpoints import run_signature
from prodcat.runtime.params import merge_params

log = logging.getLogger(__name__)

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
    "group_by_length": True,  # batches of similar lengths (prodcat.runtime.batching)
    "logging_steps": 10,
    "save_steps": 200,
    "save_total_limit": 2,
    "seed": 42,
}
TRAIN_PARAMS = "parameter(s) of the namer's training"
# Parameters that may change between a run and its resumption without invalidating its checkpoints.
RESUMABLE_CHANGES = ("num_train_epochs", "max_steps", "logging_steps", "save_steps", "save_total_limit")


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
) -> dict | None:
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
    if metrics is None:  # data-parallel: another process than the main one
        return None
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
        bf16=device.startswith("cuda") and dtype == torch.bfloat16,
        use_cpu=device == "cpu",  # also what makes data-parallel processes on a CPU use gloo
        logging_first_step=True,
        save_strategy="steps",
        eval_strategy="no",
        report_to="none",
        dataloader_pin_memory=device.startswith("cuda"),
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
) -> dict | None:
    """The LoRA training of `train_lora_namer`, without the merge: writes out_dir/adapter and
    out_dir/trainer_log.json. `profile`: settings of prodcat.runtime.profiling (a few steps profiled,
    written to out_dir/profile, summarised under "profile"). Under torchrun every process trains
    its share of each step and the main process alone writes; the others return None."""
    from datasets import Dataset
    from peft import prepare_model_for_kbit_training
    from trl import SFTTrainer

    from prodcat.names.prompts import DEFAULT_TEMPLATES
    from prodcat.runtime.device import pick_device
    from prodcat.runtime.distributed import is_main_process, local_device, world_size
    from prodcat.runtime.trainer import run_trainer

    params = merge_params(DEFAULT_TRAIN_PARAMS, params, TRAIN_PARAMS)
    templates = dict(templates or DEFAULT_TEMPLATES)
    require_columns(train_rows_with_names, ("indoml_id", "description", "name"), "train_namer rows")
    rows = train_rows_with_names.reset_index(drop=True)
    if rows.empty:
        raise ValueError("train_namer: no training rows")
    out_dir = Path(out_dir)
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else out_dir / "checkpoints"
    out_dir.mkdir(parents=True, exist_ok=True)

    device, dtype = pick_device()
    device = local_device(device)  # data-parallel: this process's own GPU
    if params["load_in_8bit"]:
        model, tokenizer = load_causal_lm(base_model_dir, load_in_8bit=True, device=device)
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=params["gradient_checkpointing"],
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    else:
        model, tokenizer = load_causal_lm(base_model_dir, device=device)
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
    if not is_main_process():  # data-parallel: the main process writes the adapter and the log
        return None
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
        "processes": world_size(),
        "train_loss": run.result.training_loss,
        "train_runtime": run.result.metrics.get("train_runtime"),  # the last segment's only
        "trainer_seconds": run.seconds,  # every segment's
        "segments": run.segments,
        "params": params,
        "log_history": trainer.state.log_history,
        "profile": run.profile,
    }
    write_json(metrics, out_dir / "trainer_log.json")
    del trainer, run, model
    gc.collect()
    return metrics

"""Data-parallel training in one job (prodcat.runtime.distributed, prodcat.workflow): the optimizer
step shared out over the processes, and a tiny labeler trained by 2 torchrun processes on the
CPU's gloo backend as the train_labeler rule runs it (resources gpu=2), against 1 process."""

import json
import re

import pandas as pd
import pytest

from prodcat import LEVELS
from prodcat.runtime.distributed import split_over_processes


def test_the_optimizer_step_keeps_its_rows_and_prefers_less_accumulation():
    assert split_over_processes(32, 1, 2) == (16, 1)
    assert split_over_processes(8, 4, 8) == (4, 1)  # the namer of configs/paper.yaml on 8 GPUs
    assert split_over_processes(8, 4, 2) == (8, 2)  # the card's batch kept, accumulation halved
    assert split_over_processes(8, 3, 2) == (6, 2)
    for batch, accumulation, processes in [(32, 1, 2), (8, 4, 8), (8, 3, 2), (6, 5, 3)]:
        per_process, steps = split_over_processes(batch, accumulation, processes)
        assert per_process * steps * processes == batch * accumulation and per_process <= batch
    with pytest.raises(ValueError, match=r"8 x gradient_accumulation_steps 1 = 8 rows cannot be shared by 3 GPUs"):
        split_over_processes(8, 1, 3)


def test_the_training_arguments_under_torchrun_share_the_step(monkeypatch, tmp_path):
    import torch

    from prodcat.labelers.seq2seq import training_arguments

    params = {"per_device_train_batch_size": 32, "gradient_accumulation_steps": 1, "seed": 1, "learning_rate": 1e-3}
    monkeypatch.setenv("WORLD_SIZE", "4")
    args = training_arguments.__wrapped__ if hasattr(training_arguments, "__wrapped__") else training_arguments
    from prodcat.runtime import trainer

    settings = trainer._per_process({**params}, "test")
    assert (settings["per_device_train_batch_size"], settings["gradient_accumulation_steps"]) == (8, 1)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert args(params, tmp_path, "cpu", torch.float32).per_device_train_batch_size == 32


def test_training_rules_ask_for_their_configured_gpus():
    """The two training rules take gpu=training_gpus(RULE) (config resources.RULE.gpus, default 1);
    the other GPU rules one each."""
    from pathlib import Path

    rules = Path(__file__).resolve().parents[1] / "rules"
    for smk, rule in (("labelers.smk", "train_labeler"), ("names.smk", "train_namer")):
        block = re.search(rf"^rule {rule}:\n(.*?)(?=^rule |\Z)", (rules / smk).read_text(), flags=re.M | re.S).group(1)
        assert f'gpu=training_gpus("{rule}")' in block


# ---- 2 processes on gloo -------------------------------------------------------------------
PARAMS = {
    "per_device_train_batch_size": 8,
    "per_device_eval_batch_size": None,
    "gradient_accumulation_steps": 1,
    "learning_rate": 3e-3,
    "weight_decay": 0.0,
    "num_train_epochs": 2,
    "early_stopping_patience": 4,
    "warmup_steps": 0,
    "lr_scheduler_type": "linear",
    "max_source_length": 32,
    "max_target_length": 96,
    "seed": 1,
    "logging_steps": 2,
    "keep_checkpoints": False,
    "group_by_length": True,
}


def rows(n=48):
    paths = [
        ("dairy", "yoghurt", "drinks", "glen"),
        ("dairy", "cheese", "hard", "receipt all"),
        ("snacks", "crisps", "potato", "crunch"),
        ("drinks", "water", "still", "aqua"),
    ]
    return pd.DataFrame(
        [
            {
                "indoml_id": 100 + i,
                "description": f"{paths[i % 4][3][:4]} {paths[i % 4][2][:3]} {'x' * (i % 7)}",
                "retailer": "r",
                "price": 1.0,
                **dict(zip(LEVELS, paths[i % 4])),
            }
            for i in range(n)
        ]
    )


def train_job(tmp_path, base, processes: int):
    """train_labeler as the rule calls it, with resources gpu=`processes` and one thread per process
    (as threads: N would give them)."""
    from prodcat.workflow import _Job, train_labeler

    tmp_path.mkdir()
    data = tmp_path / "rows.parquet"
    rows().to_parquet(data)
    val = tmp_path / "val.parquet"
    rows(16).to_parquet(val)
    cfg = {"kind": "text", "source": "description", "train": PARAMS, "predict": {}}
    named = {
        "input": {"train": str(data), "val": str(val)},
        "output": {},
        "params": {"cfg": cfg, "base": str(base), "checkpoints": str(tmp_path / "ckpt"), "profile": None},
        "log": {},
        "wildcards": {"labeler": "byt5"},
        "resources": {"gpu": processes},
    }
    record = {part: {"values": list(names.values()), "names": names} for part, names in named.items()}
    record["output"]["values"], record["log"]["values"] = [str(tmp_path / "model")], [str(tmp_path / "train.log")]
    train_labeler(_Job({**record, "threads": processes}))
    return json.loads((tmp_path / "model" / "train_summary.json").read_text()), (tmp_path / "train.log").read_text()


@pytest.mark.slow
def test_two_gloo_processes_train_the_labeler_as_one_does(tmp_path):
    from prodcat.standins.tiny_seq2seq import build_tiny_byt5

    base = build_tiny_byt5(
        tmp_path / "byt5", {"d_model": 32, "d_ff": 64, "num_layers": 1, "num_heads": 2, "dropout_rate": 0.0}
    )
    one, _ = train_job(tmp_path / "one", base, 1)
    two, log = train_job(tmp_path / "two", base, 2)
    assert "data-parallel training over 2 processes, 1 thread(s) each" in log
    assert "2 processes, each batch 4 x accumulation 1 (configured: 8 x 1 on one)" in log
    assert "INFO rank 1 " not in log and "INFO rank 0 " in log  # the other process: warnings only
    assert (one["processes"], two["processes"]) == (1, 2)
    assert two["global_step"] == one["global_step"] == 2 * 48 // 8  # the same optimizer steps
    # one model, written once; no checkpoints left
    model = tmp_path / "two" / "model"
    assert sorted(p.name for p in model.iterdir() if p.suffix == ".safetensors") == ["model.safetensors"]
    assert not (tmp_path / "two" / "ckpt").exists()
    # within noise of one process: the same rows per step, half a batch per process
    losses = one["best_eval_loss"], two["best_eval_loss"]
    print(f"best validation loss: 1 process {losses[0]:.4f}, 2 processes {losses[1]:.4f}")
    assert abs(losses[1] - losses[0]) < 0.05 * losses[0]

"""Data-parallel training in one job (prodcat.runtime.distributed, prodcat.workflow): the optimizer
step shared out over the processes, and a tiny labeler trained by 2 torchrun processes on the
CPU's gloo backend as the train_labeler rule runs it (resources gpu=2), against 1 process."""

import json
import re

import pandas as pd
import pytest
from tests.test_seq2seq import PARAMS as SEQ2SEQ_PARAMS

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
    assert training_arguments(params, tmp_path, "cpu", torch.float32).per_device_train_batch_size == 32
    monkeypatch.setattr("prodcat.runtime.distributed.world_size", lambda: 4)  # as torchrun's WORLD_SIZE=4
    args = training_arguments(params, tmp_path, "cpu", torch.float32)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (8, 1)
    monkeypatch.setattr("prodcat.runtime.distributed.world_size", lambda: 3)
    with pytest.raises(ValueError, match="cannot be shared by 3 GPUs"):
        training_arguments(params, tmp_path, "cpu", torch.float32)


def test_both_trainers_on_a_cpu_say_so_so_that_their_processes_join_on_gloo(tmp_path):
    """Without use_cpu on a machine without CUDA, transformers leaves a torchrun process group
    unused (each process trains alone on all rows): both Trainers set it on the CPU."""
    import torch

    from prodcat.labelers.seq2seq import training_arguments
    from prodcat.names.lora import DEFAULT_TRAIN_PARAMS, sft_config

    params = {"per_device_train_batch_size": 8, "seed": 1, "learning_rate": 1e-3, "num_train_epochs": 1}
    assert training_arguments(params, tmp_path, "cpu", torch.float32).use_cpu
    assert sft_config(DEFAULT_TRAIN_PARAMS, tmp_path, 64, "cpu", torch.float32).use_cpu


def test_training_rules_ask_for_their_configured_gpus():
    """The two training rules take gpu=training_gpus(RULE) (config resources.RULE.gpus, default 1);
    the other GPU rules one each."""
    from pathlib import Path

    rules = Path(__file__).resolve().parents[1] / "rules"
    for smk, rule in (("labelers.smk", "train_labeler"), ("names.smk", "train_namer")):
        block = re.search(rf"^rule {rule}:\n(.*?)(?=^rule |\Z)", (rules / smk).read_text(), flags=re.M | re.S).group(1)
        assert f'gpu=training_gpus("{rule}")' in block


# ---- 2 processes on gloo -------------------------------------------------------------------
# test_seq2seq's settings, trained longer (2 epochs of the 2-process batches), in length-grouped batches
PARAMS = {**SEQ2SEQ_PARAMS, "num_train_epochs": 2, "early_stopping_patience": 4, "group_by_length": True}


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


# ---- what Slurm is asked for -----------------------------------------------------------------
class _Resources(dict):
    __getattr__ = dict.__getitem__


@pytest.mark.slow
def test_slurm_gives_a_multi_gpu_training_job_its_gpus_as_one_task(tmp_path):
    """Under profiles/slurm, resources.train_labeler.gpus 2 and train_namer.gpus 4 make those jobs
    gpu=2 and gpu=4 (Snakemake's dry run), and the pinned executor plugin turns that into one
    sbatch with --gpus=N and its CPUs, with no --ntasks-per-gpu (versions before 2.7.1 started one
    task, so one copy of the job, per GPU), and a job step of one task that sees the N GPUs: the
    job's torchrun starts the N processes."""
    from types import SimpleNamespace

    import yaml
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string
    from snakemake_executor_plugin_slurm_jobstep import get_cpu_setting, get_gpu_setting
    from tests.conftest import run_snakemake

    overlay = tmp_path / "gpus.yaml"
    overlay.write_text(
        yaml.safe_dump(
            {
                "results": str(tmp_path / "results"),
                "resources": {
                    "train_labeler": {"mem_mb": 4000, "runtime": 60, "gpus": 2},
                    "train_namer": {"mem_mb": 4000, "runtime": 30, "gpus": 4},
                },
            }
        )
    )
    dry = run_snakemake("-n", "--workflow-profile", "profiles/slurm", "--configfile", ".test/config.yaml", str(overlay))
    asked = {}
    for rule, resources in re.findall(r"^rule (\w+):\n(?:    .*\n)*?    resources: (.*)$", dry.stdout, flags=re.M):
        gpu = re.search(r"\bgpu=(\d+)", resources)
        asked.setdefault(rule, set()).add(gpu.group(1) if gpu else None)
    assert asked["train_labeler"] == {"2"} and asked["train_namer"] == {"4"}
    assert asked["predict_labeler"] == asked["synthesize_names"] == {"1"}
    for gpus, threads in ((2, 8), (4, 16)):
        job = SimpleNamespace(resources=_Resources(gpu=gpus, mem_mb=4000, runtime=60), threads=threads)
        params = {
            "run_uuid": "u",
            "slurm_logfile": "log",
            "comment_str": "rule_train_labeler",
            "account": "",
            "partition": "",
            "workdir": "",
        }
        sbatch = get_submit_command(job, params) + set_gres_string(job)
        assert f"--gpus={gpus}" in sbatch and f"--cpus-per-task={threads}" in sbatch
        assert "--ntasks" not in sbatch  # one task: this one Snakemake job
        # the job step: `srun -n1 ...` with the job's GPUs and CPUs
        assert get_gpu_setting(job) == f"--gpus={gpus}" and get_cpu_setting(job, True) == f"--cpus-per-task={threads}"

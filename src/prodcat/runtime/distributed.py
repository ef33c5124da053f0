"""Data-parallel training in one job: N processes (one per GPU) started by torchrun.

A training job with `gpu=N` (config resources.train_labeler.gpus / train_namer.gpus) runs its
training function in N processes of `python -m torch.distributed.run --standalone`
(`launch_processes`); the Trainer in each sees WORLD_SIZE, RANK and LOCAL_RANK and trains with
DistributedDataParallel (NCCL on GPUs, gloo on a CPU). What the rest of the code needs:

- `world_size`, `rank`, `is_main_process`: who am I (1, 0, True outside torchrun);
- `split_over_processes`: the per-process batch and gradient accumulation that keep the optimizer
  step of one process (same rows per step, same number of steps, same learning-rate schedule);
- `main_process_first`: the main process does a block (say, clearing stale checkpoints) before
  the others;
- `local_device`: the GPU of this process ("cuda:LOCAL_RANK").
Only the main process writes the model, summaries and logs of results; every process writes its
own log lines to the job's log.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys

log = logging.getLogger(__name__)


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    return rank() == 0


def local_device(device: str) -> str:
    """`device` ("cuda" or "cpu") as this process's own: cuda:LOCAL_RANK under torchrun."""
    if device == "cuda" and world_size() > 1:
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


def split_over_processes(batch_size: int, accumulation: int, processes: int) -> tuple[int, int]:
    """(per-process batch, accumulation) for `processes` processes sharing each optimizer step of
    `batch_size` x `accumulation` rows: the same rows per step, the largest per-process batch up to
    `batch_size` (the one that fits the card) with the least accumulation. Not divisible: an error."""
    rows = batch_size * accumulation
    if rows % processes:
        raise ValueError(
            f"an optimizer step of per_device_train_batch_size {batch_size} x gradient_accumulation_steps "
            f"{accumulation} = {rows} rows cannot be shared by {processes} GPUs (resources ... gpus): "
            f"make it a multiple of {processes}"
        )
    per_process = rows // processes
    steps = next(a for a in range(1, per_process + 1) if per_process % a == 0 and per_process // a <= batch_size)
    return per_process // steps, steps


@contextlib.contextmanager
def main_process_first():
    """The main process runs the block, then the others (a barrier); one process: just the block."""
    import torch.distributed as dist

    together = world_size() > 1 and dist.is_available() and dist.is_initialized()
    if together and not is_main_process():
        dist.barrier()
    yield
    if together and is_main_process():
        dist.barrier()


def init_process_group() -> None:
    """The process group of a torchrun worker: NCCL when CUDA is there (each process on its own GPU),
    else gloo. The Trainer's accelerate state takes it over."""
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise RuntimeError(
                f"process {local} of {world_size()} has no GPU: {torch.cuda.device_count()} visible "
                "(CUDA_VISIBLE_DEVICES); the job's gpu resource asks for more than it was given"
            )
        torch.cuda.set_device(local)
        dist.init_process_group("nccl", device_id=torch.device("cuda", local))
    else:
        dist.init_process_group("gloo")


def launch_processes(module: str, args: list[str], processes: int, threads: int) -> None:
    """`python -m module *args` in `processes` torchrun workers on this machine (--standalone: a
    free rendezvous port, so several such jobs can run side by side), each with threads/processes
    CPU threads; their output goes where this process's stdout/stderr go. A failed worker: an error."""
    per_process = max(1, threads // processes)
    env = dict(os.environ, OMP_NUM_THREADS=str(per_process), PRODCAT_PROCESS_THREADS=str(per_process))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={processes}",
        "-m",
        module,
        *args,
    ]
    log.info("data-parallel training over %d processes, %d thread(s) each: %s", processes, per_process, command)
    sys.stdout.flush()
    sys.stderr.flush()
    done = subprocess.run(command, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"data-parallel training failed (torchrun exit code {done.returncode}); see the log above")

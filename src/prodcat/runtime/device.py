"""Where neural work runs: CUDA with bf16 when a GPU is there, else the CPU in fp32."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def pick_device(prefer_cuda: bool = True):
    """(device name, torch dtype) and a log line saying which, so each rule's log records it."""
    import torch

    if prefer_cuda and torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        bf16 = torch.cuda.is_bf16_supported()
        dtype = torch.bfloat16 if bf16 else torch.float32
        log.info("device: cuda (%s), %s", name, "bf16" if bf16 else "fp32 (no bf16 support)")
        return "cuda", dtype
    log.info("device: cpu, fp32 (no CUDA device)")
    return "cpu", torch.float32


def describe_device() -> str:
    import platform

    try:
        import torch
    except ImportError:  # a CPU-only environment (envs/cpu.yaml: the charngram rules)
        torch = None
    if torch is not None and torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(0)}"

    return f"cpu:{platform.processor() or platform.machine()}"

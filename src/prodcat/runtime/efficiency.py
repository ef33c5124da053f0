"""Counting what models cost: parameters and FLOPs (torch's FlopCounterMode), and reading the
rules' `benchmark:` files for wall time and peak memory."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def report_only(what: str, fn, *args, **kwargs):
    """fn's result, or None when it fails: a figure for the report must never fail the rule that
    trained a model (Snakemake would delete the model with the failed job's outputs)."""
    import logging

    try:
        return fn(*args, **kwargs)
    except Exception:  # noqa: BLE001 - report-only, logged with its traceback
        logging.getLogger(__name__).exception("%s failed; it is left out of the report, the model is kept", what)
        return None


def count_parameters(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def count_flops(fn, *args, **kwargs) -> tuple[int, object]:
    """FLOPs of one call of fn (matmul-type ops as counted by torch), and its result."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        result = fn(*args, **kwargs)
    return int(counter.get_total_flops()), result


def training_step_flops(model, batch: dict) -> int:
    """FLOPs of one forward + backward pass on `batch` (gradients are discarded afterwards)."""
    model.train()

    def step():
        loss = model(**batch).loss
        loss.backward()
        return loss

    flops, _ = count_flops(step)
    model.zero_grad(set_to_none=True)
    return flops


def read_benchmark(path) -> dict:
    """Snakemake's benchmark TSV (s, max_rss in MB, ...) as a dict of the first repeat."""
    table = pd.read_csv(Path(path), sep="\t")
    row = table.iloc[0]
    return {"seconds": float(row["s"]), "max_rss_mb": float(row["max_rss"]) if "max_rss" in table else float("nan")}

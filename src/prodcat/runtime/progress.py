"""Progress as log lines, for rule log files that a person reads: no `\\r` progress bars.

- `TrainerLogLines`: a transformers TrainerCallback that logs each of the Trainer's logs (every
  `logging_steps` steps, from the config: loss, learning rate, epoch; and each evaluation) as one
  line. Trainers run with `disable_tqdm=True` and without their PrinterCallback (`quiet_trainer`).
- `log_progress`: wraps a loop over batches and logs a line at most every `seconds` (and at the end).
- `no_progress_bars`: the hub's and transformers' bars (downloads, loading weights) off.
"""

from __future__ import annotations

import json
import logging
import os
import time

log = logging.getLogger(__name__)


def no_progress_bars() -> None:
    """Hub downloads and transformers' loading bars off (read when those libraries are imported,
    hence set before; switched off in them too when they already are)."""
    import sys

    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()


def trainer_log_lines():
    """A TrainerCallback that logs the Trainer's logs as lines and counts the steps this run made."""
    from transformers import TrainerCallback

    class TrainerLogLines(TrainerCallback):
        def __init__(self):
            self.steps_run = 0

        def on_step_end(self, args, state, control, **kwargs):
            self.steps_run += 1

        def on_log(self, args, state, control, logs=None, **kwargs):
            log.info("step %d/%d: %s", state.global_step, state.max_steps, json.dumps(logs, default=str))

    return TrainerLogLines()


def quiet_trainer(trainer) -> None:
    """Without the callbacks that print() logs or draw a bar (the log lines replace them)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)


def log_progress(items, desc: str, *, total: int | None = None, unit: str = "batch", seconds: float = 30.0):
    """Yields the items; logs "desc: done/total unit (rate)" at most every `seconds`, and when done."""
    total = len(items) if total is None and hasattr(items, "__len__") else total
    started = last = time.monotonic()
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= seconds:
            last = now
            log.info(
                "%s: %d/%s %s (%.2f %s/s)",
                desc,
                done,
                total if total is not None else "?",
                unit,
                done / max(now - started, 1e-9),
                unit,
            )
    log.info("%s: %d %s in %.1f s", desc, done, unit, time.monotonic() - started)

"""One way to run a Hugging Face Trainer, for the seq2seq labelers and the LoRA namer alike.

- `training_arguments`: the TrainingArguments (or a subclass: Seq2SeqTrainingArguments, trl's
  SFTConfig) of a config section whose keys are TrainingArguments names, passed through by name.
  A number takes the type of its field's default, as an explicit int()/float() would (a YAML `2`
  for num_train_epochs becomes 2.0); a key that is no field of the class is an error, except
  `group_by_length` (transformers 4's name, a boolean: train_sampling_strategy group_by_length or
  random, prodcat.runtime.batching). Under torchrun the per-device batch and the
  accumulation are shared out so that an optimizer step keeps its rows (prodcat.runtime.distributed).
- `run_trainer`: resumes the newest checkpoint of this same run (prodcat.runtime.checkpoints),
  logs the Trainer's logs as lines (prodcat.runtime.progress), profiles a few steps
  (prodcat.runtime.profiling), trains, and returns what happened (`TrainingRun`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prodcat.runtime.checkpoints import last_checkpoint_of_run, read_segments, segment_clock

log = logging.getLogger(__name__)


def training_arguments(args_class, settings: dict, what: str, **fixed):
    """`args_class(**fixed, **settings)`: `settings` are fields of `args_class` by name (a number
    cast to its field's default type; None and the rest as given), `fixed` what the caller sets
    itself (output_dir, strategies, precision, ...). An unknown key, or one in both, is an error."""
    settings = _per_process(_sampling_strategy(settings), what)
    fields = {f.name: f for f in dataclasses.fields(args_class)}
    unknown = sorted(set(settings) - set(fields))
    if unknown:
        raise ValueError(f"{what}: {unknown} are not {args_class.__name__} fields")
    both = sorted(set(settings) & set(fixed))
    if both:
        raise ValueError(f"{what}: {both} are set by the code, not by the config")
    return args_class(**fixed, **{key: _as_field_type(fields[key], value) for key, value in settings.items()})


def _sampling_strategy(settings: dict) -> dict:
    """`group_by_length` as train_sampling_strategy; left out: random (the labelers' schema says
    false, the namer's defaults true: prodcat.runtime.batching)."""
    from prodcat.runtime.batching import GROUP_BY_LENGTH

    settings = dict(settings)
    grouped = settings.pop(GROUP_BY_LENGTH, False)
    if "train_sampling_strategy" not in settings:
        settings["train_sampling_strategy"] = GROUP_BY_LENGTH if grouped else "random"
    return settings


def _per_process(settings: dict, what: str) -> dict:
    """Under torchrun (WORLD_SIZE > 1): the batch and accumulation of each process, so that the
    processes together take the configured optimizer step (prodcat.runtime.distributed)."""
    from prodcat.runtime.distributed import split_over_processes, world_size

    processes = world_size()
    if processes == 1:
        return settings
    batch = int(settings.get("per_device_train_batch_size", 8))
    accumulation = int(settings.get("gradient_accumulation_steps", 1))
    per_process, steps = split_over_processes(batch, accumulation, processes)
    log.info(
        "%s: %d processes, each batch %d x accumulation %d (configured: %d x %d on one)",
        what,
        processes,
        per_process,
        steps,
        batch,
        accumulation,
    )
    return {**settings, "per_device_train_batch_size": per_process, "gradient_accumulation_steps": steps}


def _as_field_type(field: dataclasses.Field, value):
    default = field.default
    if isinstance(value, bool) or value is None or isinstance(default, bool):
        return value
    if isinstance(default, (int, float)) and isinstance(value, (int, float)):
        return type(default)(value)
    return value


@dataclass
class TrainingRun:
    """What `run_trainer` did: the trainer (state, model), train()'s output, the checkpoint it
    resumed (None: from the start), the wall seconds of train(), the optimizer steps of this run
    and the profile summary (None without profile settings)."""

    trainer: Any
    result: Any
    resumed_from: str | None
    seconds: float
    steps_run: int
    profile: dict | None
    segments: list = dataclasses.field(default_factory=list)


def run_trainer(
    trainer_class,
    args,
    *,
    signature: str,
    callbacks=(),
    profile: dict | None = None,
    profile_dir=None,
    before_train=None,
    **trainer_kwargs,
) -> TrainingRun:
    """Build `trainer_class(args=args, callbacks=..., **trainer_kwargs)` and train it, resuming the
    newest checkpoint in args.output_dir that has `signature` (another run's are discarded).

    The callbacks are `callbacks`, then one that logs each of the Trainer's logs as a line, then,
    with `profile` settings, the profiler's (it writes under `profile_dir`); the Trainer's own
    printing and bars are removed. `before_train(trainer, resumed_from)` may check the trainer
    (and log) before training starts."""
    from prodcat.runtime.batching import length_grouped
    from prodcat.runtime.distributed import is_main_process, main_process_first
    from prodcat.runtime.profiling import StepProfiler
    from prodcat.runtime.profiling import trainer_callback as profiler_callback
    from prodcat.runtime.progress import quiet_trainer, trainer_log_lines

    with main_process_first():  # data-parallel: one process clears another run's checkpoints
        resumed_from = last_checkpoint_of_run(Path(args.output_dir), signature)
    prior = read_segments(resumed_from)
    clock = segment_clock(prior, prior[-1]["to_step"] if prior else 0)
    log_lines = trainer_log_lines()
    # data-parallel: the main process profiles (its steps are every process's)
    profiler = (
        StepProfiler(profile, profile_dir, resumed=resumed_from is not None)
        if profile is not None and is_main_process()
        else None
    )
    # the clock first: its on_save records the segments in a checkpoint before anything else runs
    callbacks = [clock, *callbacks, log_lines]
    if profiler is not None and profiler.enabled:
        callbacks.append(profiler_callback(profiler))
    trainer = length_grouped(trainer_class)(args=args, callbacks=callbacks, **trainer_kwargs)
    quiet_trainer(trainer)  # their print()s and bars: the log lines replace them
    if before_train is not None:
        before_train(trainer, resumed_from)
    started = time.time()
    result = trainer.train(resume_from_checkpoint=resumed_from)
    segments = [*prior, {**clock.current(), "to_step": trainer.state.global_step, "seconds": time.time() - started}]
    return TrainingRun(
        trainer=trainer,
        result=result,
        resumed_from=resumed_from,
        # a segment recorded before such records has unknown seconds: the sum is then unknown too
        seconds=None if any(s["seconds"] is None for s in segments) else sum(s["seconds"] for s in segments),
        steps_run=log_lines.steps_run,
        profile=profiler.finish() if profiler is not None else None,  # report-only: never raises
        segments=segments,
    )

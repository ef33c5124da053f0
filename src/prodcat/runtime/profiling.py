"""torch.profiler over a few training steps, for Table 2 (self CPU / CUDA time per step) and
Table 3 (the top operators of a step), kept off the timed path.

How: a Trainer callback (the same for the labelers' Seq2SeqTrainer and the namer's SFTTrainer)
leaves the first `skip_first` optimizer steps of the run alone (allocator, thread pools and lazy
initialisation make them slow), prepares the profiler over `warmup` more steps (Kineto's own
warm-up: nothing is recorded), then records `steps` steps. A step is what the Trainer does between
`on_step_begin` and `on_step_end`: forward and backward of every micro-batch of the optimizer step,
gradient clipping, the optimizer and scheduler steps, `zero_grad` (the batches are collated just
before it). Each recorded step is marked by a `prodcat::training_step` range, and only what runs
inside those ranges is counted, so logging, evaluation and the next batch's collation between two
steps are not. With a GPU the step ends with a synchronize, so its kernels finish inside it.

Off the timed path: the recording is the only part inside `trainer.train()`; every step's wall time
is measured, so what the profiler added there is its window's wall time minus the same number of
unprofiled steps (their median); reading the events, writing the operator table and the Chrome
trace happen after training, timed on their own. Table 2's `train_wall_seconds` is the rule's wall
time minus both (`train_profiling_seconds`), so a profiled and an unprofiled run report the same.

The events are read straight from Kineto's results (`profile.profiler.kineto_results`) and
aggregated here as torch's `key_averages()` does (tests/test_profiling.py checks that they agree):
torch's own parse builds a Python object per event and took ~6 s for five steps of the default run's
tiny ByT5, more than those steps themselves.

Report-only, like every efficiency figure: a failure is logged, the profile is left out and the
trained model is kept.
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)

PROFILE_DIR = "profile"  # in the model's output folder
OPERATORS_FILE = "operators.csv"
TRACE_FILE = "trace.json.gz"  # Chrome trace: chrome://tracing or https://ui.perfetto.dev open it gzipped
STEP_RANGE = "prodcat::training_step"
DEFAULT_SETTINGS = {"enabled": True, "skip_first": 5, "warmup": 2, "steps": 3}
OPERATOR_COLUMNS = ["operator", "self_cpu_ms", "cpu_total_ms", "self_cuda_ms", "cuda_total_ms", "calls", "mflops"]
# torch leaves these out of its tables (profiler bookkeeping and trivial tensor queries)
_IGNORED_NAMES = frozenset(
    {
        "[memory]",
        "[OutOfMemory]",
        "profiler::_record_function_enter",
        "profiler::_record_function_enter_new",
        "profiler::_record_function_exit",
        "aten::is_leaf",
        "aten::output_nr",
        "aten::_version",
    }
)


def plan_window(remaining_steps: int, skip_first: int, warmup: int, steps: int) -> tuple[int, int, int]:
    """(skip, warm-up, recorded) steps that fit in the `remaining_steps` of a run: a short run
    (a test, a resumed run near its end) gives up skipped steps first, then warm-up, then recorded
    steps, so whatever can be profiled is."""
    remaining = max(0, int(remaining_steps))
    active = min(int(steps), remaining)
    warm = min(int(warmup), remaining - active)
    skip = min(int(skip_first), remaining - active - warm)
    return skip, warm, active


# ---- reading Kineto's events ---------------------------------------------------------------
@dataclass(eq=False)
class Event:
    """One profiler event, as torch's FunctionEvent sees it (times in ns)."""

    name: str
    start: int
    end: int
    thread: int
    on_cpu: bool = True  # False: a device (CUDA) kernel, memcpy or memset
    is_async: bool = False
    id: int = 0  # correlation id
    linked_id: int = 0  # for device events and runtime calls: the correlation id of their op
    flops: int = 0
    parent: Event | None = None
    children: list = field(default_factory=list)
    kernels: list = field(default_factory=list)  # device durations (ns) of the kernels it launched

    @property
    def cpu_total(self) -> int:
        return self.end - self.start if self.on_cpu and not self.is_async else 0

    @property
    def self_cpu(self) -> int:
        return (
            self.cpu_total - sum(child.cpu_total for child in self.children) if self.on_cpu and not self.is_async else 0
        )

    @property
    def cuda_total(self) -> int:
        if self.is_async:
            return 0
        if not self.on_cpu:
            return self.end - self.start
        return sum(self.kernels) + sum(child.cuda_total for child in self.children)

    @property
    def self_cuda(self) -> int:
        if self.is_async:
            return 0
        if not self.on_cpu:
            return self.end - self.start
        return self.cuda_total - sum(child.cuda_total for child in self.children)


def kineto_events(kineto_results) -> list[Event]:
    """The events of a stopped profiler (`profile.profiler.kineto_results`), linked as torch links
    them: device events to the op that launched them, runtime calls to that op's thread."""
    from torch.autograd import DeviceType

    events = []
    for raw in kineto_results.events():
        name = raw.name()
        if name in _IGNORED_NAMES or raw.is_hidden_event():
            continue
        events.append(
            Event(
                name=name,
                start=raw.start_ns(),
                end=raw.end_ns(),
                thread=raw.start_thread_id(),
                on_cpu=raw.device_type() == DeviceType.CPU,
                is_async=raw.is_async() or raw.start_thread_id() != raw.end_thread_id(),
                id=raw.correlation_id(),
                linked_id=raw.linked_correlation_id(),
                flops=raw.flops() or 0,
            )
        )
    return link_events(events)


def link_events(events: list[Event]) -> list[Event]:
    """torch's post-processing (autograd.profiler._parse_kineto_results and EventList._build_tree):
    kernels are credited to the op whose correlation id they carry, CPU events nest by time on
    their thread, and a child with its parent's name that is its only child is folded into it."""
    frontend = {e.id: e for e in events if e.linked_id == 0 and e.on_cpu and not e.is_async}
    for event in events:
        op = frontend.get(event.linked_id) if event.linked_id > 0 else None
        if op is None:
            continue
        if event.on_cpu:
            event.thread = op.thread  # a runtime call (cudaLaunchKernel) nests under its op
        else:
            op.kernels.append(event.end - event.start)
    by_thread: dict[int, list[Event]] = {}
    for event in events:
        if event.on_cpu and not event.is_async:
            by_thread.setdefault(event.thread, []).append(event)
    for thread_events in by_thread.values():
        stack: list[Event] = []
        for event in sorted(thread_events, key=lambda e: (e.start, -e.end)):
            while stack and (event.start >= stack[-1].end or event.end > stack[-1].end):
                stack.pop()
            if stack:
                event.parent = stack[-1]
                stack[-1].children.append(event)
            stack.append(event)
    removed: set[int] = set()
    changed = True
    while changed:
        changed = False
        for event in events:
            parent = event.parent
            if id(event) in removed or parent is None or parent.name != event.name or len(parent.children) != 1:
                continue
            parent.children = event.children
            parent.kernels = event.kernels
            for child in event.children:
                child.parent = parent
            removed.add(id(event))
            changed = True
    return [e for e in events if id(e) not in removed]


def in_steps(events: list[Event]) -> tuple[list[Event], int]:
    """The events inside a `prodcat::training_step` range (the ranges included), and how many."""
    windows = sorted((e.start, e.end) for e in events if e.name == STEP_RANGE)

    def inside(event):
        return any(start <= event.start and event.end <= end for start, end in windows)

    return [e for e in events if inside(e)], len(windows)


def operator_table(events: list[Event], steps: int = 1) -> pd.DataFrame:
    """Per CPU event name, like torch's `key_averages()`: self and total CPU and CUDA time (ms),
    calls and MFLOPs, divided by `steps` (so: per step); largest self CPU first."""
    rows: dict[str, list] = {}
    for event in events:
        if not event.on_cpu:
            continue
        row = rows.setdefault(event.name, [0, 0, 0, 0, 0, 0])
        for k, value in enumerate((event.self_cpu, event.cpu_total, event.self_cuda, event.cuda_total, 1, event.flops)):
            row[k] += value
    table = pd.DataFrame([[name, *values] for name, values in rows.items()], columns=OPERATOR_COLUMNS)
    for column in ("self_cpu_ms", "cpu_total_ms", "self_cuda_ms", "cuda_total_ms"):
        table[column] = table[column] / 1e6 / steps
    table["calls"] = table["calls"] / steps
    table["mflops"] = table["mflops"] / 1e6 / steps
    return table.sort_values(["self_cpu_ms", "operator"], ascending=[False, True], ignore_index=True)


def step_totals(events: list[Event], steps: int = 1) -> dict:
    """Self CPU and self CUDA time per step (ms), as torch's table footer sums them: every CPU
    event's self time; every device event's time."""
    return {
        "self_cpu_ms_per_step": sum(e.self_cpu for e in events) / 1e6 / steps,
        "self_cuda_ms_per_step": sum(e.self_cuda for e in events if not e.on_cpu) / 1e6 / steps,
    }


# ---- the profiler around training steps ------------------------------------------------------
class StepProfiler:
    """Profiles a window of training steps; driven by `trainer_callback` (or by hand: train_begin,
    then step_begin/step_end around every step, train_end, and finish after training)."""

    def __init__(self, settings: dict | None, out_dir, *, use_cuda: bool | None = None, resumed: bool = False):
        import torch

        self.resumed = resumed  # this run resumed a checkpoint (its profiled steps may be behind it)

        self.settings = {**DEFAULT_SETTINGS, **(settings or {})}
        self.out_dir = Path(out_dir)
        self.use_cuda = torch.cuda.is_available() if use_cuda is None else use_cuda
        self.profiler = None
        self.phase = "idle"  # → prepared (Kineto's warm-up) → recording → stopped
        self.range = None
        self.error: str | None = None
        self.plan = (0, 0, 0)
        self.step = 0  # optimizer steps of this run so far
        self.recorded = 0
        self.window_started = self.window_ended = None
        self.step_started = self.last_step_ended = None
        self.bodies: list[float] = []  # wall time of each unprofiled step
        self.gaps: list[float] = []  # wall time between two unprofiled steps (no evaluation or save in it)
        self.paused = False  # an evaluation or a checkpoint since the last step
        self.window_pauses = 0.0  # wall time of such gaps inside the window
        self.window_plain_gaps = 0  # gaps inside the window without one

    @property
    def enabled(self) -> bool:
        return bool(self.settings["enabled"]) and self.error is None

    def _first(self) -> int:
        return self.plan[0] + 1

    def _last(self) -> int:
        return self.plan[0] + self.plan[1] + self.plan[2]

    def _in_window(self, step: int) -> bool:
        return self.plan[2] > 0 and self._first() <= step <= self._last()

    def _fail(self, what: str) -> None:
        log.exception("profiling %s failed; the profile is left out of the report, training goes on", what)
        self.error = f"{what} failed (see the training log)"
        self._close()

    def _close(self) -> None:
        """Stops the profiler wherever it is (recording goes no further after a failure)."""
        try:
            if self.range is not None:
                self.range.__exit__(None, None, None)
            self._stop()
        except Exception:  # noqa: BLE001 - best effort while giving up
            log.exception("stopping the profiler failed")
        self.range = None

    def _stop(self) -> None:
        if self.phase == "prepared":  # as torch's schedule does from warm-up straight to the end
            self.profiler.start_trace()
            self.phase = "recording"
        if self.phase == "recording":
            self.phase = "stopped"
            self.profiler.stop_trace()
            self.window_ended = time.perf_counter()

    def train_begin(self, remaining_steps: int) -> None:
        if not self.enabled:
            return
        s = self.settings
        self.plan = plan_window(remaining_steps, s["skip_first"], s["warmup"], s["steps"])
        log.info(
            "profiling: %d steps skipped, %d warm-up, %d recorded (of %d steps in this run)%s",
            *self.plan,
            remaining_steps,
            ", CUDA too" if self.use_cuda else "",
        )

    def step_begin(self) -> None:
        now = time.perf_counter()
        self.step += 1
        in_window, after_window = self._in_window(self.step), self._in_window(self.step - 1)
        if self.last_step_ended is not None:
            gap = now - self.last_step_ended
            if in_window and after_window:
                # an evaluation at an epoch's end inside the window is no profiling cost
                self.window_pauses += gap if self.paused else 0.0
                self.window_plain_gaps += 0 if self.paused else 1
            elif not in_window and not after_window and not self.paused:
                self.gaps.append(gap)
        self.paused = False
        self.step_started = now
        if not self.enabled or not in_window:
            return
        try:
            from torch.autograd.profiler import record_function
            from torch.profiler import ProfilerActivity, profile

            first_recorded = self.plan[0] + self.plan[1] + 1
            if self.step == self._first():
                self.window_started = now
                activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.use_cuda else [])
                self.profiler = profile(activities=activities, with_flops=True)
                self.profiler.prepare_trace()  # Kineto's warm-up: set up, nothing recorded yet
                self.phase = "prepared"
            if self.step == first_recorded:
                self.profiler.start_trace()
                self.phase = "recording"
            if self.step >= first_recorded:
                self.range = record_function(STEP_RANGE)
                self.range.__enter__()
        except Exception:  # noqa: BLE001 - report-only
            self._fail("the start of a step")

    def step_end(self) -> None:
        if self.enabled and self.range is not None:
            try:
                if self.use_cuda:
                    import torch

                    torch.cuda.synchronize()  # the step's kernels finish inside its range
                self.range.__exit__(None, None, None)
                self.range = None
                self.recorded += 1
                if self.step == self._last():
                    self._stop()
            except Exception:  # noqa: BLE001 - report-only
                self._fail("the end of a step")
        now = time.perf_counter()
        if self.step_started is not None and not self._in_window(self.step):
            self.bodies.append(now - self.step_started)
        self.last_step_ended = now

    def train_end(self) -> None:
        """Training stopped (possibly inside the window: then what was recorded is kept)."""
        if not self.enabled:
            return
        try:
            if self.range is not None:
                self.range.__exit__(None, None, None)
                self.range = None
            self._stop()
        except Exception:  # noqa: BLE001 - report-only
            self._fail("stopping at the end of training")

    def pause(self) -> None:
        """An evaluation or a checkpoint between two steps (its time is not the profiler's)."""
        self.paused = True

    def in_loop_seconds(self) -> float:
        """What the window cost beyond the same steps unprofiled (their median wall time), leaving
        out evaluations and checkpoints that fell between two of its steps."""
        if self.window_started is None or self.window_ended is None:
            return 0.0
        steps = min(self.step, self._last()) - self._first() + 1
        body = statistics.median(self.bodies) if self.bodies else 0.0
        gap = statistics.median(self.gaps) if self.gaps else 0.0
        window = self.window_ended - self.window_started - self.window_pauses
        return max(0.0, window - steps * body - self.window_plain_gaps * gap)

    def finish(self) -> dict:
        """After training: the per-step figures for Table 2, the operator table and the Chrome
        trace written under out_dir; never raises (a failure is logged and returned as `error`)."""
        summary = {
            **{k: self.settings[k] for k in ("enabled", "skip_first", "warmup", "steps")},
            "activities": ["cpu", "cuda"] if self.use_cuda else ["cpu"],
        }
        if not self.settings["enabled"]:
            return summary
        started = time.perf_counter()
        try:
            summary.update(self._write())
        except Exception as error:  # noqa: BLE001 - report-only
            log.exception("profiling: reading or writing the profile failed; it is left out of the report")
            self.error = self.error or f"reading or writing the profile failed: {type(error).__name__}: {error}"
        finally:
            self.profiler = None
        after = time.perf_counter() - started
        summary.update(
            {
                "skipped_steps": self.plan[0],
                "warmup_steps": self.plan[1],
                "recorded_steps": self.recorded,
                "in_loop_seconds": self.in_loop_seconds(),
                "after_training_seconds": after,
                "error": self.error,
                "resumed": self.resumed,
            }
        )
        summary["overhead_seconds"] = summary["in_loop_seconds"] + after
        if self.error is None and "self_cpu_ms_per_step" in summary:
            log.info(
                "profiling: %d steps, %.1f ms self CPU a step; it added %.2f s in the loop and %.2f s after",
                self.recorded,
                summary["self_cpu_ms_per_step"],
                summary["in_loop_seconds"],
                after,
            )
        return summary

    def _write(self) -> dict:
        if self.error is not None:
            return {}
        if self.recorded == 0 and self.resumed:
            # not a failure: the run resumed a checkpoint with no steps left to profile
            log.info("profiling: nothing recorded, the run resumed with %d steps left", self.step)
            return {"skipped": "resumed"}
        if self.recorded == 0:
            self.error = f"no step was recorded: this run had {self.step} steps"
            log.warning("profiling: %s", self.error)
            return {}
        events, steps = in_steps(kineto_events(self.profiler.profiler.kineto_results))
        if steps != self.recorded:
            raise RuntimeError(f"{steps} step ranges in the profile, {self.recorded} recorded")
        out = self.out_dir / PROFILE_DIR
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        try:
            operator_table(events, steps).to_csv(out / OPERATORS_FILE, index=False)
            write_chrome_trace(events, out / TRACE_FILE)
        except BaseException:  # a full disk, say: no half-written profile is left
            shutil.rmtree(out, ignore_errors=True)
            raise
        totals = step_totals(events, steps)
        if not self.use_cuda:
            totals["self_cuda_ms_per_step"] = None
        return {**totals, "operators": f"{PROFILE_DIR}/{OPERATORS_FILE}", "trace": f"{PROFILE_DIR}/{TRACE_FILE}"}


def write_chrome_trace(events: list[Event], path) -> None:
    """The recorded steps' events as a gzipped Chrome trace, streamed through gzip: the plain JSON
    (tens of MB for a real model) never touches the disk, where it once filled a small one. Written
    to a temporary file beside `path` and renamed, so a failure leaves no half trace."""
    import json

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    origin = min((e.start for e in events), default=0)
    try:
        with gzip.open(tmp, "wt", compresslevel=6, encoding="utf-8") as out:
            out.write('{"displayTimeUnit": "ms", "traceEvents": [\n')
            for i, event in enumerate(events):
                record = {
                    "name": event.name,
                    "ph": "X",
                    "cat": "cpu_op" if event.on_cpu else "kernel",
                    "pid": "CPU" if event.on_cpu else "CUDA",
                    "tid": event.thread,
                    "ts": (event.start - origin) / 1000.0,
                    "dur": (event.end - event.start) / 1000.0,
                }
                out.write(("," if i else "") + json.dumps(record) + "\n")
            out.write("]}\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def trainer_callback(profiler: StepProfiler):
    """A transformers TrainerCallback that drives `profiler` (never raising into training)."""
    from transformers import TrainerCallback

    class ProfileSteps(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            profiler.train_begin(state.max_steps - state.global_step)

        def on_step_begin(self, args, state, control, **kwargs):
            profiler.step_begin()

        def on_step_end(self, args, state, control, **kwargs):
            profiler.step_end()

        def on_evaluate(self, args, state, control, **kwargs):
            profiler.pause()

        def on_save(self, args, state, control, **kwargs):
            profiler.pause()

        def on_train_end(self, args, state, control, **kwargs):
            profiler.train_end()

    return ProfileSteps()

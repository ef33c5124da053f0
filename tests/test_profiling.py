"""Profiling a few training steps (prodcat.runtime.profiling) and the tables built from it (Tables 2 and 3)."""

import gzip
import json

import pandas as pd
import pytest
import torch

from prodcat.report.tables import (
    EFFICIENCY_COLUMNS,
    NO_CUDA,
    OPERATOR_COLUMNS,
    efficiency_table,
    operators_table,
    profile_note,
    to_markdown,
)
from prodcat.runtime import profiling
from prodcat.runtime.profiling import (
    STEP_RANGE,
    Event,
    StepProfiler,
    in_steps,
    kineto_events,
    link_events,
    operator_table,
    plan_window,
    step_totals,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_plan_window_gives_up_skipped_then_warmup_then_recorded_steps():
    assert plan_window(100, 5, 2, 3) == (5, 2, 3)
    assert plan_window(7, 5, 2, 3) == (2, 2, 3)
    assert plan_window(4, 5, 2, 3) == (0, 1, 3)
    assert plan_window(2, 5, 2, 3) == (0, 0, 2)
    assert plan_window(0, 5, 2, 3) == (0, 0, 0)


def tiny_step():
    """A model, an optimizer and one training step of it (forward, backward, AdamW)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    optimizer = torch.optim.AdamW(model.parameters())
    x, y = torch.randn(8, 16), torch.randint(0, 4, (8,))

    def step():
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        optimizer.zero_grad()

    return step


def run_steps(profiler, n, step):
    profiler.train_begin(n)
    for _ in range(n):
        profiler.step_begin()
        step()
        profiler.step_end()
    profiler.train_end()


def test_aggregation_matches_torchs_key_averages(tmp_path):
    """The events read straight from Kineto add up, per operator, to what torch's own (slow)
    parse reports: self and total CPU time, calls and FLOPs."""
    step = tiny_step()
    profiler = StepProfiler({"skip_first": 1, "warmup": 1, "steps": 2}, tmp_path)
    run_steps(profiler, 5, step)
    ours = operator_table(kineto_events(profiler.profiler.profiler.kineto_results)).set_index("operator")
    theirs = profiler.profiler.key_averages()
    assert len(theirs) == len(ours) > 10
    for event in theirs:
        row = ours.loc[event.key]
        assert row["calls"] == event.count, event.key
        assert row["self_cpu_ms"] * 1e3 == pytest.approx(event.self_cpu_time_total, abs=1e-3), event.key
        assert row["cpu_total_ms"] * 1e3 == pytest.approx(event.cpu_time_total, abs=1e-3), event.key
        assert row["mflops"] * 1e6 == pytest.approx(event.flops, abs=0.5), event.key
    assert ours.loc["aten::addmm", "mflops"] > 0 and ours.loc[STEP_RANGE, "calls"] == 2


def test_profiled_steps_are_written_and_timed_apart(tmp_path):
    step = tiny_step()
    profiler = StepProfiler({"skip_first": 2, "warmup": 1, "steps": 2}, tmp_path, use_cuda=False)
    run_steps(profiler, 8, step)
    summary = profiler.finish()
    assert summary["error"] is None and summary["recorded_steps"] == 2
    assert (summary["skipped_steps"], summary["warmup_steps"]) == (2, 1)
    assert summary["activities"] == ["cpu"] and summary["self_cuda_ms_per_step"] is None
    operators = pd.read_csv(tmp_path / summary["operators"])
    # per step: the step range is called once a step, the linear layers twice
    assert operators.set_index("operator").loc[STEP_RANGE, "calls"] == 1
    assert operators.set_index("operator").loc["aten::addmm", "calls"] == 2
    assert operators["self_cpu_ms"].sum() == pytest.approx(summary["self_cpu_ms_per_step"])
    trace = json.loads(gzip.open(tmp_path / summary["trace"]).read())
    ranges = [e for e in trace["traceEvents"] if e.get("name") == STEP_RANGE]
    assert len(ranges) == 2, "only the recorded steps are in the trace"
    # the 5 unprofiled steps were timed for the overhead estimate; it and the after-training time add up
    assert len(profiler.bodies) == 5 and summary["in_loop_seconds"] >= 0 and summary["after_training_seconds"] > 0
    assert summary["overhead_seconds"] == pytest.approx(summary["in_loop_seconds"] + summary["after_training_seconds"])


def test_an_evaluation_inside_the_window_is_not_counted_as_profiling(tmp_path):
    """The in-loop cost is the window's wall time beyond its steps; an evaluation (or checkpoint)
    between two recorded steps, reported by the Trainer's on_evaluate / on_save, is left out."""
    import time

    costs = {}
    for paused in (False, True):
        profiler = StepProfiler({"skip_first": 3, "warmup": 0, "steps": 2}, tmp_path / str(paused), use_cuda=False)
        profiler.train_begin(8)
        for k in range(1, 9):
            profiler.step_begin()
            profiler.step_end()
            if k == 4:  # between the two recorded steps (4 and 5)
                time.sleep(1.0)
                if paused:
                    profiler.pause()
        profiler.train_end()
        costs[paused] = profiler.finish()["in_loop_seconds"]
    assert costs[False] >= 1.0 and costs[True] < costs[False] - 0.5


def test_a_short_run_still_records_what_fits(tmp_path):
    profiler = StepProfiler({"skip_first": 5, "warmup": 2, "steps": 3}, tmp_path, use_cuda=False)
    run_steps(profiler, 3, tiny_step())
    summary = profiler.finish()
    assert summary["recorded_steps"] == 3 and summary["skipped_steps"] == 0 and summary["error"] is None


def test_a_run_with_no_steps_records_nothing_and_says_so(tmp_path):
    profiler = StepProfiler({}, tmp_path, use_cuda=False)
    run_steps(profiler, 0, tiny_step())
    summary = profiler.finish()
    assert summary["recorded_steps"] == 0 and "no step was recorded" in summary["error"]
    assert not (tmp_path / profiling.PROFILE_DIR).exists()


def test_a_resumed_run_with_no_steps_left_is_not_a_failure(tmp_path):
    profiler = StepProfiler({}, tmp_path, use_cuda=False, resumed=True)
    run_steps(profiler, 0, tiny_step())
    summary = profiler.finish()
    assert summary["skipped"] == "resumed" and summary["error"] is None and summary["resumed"] is True


def test_a_trace_that_cannot_be_written_says_why_and_leaves_nothing(tmp_path, monkeypatch):
    """Issue 25: on a full disk the profile's own failure is reported as such (the error names
    the cause), training goes on, and no partial trace is left."""
    import errno

    def full_disk(path, *args, **kwargs):
        open(path, "wb").close()  # the temporary file exists when the write fails
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(profiling.gzip, "open", full_disk)
    profiler = StepProfiler({"skip_first": 0, "warmup": 0, "steps": 2}, tmp_path, use_cuda=False)
    run_steps(profiler, 3, tiny_step())
    summary = profiler.finish()
    assert "No space left on device" in summary["error"] and "self_cpu_ms_per_step" not in summary
    assert not list((tmp_path / profiling.PROFILE_DIR).glob("trace*"))


def test_a_failing_profiler_never_stops_training(tmp_path, monkeypatch, caplog):
    import torch.profiler

    class Broken:
        def __init__(self, **kwargs):
            raise RuntimeError("no profiler here")

    monkeypatch.setattr(torch.profiler, "profile", Broken)
    step_calls = []
    profiler = StepProfiler({"skip_first": 0, "warmup": 0, "steps": 2}, tmp_path, use_cuda=False)
    run_steps(profiler, 4, lambda: step_calls.append(1))
    summary = profiler.finish()
    assert len(step_calls) == 4 and summary["error"] and "self_cpu_ms_per_step" not in summary
    assert "no profiler here" in caplog.text


def test_disabled_profiling_records_nothing(tmp_path):
    profiler = StepProfiler({"enabled": False}, tmp_path, use_cuda=False)
    run_steps(profiler, 4, tiny_step())
    assert profiler.profiler is None and profiler.finish()["enabled"] is False


def test_kernels_are_credited_to_the_op_that_launched_them():
    """torch's linking rules on hand-made CUDA-style events (no GPU here): a kernel counts toward
    the op whose correlation id it carries and that op's ancestors; the runtime call that launched
    it nests under the op even though CUPTI saw it on another thread; a child with its parent's name
    as the parent's only child is folded into it."""
    step = Event(STEP_RANGE, 0, 1000, thread=1, id=1)
    linear = Event("aten::linear", 10, 500, thread=1, id=2)
    mm = Event("aten::mm", 20, 400, thread=1, id=3, flops=2000)
    launch = Event("cudaLaunchKernel", 30, 40, thread=9, id=4, linked_id=3)
    kernel = Event("gemm_kernel", 600, 900, thread=7, on_cpu=False, id=5, linked_id=3)
    to_outer = Event("aten::to", 510, 590, thread=1, id=6)
    to_inner = Event("aten::to", 520, 580, thread=1, id=7)
    # after the step: an op and its kernel, both left out
    later = Event("aten::add", 1100, 1200, thread=1, id=8)
    late_kernel = Event("add_kernel", 1150, 1300, thread=7, on_cpu=False, id=9, linked_id=8)
    events = link_events([step, linear, mm, launch, kernel, to_outer, to_inner, later, late_kernel])
    assert to_inner not in events and to_outer.children == []
    assert launch.parent is mm and mm.parent is linear and linear.parent is step
    assert mm.cuda_total == 300 and linear.cuda_total == 300 and step.cuda_total == 300
    assert mm.self_cuda == 300 and linear.self_cuda == 0
    assert mm.self_cpu == 380 - 10 and step.self_cpu == 1000 - 490 - 80
    inside, steps = in_steps(events)
    assert steps == 1 and kernel in inside and later not in inside and late_kernel not in inside
    table = operator_table(inside).set_index("operator")
    assert table.loc["aten::mm", "cuda_total_ms"] == pytest.approx(300 / 1e6)
    assert table.loc["aten::to", "calls"] == 1 and table.loc["aten::mm", "mflops"] == pytest.approx(0.002)
    assert step_totals(inside)["self_cuda_ms_per_step"] == pytest.approx(300 / 1e6)
    assert step_totals(inside)["self_cpu_ms_per_step"] == pytest.approx(1000 / 1e6)


def test_seq2seq_training_profiles_its_steps(tmp_path):
    """The Trainer path: the callback profiles steps of a real Seq2SeqTrainer run."""
    from tests.test_seq2seq import DIMS, PARAMS, rows

    from prodcat.labelers.seq2seq import train_seq2seq
    from prodcat.standins.tiny_seq2seq import build_tiny_byt5

    base = build_tiny_byt5(tmp_path / "base", DIMS)
    settings = {"enabled": True, "skip_first": 1, "warmup": 1, "steps": 2}
    summary = train_seq2seq(
        base,
        rows(),
        rows(8),
        tmp_path / "model",
        tmp_path / "ckpt",
        {**PARAMS, "num_train_epochs": 1},
        profile=settings,
    )
    profile = summary["profile"]
    assert profile["error"] is None and profile["recorded_steps"] == 2 and profile["self_cpu_ms_per_step"] > 0
    operators = pd.read_csv(tmp_path / "model" / profile["operators"]).set_index("operator")
    # a training step: forward, backward and the optimizer
    assert {"aten::mm", "Optimizer.step#AdamW.step"} <= set(operators.index)
    assert any(name.endswith("Backward0") for name in operators.index)
    with gzip.open(tmp_path / "model" / profile["trace"], "rt") as trace:  # streamed gzipped, never plain
        assert STEP_RANGE in {event["name"] for event in json.load(trace)["traceEvents"]}
    assert not list((tmp_path / "model" / "profile").glob("*.json")) and not list((tmp_path / "model").rglob("*.tmp"))
    saved = json.loads((tmp_path / "model" / "train_summary.json").read_text())
    assert saved["profile"]["self_cpu_ms_per_step"] == profile["self_cpu_ms_per_step"]


def write_summary(model_dir, **fields):
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "train_summary.json").write_text(
        json.dumps({"kind": "text", "device": "cpu:x86_64", "parameters": 10, "trainer_seconds": 90.0, **fields})
    )
    return model_dir / "train_summary.json"


def test_tables_2_and_3_from_profiled_and_unprofiled_models(tmp_path):
    profiled = {
        "enabled": True,
        "activities": ["cpu"],
        "recorded_steps": 3,
        "skipped_steps": 5,
        "warmup_steps": 2,
        "self_cpu_ms_per_step": 10.0,
        "self_cuda_ms_per_step": None,
        "overhead_seconds": 1.5,
        "operators": "profile/operators.csv",
        "error": None,
    }
    (tmp_path / "a" / "profile").mkdir(parents=True)
    pd.DataFrame(
        {
            "operator": [STEP_RANGE, "aten::mm", "aten::add|x", "aten::mul"],
            "self_cpu_ms": [1.0, 6.0, 2.0, 1.0],
            "cpu_total_ms": [10.0, 6.5, 2.0, 1.0],
            "self_cuda_ms": 0.0,
            "cuda_total_ms": 0.0,
            "calls": [1.0, 4.0, 2.0, 1.5],
            "mflops": [0.0, 3.0, 0.0, 0.0],
        }
    ).to_csv(tmp_path / "a" / "profile" / "operators.csv", index=False)
    summaries = {
        "a": write_summary(tmp_path / "a", profile=profiled),
        "off": write_summary(tmp_path / "off", profile={"enabled": False}),
        "failed": write_summary(tmp_path / "failed", profile={**profiled, "error": "boom", "overhead_seconds": 0.5}),
        "ngram": write_summary(tmp_path / "ngram"),
        # killed after its profiled steps and resumed: two segments, nothing left to profile
        "resumed": write_summary(
            tmp_path / "resumed",
            profile={**profiled, "skipped": "resumed", "overhead_seconds": 0.0, "operators": None},
            segments=[
                {"from_step": 0, "to_step": 12, "seconds": 20.0},
                {"from_step": 12, "to_step": 24, "seconds": 70},
            ],
        ),
    }
    predict = tmp_path / "predict.json"
    predict.write_text(
        json.dumps(
            {
                "kind": "text",
                "decoding": "raw",
                "rows": 10,
                "parse_failures": 0,
                "batch_size": 4,
                "predict_seconds": 6.0,
                "predict_seconds_per_1k": 600.0,
                "device": "cpu:x86_64",
            }
        )
    )
    bench = tmp_path / "bench.tsv"
    bench.write_text("s\th:m:s\tmax_rss\n100.0\t0:01:40\t512\n")
    table = efficiency_table([(m, path, predict, bench, None) for m, path in summaries.items()]).set_index("model")
    assert list(table.reset_index().columns) == EFFICIENCY_COLUMNS
    # the job's wall time less the profiling, beside the training loop's own time
    assert table.loc["a", "train_wall_seconds"] == 98.5 and table.loc["a", "train_profiling_seconds"] == 1.5
    assert table.loc["a", "trainer_seconds"] == 90.0
    assert table.loc["a", "train_step_self_cpu_ms"] == 10.0 and table.loc["a", "train_step_self_cuda_ms"] == NO_CUDA
    assert table.loc["off", "train_step_self_cpu_ms"] == "off" and table.loc["off", "train_wall_seconds"] == 100.0
    assert table.loc["failed", "train_step_self_cpu_ms"] is None and table.loc["failed", "train_wall_seconds"] == 99.5
    assert table.loc["ngram", "train_step_self_cuda_ms"] == "n/a"
    assert table.loc["resumed", "train_step_self_cpu_ms"] == "resumed"
    assert table.loc["resumed", "train_wall_seconds"] == 120.0, "the last job's 100 s and the killed segment's 20 s"
    assert table.loc["a", "predict_seconds_per_batch"] == 2.0  # 10 rows in batches of 4: 3 batches
    assert table.loc["a", "predict_seconds_per_1k"] == 600.0
    markdown = to_markdown(table.reset_index(), "Table 2")
    assert "| failed | 10 | 99.5000 | 90.0000 | 0.5000 | 512.0000 |  |  |" in markdown

    operators = operators_table([(m, tmp_path / m) for m in summaries], top=2)
    assert list(operators.columns) == OPERATOR_COLUMNS
    assert operators["operator"].tolist() == ["aten::mm", "aten::add|x"], "the step range is no operator"
    assert operators["self_cpu_percent"].tolist() == [60.0, 20.0] and (operators["cuda_total_ms"] == NO_CUDA).all()
    assert operators["calls"].tolist() == [4, 2]
    assert "aten::add\\|x" in to_markdown(operators, "Table 3")

    note = profile_note({m: json.loads(path.read_text()) for m, path in summaries.items()})
    assert (
        "a: mean of 3 optimizer step(s) recorded by torch.profiler (CPU activities) after 5 skipped and 2 warm-up"
        in note
    )
    assert "on cpu:x86_64" in note and "failed (boom): profiling failed" in note and "off: profiling off" in note
    assert "resumed: not profiled, the training resumed a checkpoint past the profiled steps" in note
    assert "ngram: no torch training step" in note


def test_namer_training_profiles_its_lora_steps(tmp_path):
    """The SFTTrainer path (LoRA on the tiny Llama): the same callback, the profile in the metrics."""
    from tests.test_namer import FAST_TRAIN, PAIRS, TEMPLATES

    from prodcat.names.lora import train_lora
    from prodcat.standins.tiny_llama import build_tiny_llama

    base = build_tiny_llama(tmp_path / "llama", [d for pair in PAIRS for d in pair] + list(TEMPLATES.values()))
    rows = pd.DataFrame(
        {
            "indoml_id": range(16),
            "description": [PAIRS[i % 6][0] for i in range(16)],
            "price": 1.0,
            "name": [PAIRS[i % 6][1] for i in range(16)],
        }
    )
    metrics = train_lora(
        base,
        rows,
        tmp_path / "namer",
        {**FAST_TRAIN, "per_device_train_batch_size": 4, "max_steps": 4},
        templates=TEMPLATES,
        profile={"skip_first": 1, "warmup": 1, "steps": 2},
    )
    profile = metrics["profile"]
    assert profile["error"] is None and profile["recorded_steps"] == 2
    operators = pd.read_csv(tmp_path / "namer" / profile["operators"]).set_index("operator")
    assert operators.loc["aten::mm", "mflops"] > 0 and "Optimizer.step#AdamW.step" in operators.index

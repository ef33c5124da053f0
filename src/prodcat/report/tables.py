"""The paper's tables, as CSV and Markdown: Table 1 (metrics per model, stage and split), Table 2
(efficiency per model) and Table 3 (the top operators of a profiled training step per model)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from prodcat.labelers.summaries import PredictionSummary, TrainingSummary
from prodcat.runtime.efficiency import read_benchmark
from prodcat.runtime.profiling import STEP_RANGE

METRICS_COLUMNS = [
    "model",
    "stage",
    "split",
    "n",
    "item_accuracy",
    "item_accuracy_unseen_retailer",
    "f1_supergroup",
    "f1_group",
    "f1_module",
    "f1_brand",
    "parse_failures",
]
# The paper's Table 2 columns (parameters, self CPU and self CUDA time, training GFLOPs, inference
# time, testing GFLOPs) beside the rules' wall time and memory; efficiency_note says what each is.
EFFICIENCY_COLUMNS = [
    "model",
    "parameters",
    "train_wall_seconds",
    "trainer_seconds",
    "train_profiling_seconds",
    "train_max_rss_mb",
    "train_step_self_cpu_ms",
    "train_step_self_cuda_ms",
    "train_gflops_per_step",
    "predict_seconds_per_batch",
    "predict_gflops_per_batch",
    "predict_seconds_per_1k",
    "constrained_predict_seconds_per_1k",
    "device",
]
# Table 3: the paper's columns, per profiled training step.
OPERATOR_COLUMNS = [
    "model",
    "operator",
    "self_cpu_percent",
    "self_cpu_ms",
    "cpu_total_ms",
    "cuda_total_ms",
    "calls",
    "mflops",
]
NO_TORCH_STEP, PROFILING_OFF, NO_CUDA, RESUMED = "n/a", "off", "no CUDA device", "resumed"
VALIDATION_CAVEAT = (
    "Validation rows come from the same distribution as training (a group-stratified split of it); "
    "such numbers flatter: one datathon team saw 0.78 on a random split and 0.41 on the hidden test."
)


def metrics_table(metrics_files) -> pd.DataFrame:
    records = []
    for path in metrics_files:
        records.extend(json.loads(Path(path).read_text()))
    table = pd.DataFrame.from_records(records)
    return table[METRICS_COLUMNS]


def _number(value):
    return float("nan") if value is None else value


def unseen_retailer_note(metrics_files) -> str:
    """What item_accuracy_unseen_retailer is measured on: the rows per split whose retailer never
    occurs in the training rows."""
    counts = {}
    for path in metrics_files:
        for record in json.loads(Path(path).read_text()):
            counts.setdefault(record["split"], record.get("n_unseen_retailer"))
    listed = ", ".join(f"{split} {n}" for split, n in counts.items() if n is not None)
    return (
        f"item_accuracy_unseen_retailer is the item accuracy on the rows whose retailer never occurs in the "
        f"training rows ({listed or 'not measured'}; empty when there are none)."
    )


def profile_columns(train: dict) -> dict:
    """Table 2's profiler cells from a training summary: "n/a" for a model with no torch training
    step (no "profile" key), "off" when profiling was off, "resumed" when the run resumed past the
    profiled steps, empty (None) when it failed (the profile note says why), "no CUDA device" for
    CUDA time without a GPU."""
    if "profile" not in train:
        return {
            "train_profiling_seconds": NO_TORCH_STEP,
            "train_step_self_cpu_ms": NO_TORCH_STEP,
            "train_step_self_cuda_ms": NO_TORCH_STEP,
        }
    profile = train["profile"] or {"enabled": False}
    if not profile.get("enabled"):
        return {
            "train_profiling_seconds": 0.0,
            "train_step_self_cpu_ms": PROFILING_OFF,
            "train_step_self_cuda_ms": PROFILING_OFF,
        }
    if profile.get("skipped") == "resumed":  # the run resumed past the profiled steps
        return {
            "train_profiling_seconds": profile.get("overhead_seconds"),
            "train_step_self_cpu_ms": RESUMED,
            "train_step_self_cuda_ms": RESUMED,
        }
    cuda = profile.get("self_cuda_ms_per_step") if "cuda" in profile.get("activities", []) else NO_CUDA
    return {
        "train_profiling_seconds": profile.get("overhead_seconds"),
        "train_step_self_cpu_ms": profile.get("self_cpu_ms_per_step") if not profile.get("error") else None,
        "train_step_self_cuda_ms": cuda if not profile.get("error") else None,
    }


def earlier_segments_seconds(segments) -> float:
    """The training seconds of every segment but the last of a resumed run (0 for one segment;
    NaN where one is unknown)."""
    earlier = (segments or [])[:-1]
    if any(segment.get("seconds") is None for segment in earlier):
        return float("nan")
    return float(sum(segment["seconds"] for segment in earlier))


def seconds_per_batch(predict: PredictionSummary):
    """Generation seconds per batch of a prediction summary (batches of its batch_size)."""
    if not predict.batch_size or not predict.rows:
        return float("nan")
    return predict.predict_seconds_per_batch


def efficiency_table(entries) -> pd.DataFrame:
    """entries: (model, model folder or its train_summary.json, prediction summary JSON, training
    benchmark TSV, constrained-prediction summary JSON or None)."""
    rows = []
    for model, trained, predict_json, bench, constrained_json in entries:
        train = TrainingSummary.read(trained)
        predict = PredictionSummary.read(predict_json)
        measured = read_benchmark(bench)
        profiled = profile_columns(train.to_dict())
        profiling_seconds = profiled["train_profiling_seconds"]
        rows.append(
            {
                "model": model,
                # None where a report-only count failed (logged in the training rule's log)
                "parameters": _number(train.parameters),
                # the training job's wall time without what profiling added to it, plus the
                # training loop's time in the earlier segments of a resumed run (their jobs were
                # killed before their benchmark was written)
                "train_wall_seconds": measured["seconds"]
                - (profiling_seconds if isinstance(profiling_seconds, (int, float)) else 0)
                + earlier_segments_seconds(train.details.get("segments")),
                "trainer_seconds": _number(train.trainer_seconds),
                **profiled,
                "train_max_rss_mb": measured["max_rss_mb"],
                "predict_seconds_per_batch": seconds_per_batch(predict),
                "predict_seconds_per_1k": predict.predict_seconds_per_1k,
                "train_gflops_per_step": _number(train.train_gflops_per_step),
                "predict_gflops_per_batch": _number(predict.predict_gflops_per_batch),
                "device": train.device,
                "constrained_predict_seconds_per_1k": (
                    PredictionSummary.read(constrained_json).predict_seconds_per_1k
                    if constrained_json
                    else float("nan")
                ),
            }
        )
    return pd.DataFrame(rows, columns=EFFICIENCY_COLUMNS)


def operators_table(entries, top: int) -> pd.DataFrame:
    """Table 3: per model, the `top` operators of one profiled training step by self CPU time.
    entries: (model, model folder) of the models whose training summary holds a profile; the
    `prodcat::training_step` range (the step itself) is not an operator and is left out, but its
    self time (Python between operators) counts in the 100 % of self_cpu_percent."""
    frames = []
    for model, model_dir in entries:
        profile = TrainingSummary.read(model_dir).details.get("profile") or {}
        if not profile.get("operators") or profile.get("error"):
            continue
        table = pd.read_csv(Path(model_dir) / profile["operators"])
        table = table[table["operator"] != STEP_RANGE].nlargest(top, "self_cpu_ms")
        table.insert(0, "model", model)
        table["self_cpu_percent"] = 100.0 * table["self_cpu_ms"] / profile["self_cpu_ms_per_step"]
        table["calls"] = [
            int(c) if float(c).is_integer() else c for c in table["calls"]
        ]  # per step: whole when steps agree
        if "cuda" not in profile.get("activities", []):
            table["cuda_total_ms"] = NO_CUDA
        frames.append(table[OPERATOR_COLUMNS])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=OPERATOR_COLUMNS)


def profile_note(summaries: dict) -> str:
    """What Tables 2 and 3's profiler figures are: steps and device of each profiled model.
    summaries: model → its training summary."""
    groups: dict[tuple, list[str]] = {}
    failed, off, no_step, resumed = [], [], [], []
    for model, summary in summaries.items():
        profile = summary.get("profile")
        if "profile" not in summary:
            no_step.append(model)
        elif not (profile or {}).get("enabled"):
            off.append(model)
        elif profile.get("error"):
            failed.append(f"{model} ({profile['error']})")
        elif profile.get("skipped") == "resumed":
            resumed.append(model)
        else:
            key = (
                profile["recorded_steps"],
                profile["skipped_steps"],
                profile["warmup_steps"],
                "+".join(profile["activities"]).upper(),
                summary.get("device"),
            )
            groups.setdefault(key, []).append(model)
    lines = [
        f"{', '.join(models)}: mean of {steps} optimizer step(s) recorded by torch.profiler ({activities} "
        f"activities) after {skipped} skipped and {warm} warm-up step(s), on {device}"
        for (steps, skipped, warm, activities, device), models in groups.items()
    ]
    if failed:
        lines.append(f"{', '.join(failed)}: profiling failed, cells left empty")
    if resumed:
        lines.append(f"{', '.join(resumed)}: not profiled, the training resumed a checkpoint past the profiled steps")
    if off:
        lines.append(f"{', '.join(off)}: profiling off (config profile.enabled)")
    if no_step:
        lines.append(f"{', '.join(no_step)}: no torch training step (n/a)")
    return "; ".join(lines) + "." if lines else ""


def efficiency_note(profiled: str) -> str:
    """Table 2's note (efficiency.md), the one description of its columns (the report's caption,
    report/efficiency.rst, points to it); `profiled` is profile_note's steps and device."""
    return (
        "train_wall_seconds and train_max_rss_mb come from the training rule's benchmark file (wall time "
        "and peak memory of the whole job: loading, tokenising and saving included), the wall time less "
        "train_profiling_seconds, what profiling added to it; trainer_seconds is the training loop's own "
        "time (the Trainer's train() call; charngram: its fit), from the model's train_summary.json. "
        "train_step_self_cpu_ms and train_step_self_cuda_ms are torch.profiler's self CPU and self CUDA "
        "time of one optimizer step (forward, backward, optimizer; the sum over every operator, as the "
        f"profiler's table footer; {NO_CUDA!r} without a GPU): {profiled} "
        "FLOPs are counted by torch's FlopCounterMode for one training step and one prediction batch; the "
        "namer's step (a LoRA step: frozen base, no weight gradients) is counted on the meta device, from "
        "the model's configuration, with no memory. predict_seconds_per_batch is the generation time of "
        "the test split over its batches (namer: summed over shards), predict_seconds_per_1k the same per "
        "1,000 rows. constrained_predict_seconds_per_1k is the same prediction decoded under the hierarchy "
        "trie."
    )


def to_markdown(table: pd.DataFrame, title: str, note: str = "") -> str:
    def cell(value):
        if value is None or (isinstance(value, float) and math.isnan(value)):  # a missing figure: left empty
            return ""
        if isinstance(value, float):
            return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value).replace("|", "\\|")  # a "|" in an operator name would break the row

    lines = [f"# {title}", ""]
    if note:
        lines += [note, ""]
    lines.append("| " + " | ".join(table.columns) + " |")
    lines.append("|" + "---|" * len(table.columns))
    for record in table.itertuples(index=False, name=None):
        lines.append("| " + " | ".join(cell(v) for v in record) + " |")
    return "\n".join(lines) + "\n"


def write_table(table: pd.DataFrame, csv_path, md_path, title: str, note: str = "", extra_markdown: str = "") -> None:
    from prodcat.data.io import write_text

    write_text(table.to_csv(index=False), csv_path)
    write_text(to_markdown(table, title, note) + extra_markdown, md_path)


ENSEMBLE_COLUMNS = [
    "ensemble",
    "stage",
    "split",
    "best_member",
    "best_member_accuracy",
    "vote",
    "stack",
    "stack_minus_best_member",
    "stack_minus_vote",
]


def ensemble_comparison(metrics: pd.DataFrame, comparisons: list[dict]) -> pd.DataFrame:
    """Item accuracy of each ensemble's vote and stack side by side, against its best member at
    the same stage, per split. comparisons: {ensemble, stacked, stage, members: {member: stage}}
    (rules/common.smk, ensemble_comparisons)."""
    accuracy = metrics.set_index(["model", "stage", "split"])["item_accuracy"]
    rows = []
    for item in comparisons:
        for split in dict.fromkeys(metrics["split"]):
            member = {m: accuracy.get((m, s, split)) for m, s in item["members"].items()}
            member = {m: a for m, a in member.items() if a is not None}
            vote = accuracy.get((item["ensemble"], item["stage"], split))
            stack = accuracy.get((item["stacked"], item["stage"], split))
            if not member or vote is None or stack is None:
                continue
            best = max(member, key=lambda m: (member[m], -list(member).index(m)))
            rows.append(
                {
                    "ensemble": item["ensemble"],
                    "stage": item["stage"],
                    "split": split,
                    "best_member": best,
                    "best_member_accuracy": member[best],
                    "vote": vote,
                    "stack": stack,
                    "stack_minus_best_member": stack - member[best],
                    "stack_minus_vote": stack - vote,
                }
            )
    return pd.DataFrame(rows, columns=ENSEMBLE_COLUMNS)


def ensemble_section(comparison: pd.DataFrame, submission: dict) -> str:
    """Markdown: the vote-vs-stack table and which combination the submission uses."""
    method = submission["method"]
    lines = [
        "",
        "## Ensembles: hard vote vs learned arbiter (stack)",
        "",
        "Item accuracy of each ensemble combined by the paper's hard vote and by the learned arbiter "
        "(`prodcat.ensemble.stack`: a pairwise logistic ranker over the paths the members propose, with charngram's "
        "ranked alternatives when it is a member, from who proposed them, the members' confidence and their "
        "scores of every candidate, agreement, path frequency and the match with the description; where it "
        "cannot beat the best member in an inner cross-validation it "
        "keeps the best member's answer), beside the ensemble's best member at the same stage. The stack is "
        "fit on validation predictions: its validation numbers are cross-fitted (each row scored by a model "
        "fit on the other folds), its test numbers come from the model fit on all validation rows.",
        "",
        f"**Submission:** ensemble `{submission['ensemble']}` at stage `{submission['stage']}`, combined by "
        f"**{method}**, written to `submission/{submission['model']}.predict`; "
        "`prodcat predict` combines the same way. Chosen: "
        f"{submission.get('chosen_by', 'configured (ensemble.submit, ensemble.method)')}"
        + (
            " — validation item accuracy: "
            + ", ".join(f"{m} {a:.4f}" for m, a in submission["validation_item_accuracy"].items() if a is not None)
            if submission.get("validation_item_accuracy")
            else ""
        )
        + ".",
        "",
    ]
    body = to_markdown(comparison, "x").splitlines()[2:]  # the table without its title
    return "\n".join(lines + body) + "\n"

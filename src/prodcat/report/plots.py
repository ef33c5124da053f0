"""Figures for the report: item accuracy per model and stage, macro F1 per level, training curves."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from prodcat import LEVELS


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


# One colour per Table 1 stage, the same in every panel; stages in this order within a model's group.
STAGE_COLOURS = {
    "raw": "#bbbbbb",
    "corrected": "#4c72b0",
    "joint": "#55a868",
    "constrained": "#c44e52",
}
OTHER_STAGE_COLOUR = "#dd8452"
BASELINE_STAGE = "baseline"  # the majority-path baseline's stage in Table 1: a line, not a bar


def ensemble_models(models, ensembles=None) -> list[str]:
    """The ensemble models among Table 1's models, each vote followed by its learned arbiter
    (NAME, NAME_stack). Without the configured names (ensembles): every NAME_stack and its NAME."""
    models = list(dict.fromkeys(models))
    if ensembles is None:
        stacked = [m for m in models if m.endswith("_stack")]
        ensembles = [m.removesuffix("_stack") for m in stacked] + stacked
    ensembles = set(ensembles)
    votes = list(dict.fromkeys(m.removesuffix("_stack") for m in models if m in ensembles))
    ordered = [m for vote in votes for m in (vote, f"{vote}_stack") if m in models and m in ensembles]
    return ordered + [m for m in models if m in ensembles and m not in ordered]


def accuracy_figure(metrics: pd.DataFrame, ensembles=None, submitted=None):
    """Item accuracy of every model, its stages side by side in one colour per stage (the legend):
    one row of panels per split, the single labelers in the left panel and the ensembles (the hard
    vote NAME, the learned arbiter NAME_stack) in the right one; the majority-path baseline is a
    dashed line. ensembles: the ensemble models' names (default: inferred from NAME_stack);
    submitted: (model, stage) of the submission, outlined in black."""
    plt = _pyplot()
    splits = list(dict.fromkeys(metrics["split"]))
    bars = metrics[metrics["stage"] != BASELINE_STAGE]
    combined = ensemble_models(bars["model"], ensembles)
    single = [m for m in dict.fromkeys(bars["model"]) if m not in combined]
    groups = [
        (title, models)
        for title, models in (
            ("single labelers", single),
            ("ensembles (NAME: hard vote, NAME_stack: learned arbiter)", combined),
        )
        if models
    ]
    present = list(dict.fromkeys(bars["stage"]))
    stages = [s for s in STAGE_COLOURS if s in present] + [s for s in present if s not in STAGE_COLOURS]
    height = 0.8 + 3.1 * len(splits)  # inches: a title and legend band, then a row per split
    fig, axes = plt.subplots(
        len(splits),
        len(groups),
        figsize=(max(7.0, 1.6 + 1.4 * sum(len(models) for _, models in groups)), height),
        squeeze=False,
        sharey=True,
        gridspec_kw={"width_ratios": [len(models) for _, models in groups]},
    )
    for row, split in zip(axes, splits):
        part = metrics[metrics["split"] == split]
        accuracy = {(m, s): a for m, s, a in zip(part["model"], part["stage"], part["item_accuracy"])}
        baseline = part.loc[part["stage"] == BASELINE_STAGE, "item_accuracy"]
        for ax, (title, models) in zip(row, groups):
            # the stages this panel shows take a slot each, so that a stage sits in the same place
            # in every model's group; a stage a model lacks leaves its slot empty
            slots = [s for s in stages if any((m, s) in accuracy for m in models)]
            width = 0.8 / max(len(slots), 1)
            for k, stage in enumerate(slots):
                xs, heights, names = [], [], []
                for i, model in enumerate(models):
                    if (model, stage) in accuracy:
                        xs.append(i + (k - (len(slots) - 1) / 2) * width)
                        heights.append(accuracy[(model, stage)])
                        names.append(model)
                container = ax.bar(xs, heights, width=width, color=_stage_colour(stage), label=stage)
                for bar, model in zip(container, names):
                    bar.set_gid(f"{model}:{stage}")
                    if submitted is not None and (model, stage) == tuple(submitted):
                        bar.set_edgecolor("black")
                        bar.set_linewidth(1.5)
                ax.bar_label(container, fmt="%.2f", fontsize=6, rotation=90, padding=2)
            for value in baseline:
                ax.axhline(value, color="#555555", linestyle="--", linewidth=1, label="majority-path baseline")
            ax.set_xticks(range(len(models)), models, fontsize=8)
            ax.set_xlim(-0.5, len(models) - 0.5)
            ax.set_title(f"{split}: {title}", fontsize=10)
            ax.set_ylim(0, 1.08)
            ax.grid(axis="y", alpha=0.3)
        row[0].set_ylabel("item accuracy (all 4 levels right)")
    for ax in axes[-1]:
        ax.set_xlabel("model")
    handles = [plt.Rectangle((0, 0), 1, 1, color=_stage_colour(s)) for s in stages]
    labels = list(stages)
    if (metrics["stage"] == BASELINE_STAGE).any():
        handles.append(plt.Line2D([], [], color="#555555", linestyle="--", linewidth=1))
        labels.append("majority-path baseline")
    if submitted is not None and tuple(submitted) in set(zip(bars["model"], bars["stage"])):
        handles.append(plt.Rectangle((0, 0), 1, 1, facecolor="none", edgecolor="black", linewidth=1.5))
        labels.append(f"submitted ({submitted[0]}, {submitted[1]})")
    fig.suptitle("Item accuracy per model and stage", y=1 - 0.05 / height, va="top")
    fig.legend(
        handles,
        labels,
        loc="upper center",
        ncol=len(labels),
        fontsize=8,
        frameon=False,
        bbox_to_anchor=(0.5, 1 - 0.3 / height),
    )
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / height))
    return fig


def accuracy_bars(metrics: pd.DataFrame, out_path, ensembles=None, submitted=None) -> None:
    """accuracy_figure, saved to out_path."""
    plt = _pyplot()
    fig = accuracy_figure(metrics, ensembles=ensembles, submitted=submitted)
    fig.savefig(out_path)
    plt.close(fig)


def f1_by_level(metrics: pd.DataFrame, out_path, split: str = "val") -> None:
    """Macro F1 per level for every model and stage on one split."""
    plt = _pyplot()
    part = metrics[metrics["split"] == split]
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / len(LEVELS)
    for k, level in enumerate(LEVELS):
        ax.bar([i + k * width for i in range(len(part))], part[f"f1_{level}"], width=width, label=level)
    ax.set_xticks(
        [i + 0.4 - width / 2 for i in range(len(part))],
        [f"{m} · {s}" for m, s in zip(part["model"], part["stage"])],
        rotation=60,
        ha="right",
        fontsize=7,
    )
    ax.set_ylim(0, 1)
    ax.set_title(f"macro F1 per level ({split})")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_path)
    plt.close(fig)


def training_curves(histories: dict[str, list[dict]], out_path) -> None:
    """Training loss (and validation loss where logged) against epoch or step, one panel per model."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(histories), figsize=(4 * len(histories), 3.2), squeeze=False)
    for ax, (model, history) in zip(axes[0], histories.items()):
        x_key = "epoch" if any("epoch" in h for h in history) else "step"
        for key, style in (("loss", "-"), ("eval_loss", "o-")):
            points = [(float(h[x_key]), float(h[key])) for h in history if key in h and x_key in h]
            if points:
                ax.plot(*zip(*points), style, label=key, markersize=3)
        ax.set_title(model)
        ax.set_xlabel(x_key)
        ax.set_yscale("log")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_path)
    plt.close(fig)


def read_history(model_dir) -> list[dict]:
    """The Trainer's log history saved with a model (labelers: train_summary.json; namer: trainer_log.json)."""
    for name in ("train_summary.json", "trainer_log.json"):
        path = Path(model_dir) / name
        if path.exists():
            history = json.loads(path.read_text()).get("log_history")
            if history:
                return history
    raise FileNotFoundError(f"{model_dir}: no training log history")


def _stage_colour(stage: str) -> str:
    return STAGE_COLOURS.get(stage, OTHER_STAGE_COLOUR)

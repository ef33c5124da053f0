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


def accuracy_bars(metrics: pd.DataFrame, out_path) -> None:
    """Item accuracy of every model and stage, one panel per split."""
    plt = _pyplot()
    splits = list(dict.fromkeys(metrics["split"]))
    fig, axes = plt.subplots(1, len(splits), figsize=(6 * len(splits), 4), squeeze=False, sharey=True)
    for ax, split in zip(axes[0], splits):
        part = metrics[metrics["split"] == split]
        labels = [f"{m} · {s}" for m, s in zip(part["model"], part["stage"])]
        ax.bar(range(len(part)), part["item_accuracy"], color=[_stage_colour(s) for s in part["stage"]])
        ax.set_xticks(range(len(part)), labels, rotation=60, ha="right", fontsize=7)
        ax.set_title(f"item accuracy ({split})")
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
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
    return {
        "raw": "#bbbbbb",
        "corrected": "#4c72b0",
        "joint": "#55a868",
        "constrained": "#c44e52",
        "baseline": "#8172b2",
    }.get(stage, "#dd8452")

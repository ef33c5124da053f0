"""The paper's two tables, as CSV and Markdown: Table 1 (metrics per model, stage and split) and
Table 2 (efficiency per model)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .efficiency import read_benchmark

METRICS_COLUMNS = ["model", "stage", "split", "n", "item_accuracy", "item_accuracy_unseen_retailer", "f1_supergroup",
                   "f1_group", "f1_module", "f1_brand", "parse_failures"]
EFFICIENCY_COLUMNS = ["model", "parameters", "train_seconds", "train_max_rss_mb", "predict_seconds_per_1k",
                      "train_gflops_per_step", "predict_gflops_per_batch", "device",
                      "constrained_predict_seconds_per_1k"]
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
    return (f"item_accuracy_unseen_retailer is the item accuracy on the rows whose retailer never occurs in the "
            f"training rows ({listed or 'not measured'}; empty when there are none).")


def efficiency_table(entries) -> pd.DataFrame:
    """entries: (model, train summary JSON, prediction summary JSON, training benchmark TSV,
    constrained-prediction summary JSON or None)."""
    rows = []
    for model, train_json, predict_json, bench, constrained_json in entries:
        train = json.loads(Path(train_json).read_text())
        predict = json.loads(Path(predict_json).read_text())
        measured = read_benchmark(bench)
        rows.append({
            "model": model,
            # None where a report-only count failed (logged in the training rule's log)
            "parameters": _number(train.get("parameters")),
            "train_seconds": measured["seconds"],
            "train_max_rss_mb": measured["max_rss_mb"],
            "predict_seconds_per_1k": predict["predict_seconds_per_1k"],
            "train_gflops_per_step": _number(train.get("train_gflops_per_step")),
            "predict_gflops_per_batch": _number(predict.get("predict_gflops_per_batch")),
            "device": train["device"],
            "constrained_predict_seconds_per_1k": (
                json.loads(Path(constrained_json).read_text())["predict_seconds_per_1k"] if constrained_json else float("nan")
            ),
        })
    return pd.DataFrame(rows, columns=EFFICIENCY_COLUMNS)


def to_markdown(table: pd.DataFrame, title: str, note: str = "") -> str:
    def cell(value):
        if isinstance(value, float):
            return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    lines = [f"# {title}", ""]
    if note:
        lines += [note, ""]
    lines.append("| " + " | ".join(table.columns) + " |")
    lines.append("|" + "---|" * len(table.columns))
    for record in table.itertuples(index=False, name=None):
        lines.append("| " + " | ".join(cell(v) for v in record) + " |")
    return "\n".join(lines) + "\n"


def write_table(table: pd.DataFrame, csv_path, md_path, title: str, note: str = "", extra_markdown: str = "") -> None:
    from .io import write_text

    write_text(table.to_csv(index=False), csv_path)
    write_text(to_markdown(table, title, note) + extra_markdown, md_path)


ENSEMBLE_COLUMNS = ["ensemble", "stage", "split", "best_member", "best_member_accuracy", "vote", "stack",
                    "stack_minus_best_member", "stack_minus_vote"]


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
            rows.append({"ensemble": item["ensemble"], "stage": item["stage"], "split": split, "best_member": best,
                         "best_member_accuracy": member[best], "vote": vote, "stack": stack,
                         "stack_minus_best_member": stack - member[best], "stack_minus_vote": stack - vote})
    return pd.DataFrame(rows, columns=ENSEMBLE_COLUMNS)


def ensemble_section(comparison: pd.DataFrame, submission: dict) -> str:
    """Markdown: the vote-vs-stack table and which combination the submission uses."""
    method = submission["method"]
    lines = [
        "",
        "## Ensembles: hard vote vs learned arbiter (stack)",
        "",
        "Item accuracy of each ensemble combined by the paper's hard vote and by the learned arbiter "
        "(`prodcat.stack`: a pairwise logistic ranker over the paths the members propose, from who proposed "
        "them, the members' confidence and their scores of every candidate, agreement, path frequency and the "
        "match with the description; where it cannot beat the best member in an inner cross-validation it "
        "keeps the best member's answer), beside the ensemble's best member at the same stage. The stack is "
        "fit on validation predictions: its validation numbers are cross-fitted (each row scored by a model "
        "fit on the other folds), its test numbers come from the model fit on all validation rows.",
        "",
        f"**Submission:** ensemble `{submission['ensemble']}` at stage `{submission['stage']}`, combined by "
        f"**{method}** (`ensemble.method`), written to `submission/{submission['model']}.predict`; "
        "`prodcat predict` combines the same way.",
        "",
    ]
    body = to_markdown(comparison, "x").splitlines()[2:]  # the table without its title
    return "\n".join(lines + body) + "\n"

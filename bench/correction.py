"""Benchmark hallucination correction on the real IndoML label space with synthetic predictions.

Times `correct_predictions` (topdown and joint) on all rows, and the paper's approach (row by row,
top-down, difflib.get_close_matches) on a subset, extrapolated per row. Compares how often each
recovers the true labels. Usage:

    python bench/correction.py --hierarchy ../shared/indoml2024/hierarchy.json [--out result.json]
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic_predictions import DEFAULT_RATES, corrupt_paths  # noqa: E402

from prodcat import LEVELS  # noqa: E402
from prodcat.data.hierarchy import Hierarchy  # noqa: E402
from prodcat.ensemble.correct import correct_predictions  # noqa: E402

TARGET_SECONDS = 10.0
TARGET_SPEEDUP = 20.0


def difflib_topdown(row: tuple, hierarchy: Hierarchy) -> tuple:
    """The paper's correction: per row, per level, the closest child by difflib (default cutoff
    0.6); no close match or a missing label → the most frequent child."""
    chosen: tuple = ()
    for label in row:
        children = hierarchy.children(chosen)
        if label in children:
            best = label
        else:
            close = difflib.get_close_matches(label, children, n=1) if label is not None else []
            best = close[0] if close else children[0]
        chosen += (best,)
    return chosen


def accuracy(predicted: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    hits = {level: predicted[level].to_numpy(dtype=object) == truth[level].to_numpy(dtype=object) for level in LEVELS}
    scores = {level: float(np.mean(hit)) for level, hit in hits.items()}
    scores["item"] = float(np.mean(np.logical_and.reduce(list(hits.values()))))
    return scores


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hierarchy", required=True, help="hierarchy JSON (ours or the nested IndoML form)")
    parser.add_argument("--rows", type=int, default=184_664, help="synthetic prediction rows (IndoML test size)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline-rows", type=int, default=3000, help="rows the slow difflib baseline runs on")
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)

    hierarchy = Hierarchy.from_json(args.hierarchy)
    truth, predictions = corrupt_paths(hierarchy, args.rows, args.seed)
    subset = slice(0, min(args.baseline_rows, args.rows))
    load_before = os.getloadavg()[0]

    timings, cpu_seconds, corrected = {}, {}, {}
    for method in ("topdown", "joint"):
        start, cpu_start = time.perf_counter(), time.process_time()
        corrected[method] = correct_predictions(predictions, hierarchy, method)
        timings[method] = time.perf_counter() - start
        cpu_seconds[method] = time.process_time() - cpu_start

    rows = list(predictions[list(LEVELS)].iloc[subset].astype(object).itertuples(index=False, name=None))
    rows = [tuple(None if pd.isna(label) else label for label in row) for row in rows]
    hierarchy.children(())  # build the child lists outside the timed loop
    start, cpu_start = time.perf_counter(), time.process_time()
    baseline = pd.DataFrame([difflib_topdown(row, hierarchy) for row in rows], columns=list(LEVELS))
    baseline_per_row = (time.perf_counter() - start) / len(rows)
    cpu_seconds["difflib_extrapolated"] = (time.process_time() - cpu_start) / len(rows) * args.rows
    load_after = os.getloadavg()[0]

    truth_subset = truth.iloc[subset].reset_index(drop=True)
    subset_acc = {
        "raw": accuracy(predictions.iloc[subset].reset_index(drop=True), truth_subset),
        "difflib": accuracy(baseline, truth_subset),
        **{m: accuracy(corrected[m].iloc[subset].reset_index(drop=True), truth_subset) for m in corrected},
    }
    full_acc = {"raw": accuracy(predictions, truth), **{m: accuracy(corrected[m], truth) for m in corrected}}
    difflib_full = baseline_per_row * args.rows
    result = {
        "rows": args.rows,
        "baseline_rows": len(rows),
        "seed": args.seed,
        "corruption_rates": DEFAULT_RATES,
        "cpu_count": os.cpu_count(),
        "load_average_1min": [load_before, load_after],
        "cpu_seconds": cpu_seconds,  # all threads of this process; wall > cpu means waiting for a core
        "seconds": {
            "topdown": timings["topdown"],
            "joint": timings["joint"],
            "difflib_extrapolated": difflib_full,
        },
        "us_per_row": {
            "topdown": 1e6 * timings["topdown"] / args.rows,
            "joint": 1e6 * timings["joint"] / args.rows,
            "difflib": 1e6 * baseline_per_row,
        },
        "speedup_vs_difflib": {m: difflib_full / timings[m] for m in timings},
        "cpu_speedup_vs_difflib": {m: cpu_seconds["difflib_extrapolated"] / cpu_seconds[m] for m in timings},
        "accuracy_subset": subset_acc,
        "accuracy_all_rows": full_acc,
        "rows_changed": {m: int((corrected[m]["corrected_levels"] != "").sum()) for m in corrected},
    }
    result["targets"] = {
        f"topdown <= {TARGET_SECONDS:g} s": timings["topdown"] <= TARGET_SECONDS,
        f"joint <= {TARGET_SECONDS:g} s": timings["joint"] <= TARGET_SECONDS,
        f"topdown speedup >= {TARGET_SPEEDUP:g}x": result["speedup_vs_difflib"]["topdown"] >= TARGET_SPEEDUP,
        "topdown item acc >= difflib (subset)": subset_acc["topdown"]["item"] >= subset_acc["difflib"]["item"],
        "joint item acc > topdown (all rows)": full_acc["joint"]["item"] > full_acc["topdown"]["item"],
    }
    print(markdown(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return result


def markdown(result: dict) -> str:
    n, k, load = result["rows"], result["baseline_rows"], result["load_average_1min"]
    lines = [
        f"Correction of {n:,} synthetic predictions on the IndoML label space (seed {result['seed']}); "
        f"{result['cpu_count']} CPUs, 1-min load average {load[0]:.1f} before → {load[1]:.1f} after.",
        f"difflib runs row by row on the first {k:,} rows; its time for all rows is extrapolated per row.",
        "",
        "| method | wall s (all rows) | CPU s | µs/row (wall) | speedup vs difflib (wall / CPU) | "
        + " | ".join(f"{level} acc (subset)" for level in LEVELS)
        + " | item acc (subset) | item acc (all rows) |",
        "|---" * 11 + "|",
    ]
    for method in ("raw", "difflib", "topdown", "joint"):
        sub = result["accuracy_subset"][method]
        if method == "raw":
            timing = ["—"] * 4
        elif method == "difflib":
            timing = [
                f"{result['seconds']['difflib_extrapolated']:.1f} (extrapolated)",
                f"{result['cpu_seconds']['difflib_extrapolated']:.1f} (extrapolated)",
                f"{result['us_per_row']['difflib']:.1f}",
                "1×",
            ]
        else:
            timing = [
                f"{result['seconds'][method]:.2f}",
                f"{result['cpu_seconds'][method]:.2f}",
                f"{result['us_per_row'][method]:.2f}",
                f"{result['speedup_vs_difflib'][method]:.0f}× / {result['cpu_speedup_vs_difflib'][method]:.0f}×",
            ]
        full = result["accuracy_all_rows"].get(method, {}).get("item")
        lines.append(
            f"| {method} | "
            + " | ".join(timing)
            + " | "
            + " | ".join(f"{sub[level]:.4f}" for level in LEVELS)
            + f" | {sub['item']:.4f} | {'—' if full is None else f'{full:.4f}'} |"
        )
    verdicts = [f"{name}: {'met' if ok else 'MISSED'}" for name, ok in result["targets"].items()]
    lines += ["", "Targets: " + "; ".join(verdicts)]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

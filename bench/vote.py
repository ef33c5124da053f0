"""Benchmark: vectorised hard voting against a row-by-row pandas `iterrows` reference.

Synthetic predictions over a real label space: true paths drawn in proportion to their count
(the nested IndoML hierarchy.json has no counts, so there the draw is uniform over its 12,885
paths); each model gets each level right with its own probability (the paper's per-level F1
scale, a little lower for each further model), else a wrong sibling under the true parent (50%),
a random label of that level (40%) or None (10%). One uniform draw per row and model decides
which levels are right, so, as with a real labeler, a wrong level is mostly followed by wrong
deeper levels; the damaged labels themselves are drawn independently, so many predicted paths do
not fit the hierarchy and every voting rule is used.

    python bench/vote.py --hierarchy ../shared/indoml2024/hierarchy.json [--rows 184664]
        [--models 3] [--reference-rows N] [--weighted] [--repeats 3] [--seed 0] [--out vote.json]

The reference runs on the same full input unless --reference-rows limits it to the first N rows;
then its time for all rows is extrapolated linearly (its one-off set-up included, so a small N
overstates it) and the table says so. Outputs are compared on the rows both ran.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from prodcat import LEVELS  # noqa: E402
from prodcat.data.hierarchy import Hierarchy  # noqa: E402
from prodcat.data.io import write_json  # noqa: E402
from prodcat.ensemble.vote import WEIGHT_SCALE, vote_predictions  # noqa: E402

RIGHT = (0.62, 0.52, 0.49, 0.42)  # model 0's chance per level; each further model is 0.03 worse
ERROR_KINDS = (0.5, 0.4, 0.1)  # sibling, random label, None


def synthetic_predictions(hierarchy: Hierarchy, n_rows: int, n_models: int, seed: int):
    """(predictions per model, per-level accuracy per model); row order shuffled per model."""
    rng = np.random.default_rng(seed)
    counts = hierarchy.paths["count"].to_numpy(dtype=float)
    truth = hierarchy.paths[list(LEVELS)].to_numpy(dtype=object)[
        rng.choice(len(counts), n_rows, p=counts / counts.sum())
    ]
    ids = np.arange(n_rows, dtype=np.int64)
    vocab = {level: np.array(hierarchy.labels(level), dtype=object) for level in LEVELS}
    siblings = [_sibling_draws(hierarchy, truth, depth, rng) for depth in range(len(LEVELS))]
    predictions, accuracy = [], {}
    for k in range(n_models):
        name = f"model{k}"
        accuracy[name] = {level: RIGHT[d] - 0.03 * k for d, level in enumerate(LEVELS)}
        frame = pd.DataFrame({"indoml_id": ids})
        draw = rng.random(n_rows)  # right at a level iff below its accuracy: right levels form a prefix
        for depth, level in enumerate(LEVELS):
            labels = truth[:, depth].copy()
            wrong = draw >= accuracy[name][level]
            kind = rng.choice(3, n_rows, p=ERROR_KINDS)
            labels[wrong & (kind == 0)] = siblings[depth](wrong & (kind == 0))
            random_rows = wrong & (kind == 1)
            labels[random_rows] = vocab[level][rng.integers(0, len(vocab[level]), random_rows.sum())]
            labels[wrong & (kind == 2)] = None
            frame[level] = labels
        predictions.append(frame if k == 0 else frame.sample(frac=1, random_state=seed + k).reset_index(drop=True))
    return predictions, accuracy


def _sibling_draws(hierarchy: Hierarchy, truth: np.ndarray, depth: int, rng):
    """A function: row mask → for each masked row, a random other child of its true parent
    (the true label itself when it is an only child)."""

    def draw(mask: np.ndarray) -> np.ndarray:
        rows = np.flatnonzero(mask)
        out = np.empty(len(rows), dtype=object)
        parents = pd.Series([tuple(p) for p in truth[rows, :depth]]) if depth else pd.Series([()] * len(rows))
        for parent, where in parents.groupby(parents, sort=True).indices.items():
            children = np.array(hierarchy.children(parent), dtype=object)
            own = truth[rows[where], depth]
            pick = children[rng.integers(0, len(children), len(where))]
            redo = (pick == own) & (len(children) > 1)
            while redo.any():
                pick[redo] = children[rng.integers(0, len(children), redo.sum())]
                redo = pick == own
            out[where] = pick
        return out

    return draw


def iterrows_vote(predictions, names, hierarchy, level_accuracy=None, weighted=False) -> pd.DataFrame:
    """The straightforward version: one wide table, then DataFrame.iterrows, one level at a time."""
    known = set()
    for path in hierarchy.paths[list(LEVELS)].itertuples(index=False, name=None):
        for depth in range(len(LEVELS)):
            known.add(path[: depth + 1])
    wide = predictions[0][["indoml_id", *LEVELS]].rename(columns={lv: f"{names[0]}:{lv}" for lv in LEVELS})
    for frame, name in zip(predictions[1:], names[1:]):
        renamed = frame[["indoml_id", *LEVELS]].rename(columns={lv: f"{name}:{lv}" for lv in LEVELS})
        wide = wide.merge(renamed, on="indoml_id", how="left")
    records = []
    for _, row in wide.iterrows():
        chosen, fallback = (), []
        for level in LEVELS:
            if level_accuracy is None:
                order, weight = list(range(len(names))), [1] * len(names)
            else:
                acc = [level_accuracy[n][level] for n in names]
                order = sorted(range(len(names)), key=lambda k: (-acc[k], k))
                weight = [round(a * WEIGHT_SCALE) if weighted else 1 for a in acc]
            score = defaultdict(int)
            for k, name in enumerate(names):
                label = row[f"{name}:{level}"]
                if isinstance(label, str) and chosen + (label,) in known:
                    score[label] += weight[k]
            if score:
                top = max(score.values())
                label = next(row[f"{names[k]}:{level}"] for k in order if score.get(row[f"{names[k]}:{level}"]) == top)
            else:
                label = hierarchy.children(chosen)[0]
                fallback.append(level)
            chosen += (label,)
        agreement = sum(tuple(row[f"{n}:{lv}"] for lv in LEVELS) == chosen for n in names)
        records.append((row["indoml_id"], *chosen, ",".join(fallback), agreement))
    return pd.DataFrame(records, columns=["indoml_id", *LEVELS, "vote_fallback_levels", "vote_agreement"])


def _same(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    a = a.reset_index(drop=True).astype(object)
    b = b.reset_index(drop=True).astype(object)
    return list(a.columns) == list(b.columns) and a.shape == b.shape and bool((a.to_numpy() == b.to_numpy()).all())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hierarchy", required=True, type=Path, help="hierarchy JSON (ours or the nested IndoML form)")
    parser.add_argument("--rows", type=int, default=184_664)
    parser.add_argument("--models", type=int, default=3)
    parser.add_argument("--reference-rows", type=int, default=None, help="run the reference on the first N rows only")
    parser.add_argument("--weighted", action="store_true", help="weight votes by per-level accuracy")
    parser.add_argument("--repeats", type=int, default=3, help="vectorised runs; the median is reported")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    args = parser.parse_args(argv)

    hierarchy = Hierarchy.from_json(args.hierarchy)
    names = [f"model{k}" for k in range(args.models)]
    predictions, accuracy = synthetic_predictions(hierarchy, args.rows, args.models, args.seed)

    seconds = []
    for _ in range(args.repeats):
        fresh = Hierarchy(hierarchy.paths)  # no cached children: each run pays the full set-up
        start = time.perf_counter()
        voted = vote_predictions(predictions, names, fresh, accuracy, args.weighted)
        seconds.append(time.perf_counter() - start)
    vote_seconds = float(np.median(seconds))

    reference_rows = args.rows if args.reference_rows is None else min(args.reference_rows, args.rows)
    subset_ids = set(predictions[0]["indoml_id"].iloc[:reference_rows])
    subset = [p[p["indoml_id"].isin(subset_ids)] for p in predictions]
    fresh = Hierarchy(hierarchy.paths)
    start = time.perf_counter()
    reference = iterrows_vote(subset, names, fresh, accuracy, args.weighted)
    reference_seconds = time.perf_counter() - start
    reference_full = reference_seconds * args.rows / reference_rows
    extrapolated = reference_rows < args.rows
    identical = _same(voted.iloc[:reference_rows], reference)

    result = {
        "hierarchy": str(args.hierarchy),
        "paths": hierarchy.n_paths,
        "rows": args.rows,
        "models": args.models,
        "weighted": args.weighted,
        "vote_seconds_median": round(vote_seconds, 3),
        "vote_seconds_all": [round(s, 3) for s in seconds],
        "reference_rows": reference_rows,
        "reference_seconds": round(reference_seconds, 3),
        "reference_seconds_all_rows": round(reference_full, 3),
        "reference_extrapolated": extrapolated,
        "speedup": round(reference_full / vote_seconds, 1),
        "identical": identical,
        "fallback_rows_share": round(float((voted["vote_fallback_levels"] != "").mean()), 4),
        "agreement_counts": {int(k): int(v) for k, v in voted["vote_agreement"].value_counts().sort_index().items()},
        "cpus": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "pandas": pd.__version__,
        "numpy": np.__version__,
    }
    ref_label = (
        f"iterrows reference ({'extrapolated from ' + str(reference_rows) + ' rows' if extrapolated else 'all rows'})"
    )
    print(
        f"{args.models} models × {args.rows:,} rows over {hierarchy.n_paths:,} paths "
        f"({'accuracy-weighted' if args.weighted else 'one-per-model'} votes, accuracy tie-break; load "
        f"average {result['load_average_1min']})\n"
    )
    print("| implementation | rows | seconds | speedup | identical |")
    print("|---|---|---|---|---|")
    print(f"| {ref_label} | {args.rows:,} | {reference_full:.2f} | 1.0× | — |")
    print(
        f"| vectorised vote_predictions (median of {args.repeats}) | {args.rows:,} | {vote_seconds:.2f} | "
        f"{result['speedup']:.1f}× | {'yes' if identical else 'no'} (on {reference_rows:,} rows) |"
    )
    if args.out:
        write_json(result, args.out)
    if not identical:
        sys.exit("vectorised and reference outputs differ")


if __name__ == "__main__":
    main()

"""How far the learned arbiter can go on a finished run, and how much its ranked alternatives give.

For each ensemble with a charngram member and each combining stage, on validation and test:
* the best member's item accuracy, and the oracle over the members' predictions (right when any
  member proposed the true path: the ceiling of an arbiter that only picks among them);
* the oracle once charngram's k best paths are candidates too, for each k of --k;
* the stack refit on the run's validation predictions with `alternatives` of each k in
  --refit-k (0 = none), cross-fitted on validation and applied to test, as rules fit_stack and
  apply_stack do (the run's candidate scores cover charngram's ensemble.stack.alternatives best
  paths, so a refit k may not exceed the run's).

    .venv/bin/python bench/stack_oracle.py --results results [--k 1 2 3 5 10] [--refit-k 0 3 5] \\
        [--configfile config.yaml] [--out stack_oracle.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from prodcat import LEVELS  # noqa: E402
from prodcat.data.hierarchy import Hierarchy  # noqa: E402
from prodcat.data.io import read_rows  # noqa: E402
from prodcat.ensemble.stack import cross_fit_stack, fit_stack  # noqa: E402
from prodcat.labelers.interface import load_labeler  # noqa: E402
from prodcat.report.metrics import score  # noqa: E402

STAGES = ("corrected", "joint", "constrained")


def prediction(results: Path, member: str, split: str, stage: str, kinds: dict) -> pd.DataFrame:
    if stage == "constrained" and kinds[member] == "charngram":
        stage = "raw"  # charngram decodes over the hierarchy: its constrained output is its raw one
    return pd.read_parquet(results / "predictions" / member / f"{split}.{stage}.parquet")


def right(table: pd.DataFrame, truth: pd.DataFrame) -> np.ndarray:
    """Whether each truth row's path is in `table` (any number of rows per id)."""
    keys = pd.MultiIndex.from_frame(table[["indoml_id", *LEVELS]].astype(str))
    return pd.MultiIndex.from_frame(truth[["indoml_id", *LEVELS]].astype(str)).isin(keys)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", required=True, help="a finished run's results folder")
    parser.add_argument(
        "--configfile", default=str(HERE.parent / "config.yaml"), help="the run's config (ensembles, stack)"
    )
    parser.add_argument("--k", type=int, nargs="+", default=[1, 2, 3, 5, 10])
    parser.add_argument("--refit-k", type=int, nargs="*", default=[0, 3, 5])
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    results = Path(args.results)
    cfg = yaml.safe_load(Path(args.configfile).read_text())
    kinds = {name: lab["kind"] for name, lab in cfg["labelers"].items()}
    stack_params = {
        key: cfg["ensemble"]["stack"][key]
        for key in ("folds", "inner_folds", "seed", "C")
        if key in cfg["ensemble"]["stack"]
    }
    hierarchy = Hierarchy.from_json(results / "data" / "hierarchy.json")
    rows = {split: read_rows(results / "data" / f"{split}.parquet", labelled=True) for split in ("val", "test")}
    out = {"results": str(results), "ensembles": {}}
    for ensemble, members in cfg["ensemble"]["members"].items():
        listers = [m for m in members if kinds[m] == "charngram"]
        if not listers:
            continue
        lister = load_labeler(results / "models" / listers[0], cfg["labelers"][listers[0]])
        listed = {split: lister.alternatives(rows[split], max(args.k + args.refit_k)) for split in rows}
        scores = {
            split: {m: pd.read_parquet(results / "predictions" / m / f"{split}.candidates.parquet") for m in members}
            for split in rows
        }
        print(f"## {ensemble} ({', '.join(members)}; alternatives from {listers[0]})\n")
        print(
            "| stage | split | best member | oracle, predictions | "
            + " | ".join(f"oracle, + top-{k}" for k in args.k)
            + " | "
            + " | ".join(f"stack, k={k}" for k in args.refit_k)
            + " |"
        )
        print("|---" * (4 + len(args.k) + len(args.refit_k)) + "|")
        for stage in STAGES:
            tables = {split: [prediction(results, m, split, stage, kinds) for m in members] for split in rows}
            stacks = {}
            for k in args.refit_k:
                ranked = {split: {listers[0]: listed[split][listed[split]["rank"] <= k]} if k else {} for split in rows}
                kwargs = dict(candidate_scores=scores["val"], rows=rows["val"], alternatives=ranked["val"])
                crossed, _, _ = cross_fit_stack(tables["val"], members, rows["val"], hierarchy, stack_params, **kwargs)
                model = fit_stack(tables["val"], members, rows["val"], hierarchy, stack_params, **kwargs)
                applied = model.predict(
                    tables["test"],
                    members,
                    hierarchy,
                    candidate_scores=scores["test"],
                    rows=rows["test"],
                    alternatives=ranked["test"],
                )
                stacks[k] = {
                    "val": score(rows["val"], crossed)["item_accuracy"],
                    "test": score(rows["test"], applied)["item_accuracy"],
                }
            for split in ("val", "test"):
                truth = rows[split]
                accuracy = {m: float(right(t, truth).mean()) for m, t in zip(members, tables[split])}
                best = max(members, key=lambda m: accuracy[m])
                proposed = pd.concat(tables[split])
                oracle = float(right(proposed, truth).mean())
                widened = {
                    k: float(right(pd.concat([proposed, listed[split][listed[split]["rank"] <= k]]), truth).mean())
                    for k in args.k
                }
                entry = {
                    "best_member": best,
                    "best_member_accuracy": accuracy[best],
                    "oracle_predictions": oracle,
                    "oracle_with_top_k": widened,
                    "stack": {k: stacks[k][split] for k in args.refit_k},
                }
                out["ensembles"].setdefault(ensemble, {}).setdefault(stage, {})[split] = entry
                print(
                    f"| {stage} | {split} | {best} {accuracy[best]:.4f} | {oracle:.4f} | "
                    + " | ".join(f"{widened[k]:.4f}" for k in args.k)
                    + " | "
                    + " | ".join(f"{stacks[k][split]:.4f}" for k in args.refit_k)
                    + " |"
                )
        print()
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

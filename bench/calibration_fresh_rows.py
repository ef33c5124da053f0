"""Is the confidence calibrated on rows the run never saw, beyond its one test file?

The report's test ECE is measured on the sample's 1,000 test rows: one draw, and both the
validation rows the calibration is fit on and that draw carry sampling noise. The synthetic sample
comes from a catalogue (`make-sample --seed 20241`), so more rows of the same distribution can be
drawn: this draws `--rows` fresh rows from that catalogue on a random stream of its own (never the
sample's train/test stream; 2 % from retailers unseen in training, as the test rows), labels them
with `prodcat predict` (the finished run's namer, labelers, correction and submitted ensemble, the
confidence of each as stored in the run), and reports per model: item accuracy, mean confidence,
ECE (10 bins), the ECE a perfectly calibrated model shows on as many rows (95th percentile), the
accuracy of the 80 % most confident rows, and the share of rows whose label path or product the
run's training rows lack.

    python bench/calibration_fresh_rows.py --results results [--rows 3000] [--seed 1] \
        [--catalogue-seed 20241] [--out calibration_fresh.csv]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from prodcat import LEVELS  # noqa: E402
from prodcat.ensemble.calibration import (  # noqa: E402
    accuracy_at_coverage,
    ece_of_a_calibrated_model,
    expected_calibration_error,
)

STREAM = "calibration-check"  # a random stream of its own: rows none of the sample's


def fresh_rows(catalogue_seed: int, n: int, seed: int) -> pd.DataFrame:
    from prodcat.standins.synthetic import generate_catalogue, generate_rows

    # n_train=0: every row is drawn as a test row (newcomer retailers included)
    _, rows = generate_rows(generate_catalogue(catalogue_seed), n_train=0, n_test=n, seed=seed, stream=STREAM)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", required=True, help="a finished run's results folder (with manifest.json)")
    ap.add_argument("--rows", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--catalogue-seed", type=int, default=20241, help="make-sample --seed of the run's data")
    ap.add_argument("--out", help="write the table as CSV (and .md next to it)")
    args = ap.parse_args(argv)

    from prodcat.predict import load_manifest, predict_new_rows

    results = Path(args.results)
    rows = fresh_rows(args.catalogue_seed, args.rows, args.seed)
    train = pd.read_parquet(results / "data" / "train.parquet")
    train_paths = set(train[list(LEVELS)].itertuples(index=False, name=None))
    unseen_path = np.array([p not in train_paths for p in rows[list(LEVELS)].itertuples(index=False, name=None)])
    names_file = REPO / "data" / "sample" / "names.parquet"  # the sample's true product names, if here
    unseen_product = None
    if names_file.exists():
        names = pd.read_parquet(names_file)
        unseen_product = ~rows["name"].isin(set(names[names["indoml_id"].isin(train["indoml_id"])]["name"]))

    features = rows[["indoml_id", "description", "retailer", "price"]]
    start = time.perf_counter()
    labels = predict_new_rows(results, features)
    seconds = time.perf_counter() - start
    truth = rows.set_index("indoml_id").loc[labels["indoml_id"]]
    ensemble = load_manifest(results)["ensemble"]
    submitted = ensemble["submit"] + ("_stack" if ensemble["method"] == "stack" else "")
    models = [(f"{submitted} (submitted)", "")] + [
        (c[: -len("_confidence")], c[: -len("confidence")]) for c in labels.columns if c.endswith("_confidence")
    ]
    out = []
    for model, prefix in models:
        confidence = labels[f"{prefix}confidence"].to_numpy(dtype=np.float64)
        right = np.ones(len(labels), dtype=bool)
        for level in LEVELS:
            right &= labels[f"{prefix}{level}"].astype(str).to_numpy() == truth[level].astype(str).to_numpy()
        out.append(
            {
                "model": model,
                "rows": len(labels),
                "item_accuracy": right.mean(),
                "mean_confidence": confidence.mean(),
                "ece": expected_calibration_error(confidence, right),
                "ece_noise_p95": ece_of_a_calibrated_model(confidence),
                "accuracy_top80": accuracy_at_coverage(confidence, right),
            }
        )
    table = pd.DataFrame(out)
    print(
        f"{len(rows)} fresh rows (catalogue {args.catalogue_seed}, stream {STREAM}:{args.seed}), "
        f"predicted in {seconds:.0f} s; label path unseen in training: {unseen_path.mean():.2%}"
        + (f"; product unseen in training: {unseen_product.mean():.2%}" if unseen_product is not None else "")
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if args.out:
        table.to_csv(args.out, index=False)
        Path(args.out).with_suffix(".md").write_text(table.to_markdown(index=False, floatfmt=".4f") + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

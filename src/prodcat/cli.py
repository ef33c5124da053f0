"""`prodcat` command line: the workflow's shell-rule stages and `predict`, usable on their own.

The stages: ingest, split, hierarchy, correct, vote, evaluate, submission, and stack-fit and
stack-apply (registered from stack_cli); make-sample writes the synthetic data. `predict` labels a
new file with a finished run's trained namer and labelers, its correction and its vote or stack
(prodcat.predict). Inside the workflow, the models train and predict from the rules' scripts
(prodcat.workflow).

Bad input exits with status 2 and a message naming the file, column/row and what was expected;
no output file is written then (every write goes through a temporary file). Bad arguments exit
with status 2 as well (argparse's usage errors, and combinations checked here).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from prodcat import LEVELS, __version__
from prodcat.runtime.errors import WRITE_ERRNOS, InputError, OutputError, UsageError, errno_of


# ---- argument types: a bad value is a usage error (exit 2) naming the argument ------------------
def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}") from None
    if not 0.0 < value < 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}")
    return value


def _int_at_least(lowest: int, what: str):
    """An argparse type: a base-10 integer >= lowest, refused with "expected a {what} integer"."""

    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            value = None
        if value is None or value < lowest:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {text!r}")
        return value

    return parse


_non_negative_int = _int_at_least(0, "non-negative")
_positive_int = _int_at_least(1, "positive")


def _cmd_ingest(args):
    from prodcat.data.io import ingest, write_parquet

    rows = ingest(args.features, args.labels)
    write_parquet(rows, args.out)
    labelled = all(level in rows.columns for level in LEVELS)
    logging.info(
        "ingested %d rows (%s, %d missing prices) into %s",
        len(rows),
        "labelled" if labelled else "unlabelled",
        int(rows["price"].isna().sum()),
        args.out,
    )


def _cmd_split(args):
    from prodcat.data.io import atomic_paths, json_to, parquet_to, read_rows
    from prodcat.data.split import split_group_stratified, split_report

    outputs = [args.train, args.val] + ([args.report] if args.report else [])
    if len({Path(p).resolve() for p in outputs}) != len(outputs):
        raise UsageError(f"--train, --val and --report must be different files, got {', '.join(outputs)}")
    # train, validation and report appear together or not at all
    with atomic_paths(*outputs) as temps:
        rows = read_rows(args.data, labelled=True)
        train, val = split_group_stratified(rows, fraction=args.fraction, seed=args.seed)
        parquet_to(train, temps[0])
        parquet_to(val, temps[1])
        if args.report:
            json_to(split_report(train, val), temps[2])
    logging.info("split %d rows: %d train, %d validation", len(rows), len(train), len(val))


def _cmd_hierarchy(args):
    from prodcat.data.hierarchy import Hierarchy
    from prodcat.data.io import read_rows

    hierarchy = Hierarchy.from_frame(read_rows(args.data, labelled=True))
    hierarchy.to_json(args.out)
    logging.info(
        "hierarchy: %d paths, %s",
        hierarchy.n_paths,
        ", ".join(f"{len(hierarchy.labels(level))} {level}s" for level in LEVELS),
    )


def _read_predictions(path):
    from prodcat.data.io import read_predictions

    return read_predictions(path)


def _cmd_correct(args):
    from prodcat.data.hierarchy import Hierarchy
    from prodcat.data.io import write_parquet
    from prodcat.ensemble.correct import correct_predictions

    hierarchy = Hierarchy.from_json(args.hierarchy)
    corrected = correct_predictions(
        _read_predictions(args.predictions), hierarchy, method=args.method, salvage=args.salvage
    )
    write_parquet(corrected, args.out)
    changed = {level: int(corrected[f"corrected_{level}"].sum()) for level in LEVELS}
    logging.info("corrected (%s): %s", args.method, ", ".join(f"{k} {v}" for k, v in changed.items()))


def _parse_named(items):
    from prodcat.data.io import parse_named_paths

    return parse_named_paths(items)


def _same_ids(tables, paths) -> None:
    """Every predictions table covers the ids of the first one, no more, no fewer."""
    first = set(tables[0]["indoml_id"])
    for table, path in zip(tables[1:], paths[1:]):
        ids = table["indoml_id"]
        extra = ~ids.isin(first)
        if extra.any():
            i = int(extra.to_numpy().argmax())
            raise InputError(path, f"indoml_id {ids.iloc[i]} is not in {paths[0]}", column="indoml_id", row=i + 1)
        if len(ids) != len(first):
            absent = sorted(first - set(ids))[0]
            raise InputError(path, f"no prediction for indoml_id {absent}, which {paths[0]} has", column="indoml_id")


def _cmd_vote(args):
    from prodcat.data.hierarchy import Hierarchy
    from prodcat.data.io import read_level_accuracy, write_parquet
    from prodcat.ensemble.vote import vote_predictions

    named = _parse_named(args.predictions)
    if args.weighted and not args.accuracy:
        raise UsageError("--weighted needs --accuracy (the per-level validation accuracies that weigh the votes)")
    names, paths = [n for n, _ in named], [p for _, p in named]
    hierarchy = Hierarchy.from_json(args.hierarchy)
    accuracy = read_level_accuracy(args.accuracy, names) if args.accuracy else None
    tables = [_read_predictions(p) for p in paths]
    _same_ids(tables, paths)
    voted = vote_predictions(tables, names, hierarchy, level_accuracy=accuracy, weighted=args.weighted)
    write_parquet(voted, args.out)
    logging.info("voted %d rows from %d models", len(voted), len(named))


def _cmd_evaluate(args):
    from prodcat.data.io import read_rows, write_json
    from prodcat.report.metrics import majority_path_predictions, score

    named = _parse_named(args.predictions)
    truth = read_rows(args.truth, labelled=True)
    seen = set(read_rows(args.seen_retailers)["retailer"]) if args.seen_retailers else None
    results = []
    if args.hierarchy:
        from prodcat.data.hierarchy import Hierarchy

        baseline = majority_path_predictions(Hierarchy.from_json(args.hierarchy), truth["indoml_id"])
        results.append(
            {
                "model": "majority",
                "stage": "baseline",
                "split": args.split,
                **score(truth, baseline, seen_retailers=seen),
            }
        )
    for name, path in named:
        model, _, stage = name.partition(":")
        results.append(
            {
                "model": model,
                "stage": stage or "raw",
                "split": args.split,
                **score(truth, _read_predictions(path), name=str(path), seen_retailers=seen),
            }
        )
    write_json(results, args.out)
    for r in results:
        logging.info(
            "%-10s %-11s %s item accuracy %.4f%s",
            r["model"],
            r["stage"],
            r["split"],
            r["item_accuracy"],
            f" ({r['ignored_predictions']} predictions for ids outside the truth ignored)"
            if r["ignored_predictions"]
            else "",
        )


def _cmd_make_sample(args):
    from prodcat.standins.synthetic import write_sample

    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise InputError(args.out, "is a file; --out names the folder the sample is written to")
    write_sample(
        args.out,
        n_train=args.train,
        n_test=args.test,
        seed=args.seed,
        fmt=args.format,
        test_ids_from=args.test_ids_from,
    )
    logging.info("wrote a synthetic sample to %s", args.out)


def _cmd_submission(args):
    from prodcat.data.submission import write_submission

    write_submission(_read_predictions(args.predictions), args.out, source=args.predictions)


def _cmd_predict(args):
    from prodcat.data.io import check_output_path, ingest, write_parquet

    from .predict import predict_new_rows

    review = None
    if args.review_below is not None:
        from prodcat.ensemble.review import check_threshold, review_queue

        below = check_threshold(args.review_below)
        review = args.review_out or str(Path(args.out).with_suffix("")) + ".review.parquet"
        if Path(review).resolve() == Path(args.out).resolve():
            raise UsageError(f"--review-out must differ from --out, both are {args.out}")
        check_output_path(review)
    check_output_path(args.out)  # before minutes of prediction
    rows = ingest(args.input)
    result = predict_new_rows(args.models, rows, keep_dir=args.keep, with_candidates=review is not None)
    labelled, candidates = result if review is not None else (result, None)
    if review is not None and "confidence" not in labelled.columns:
        raise InputError(args.models, "this run's models have no confidence calibration: rerun the workflow")
    write_parquet(labelled, args.out)
    logging.info("labelled %d rows from %s into %s", len(rows), args.input, args.out)
    if review is not None:
        queue = review_queue(labelled, candidates, below, rows)
        write_parquet(queue, review)
        logging.info(
            "%d of %d rows under confidence %g, least confident first, into %s",
            queue["review_order"].nunique(),
            len(rows),
            below,
            review,
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prodcat", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"prodcat {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ingest", help="validate features (+ labels) into a Parquet rows table")
    p.add_argument("--features", required=True, help="Parquet or JSON lines (.features/.jsonl/.json)")
    p.add_argument("--labels", help="labels file joined on indoml_id (Parquet or JSON lines)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cmd_ingest)

    p = sub.add_parser("split", help="group-stratified train/validation split")
    p.add_argument("--data", required=True)
    p.add_argument("--train", required=True)
    p.add_argument("--val", required=True)
    p.add_argument("--fraction", type=_fraction, default=0.1, help="share of each label path for validation, in (0, 1)")
    p.add_argument("--seed", type=_non_negative_int, default=42)
    p.add_argument("--report", help="JSON report of sizes and label coverage")
    p.set_defaults(func=_cmd_split)

    p = sub.add_parser("hierarchy", help="the label tree with counts, from training rows")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cmd_hierarchy)

    p = sub.add_parser("correct", help="replace labels outside the hierarchy by the closest valid ones")
    p.add_argument("--hierarchy", required=True)
    p.add_argument("--predictions", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--method", choices=["topdown", "joint"], default="topdown")
    p.add_argument(
        "--salvage",
        action="store_true",
        help="correct unparsable generations from the parts that can be read, not from nothing",
    )
    p.set_defaults(func=_cmd_correct)

    p = sub.add_parser("vote", help="hierarchy-compliant hard vote over several models' predictions")
    p.add_argument("--hierarchy", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--accuracy", help="JSON {model: {level: validation accuracy}} for tie rules / weights")
    p.add_argument("--weighted", action="store_true", help="votes weighted by per-level validation accuracy")
    p.add_argument("predictions", nargs="+", help="[NAME=]PATH, in the fixed model order used for ties")
    p.set_defaults(func=_cmd_vote)

    from .stack_cli import add_commands as add_stack_commands

    add_stack_commands(sub)

    p = sub.add_parser("evaluate", help="item accuracy and macro F1 per level")
    p.add_argument("--truth", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--split", default="val")
    p.add_argument("--hierarchy", help="add the majority-path baseline from this hierarchy")
    p.add_argument(
        "--seen-retailers",
        metavar="TRAIN",
        help="training rows: adds the item accuracy on truth rows whose retailer is not among theirs",
    )
    p.add_argument("predictions", nargs="+", help="[MODEL:STAGE=]PATH")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("predict", help="label a new file with the trained models of a finished run")
    p.add_argument("--models", required=True, help="the run's results folder (holds manifest.json, models/, data/)")
    p.add_argument("--input", required=True, help="features: Parquet or JSON lines, validated as by ingest")
    p.add_argument("--out", required=True)
    p.add_argument("--keep", help="write names and every labeler's raw and corrected predictions here")
    p.add_argument(
        "--review-below",
        metavar="P",
        help="also write a review queue: the rows whose calibrated confidence is below P (in (0, 1]), "
        "each with its best candidates and who proposed them, least confident first (those are the "
        "likeliest to be wrong, so working down the list fixes the most errors per row checked); "
        "--out stays complete",
    )
    p.add_argument("--review-out", help="where the review queue goes (default: OUT with .review.parquet)")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("make-sample", help="write the synthetic sample data (bit-for-bit reproducible)")
    p.add_argument("--out", required=True)
    p.add_argument("--train", type=_positive_int, default=5000)
    p.add_argument("--test", type=_positive_int, default=1000)
    p.add_argument("--seed", type=int, default=20241)
    p.add_argument("--format", choices=["parquet", "jsonl"], default="parquet")
    p.add_argument(
        "--test-ids-from",
        type=_non_negative_int,
        metavar="N",
        help="number the test rows from N, as the competition's file does (default: ids unique over both files)",
    )
    p.set_defaults(func=_cmd_make_sample)

    p = sub.add_parser("submission", help="predictions as the datathon's JSON lines")
    p.add_argument("--predictions", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cmd_submission)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        args.func(args)
    except (InputError, OutputError, UsageError) as exc:
        print(f"prodcat {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a write no prodcat code wrapped (a library's save): still said plainly
        if errno_of(exc) not in WRITE_ERRNOS:
            raise
        error = OutputError(exc.filename or "(a file the library did not name)", exc)
        print(f"prodcat {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`prodcat stack-fit` and `prodcat stack-apply`: the learned arbiter (prodcat.ensemble.stack) on the command line.

Kept apart from cli.py, which registers them with one call (`add_commands`).
"""

from __future__ import annotations

import logging

from prodcat.runtime.errors import InputError


def _named_tables(items):
    from prodcat.data.io import parse_named_paths, read_predictions

    named = parse_named_paths(items)
    return [read_predictions(path) for _, path in named], [name for name, _ in named], named


def _member_tables(option, items, names, source, columns, what) -> dict:
    """OPTION NAME=PATH items: a table per named member (several rows per id, so not a predictions
    table), each with the given columns."""
    if not items:
        return {}
    from prodcat.data.io import parse_named_paths, read_table

    named = parse_named_paths(items)
    unknown = [name for name, _ in named if name not in names]
    if unknown:
        raise InputError(source, f"{option} names {', '.join(unknown)}, which no NAME=PATH member has")
    tables = {}
    for name, path in named:
        table = read_table(path)
        for column in columns:
            if column not in table.columns:
                raise InputError(path, f"{what} need a {column} column", column=column)
        tables[name] = table
    return tables


def _candidate_scores(items, names, source) -> dict:
    """--scores NAME=PATH: each named member's scores of the candidates (prodcat.ensemble.stack)."""
    return _member_tables("--scores", items, names, source, ("indoml_id", "logprob"), "candidate scores")


def _alternatives(items, names, source) -> dict:
    """--alternatives NAME=PATH: a member's ranked alternatives, extra candidates (prodcat.ensemble.stack)."""
    return _member_tables("--alternatives", items, names, source, ("indoml_id", "rank"), "ranked alternatives")


def _cmd_stack_fit(args):
    from prodcat.data.hierarchy import Hierarchy
    from prodcat.data.io import read_rows, write_parquet
    from prodcat.ensemble.calibration import expected_calibration_error, item_correct
    from prodcat.ensemble.stack import DEFAULT_PARAMS, calibrate_stack, cross_fit_stack, fit_stack
    from prodcat.ensemble.vote import vote_predictions
    from prodcat.report.metrics import score

    tables, names, named = _named_tables(args.predictions)
    scores = _candidate_scores(args.scores, names, named[0][1])
    alternatives = _alternatives(args.alternatives, names, named[0][1])
    hierarchy = Hierarchy.from_json(args.hierarchy)
    truth = read_rows(args.truth, labelled=True)
    given = {"folds": args.folds, "seed": args.seed, "C": args.C, "inner_folds": args.inner_folds}
    params = {**DEFAULT_PARAMS, **{key: value for key, value in given.items() if value is not None}}
    folds, inner_folds, grid = params["folds"], params["inner_folds"], params["C"]
    if folds < 2 or len(tables[0]) < folds or inner_folds < 2 or not grid or min(grid) <= 0:
        raise InputError(
            named[0][1],
            f"{len(tables[0])} rows cannot be cross-fitted in --folds {folds} "
            "(need folds >= 2 and at least one row per fold, --inner-folds >= 2, every --C > 0)",
        )
    rows = truth if args.descriptions else None
    # the cross-fitted validation predictions and the model fit on all rows see the same inputs
    inputs = dict(candidate_scores=scores, rows=rows, truth_source=args.truth, alternatives=alternatives)
    _, _, _, candidates = cross_fit_stack(tables, names, truth, hierarchy, params, with_candidates=True, **inputs)
    model = fit_stack(tables, names, truth, hierarchy, params, **inputs)
    # the confidence's calibration is fit on the cross-fitted candidates: rows no model saw
    crossfit = calibrate_stack(model, candidates, truth, args.truth, _unseen_share(args.train))
    vote = vote_predictions(tables, names, hierarchy, level_accuracy=model.statistics.level_accuracy)
    model.validation = {
        "rows": len(crossfit),
        "cross_fitted_item_accuracy": score(truth, crossfit)["item_accuracy"],
        "vote_item_accuracy": score(truth, vote)["item_accuracy"],
        "member_item_accuracy": {
            name: score(truth, table, name=path)["item_accuracy"] for table, (name, path) in zip(tables, named)
        },
        "cross_fitted_ece": expected_calibration_error(crossfit["confidence"], item_correct(truth, crossfit)),
    }
    model.save(args.model)
    write_parquet(crossfit, args.out)
    logging.info(
        "stack over %s (%s): cross-fitted item accuracy %.4f (vote %.4f; members %s)",
        ", ".join(names),
        model.selection["chosen"],
        model.validation["cross_fitted_item_accuracy"],
        model.validation["vote_item_accuracy"],
        ", ".join(f"{n} {a:.4f}" for n, a in model.validation["member_item_accuracy"].items()),
    )
    logging.info(
        "confidence: softmax temperature %.3g, isotonic over %d thresholds; cross-fitted ECE %.4f",
        model.calibration["temperature"],
        len(model.calibration["x"]),
        model.validation["cross_fitted_ece"],
    )


def _cmd_stack_apply(args):
    from prodcat.data.hierarchy import Hierarchy
    from prodcat.data.io import read_rows, write_parquet
    from prodcat.ensemble.stack import StackModel

    model = StackModel.load(args.model)
    tables, names, named = _named_tables(args.predictions)
    if sorted(names) != sorted(model.members):
        raise InputError(
            args.model,
            f"fit on members {', '.join(model.members)}, but the NAME=PATH arguments name {', '.join(names)}",
        )
    scores = _candidate_scores(args.scores, names, named[0][1])
    missing = [n for n in model.layout.candidate_columns if n not in scores]
    if missing:
        raise InputError(
            args.model, f"fit with candidate scores of {', '.join(missing)}: pass --scores NAME=PATH for them"
        )
    alternatives = _alternatives(args.alternatives, names, named[0][1])
    missing = [n for n in model.layout.alternatives if n not in alternatives]
    if missing:
        raise InputError(
            args.model, f"fit with ranked alternatives of {', '.join(missing)}: pass --alternatives NAME=PATH for them"
        )
    if model.layout.descriptions and not args.rows:
        raise InputError(args.model, "fit with the rows' descriptions: pass --rows (the rows the predictions are of)")
    rows = read_rows(args.rows) if args.rows else None
    ranked = model.rank_candidates(
        tables,
        names,
        Hierarchy.from_json(args.hierarchy),
        candidate_scores=scores,
        rows=rows,
        alternatives=alternatives,
    )
    write_parquet(model.chosen(ranked), args.out)
    if args.candidates:
        write_parquet(ranked, args.candidates)
    logging.info("stacked %d rows from %s", len(tables[0]), ", ".join(names))


def _unseen_share(train_path) -> float:
    """The Good–Turing share of new rows whose path no training row has (0 without --train)."""
    from prodcat.data.io import read_rows
    from prodcat.ensemble.calibration import unseen_path_share

    if train_path is None:
        logging.warning("no --train rows: the confidence is not lowered for paths unseen in training")
        return 0.0
    share = unseen_path_share(read_rows(train_path, labelled=True))
    logging.info(
        "%s: %.2f %% of rows have a path that occurs once (Good–Turing: new rows of unseen paths)",
        train_path,
        100 * share,
    )
    return share


def _cmd_calibrate(args):
    """Fit a model's confidence calibration on its validation predictions; write it (JSON) and each
    --apply IN=OUT table with a confidence column (same rows, same labels)."""
    from prodcat.data.io import parse_named_paths, read_predictions, read_rows, write_json, write_parquet
    from prodcat.ensemble.calibration import (
        expected_calibration_error,
        fit_calibration,
        item_correct,
        raw_score,
        with_confidence,
    )

    truth = read_rows(args.truth, labelled=True)
    fitting = read_predictions(args.fit)
    score, column = raw_score(fitting, args.fit)
    calibration = fit_calibration(score, item_correct(truth, fitting, args.truth), column, _unseen_share(args.train))
    applied = [(path, out, read_predictions(path)) for path, out in parse_named_paths(args.apply)]
    write_json(calibration, args.calibration)
    for path, out, table in applied:
        write_parquet(with_confidence(table, calibration, path), out)
    logging.info(
        "%s: isotonic on %s, %d thresholds, x (1 - %.4f unseen paths); validation ECE %.4f before, %.4f after",
        args.fit,
        column,
        len(calibration["x"]),
        calibration["unseen_path_share"],
        expected_calibration_error(score, item_correct(truth, fitting, args.truth)),
        calibration["fit_ece"],
    )


def _floats(text: str) -> list[float]:
    import argparse

    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from exc


TRAIN_HELP = (
    "the labelled training rows: the share whose label path occurs once estimates (Good–Turing) the chance that a"
    " new row's path is unseen, and the confidence is scaled by 1 minus it (validation rows never have one)"
)


def add_commands(sub) -> None:
    p = sub.add_parser("stack-fit", help="fit the learned arbiter on validation predictions (cross-fitted output)")
    p.add_argument("--hierarchy", required=True)
    p.add_argument("--truth", required=True, help="the labelled rows the predictions are of (validation)")
    p.add_argument("--train", help=TRAIN_HELP)
    p.add_argument("--model", required=True, help="where to write the model fit on all rows (JSON)")
    p.add_argument(
        "--out", required=True, help="cross-fitted predictions: each row scored by a model that never saw it"
    )
    p.add_argument(
        "--scores",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a member's scores of the candidate paths (indoml_id, the four levels, logprob); repeat per member",
    )
    p.add_argument(
        "--alternatives",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a member's ranked alternatives (indoml_id, rank, the four levels): more candidates; repeat per member",
    )
    p.add_argument(
        "--descriptions",
        action="store_true",
        help="also match each candidate's brand and module against the rows' descriptions",
    )
    # left out: prodcat.ensemble.stack.DEFAULT_PARAMS (read when the command runs, not restated here)
    p.add_argument("--folds", type=int, help="cross-fitting folds for the validation numbers (default: the stack's)")
    p.add_argument("--inner-folds", type=int, help="cross-validation folds that choose C (default: the stack's)")
    p.add_argument("--seed", type=int, help="the fold assignment's seed (default: the stack's)")
    p.add_argument(
        "--C",
        type=_floats,
        help="comma-separated inverse L2 strengths to choose from (against deferring to the best member; "
        "default: the stack's)",
    )
    p.add_argument("predictions", nargs="+", help="NAME=PATH per member")
    p.set_defaults(func=_cmd_stack_fit)

    p = sub.add_parser("stack-apply", help="pick one path per row with a fitted arbiter")
    p.add_argument("--model", required=True, help="a model written by stack-fit")
    p.add_argument("--hierarchy", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--rows", help="the rows the predictions are of (needed by a model fit with --descriptions)")
    p.add_argument("--scores", action="append", default=[], metavar="NAME=PATH", help="as for stack-fit")
    p.add_argument("--alternatives", action="append", default=[], metavar="NAME=PATH", help="as for stack-fit")
    p.add_argument(
        "--candidates", help="also write every row's ranked candidates and who proposed them (the review queue's)"
    )
    p.add_argument("predictions", nargs="+", help="NAME=PATH per member, the names the model was fit with")
    p.set_defaults(func=_cmd_stack_apply)

    p = sub.add_parser("calibrate", help="fit a model's confidence on validation and add it to prediction tables")
    p.add_argument("--truth", required=True, help="the labelled rows of --fit (validation)")
    p.add_argument("--fit", required=True, help="the model's predictions of those rows (its raw score: logprob, ...)")
    p.add_argument("--train", help=TRAIN_HELP)
    p.add_argument("--calibration", required=True, help="where to write the fitted calibration (JSON)")
    p.add_argument(
        "apply",
        nargs="*",
        metavar="IN=OUT",
        help="a predictions table of the same model, and where to write it with confidence",
    )
    p.set_defaults(func=_cmd_calibrate)

"""`prodcat stack-fit` and `prodcat stack-apply`: the learned arbiter (prodcat.stack) on the command line.

Kept apart from cli.py, which registers them with one call (`add_commands`).
"""

from __future__ import annotations

import logging


def _named_tables(items):
    from .cli import _parse_named, _read_predictions

    named = _parse_named(items, "stack")
    return [_read_predictions(path) for _, path in named], [name for name, _ in named], named


def _cmd_stack_fit(args):
    from .hierarchy import Hierarchy
    from .io import read_rows, write_parquet
    from .metrics import score
    from .stack import cross_fit_stack, fit_stack
    from .vote import vote_predictions

    tables, names, named = _named_tables(args.predictions)
    hierarchy = Hierarchy.from_json(args.hierarchy)
    truth = read_rows(args.truth, labelled=True)
    params = {"folds": args.folds, "seed": args.seed, "C": args.C}
    if args.folds < 2 or len(tables[0]) < args.folds:
        from .errors import InputError

        raise InputError(named[0][1], f"{len(tables[0])} rows cannot be cross-fitted in --folds {args.folds} "
                                      "(need folds >= 2 and at least one row per fold)")
    crossfit, _, _ = cross_fit_stack(tables, names, truth, hierarchy, params, truth_source=args.truth)
    model = fit_stack(tables, names, truth, hierarchy, params, truth_source=args.truth)
    vote = vote_predictions(tables, names, hierarchy, level_accuracy=model.statistics.level_accuracy)
    validation = {"rows": len(crossfit), "cross_fitted_item_accuracy": score(truth, crossfit)["item_accuracy"],
                  "vote_item_accuracy": score(truth, vote)["item_accuracy"],
                  "member_item_accuracy": {name: score(truth, table, name=path)["item_accuracy"]
                                           for table, (name, path) in zip(tables, named)}}
    model.validation = validation
    model.save(args.model)
    write_parquet(crossfit, args.out)
    logging.info("stack over %s: cross-fitted item accuracy %.4f (vote %.4f; members %s)", ", ".join(names),
                 validation["cross_fitted_item_accuracy"], validation["vote_item_accuracy"],
                 ", ".join(f"{n} {a:.4f}" for n, a in validation["member_item_accuracy"].items()))


def _cmd_stack_apply(args):
    from .hierarchy import Hierarchy
    from .io import write_parquet
    from .stack import StackModel

    model = StackModel.load(args.model)
    tables, names, _ = _named_tables(args.predictions)
    if sorted(names) != sorted(model.members):
        from .errors import InputError

        raise InputError(args.model, f"fit on members {', '.join(model.members)}, but the NAME=PATH arguments name "
                                     f"{', '.join(names)}")
    write_parquet(model.predict(tables, names, Hierarchy.from_json(args.hierarchy)), args.out)
    logging.info("stacked %d rows from %s", len(tables[0]), ", ".join(names))


def add_commands(sub) -> None:
    p = sub.add_parser("stack-fit", help="fit the learned arbiter on validation predictions (cross-fitted output)")
    p.add_argument("--hierarchy", required=True)
    p.add_argument("--truth", required=True, help="the labelled rows the predictions are of (validation)")
    p.add_argument("--model", required=True, help="where to write the model fit on all rows (JSON)")
    p.add_argument("--out", required=True, help="cross-fitted predictions: each row scored by a model that never saw it")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--C", type=float, default=1.0, help="inverse L2 strength of the logistic regression")
    p.add_argument("predictions", nargs="+", help="[NAME=]PATH per member")
    p.set_defaults(func=_cmd_stack_fit)

    p = sub.add_parser("stack-apply", help="pick one path per row with a fitted arbiter")
    p.add_argument("--model", required=True, help="a model written by stack-fit")
    p.add_argument("--hierarchy", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("predictions", nargs="+", help="NAME=PATH per member, the names the model was fit with")
    p.set_defaults(func=_cmd_stack_apply)

"""A harder check of the learned arbiter (prodcat.ensemble.stack) than the bundled sample: rows over the real
IndoML label space (12,885 paths) with receipt-style noise, and members of very unequal accuracy.

* Rows: `charngram_scale.synthesize` (pseudo product names per path, noised like receipt lines:
  dropped vowels, cut and run-together words, character mutations, a length cut), split into
  train / validation / test.
* charngram: the real labeler, trained on the training rows; its confidence is its own
  (log posterior, margin).
* Three seq2seq stand-ins ("neural" members) with controlled accuracy: whether a member is right on
  a row is drawn from a latent that also sets its confidence (logprob, logprob per token, lowest
  token), so confidence correlates with correctness as a language model's does, imperfectly. Rows
  charngram gets wrong are made harder for every member (hard rows are hard for everyone), and
  when wrong, the weak members share one decoy answer per row with probability --shared-error,
  so together they outvote a right answer. A wrong answer is a sibling brand, a sibling module,
  a random path or an invalid path (a typo'd brand, later fixed or not by correction).
  Their predictions then go through the pipeline's top-down correction, as in Table 1's
  "corrected" stage. The stand-ins cannot score paths they did not write; charngram scores every
  candidate (`CharNgramLabeler.score_paths`) and lists its --alternatives best paths per row as more
  candidates (`CharNgramLabeler.alternatives`, as rule list_alternatives does), and the stack
  matches candidates to descriptions.

For the paper's three (the stand-ins) and for the three + charngram, it reports item accuracy of
each member, the hard vote and the stack, on validation (stack cross-fitted) and on test (stack
fit on all validation rows), and whether the stack reaches its best member.

    .venv/bin/python bench/stack_hard.py --hierarchy ../shared/indoml2024/hierarchy.json \\
        [--train-rows 60000] [--val-rows 3000] [--test-rows 3000] [--accuracy 0.55 0.40 0.30] \\
        [--shared-error 0.5] [--confidence-noise 1.0] [--no-descriptions] [--alternatives 5] [--seed 0] \\
        [--out stack_hard.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from charngram_scale import synthesize  # noqa: E402

from prodcat import LEVELS  # noqa: E402
from prodcat.data.hierarchy import Hierarchy  # noqa: E402
from prodcat.data.target_text import format_target  # noqa: E402
from prodcat.ensemble.correct import correct_predictions  # noqa: E402
from prodcat.ensemble.stack import candidate_union, cross_fit_stack, fit_stack  # noqa: E402
from prodcat.ensemble.vote import vote_predictions  # noqa: E402
from prodcat.labelers.charngram import train_charngram  # noqa: E402
from prodcat.report.metrics import score  # noqa: E402

log = logging.getLogger("stack_hard")
ERROR_KINDS = {"sibling_brand": 0.45, "sibling_module": 0.25, "random_path": 0.15, "typo_brand": 0.15}


class _Neighbours:
    """Paths sharing a (supergroup, group, module) node or a (supergroup, group) node. Wrong
    answers are drawn in proportion to the paths' training counts: a labeler errs towards what it
    saw often (drawn uniformly, a path's frequency alone would give the errors away)."""

    def __init__(self, hierarchy: Hierarchy):
        paths = hierarchy.paths[list(LEVELS)]
        self.n = len(paths)
        self.count = hierarchy.paths["count"].to_numpy(dtype=np.float64)
        self.by_module = paths.groupby(list(LEVELS[:3]), sort=False).indices
        self.by_group = paths.groupby(list(LEVELS[:2]), sort=False).indices
        self.module_key = list(paths[list(LEVELS[:3])].itertuples(index=False, name=None))
        self.group_key = [k[:2] for k in self.module_key]

    def sibling(self, path: int, rng, level: str) -> int:
        pool = self.by_module[self.module_key[path]] if level == "brand" else self.by_group[self.group_key[path]]
        if level == "module":
            pool = [p for p in pool if self.module_key[p] != self.module_key[path]]
        pool = np.array([p for p in pool if p != path], dtype=np.int64)
        return self.draw(rng, pool) if len(pool) else self.draw(rng)

    def draw(self, rng, pool=None) -> int:
        pool = np.arange(self.n) if pool is None else pool
        weights = self.count[pool]
        return int(rng.choice(pool, p=weights / weights.sum()))


def _typo(word: str, rng) -> str:
    k = int(rng.integers(len(word))) if word else 0
    return word[:k] + "xq"[int(rng.integers(2))] + word[k + 1 :]


def neural_member(
    truth_ids, hardness, decoy, accuracy, shared, confidence_noise, hierarchy, neighbours, rng, ids, name
):
    """One stand-in seq2seq member's raw predictions (labels, text, parse_ok, confidence)."""
    n = len(truth_ids)
    # latent "how sure": right iff latent > 0; its offset sets the accuracy on these rows
    noise = rng.normal(0.0, 1.0, n)
    base = noise - hardness
    offset = -np.quantile(base, 1.0 - accuracy)
    latent = base + offset
    right = latent > 0
    labels = hierarchy.paths[list(LEVELS)].to_numpy(dtype=object)
    predicted = labels[truth_ids].copy()
    kinds = rng.choice(list(ERROR_KINDS), size=n, p=list(ERROR_KINDS.values()))
    use_decoy = rng.random(n) < shared
    for i in np.flatnonzero(~right):
        if use_decoy[i]:
            predicted[i] = labels[decoy[i]]
        elif kinds[i] == "sibling_brand":
            predicted[i] = labels[neighbours.sibling(truth_ids[i], rng, "brand")]
        elif kinds[i] == "sibling_module":
            predicted[i] = labels[neighbours.sibling(truth_ids[i], rng, "module")]
        elif kinds[i] == "random_path":
            predicted[i] = labels[neighbours.draw(rng)]
        else:
            predicted[i, 3] = _typo(predicted[i, 3], rng)
    frame = pd.DataFrame(predicted, columns=list(LEVELS))
    frame.insert(0, "indoml_id", ids)
    frame["text"] = [format_target(tuple(p)) for p in predicted]
    frame["parse_ok"] = True
    n_tokens = frame["text"].str.len().to_numpy() + 1  # a byte model: one token per byte, plus EOS
    # confidence: a noisy, saturating function of the latent (a model is never quite calibrated)
    sure = 1.0 / (1.0 + np.exp(-(latent + rng.normal(0.0, confidence_noise, n))))
    per_token = np.log(0.2 + 0.8 * sure) / 8.0
    frame["logprob"] = per_token * n_tokens
    frame["logprob_per_token"] = per_token
    frame["logprob_min"] = per_token * rng.uniform(4.0, 12.0, n)
    frame["finished"] = True
    log.info("%s: raw item accuracy %.3f", name, right.mean())
    return frame


def members_for(rows, charngram, hierarchy, neighbours, accuracy, shared, confidence_noise, rng):
    """charngram's and the three stand-ins' corrected predictions of `rows`."""
    path_index = pd.MultiIndex.from_frame(hierarchy.paths[list(LEVELS)])
    truth_ids = path_index.get_indexer(pd.MultiIndex.from_frame(rows[list(LEVELS)]))
    ids = rows["indoml_id"].to_numpy()
    tables = {"charngram": charngram.predict(rows.drop(columns=list(LEVELS)))}
    charngram_right = (tables["charngram"][list(LEVELS)].to_numpy() == rows[list(LEVELS)].to_numpy()).all(axis=1)
    # a row charngram gets wrong is harder for everyone; plus a shared random difficulty
    hardness = 1.0 * (~charngram_right) + rng.normal(0.0, 0.5, len(rows))
    decoy = np.array([neighbours.sibling(t, rng, "brand" if rng.random() < 0.6 else "module") for t in truth_ids])
    for k, acc in enumerate(accuracy):
        name = f"neural{k + 1}"
        raw = neural_member(
            truth_ids,
            hardness,
            decoy,
            acc,
            shared if k > 0 else 0.0,
            confidence_noise,
            hierarchy,
            neighbours,
            rng,
            ids,
            name,
        )
        tables[name] = correct_predictions(raw, hierarchy, "topdown")
    return tables


def evaluate(truth, tables, names, hierarchy, stack_out):
    result = {name: score(truth, tables[name])["item_accuracy"] for name in names}
    accuracy = {name: {lv: score(truth, tables[name])[f"accuracy_{lv}"] for lv in LEVELS} for name in names}
    result["vote"] = score(
        truth, vote_predictions([tables[n] for n in names], names, hierarchy, level_accuracy=accuracy)
    )["item_accuracy"]
    result["stack"] = score(truth, stack_out)["item_accuracy"]
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hierarchy", required=True, help="IndoML hierarchy JSON (nested or prodcat form)")
    parser.add_argument("--train-rows", type=int, default=60_000)
    parser.add_argument("--val-rows", type=int, default=3_000)
    parser.add_argument("--test-rows", type=int, default=3_000)
    parser.add_argument(
        "--accuracy",
        type=float,
        nargs=3,
        default=[0.55, 0.40, 0.30],
        help="raw item accuracy of the three stand-in members",
    )
    parser.add_argument(
        "--shared-error",
        type=float,
        default=0.5,
        help="chance that a weak member's wrong answer is the row's shared decoy",
    )
    parser.add_argument(
        "--confidence-noise",
        type=float,
        default=1.0,
        help="noise on the stand-ins' confidence (the latent that decides right or wrong has sd ~1.1; "
        "large values make their confidence useless)",
    )
    parser.add_argument(
        "--no-descriptions", action="store_true", help="the stack does not match candidates against the descriptions"
    )
    parser.add_argument(
        "--alternatives",
        type=int,
        default=5,
        help="charngram's best paths per row added as candidates (0: only the members' predictions)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    started = time.perf_counter()
    hierarchy_all = Hierarchy.from_json(args.hierarchy)
    rows = synthesize(hierarchy_all, args.train_rows + args.val_rows + args.test_rows, args.seed)
    test = rows.iloc[: args.test_rows].reset_index(drop=True)
    val = rows.iloc[args.test_rows : args.test_rows + args.val_rows].reset_index(drop=True)
    train = rows.iloc[args.test_rows + args.val_rows :].reset_index(drop=True)
    # the run's hierarchy: the training rows' paths with their counts (as `prodcat hierarchy` makes it);
    # rows whose path training never saw stay in (a labeler cannot get them right)
    hierarchy = Hierarchy.from_frame(train)
    log.info(
        "synthesized %d train / %d val / %d test rows over %d paths (%d in training) in %.0f s",
        len(train),
        len(val),
        len(test),
        hierarchy_all.n_paths,
        hierarchy.n_paths,
        time.perf_counter() - started,
    )
    charngram = train_charngram(train, hierarchy, params={"hash_buckets": 2**18})
    neighbours = _Neighbours(hierarchy)
    rng = np.random.default_rng(args.seed + 1)
    known = hierarchy.path_set()
    val = val[[p in known for p in val[list(LEVELS)].itertuples(index=False, name=None)]].reset_index(drop=True)
    test = test[[p in known for p in test[list(LEVELS)].itertuples(index=False, name=None)]].reset_index(drop=True)
    member_args = (charngram, hierarchy, neighbours, args.accuracy, args.shared_error, args.confidence_noise, rng)
    val_tables = members_for(val, *member_args)
    test_tables = members_for(test, *member_args)

    ensembles = {
        "paper three (stand-ins)": ["neural1", "neural2", "neural3"],
        "three + charngram": ["neural1", "neural2", "neural3", "charngram"],
    }
    results = {
        "rows": {"train": len(train), "val": len(val), "test": len(test)},
        "paths_in_training": hierarchy.n_paths,
        "accuracy": args.accuracy,
        "shared_error": args.shared_error,
        "confidence_noise": args.confidence_noise,
        "descriptions": not args.no_descriptions,
        "alternatives": args.alternatives,
        "seed": args.seed,
        "ensembles": {},
    }
    print(
        "| ensemble | split | " + " | ".join(["best member", "best member acc", "vote", "stack", "stack - best"]) + " |"
    )
    print("|---|---|---|---|---|---|---|")
    for label, names in ensembles.items():
        t0 = time.process_time()
        val_scores, test_scores, val_alternatives, test_alternatives = {}, {}, {}, {}
        if "charngram" in names:  # the real labeler lists and scores candidates; the stand-ins cannot
            if args.alternatives:
                val_alternatives["charngram"] = charngram.alternatives(val, args.alternatives)
                test_alternatives["charngram"] = charngram.alternatives(test, args.alternatives)
            val_scores["charngram"] = charngram.score_paths(
                val, candidate_union([val_tables[n] for n in names] + list(val_alternatives.values()), hierarchy)
            )
            test_scores["charngram"] = charngram.score_paths(
                test, candidate_union([test_tables[n] for n in names] + list(test_alternatives.values()), hierarchy)
            )
        val_rows, test_rows = (None, None) if args.no_descriptions else (val, test)
        crossfit, _, _ = cross_fit_stack(
            [val_tables[n] for n in names],
            names,
            val,
            hierarchy,
            candidate_scores=val_scores,
            rows=val_rows,
            alternatives=val_alternatives,
        )
        model = fit_stack(
            [val_tables[n] for n in names],
            names,
            val,
            hierarchy,
            candidate_scores=val_scores,
            rows=val_rows,
            alternatives=val_alternatives,
        )
        applied = model.predict(
            [test_tables[n] for n in names],
            names,
            hierarchy,
            candidate_scores=test_scores,
            rows=test_rows,
            alternatives=test_alternatives,
        )
        stack_seconds = time.process_time() - t0  # CPU time: the machine may be shared
        entry = {
            "stack_seconds": round(stack_seconds, 1),
            "val": evaluate(val, val_tables, names, hierarchy, crossfit),
            "test": evaluate(test, test_tables, names, hierarchy, applied),
            "selection": model.selection,
            "coefficients": dict(zip(model.feature_names, np.round(model.coef, 3).tolist())),
        }
        for split in ("val", "test"):
            r = entry[split]
            best = max(names, key=lambda n: r[n])
            r["best_member"], r["stack_minus_best"] = best, r["stack"] - r[best]
            r["stack_reaches_best_member"] = bool(r["stack"] >= r[best])
            print(
                f"| {label} | {split}{' (stack cross-fitted)' if split == 'val' else ''} | {best} | {r[best]:.4f} | "
                f"{r['vote']:.4f} | {r['stack']:.4f} | {r['stack_minus_best']:+.4f} |"
            )
        results["ensembles"][label] = entry
    print()
    for label, entry in results["ensembles"].items():
        members = ", ".join(f"{n} {entry['test'][n]:.3f}" for n in ensembles[label])
        print(
            f"{label}: test accuracy of the members: {members}; stack fit + cross-fit + apply "
            f"{entry['stack_seconds']} CPU s"
        )
    results["seconds"] = round(time.perf_counter() - started, 1)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

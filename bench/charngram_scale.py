"""Scale benchmark for the character n-gram labeler on synthetic rows over the real label space.

The IndoML training rows are not public, so rows are synthesized over the real hierarchy
(12,885 paths, 5,679 brands): each path gets a few pseudo product names built from a form of
its brand (full, first word, prefix, initials, vowels dropped) plus variant and module words
and a pack size; each row is one of those names noised the way receipt lines are (dropped
vowels, truncated and run-together words, character mutations, a length cut). Rows per path
follow a skewed (log-normal) distribution, retailers lean towards a per-brand favourite and
prices follow a per-module log-normal, with some missing. Accuracy here says the labeler
learns substrings at this scale; it says nothing about the hidden test set.

    python bench/charngram_scale.py --hierarchy ../shared/indoml2024/hierarchy.json

prints a Markdown table (training wall time, peak RSS of the process, prediction rows/s, item and
per-level accuracy on held-out synthetic rows) and writes it as JSON with --out. With --val-rows N,
N more rows go to train_charngram as val_rows, so the training time includes the alpha search.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import string
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from prodcat import LEVELS  # noqa: E402
from prodcat.data.hierarchy import Hierarchy  # noqa: E402
from prodcat.labelers.charngram import CharNgramLabeler, train_charngram  # noqa: E402

log = logging.getLogger("charngram_scale")

VOWELS = frozenset("aeiou")
VARIANT_WORDS = (
    "original classic light extra mild strong fresh red green white black gold mini large "
    "family value organic smooth crunchy salted sweet spicy lemon vanilla berry mint honey "
    "choc plain sparkling free range deluxe premium soft ultra sensitive natural multi"
).split()
SIZE_UNITS = ("g", "kg", "ml", "l", "pk", "s", "cl")
N_RETAILERS = 63


def _devowel(word: str) -> str:
    """Drop interior vowels ("chocolate" -> "chclt"), keeping the first letter."""
    if len(word) <= 3:
        return word
    return word[0] + "".join(c for c in word[1:] if c not in VOWELS) or word


def _brand_forms(brand: str) -> list[str]:
    """Ways a receipt printer shortens a brand name; "receipt all" (the catch-all) has none."""
    if brand == "receipt all":
        return [""]
    words = brand.split()
    forms = {brand, words[0], words[0][:4], _devowel(words[0]), " ".join(_devowel(w) for w in words)}
    if len(words) > 1:
        forms.add(" ".join(w[0] for w in words))
        forms.add(words[0][:3] + " " + " ".join(words[1:]))
    return sorted(f for f in forms if f)


def _mutate(text: str, rng: np.random.Generator, rate: float) -> str:
    """Random character substitutions, deletions, insertions and swaps at the given rate."""
    chars = list(text)
    out = []
    i = 0
    letters = string.ascii_lowercase
    while i < len(chars):
        c = chars[i]
        if c != " " and rng.random() < rate:
            op = rng.integers(4)
            if op == 0:
                out.append(letters[rng.integers(26)])
            elif op == 1:
                pass
            elif op == 2:
                out.extend([c, letters[rng.integers(26)]])
            elif i + 1 < len(chars):
                out.extend([chars[i + 1], c])
                i += 1
            else:
                out.append(c)
        else:
            out.append(c)
        i += 1
    return "".join(out)


def _noised(name: str, rng: np.random.Generator) -> str:
    """A receipt line for a product name: shortened words, run-together words, mutations, a cut."""
    words = []
    for word in name.split():
        r = rng.random()
        if r < 0.25 and word.isalpha():
            word = _devowel(word)
        elif r < 0.45 and word.isalpha() and len(word) > 4:
            word = word[: rng.integers(3, len(word))]
        words.append(word)
    text = ""
    for k, word in enumerate(words):
        text += word if k == 0 or rng.random() < 0.08 else " " + word
    text = _mutate(text, rng, 0.03)
    limit = int(rng.integers(12, 42))
    if len(text) > limit:
        text = text[:limit].rstrip()
    return text if len(text.strip()) >= 2 else name[:8]


def synthesize(hierarchy: Hierarchy, n_rows: int, seed: int) -> pd.DataFrame:
    """n_rows labelled rows over every path of the hierarchy (each path at least once)."""
    rng = np.random.default_rng(seed)
    paths = hierarchy.paths[list(LEVELS)].to_numpy()
    n_paths = len(paths)
    if n_rows < n_paths:
        raise ValueError(f"need at least one row per path: {n_rows} < {n_paths}")
    weights = rng.lognormal(0.0, 1.0, n_paths)
    per_path = 1 + rng.multinomial(n_rows - n_paths, weights / weights.sum())
    retailers = [f"shop{r:02d}" for r in range(N_RETAILERS)]
    favourite = {}
    module_price = {}
    records = []
    for p, (sg, g, m, b) in enumerate(paths):
        forms = _brand_forms(b)
        favourite.setdefault(b, int(rng.integers(N_RETAILERS)))
        module_price.setdefault(m, rng.normal(1.0, 0.8))
        module_words = m.split()
        names, prices = [], []
        for _ in range(int(rng.integers(1, 5))):
            kept = [w for w in module_words if rng.random() < 0.7] or module_words[-1:]
            variant = list(rng.choice(VARIANT_WORDS, size=int(rng.integers(0, 3)), replace=False))
            amount = int(rng.choice([1, 2, 4, 6, 10, 12, 100, 150, 200, 250, 330, 400, 500, 750]))
            size = f"{amount} {rng.choice(SIZE_UNITS)}"
            brand = forms[int(rng.integers(len(forms)))]
            parts = [brand, *variant, *kept] if rng.random() < 0.8 else [*variant, *kept, brand]
            if rng.random() < 0.6:
                parts.append(size) if rng.random() < 0.7 else parts.insert(0, size)
            names.append(" ".join(x for x in parts if x))
            prices.append(np.exp(module_price[m] + rng.normal(0.0, 0.4)))
        popularity = rng.dirichlet(np.ones(len(names)))
        for _ in range(per_path[p]):
            k = int(rng.choice(len(names), p=popularity))
            retailer = favourite[b] if rng.random() < 0.5 else int(rng.integers(N_RETAILERS))
            price = np.nan if rng.random() < 0.05 else round(float(prices[k] * np.exp(rng.normal(0, 0.1))), 2)
            records.append((_noised(names[k], rng), retailers[retailer], price, sg, g, m, b))
    rows = pd.DataFrame.from_records(records, columns=["description", "retailer", "price", *LEVELS])
    rows = rows.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    rows.insert(0, "indoml_id", np.arange(len(rows), dtype="int64"))
    return rows


def _peak_rss_mib() -> float:
    """Peak resident set size of this process (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hierarchy", required=True, help="IndoML hierarchy JSON (nested or prodcat form)")
    parser.add_argument("--train-rows", type=int, default=561_838)
    parser.add_argument("--test-rows", type=int, default=20_000)
    parser.add_argument("--val-rows", type=int, default=0, help="also pass this many rows as val_rows (alpha search)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--params", default="{}", help="JSON object of train_charngram params")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    hierarchy = Hierarchy.from_json(args.hierarchy)
    t0 = time.perf_counter()
    rows = synthesize(hierarchy, args.train_rows + args.test_rows + args.val_rows, args.seed)
    test = rows.iloc[: args.test_rows].reset_index(drop=True)
    val = rows.iloc[args.test_rows : args.test_rows + args.val_rows].reset_index(drop=True)
    train = rows.iloc[args.test_rows + args.val_rows :].reset_index(drop=True)
    log.info(
        "synthesized %d train + %d val + %d test rows in %.1f s",
        len(train),
        len(val),
        len(test),
        time.perf_counter() - t0,
    )
    del rows
    rss_before = _peak_rss_mib()

    params = json.loads(args.params)
    t0 = time.perf_counter()
    labeler = train_charngram(train, hierarchy, params=params, val_rows=val if len(val) else None)
    train_s = time.perf_counter() - t0
    rss_train = _peak_rss_mib()

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        labeler.save(tmp)
        save_s = time.perf_counter() - t0
        model_mib = sum(f.stat().st_size for f in Path(tmp).iterdir()) / 2**20
        labeler = CharNgramLabeler.load(tmp)
    t0 = time.perf_counter()
    pred = labeler.predict(test.drop(columns=list(LEVELS)))
    predict_s = time.perf_counter() - t0

    valid = hierarchy.path_set()
    pred_paths = list(pred[list(LEVELS)].itertuples(index=False, name=None))
    result = {
        "train_rows": len(train),
        "val_rows": len(val),
        "test_rows": len(test),
        "paths": hierarchy.n_paths,
        "params": labeler.params,
        "val_metrics": labeler.metrics,
        "train_wall_s": round(train_s, 1),
        "peak_rss_mib_before_training": round(rss_before),
        "peak_rss_mib": round(_peak_rss_mib()),
        "peak_rss_mib_after_training": round(rss_train),
        "save_s": round(save_s, 1),
        "model_mib": round(model_mib, 1),
        "predict_rows_per_s": round(len(test) / predict_s),
        "valid_path_share": float(np.mean([p in valid for p in pred_paths])),
        "item_accuracy": float((pred[list(LEVELS)].to_numpy() == test[list(LEVELS)].to_numpy()).all(axis=1).mean()),
    }
    for level in LEVELS:
        result[f"{level}_accuracy"] = float((pred[level].to_numpy() == test[level].to_numpy()).mean())

    print("| measure | value |\n|---|---|")
    for key, value in result.items():
        if key not in ("params", "val_metrics"):
            print(f"| {key} | {value:.4f} |" if key.endswith(("accuracy", "share")) else f"| {key} | {value} |")
    print(f"\nparams: `{json.dumps(result['params'], sort_keys=True)}`")
    if labeler.metrics:
        print(f"validation: `{json.dumps(labeler.metrics, sort_keys=True)}`")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

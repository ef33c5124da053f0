"""Probe every `prodcat` sub-command with hand-made bad inputs, as a user would meet them.

For each probe: the command line, the exit status (2 = the bad-input contract; 1 = an uncaught
exception, i.e. a traceback), the first line of the message, and whether an output file was left
behind. Runs the CLI in-process (no models are trained; `predict` probes stop before loading one).

    .venv/bin/python bench/probe_bad_input.py [--out probes.md]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import traceback
from pathlib import Path

import pandas as pd

LEVELS = ("supergroup", "group", "module", "brand")
PATHS = [("food", "dairy", "milk", "moo"), ("food", "dairy", "cheese", "moo"), ("home", "clean", "soap", "suds")]


def _jsonl(path: Path, records) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=True) + "\n" for r in records))
    return str(path)


def _raw_jsonl(path: Path, lines) -> str:
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


def fixtures(d: Path) -> dict:
    """Valid inputs that each probe corrupts in one way."""
    features = [
        {"indoml_id": i, "description": f"item {i}", "retailer": f"shop{i % 2}", "price": 1.5 + i} for i in range(12)
    ]
    labels = [{"indoml_id": i, **dict(zip(LEVELS, PATHS[i % 3]))} for i in range(12)]
    f = {"features": features, "labels": labels}
    f["features_path"] = _jsonl(d / "good.features", features)
    f["labels_path"] = _jsonl(d / "good.labels", labels)
    f["rows"] = str(d / "rows.parquet")
    pd.DataFrame([{**a, **b} for a, b in zip(features, labels)]).to_parquet(f["rows"])
    f["hierarchy"] = str(d / "hierarchy.json")
    Path(f["hierarchy"]).write_text(json.dumps({"levels": list(LEVELS), "paths": [[*p, 4] for p in PATHS]}))
    f["predictions"] = _jsonl(d / "pred.jsonl", labels)
    f["predictions2"] = _jsonl(d / "other.jsonl", labels)
    accuracy = {m: dict.fromkeys(LEVELS, 0.5) for m in ("a", "b")}
    f["accuracy"] = str(d / "acc.json")
    Path(f["accuracy"]).write_text(json.dumps(accuracy))
    return f


def write_json(path: Path, obj) -> str:
    path.write_text(json.dumps(obj))
    return str(path)


def probes(d: Path, f: dict):
    """(label, argv, output paths that must not exist afterwards)."""
    out = str(d / "out" / "o.parquet")
    feats, labs = f["features"], f["labels"]

    def features_with(i, **change):
        return _jsonl(
            d / f"f{len(list(d.iterdir()))}.features", [dict(r, **change) if k == i else r for k, r in enumerate(feats)]
        )

    def labels_with(i, **change):
        return _jsonl(
            d / f"l{len(list(d.iterdir()))}.labels", [dict(r, **change) if k == i else r for k, r in enumerate(labs)]
        )

    def ingest(path, labels=None):
        return ["ingest", "--features", path, *(["--labels", labels] if labels else []), "--out", out]

    yield "ingest: id '--5'", ingest(features_with(3, indoml_id="--5")), [out]
    yield "ingest: id '²'", ingest(features_with(3, indoml_id="²")), [out]
    yield "ingest: id 2**70", ingest(features_with(3, indoml_id=2**70)), [out]
    yield "ingest: id 1e30 (float)", ingest(features_with(3, indoml_id=1e30)), [out]
    yield (
        "ingest: id NaN",
        ingest(
            _raw_jsonl(
                d / "nanid.features",
                [json.dumps(r) for r in feats[:-1]]
                + ['{"indoml_id": NaN, "description": "x", "retailer": "r", "price": 1}'],
            )
        ),
        [out],
    )
    yield (
        "ingest: lone surrogate in description",
        ingest(
            _raw_jsonl(
                d / "sur.features", ['{"indoml_id": 1, "description": "ab\\ud800c", "retailer": "r", "price": 1}']
            )
        ),
        [out],
    )
    yield (
        "ingest: lone surrogate in retailer",
        ingest(
            _raw_jsonl(
                d / "sur2.features", ['{"indoml_id": 1, "description": "abc", "retailer": "\\udfff", "price": 1}']
            )
        ),
        [out],
    )
    yield "ingest: brand contains ' | '", ingest(f["features_path"], labels_with(4, brand="a | b")), [out]
    yield "ingest: group contains a newline", ingest(f["features_path"], labels_with(4, group="dai\nry")), [out]
    yield "ingest: module with outer spaces", ingest(f["features_path"], labels_with(4, module=" milk ")), [out]
    yield "ingest: price inf (string)", ingest(features_with(2, price="inf")), [out]
    yield "ingest: price 1e300", ingest(features_with(2, price=1e300)), [out]
    yield "ingest: price 2e6", ingest(features_with(2, price=2e6)), [out]
    yield "ingest: price -1", ingest(features_with(2, price=-1)), [out]
    yield "ingest: price a list", ingest(features_with(2, price=[1])), [out]
    yield "ingest: description a dict", ingest(features_with(2, description={"a": 1})), [out]
    yield "ingest: labels file empty", ingest(f["features_path"], _raw_jsonl(d / "empty.labels", [])), [out]
    yield "ingest: --out is a folder", ["ingest", "--features", f["features_path"], "--out", str(d)], []

    split_out = [str(d / "s" / n) for n in ("train.parquet", "val.parquet", "report.json")]

    def split(*extra, val=split_out[1], train=split_out[0]):
        return ["split", "--data", f["rows"], "--train", train, "--val", val, "--report", split_out[2], *extra]

    for value in ("0", "1", "-0.1", "1.5", "nan", "inf", "x"):
        yield f"split: --fraction {value}", split("--fraction", value), split_out
    for value in ("-1", "2**70", "1.5"):
        yield f"split: --seed {value}", split("--seed", value), split_out
    (d / "a_file").write_text("x")
    yield "split: --val under a file", split(val=str(d / "a_file" / "val.parquet")), split_out
    yield "split: --train equals --val", split(val=split_out[0]), split_out
    yield (
        "split: unlabelled data",
        ["split", "--data", f["features_path"], "--train", split_out[0], "--val", split_out[1]],
        split_out,
    )

    hout = str(d / "h" / "hierarchy.json")
    yield "hierarchy: unlabelled data", ["hierarchy", "--data", f["features_path"], "--out", hout], [hout]

    def correct(hierarchy, predictions=f["predictions"]):
        return ["correct", "--hierarchy", hierarchy, "--predictions", predictions, "--out", out]

    bad_h = {
        "null label": {"paths": [["food", "dairy", None, "moo", 3], [*PATHS[2], 1]]},
        "brands given as one string": {"food": {"dairy": {"milk": "moo"}}},
        "count not a number": {"paths": [["food", "dairy", "milk", "moo", "many"]]},
        "count 0": {"paths": [["food", "dairy", "milk", "moo", 0]]},
        "paths not a list": {"paths": {"food": 1}},
        "row of 4": {"paths": [[*PATHS[0], 1], list(PATHS[1])]},
        "no paths": {"paths": []},
        "label with ' | '": {"paths": [["food", "dairy", "milk", "mo | o", 1]]},
        "a JSON list": [[*PATHS[0], 1]],
        "nested: group not an object": {"food": ["dairy"]},
    }
    for name, obj in bad_h.items():
        yield f"correct: hierarchy {name}", correct(write_json(d / f"h_{len(list(d.iterdir()))}.json", obj)), [out]
    (d / "broken.json").write_text("{oops")
    yield "correct: hierarchy not JSON", correct(str(d / "broken.json")), [out]
    yield (
        "correct: predictions with string ids",
        correct(f["hierarchy"], _jsonl(d / "sid.jsonl", [dict(r, indoml_id=f"id{r['indoml_id']}") for r in labs])),
        [out],
    )
    yield (
        "correct: predictions with a numeric label",
        correct(
            f["hierarchy"], _jsonl(d / "nlab.jsonl", [dict(r, brand=7) if r["indoml_id"] == 2 else r for r in labs])
        ),
        [out],
    )

    def vote(*args):
        return ["vote", "--hierarchy", f["hierarchy"], "--out", out, *args]

    yield (
        "vote: non-integer ids",
        vote(
            "a=" + _jsonl(d / "fid.jsonl", [dict(r, indoml_id=r["indoml_id"] + 0.5) for r in labs]),
            "b=" + f["predictions2"],
        ),
        [out],
    )
    yield (
        "vote: --accuracy not JSON",
        vote("--accuracy", str(d / "broken.json"), "a=" + f["predictions"], "b=" + f["predictions2"]),
        [out],
    )
    yield (
        "vote: --accuracy lacks a model",
        vote(
            "--accuracy",
            write_json(d / "acc1.json", {"a": dict.fromkeys(LEVELS, 0.5)}),
            "a=" + f["predictions"],
            "b=" + f["predictions2"],
        ),
        [out],
    )
    yield (
        "vote: --accuracy lacks a level",
        vote(
            "--accuracy",
            write_json(d / "acc2.json", {"a": dict.fromkeys(LEVELS[:3], 0.5), "b": dict.fromkeys(LEVELS, 0.5)}),
            "a=" + f["predictions"],
            "b=" + f["predictions2"],
        ),
        [out],
    )
    yield (
        "vote: --accuracy value a string",
        vote(
            "--accuracy",
            write_json(d / "acc3.json", {"a": dict.fromkeys(LEVELS, "high"), "b": dict.fromkeys(LEVELS, 0.5)}),
            "a=" + f["predictions"],
            "b=" + f["predictions2"],
        ),
        [out],
    )
    yield (
        "vote: --accuracy a list",
        vote("--accuracy", write_json(d / "acc4.json", [1, 2]), "a=" + f["predictions"], "b=" + f["predictions2"]),
        [out],
    )
    yield (
        "vote: --weighted without --accuracy",
        vote("--weighted", "a=" + f["predictions"], "b=" + f["predictions2"]),
        [out],
    )
    (d / "x").mkdir(exist_ok=True)
    same_stem = _jsonl(d / "x" / "pred.jsonl", labs)
    yield "vote: two files with the same stem", vote(f["predictions"], same_stem), [out]
    yield "vote: empty name", vote("=" + f["predictions"], "b=" + f["predictions2"]), [out]
    yield (
        "vote: ids differ between files",
        vote("a=" + f["predictions"], "b=" + _jsonl(d / "fewer.jsonl", labs[:-1])),
        [out],
    )
    yield "vote: duplicate id", vote("a=" + f["predictions"], "b=" + _jsonl(d / "dup.jsonl", labs + labs[:1])), [out]

    mout = str(d / "m" / "metrics.json")

    def evaluate(*preds, truth=f["rows"]):
        return ["evaluate", "--truth", truth, "--out", mout, *preds]

    yield "evaluate: repeated prediction id", evaluate(_jsonl(d / "rep.jsonl", labs + labs[:1])), [mout]
    yield "evaluate: a truth row without prediction", evaluate(_jsonl(d / "miss.jsonl", labs[1:])), [mout]
    yield "evaluate: zero prediction rows", evaluate(_raw_jsonl(d / "zero.jsonl", [])), [mout]
    yield "evaluate: zero prediction rows (parquet)", evaluate(_zero_parquet(d)), [mout]
    yield (
        "evaluate: NaN id",
        evaluate(
            _raw_jsonl(
                d / "nan.jsonl",
                [json.dumps(r) for r in labs[1:]]
                + ['{"indoml_id": NaN, "supergroup": "a", "group": "b", "module": "c", "brand": "d"}'],
            )
        ),
        [mout],
    )
    yield (
        "evaluate: string ids",
        evaluate(_jsonl(d / "sids.jsonl", [dict(r, indoml_id=f"#{r['indoml_id']}") for r in labs])),
        [mout],
    )
    yield (
        "evaluate: model:stage name twice",
        evaluate("m:raw=" + f["predictions"], "m:raw=" + f["predictions2"]),
        [mout],
    )
    yield "evaluate: truth unlabelled", evaluate(f["predictions"], truth=f["features_path"]), [mout]

    run = d / "run"
    run.mkdir()

    def predict(models=run):
        return ["predict", "--models", str(models), "--input", f["features_path"], "--out", out]

    yield "predict: no manifest", predict(d / "nowhere"), [out]
    (run / "manifest.json").write_text("{not json")
    yield "predict: malformed manifest", predict(), [out]
    manifest = {
        "labelers": {"a": {"kind": "charngram"}},
        "namer": {"templates": {}, "generate": {}},
        "correction": {"method": "topdown", "stage": "corrected"},
        "ensemble": {"members": {"e": ["a"]}, "submit": "e"},
        "hierarchy": "data/hierarchy.json",
        "level_accuracy": "ensemble/level_accuracy.corrected.json",
    }
    write_json(run / "manifest.json", {k: v for k, v in manifest.items() if k != "correction"})
    yield "predict: manifest missing a key", predict(), [out]
    (run / "data").mkdir()
    (run / "data" / "hierarchy.json").write_text(Path(f["hierarchy"]).read_text())
    write_json(run / "manifest.json", manifest)
    yield "predict: missing level-accuracy file", predict(), [out]
    (run / "ensemble").mkdir()
    write_json(run / "ensemble" / "level_accuracy.corrected.json", {"b": dict.fromkeys(LEVELS, 0.5)})
    yield "predict: level accuracy lacks a labeler", predict(), [out]
    yield (
        "predict: bad input (empty description)",
        ["predict", "--models", str(run), "--input", features_with(0, description=""), "--out", out],
        [out],
    )

    sout = str(d / "sub" / "s.predict")
    yield (
        "submission: a missing label",
        [
            "submission",
            "--predictions",
            _jsonl(d / "nolab.jsonl", [dict(r, brand=None) if r["indoml_id"] == 5 else r for r in labs]),
            "--out",
            sout,
        ],
        [sout],
    )
    yield (
        "submission: float ids",
        [
            "submission",
            "--predictions",
            _jsonl(d / "fl.jsonl", [dict(r, indoml_id=r["indoml_id"] + 0.5) for r in labs]),
            "--out",
            sout,
        ],
        [sout],
    )

    yield "make-sample: --train 0", ["make-sample", "--out", str(d / "sample0"), "--train", "0"], [str(d / "sample0")]
    yield "make-sample: --test -5", ["make-sample", "--out", str(d / "sample1"), "--test", "-5"], [str(d / "sample1")]
    yield (
        "make-sample: --out names a file",
        ["make-sample", "--out", str(d / "a_file"), "--train", "5", "--test", "2"],
        [],
    )


def _zero_parquet(d: Path) -> str:
    path = d / "zero.parquet"
    pd.DataFrame(
        {"indoml_id": pd.Series([], dtype="int64"), **{lv: pd.Series([], dtype=object) for lv in LEVELS}}
    ).to_parquet(path)
    return str(path)


def run_probe(argv) -> tuple[int, str]:
    from prodcat.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = main(["-q", *argv])
        except SystemExit as exc:  # argparse usage errors
            status = exc.code if isinstance(exc.code, int) else 1
            if not isinstance(exc.code, int):
                print(exc.code, file=sys.stderr)
        except Exception as exc:  # what a user sees as a traceback, exit 1
            status = 1
            print("Traceback: " + "".join(traceback.format_exception_only(exc)).strip(), file=sys.stderr)
    lines = [line for line in err.getvalue().splitlines() if line.strip() and not line.startswith("usage:")]
    return status, (lines[-1] if lines else "")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the Markdown table here as well")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        f = fixtures(d)
        for label, argv_, outputs in probes(d, f):
            status, message = run_probe(argv_)
            left = [Path(p).name for p in outputs if Path(p).exists()]
            tmp_left = [p.name for p in d.rglob("*.tmp")]
            rows.append(
                (label, status, message.replace(tmp, "$TMP").replace("|", "\\|"), ", ".join(left + tmp_left) or "-")
            )
            for p in outputs:  # a probe must not see the previous one's output
                if Path(p).is_file():
                    Path(p).unlink()
    table = ["| input | exit | message | left behind |", "|---|---|---|---|"]
    table += [f"| {label} | {status} | {message[:220]} | {left} |" for label, status, message, left in rows]
    text = "\n".join(table) + "\n"
    print(text)
    counts = pd.Series([r[1] for r in rows]).value_counts().sort_index()
    print(f"{len(rows)} probes; exit status counts: {counts.to_dict()}")
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where the wall time of each `prodcat` command goes: import, read + validate, work, write.

Writes synthetic inputs at the IndoML test size (184,664 rows) over a real label space — one
labeler's damaged predictions (`synthetic_predictions.corrupt_paths`), three models' predictions
for the vote (`vote.synthetic_predictions`) and labelled truth rows — and runs each command in a
fresh Python process, once per source tree given with --src (e.g. the main checkout and a branch),
interleaved, `--repeats` times. Each run reports:

- wall: the whole process, from the parent (interpreter start-up included);
- import: `prodcat.cli` and the modules the command imports;
- read + validate: `Hierarchy.from_json`, `io.read_predictions`, `io.read_rows`,
  `io.read_level_accuracy`; of which validate: the hierarchy's schema check (`hierarchy._validate`)
  and the table checks (`io.validate_predictions`, `io.validate_features`, `io.validate_labels`);
- write: `io.write_parquet` / `io.write_json`;
- work: the rest of the command.

The table shows the run with the least wall time per command and tree (the machine may be shared:
the minimum is the least disturbed run). Commands:

    python bench/command_costs.py --hierarchy ../shared/indoml2024/hierarchy.json \
        [--src before=/path/to/main/src --src after=src] [--rows 184664] [--repeats 5] [--out costs.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent

# the modules each command imports lazily (inside its cli function), counted as import time
COMMAND_MODULES = {
    "correct": ["prodcat.data.hierarchy", "prodcat.data.io", "prodcat.ensemble.correct"],
    "vote": ["prodcat.data.hierarchy", "prodcat.data.io", "prodcat.ensemble.vote"],
    "evaluate": ["prodcat.data.hierarchy", "prodcat.data.io", "prodcat.report.metrics"],
    "submission": ["prodcat.data.io", "prodcat.data.submission"],
}
READS = {  # (module, attribute): phase
    ("prodcat.data.hierarchy", "Hierarchy.from_json"): "read",
    ("prodcat.data.io", "read_predictions"): "read",
    ("prodcat.data.io", "read_rows"): "read",
    ("prodcat.data.io", "read_level_accuracy"): "read",
    ("prodcat.data.hierarchy", "_validate"): "validate",
    ("prodcat.data.io", "validate_predictions"): "validate",
    ("prodcat.data.io", "validate_features"): "validate",
    ("prodcat.data.io", "validate_labels"): "validate",
    ("prodcat.data.io", "write_parquet"): "write",
    ("prodcat.data.io", "write_json"): "write",
}
PHASES = ("import", "read", "validate", "work", "write")


# ---- the child: one command, timed by phase ------------------------------------------------------
def child(argv: list[str]) -> None:
    """Run `prodcat ARGV` in this process and print its phase times as JSON (last line)."""
    import importlib

    start = time.perf_counter()
    cli = importlib.import_module("prodcat.cli")
    for module in COMMAND_MODULES[argv[0]]:
        importlib.import_module(module)
    imported = time.perf_counter()

    spent = dict.fromkeys(PHASES[1:], 0.0)
    depth = {"read": 0}

    def timed(function, phase):
        def wrapper(*args, **kwargs):
            outermost = phase != "read" or depth["read"] == 0
            depth["read"] += phase == "read"
            t = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                depth["read"] -= phase == "read"
                if outermost:  # read_rows → ingest → … is one read
                    spent[phase] += time.perf_counter() - t

        return wrapper

    for (module_name, attribute), phase in READS.items():
        owner = importlib.import_module(module_name)
        *parents, name = attribute.split(".")
        for parent in parents:
            owner = getattr(owner, parent)
        original = owner.__dict__[name]
        if isinstance(original, classmethod):
            setattr(owner, name, classmethod(timed(original.__func__, phase)))
        else:
            setattr(owner, name, timed(original, phase))

    t = time.perf_counter()
    status = cli.main(["-q", *argv])
    total = time.perf_counter() - t
    if status != 0:
        sys.exit(f"prodcat {' '.join(argv)} exited with {status}")
    spent["import"] = imported - start
    # validate runs inside read: read is reported as "read + validate", validate as its part
    spent["work"] = total - spent["read"] - spent["write"]
    print(json.dumps(spent))


# ---- the parent: inputs, runs, table --------------------------------------------------------------
def write_inputs(hierarchy_path: Path, rows: int, seed: int, d: Path) -> dict[str, Path]:
    sys.path.insert(0, str(REPO / "src"))
    sys.path.insert(0, str(BENCH))
    import numpy as np
    from synthetic_predictions import corrupt_paths
    from vote import synthetic_predictions

    from prodcat import LEVELS
    from prodcat.data.hierarchy import Hierarchy

    hierarchy = Hierarchy.from_json(hierarchy_path)
    truth, predictions = corrupt_paths(hierarchy, rows, seed)
    paths = {"hierarchy": hierarchy_path, "predictions": d / "predictions.parquet"}
    predictions.to_parquet(paths["predictions"], index=False)
    voters, accuracy = synthetic_predictions(hierarchy, rows, 3, seed)
    for k, frame in enumerate(voters):
        paths[f"vote{k}"] = d / f"model{k}.parquet"
        frame.to_parquet(paths[f"vote{k}"], index=False)
    paths["accuracy"] = d / "accuracy.json"
    paths["accuracy"].write_text(json.dumps(accuracy))
    rng = np.random.default_rng(seed)
    truth.insert(1, "description", [f"item {i}" for i in range(rows)])
    truth.insert(2, "retailer", rng.choice(["shop a", "shop b", "shop c"], rows))
    truth.insert(3, "price", rng.uniform(0.5, 50, rows).round(2))
    paths["truth"] = d / "truth.parquet"
    truth[["indoml_id", "description", "retailer", "price", *LEVELS]].to_parquet(paths["truth"], index=False)
    return paths


def commands(paths: dict[str, Path], out: Path) -> dict[str, list[str]]:
    h, p = ["--hierarchy", str(paths["hierarchy"])], str(paths["predictions"])
    votes = [f"model{k}={paths[f'vote{k}']}" for k in range(3)]
    weights = ["--accuracy", str(paths["accuracy"]), "--weighted"]
    return {
        "correct topdown": ["correct", *h, "--predictions", p, "--out", str(out / "c.parquet")],
        "correct joint": ["correct", *h, "--predictions", p, "--out", str(out / "j.parquet"), "--method", "joint"],
        "vote of 3": ["vote", *h, "--out", str(out / "v.parquet"), *votes],
        "vote of 3, weighted": ["vote", *h, "--out", str(out / "w.parquet"), *weights, *votes],
        "evaluate (+ majority baseline)": [
            "evaluate",
            "--truth",
            str(paths["truth"]),
            *h,
            "--out",
            str(out / "m.json"),
            p,
        ],
        "submission": ["submission", "--predictions", str(paths["truth"]), "--out", str(out / "s.predict")],
    }


def run_once(src: str, argv: list[str]) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": src}
    t = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", *argv], env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - t
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed under {src}:\n{done.stderr[-2000:]}")
    return {"wall": wall, **json.loads(done.stdout.strip().splitlines()[-1])}


def markdown(results: dict, rows: int, repeats: int) -> str:
    lines = [
        f"{rows:,} rows; fastest of {repeats} runs per command and tree (seconds, wall clock); "
        f"{os.cpu_count()} CPUs, 1-min load average {os.getloadavg()[0]:.1f} at the end.",
        "",
        "| command | tree | wall | import | read + validate | of which validate | work | write | validate / wall |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for command, trees in results.items():
        for tree, runs in trees.items():
            best = min(runs, key=lambda r: r["wall"])
            lines.append(
                f"| {command} | {tree} | {best['wall']:.2f} | {best['import']:.2f} | {best['read']:.2f} | "
                f"{best['validate']:.2f} | {best['work']:.2f} | {best['write']:.2f} | "
                f"{100 * best['validate'] / best['wall']:.0f} % |"
            )
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hierarchy", required=True, type=Path, help="hierarchy JSON (ours or the nested IndoML form)")
    parser.add_argument(
        "--src", action="append", metavar="NAME=PATH", help="a source tree to time (default: this checkout's src)"
    )
    parser.add_argument("--rows", type=int, default=184_664)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", action="append", help="time only these commands (by their table name)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write every run's times as JSON here")
    args = parser.parse_args(argv)
    trees = dict(item.split("=", 1) for item in (args.src or [f"this={REPO / 'src'}"]))

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        paths = write_inputs(args.hierarchy.resolve(), args.rows, args.seed, d)
        todo = {k: v for k, v in commands(paths, d / "out").items() if not args.only or k in args.only}
        results = {command: {tree: [] for tree in trees} for command in todo}
        for _ in range(args.repeats):  # interleaved, so that both trees meet the same load
            for command, argv_ in todo.items():
                for tree, src in trees.items():
                    results[command][tree].append(run_once(str(Path(src).resolve()), argv_))
    text = markdown(results, args.rows, args.repeats)
    print(text)
    if args.out:
        args.out.write_text(json.dumps({"rows": args.rows, "repeats": args.repeats, "runs": results}, indent=2))
    return results


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2:])
    else:
        main()

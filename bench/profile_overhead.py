"""What profiling (config `profile`) adds to the default run.

Runs the whole default DAG twice from empty results folders, one after the other: with profiling
on (config.yaml) and off (`profile: {enabled: false}`), then prints the wall time of each run, the
load average around it (the machine may be shared), the training rules' benchmark seconds, and
each model's profiling cost as measured inside the run (train_summary.json: the recording's cost
against the run's unprofiled steps, plus the reading and writing after training).

    .venv/bin/python bench/profile_overhead.py [--cores 2] [--dir /tmp/prodcat-profile-overhead] [--only on|off]

An on/off difference smaller than the run-to-run noise of a shared machine says little; the
per-model costs are measured within one run and do not depend on the other.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def run(results: Path, cores: int, extra: list[str]) -> dict:
    if results.exists():
        shutil.rmtree(results)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    load_before = os.getloadavg()
    started = time.time()
    with open(f"{results}.log", "w") as log:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "snakemake",
                "--cores",
                str(cores),
                "--resources",
                "gpu=1",
                *extra,
                "--config",
                f"results={results}",
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=True,
        )
    return {"wall_s": time.time() - started, "load_before": load_before, "load_after": os.getloadavg()}


def training_rules(results: Path) -> pd.DataFrame:
    rows = []
    for bench in sorted([*results.glob("benchmarks/train_labeler/*.tsv"), results / "benchmarks/train_namer.tsv"]):
        model = "namer" if bench.name == "train_namer.tsv" else bench.stem
        seconds = float(pd.read_csv(bench, sep="\t")["s"].iloc[0])
        profile = json.loads((results / "models" / model / "train_summary.json").read_text()).get("profile") or {}
        rows.append(
            {
                "model": model,
                "rule_s": seconds,
                "profile_in_loop_s": profile.get("in_loop_seconds"),
                "profile_after_s": profile.get("after_training_seconds"),
                "profile_total_s": profile.get("overhead_seconds"),
                "self_cpu_ms_per_step": profile.get("self_cpu_ms_per_step"),
            }
        )
    return pd.DataFrame(rows)


def all_rules_seconds(results: Path) -> float:
    return sum(float(pd.read_csv(b, sep="\t")["s"].iloc[0]) for b in results.glob("benchmarks/**/*.tsv"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/prodcat-profile-overhead"))
    parser.add_argument("--only", choices=["on", "off"])
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    off_config = args.dir / "profile-off.yaml"
    off_config.write_text("profile: {enabled: false}\n")
    modes = {"on": [], "off": ["--configfile", str(off_config)]}
    for mode, extra in modes.items():
        if args.only in (None, mode):
            timing = run(args.dir / mode, args.cores, extra)
            (args.dir / f"{mode}.timing.json").write_text(json.dumps(timing))
    for mode in modes:
        timing_path = args.dir / f"{mode}.timing.json"
        if not timing_path.exists():
            continue
        timing, results = json.loads(timing_path.read_text()), args.dir / mode
        print(
            f"profiling {mode}: {timing['wall_s']:.1f} s wall (--cores {args.cores}); load average before "
            f"{'/'.join(f'{x:.1f}' for x in timing['load_before'])}, after "
            f"{'/'.join(f'{x:.1f}' for x in timing['load_after'])}; all rules' benchmarks "
            f"{all_rules_seconds(results):.1f} s"
        )
        table = training_rules(results)
        print(table.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
        if mode == "on" and table["profile_total_s"].notna().any():
            cost = table["profile_total_s"].sum()
            print(
                f"profiling cost measured in the run: {cost:.1f} s, {100 * cost / timing['wall_s']:.1f} % of "
                "its wall time"
            )


if __name__ == "__main__":
    main()

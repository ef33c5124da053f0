"""How many sbatch submissions a DAG makes under profiles/slurm, from a dry run.

Every job of a rule that is not a localrule is one submission, except that the jobs of one group
job are one submission together. The dry run prints a group job as `Group job NAME ...` followed by
its (indented) member jobs; an individual job is an unindented `rule NAME:` block. Localrules are
read from the `localrules:` blocks of the Snakefile and rules/*.smk.

    python bench/cluster_jobs.py [--configfile configs/paper.yaml] [--fake-data]

--fake-data points data.* at empty files in a temporary folder: a dry run needs the inputs to exist,
and the paper's competition files are not in this repository. Nothing is run and results/ is not
touched (results go to a temporary folder).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def localrules() -> set[str]:
    names = set()
    for path in [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]:
        for block in re.findall(r"^localrules:\s*\n((?:[ \t]+\S.*\n?)+)", path.read_text(), flags=re.M):
            names |= {name.strip() for name in re.split(r"[,\s]+", block) if name.strip()}
    return names


def submissions(dry_run: str, local: set[str]) -> tuple[Counter, int]:
    """(individual sbatch jobs per rule, group jobs) in a dry run's output."""
    per_rule = Counter(m for m in re.findall(r"^rule (\w+):", dry_run, flags=re.M) if m not in local)
    groups = len(re.findall(r"Group job \S+", dry_run))
    return per_rule, groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configfile", action="append", default=[])
    parser.add_argument("--fake-data", action="store_true")
    parser.add_argument("--profile", default="profiles/slurm")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        overlay = {"results": f"{tmp}/results"}
        if args.fake_data:
            data = {}
            for key in ("train_features", "train_labels", "test_features"):
                path = Path(tmp) / f"{key}.jsonl"
                path.touch()
                data[key] = str(path)
            overlay["data"] = data
        overlay_file = Path(tmp) / "overlay.yaml"
        overlay_file.write_text(yaml.safe_dump(overlay))
        env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "snakemake",
                "-n",
                "--workflow-profile",
                args.profile,
                "--configfile",
                *args.configfile,
                str(overlay_file),
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
        )
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-4000:])
    per_rule, groups = submissions(proc.stdout + proc.stderr, localrules())
    total = sum(per_rule.values()) + groups
    print(f"config: {' + '.join(['config.yaml', *args.configfile])}, profile {args.profile}")
    print(f"sbatch submissions: {total} ({sum(per_rule.values())} individual jobs, {groups} group jobs)")
    for rule, count in sorted(per_rule.items(), key=lambda item: (-item[1], item[0])):
        print(f"  {rule:<20} {count}")


if __name__ == "__main__":
    main()

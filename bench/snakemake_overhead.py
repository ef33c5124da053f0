"""Snakemake's own cost per job: how much wall time a job adds when the job itself does nothing.

Generates a workflow of N independent `touch` jobs (plus `all`) in a temporary folder, runs it
from scratch for several N, and fits wall time = start-up + N x per-job overhead. The per-job
figure is what each rule of the real DAG pays on top of its work (scheduling, one shell, output
checks, metadata), so it tells whether a rule is worth splitting.

    python bench/snakemake_overhead.py [--jobs 1 50 200] [--cores 1 2] [--repeats 1]

Prints a Markdown table. Needs only Snakemake (run it with the project's .venv).
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SNAKEFILE = """\
N = int(config["count"])


rule all:
    input:
        expand("out/{i}.txt", i=range(N)),


rule touch:
    output:
        "out/{i}.txt",
    shell:
        "touch {output}"
"""


def time_run(workdir: Path, n: int, cores: int) -> float:
    """Wall seconds of one from-scratch run of n trivial jobs."""
    subprocess.run(["rm", "-rf", str(workdir / "out"), str(workdir / ".snakemake")], check=True)
    start = time.perf_counter()
    # Run inside the folder, so that no workflow profile (e.g. profiles/default) is picked up.
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", str(cores), "--config", f"count={n}"],
        cwd=workdir,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"snakemake failed:\n{proc.stderr[-3000:]}")
    elapsed = time.perf_counter() - start
    assert len(list((workdir / "out").iterdir())) == n
    return elapsed


def fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least-squares intercept and slope of wall time against job count."""
    mean_n = sum(n for n, _ in points) / len(points)
    mean_t = sum(t for _, t in points) / len(points)
    var = sum((n - mean_n) ** 2 for n, _ in points)
    slope = sum((n - mean_n) * (t - mean_t) for n, t in points) / var
    return mean_t - slope * mean_n, slope


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 50, 200], help="job counts N to time")
    parser.add_argument("--cores", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=1, help="runs per (N, cores); the fastest counts")
    args = parser.parse_args(argv)
    if len(set(args.jobs)) < 2:
        parser.error("--jobs needs at least two different counts to fit a slope")

    with tempfile.TemporaryDirectory(prefix="snakemake-overhead-") as tmp:
        workdir = Path(tmp)
        (workdir / "Snakefile").write_text(SNAKEFILE)
        print("| cores | jobs N | wall s | s per job (wall / N) |")
        print("|---:|---:|---:|---:|")
        fits = {}
        for cores in args.cores:
            points = []
            for n in args.jobs:
                wall = min(time_run(workdir, n, cores) for _ in range(args.repeats))
                points.append((n, wall))
                print(f"| {cores} | {n} | {wall:.2f} | {wall / n:.3f} |")
            fits[cores] = fit(points)
        print()
        print("| cores | start-up s (intercept) | overhead per job ms (slope) |")
        print("|---:|---:|---:|")
        for cores, (intercept, slope) in fits.items():
            print(f"| {cores} | {intercept:.2f} | {slope * 1000:.0f} |")


if __name__ == "__main__":
    main()

import json
from pathlib import Path

import pandas as pd
import pytest

from prodcat import LEVELS

REPO = Path(__file__).resolve().parents[1]


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for a module (`pytestmark = pytest.mark.usefixtures("one_torch_thread")`).

    On a shared 2-core machine several torch threads spin against each other (a 64-wide linear
    layer took 40x longer with 2 threads than with 1); tiny models are far too small to gain."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def labelled_rows() -> pd.DataFrame:
    """A small labelled table: 3 paths with several rows each, plus a singleton path."""
    paths = [
        ("dairy & eggs", "yoghurts", "yoghurt drinks", "glenmoor"),
        ("dairy & eggs", "yoghurts", "spoonable yoghurt", "glenmoor"),
        ("dairy & eggs", "cheese", "hard cheese", "receipt all"),
        ("snacks", "crisps", "potato crisps", "crunchco"),
    ]
    counts = [20, 11, 9, 1]
    records, i = [], 0
    for path, count in zip(paths, counts):
        for k in range(count):
            records.append(
                {
                    "indoml_id": 1000 + i,
                    "description": f"{path[3][:4]} {path[2][:5]} {k}",
                    "retailer": f"shop{i % 3}",
                    "price": 1.0 + k,
                    **dict(zip(LEVELS, path)),
                }
            )
            i += 1
    return pd.DataFrame(records)


def run_snakemake(*args, check=True, timeout=3600, env=None):
    """snakemake as a user runs it, from the repository, with this environment's interpreter (the
    rules run the package with it: no venv bin on PATH needed); `env` replaces the process
    environment."""
    import os
    import subprocess
    import sys

    env = dict(env if env is not None else os.environ)
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


@pytest.fixture(scope="session")
def finished_test_run(tmp_path_factory):
    """One run of the whole .test DAG, shared by the workflow and scheduling tests: --cores 4 so
    that independent jobs can run side by side, --resources gpu=1 as a one-GPU user runs it.
    Returns (results folder, Snakemake's log of the run)."""
    results = tmp_path_factory.mktemp("test-run") / "results"
    proc = run_snakemake(
        "--cores", "4", "--resources", "gpu=1", "--configfile", ".test/config.yaml", "--config", f"results={results}"
    )
    return results, proc.stderr

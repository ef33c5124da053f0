"""The Snakefile and rules/*.smk are formatted as snakefmt writes them, and the Python code (src,
scripts, tests, bench) passes ruff's lint and is formatted as ruff writes it; both tools pinned in
requirements.txt, configured in pyproject.toml. `make fmt` fixes what it can, `make lint` checks."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_snakefiles_are_snakefmt_clean():
    files = ["Snakefile", *sorted(str(p.relative_to(REPO)) for p in (REPO / "rules").glob("*.smk"))]
    assert len(files) >= 7
    snakefmt = Path(sys.executable).parent / "snakefmt"
    proc = subprocess.run(
        [str(snakefmt), "--check", "--compact-diff", *files], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"run `snakefmt Snakefile rules/`:\n{proc.stdout[-5000:]}{proc.stderr[-3000:]}"


PYTHON_CODE = ["src", "scripts", "tests", "bench"]


def ruff(*args):
    ruff = Path(sys.executable).parent / "ruff"
    return subprocess.run([str(ruff), *args, *PYTHON_CODE], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_python_code_is_ruff_clean():
    proc = ruff("check", "--output-format", "concise")
    assert proc.returncode == 0, f"run `make fmt` (ruff check --fix), then fix the rest:\n{proc.stdout[-5000:]}"


def test_python_code_is_ruff_formatted():
    proc = ruff("format", "--check")
    assert proc.returncode == 0, f"run `make fmt` (ruff format):\n{proc.stdout[-5000:]}{proc.stderr[-3000:]}"

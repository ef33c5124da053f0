"""The Snakefile and rules/*.smk are formatted as snakefmt (pinned in requirements.txt, configured
in pyproject.toml) writes them: `snakefmt Snakefile rules/` fixes a failure."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_snakefiles_are_snakefmt_clean():
    files = ["Snakefile", *sorted(str(p.relative_to(REPO)) for p in (REPO / "rules").glob("*.smk"))]
    assert len(files) >= 7
    snakefmt = Path(sys.executable).parent / "snakefmt"
    proc = subprocess.run([str(snakefmt), "--check", "--compact-diff", *files], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"run `snakefmt Snakefile rules/`:\n{proc.stdout[-5000:]}{proc.stderr[-3000:]}"

"""Readable rule logs: training logs one line every logging_steps steps, loops log a line at most
every few seconds, and nothing draws a `\\r` progress bar."""

import logging
import re

import pandas as pd
import pytest
from tests.test_seq2seq import DIMS, PARAMS

from prodcat import LEVELS
from prodcat.labelers.seq2seq import predict_seq2seq, train_seq2seq
from prodcat.runtime.progress import log_progress
from prodcat.standins.tiny_seq2seq import build_tiny_byt5

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def rows(n):
    paths = [("sg a", "g x", "m 1", "b c"), ("sg b", "g y", "m 2", "receipt all")]
    return pd.DataFrame(
        [
            {
                "indoml_id": i,
                "description": f"item {i % 2}",
                "retailer": "r",
                "price": 1.0,
                **dict(zip(LEVELS, paths[i % 2])),
            }
            for i in range(n)
        ]
    )


def test_log_progress_logs_lines_at_most_every_interval(caplog, monkeypatch):
    clock = iter([0.0, 1.0, 31.0, 32.0, 70.0, 71.0])
    monkeypatch.setattr("prodcat.runtime.progress.time.monotonic", lambda: next(clock))
    with caplog.at_level(logging.INFO, logger="prodcat.runtime.progress"):
        assert list(log_progress(range(4), "predict")) == [0, 1, 2, 3]
    messages = [record.getMessage() for record in caplog.records]
    # items end at t=1, 31, 32, 70: lines after the 2nd (30 s after the start) and the 4th, then the total
    assert messages[0].startswith("predict: 2/4 batch") and messages[1].startswith("predict: 4/4 batch")
    assert messages[2] == "predict: 4 batch in 71.0 s"


@pytest.fixture
def restores_progress_bars(monkeypatch):
    """logging_to switches the hub's and transformers' bars off for the process: on again after."""
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    yield
    from huggingface_hub.utils import enable_progress_bars
    from transformers.utils import logging as transformers_logging

    enable_progress_bars()
    transformers_logging.enable_progress_bar()


def test_rule_log_of_training_has_a_line_every_logging_steps_and_no_bars(tmp_path, restores_progress_bars):
    """What a script rule's log file gets (workflow.logging_to around the same calls)."""
    from prodcat.workflow import logging_to

    base = build_tiny_byt5(tmp_path / "byt5", DIMS)
    log_file = tmp_path / "train.log"
    with logging_to(log_file):
        train_seq2seq(base, rows(24), rows(8), tmp_path / "model", tmp_path / "ckpt", PARAMS)
        predict_seq2seq(
            tmp_path / "model", rows(6), {"batch_size": 4, "num_beams": 1, "max_new_tokens": 8, "max_source_length": 32}
        )
    text = log_file.read_text()
    assert "\r" not in text and "it/s" not in text, text
    # 24 rows in batches of 8 for 3 epochs: 9 steps; a training log at the first step and every 2nd
    assert [int(step) for step in re.findall(r"prodcat.runtime.progress: step (\d+)/9: \{\"loss\"", text)] == [
        1,
        2,
        4,
        6,
        8,
    ]
    assert (
        len(re.findall(r"prodcat.runtime.progress: step \d+/9: \{\"eval_loss\"", text)) == 3
    )  # an evaluation an epoch
    assert "prodcat.runtime.progress: predict: 2 batch in" in text


def test_rule_log_gets_what_c_code_writes_to_file_descriptors_1_and_2(tmp_path):
    """torch.profiler's C++ layer (kineto's `USDT ... profiler_start` lines) writes to the process's
    fd 2, past sys.stderr: logging_to redirects the descriptors too, and gives them back after."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import prodcat

    log_file = tmp_path / "logs" / "rule.log"
    script = (
        "import os, sys\n"
        "from prodcat.workflow import logging_to\n"
        "print('console before', flush=True)\n"
        f"with logging_to({str(log_file)!r}):\n"
        "    print('python stdout')\n"
        "    print('python stderr', file=sys.stderr)\n"
        "    os.write(1, b'fd 1\\n')\n"
        "    os.write(2, b'fd 2\\n')\n"
        "os.write(2, b'console after 2\\n')\n"
        "print('console after 1')\n"
    )
    src = str(Path(prodcat.__file__).parents[1])  # the package these tests import
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
    text = log_file.read_text()
    assert text.splitlines() == ["python stdout", "python stderr", "fd 1", "fd 2"], text
    assert proc.stdout.splitlines() == ["console before", "console after 1"]
    assert proc.stderr.splitlines() == ["console after 2"]

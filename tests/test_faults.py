"""Faults leave nothing wrong (issue 25): a killed or terminated training resumes to the same model,
a checkpoint of another base model is not resumed, a damaged checkpoint is set aside, damaged model
files and a full disk are said plainly (exit 2, the file named), nothing half-written is left.

The kill tests run the labeler's training in a subprocess and send it a real SIGKILL / SIGTERM
while it waits after its first checkpoint; the disk-full tests write to a 5 MB tmpfs (needs root:
skipped with the reason elsewhere)."""

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.conftest import REPO
from tests.test_seq2seq import DIMS, PARAMS, KillAfterFirstSave, rows

from prodcat.cli import main
from prodcat.labelers.seq2seq import _run_signature, load_trained_model, train_seq2seq
from prodcat.runtime.checkpoints import SET_ASIDE_PREFIX, last_checkpoint_of_run
from prodcat.runtime.errors import InputError, OutputError
from prodcat.standins.tiny_seq2seq import build_tiny_byt5

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# The training of tests/test_seq2seq.py in a process of its own; with a marker path it writes the
# marker after its first checkpoint and waits there to be killed.
TRAIN_SCRIPT = """
import sys, time
import torch
torch.set_num_threads(1)
from transformers import TrainerCallback
from tests.test_seq2seq import PARAMS, rows
from prodcat.labelers.seq2seq import train_seq2seq
base, out, ckpt, marker = sys.argv[1:5]
class WaitAfterFirstSave(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        open(marker, "w").write(str(state.global_step))
        time.sleep(600)
train_seq2seq(base, rows(), rows(8), out, ckpt, PARAMS, extra_callbacks=[WaitAfterFirstSave()] if marker != "-" else [])
"""


def train_in_subprocess(base, out, ckpt, marker="-"):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    return subprocess.Popen(
        [sys.executable, "-c", TRAIN_SCRIPT, str(base), str(out), str(ckpt), str(marker)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finished(proc, timeout=300):
    output, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, output[-4000:]
    return output


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return build_tiny_byt5(tmp_path_factory.mktemp("base") / "byt5", DIMS, seed=0)


@pytest.fixture
def uninterrupted(base, tmp_path):
    """The weights of a training that nothing interrupted (here, on one thread as the subprocesses)."""
    train_seq2seq(base, rows(), rows(8), tmp_path / "uninterrupted", tmp_path / "uninterrupted-ckpt", PARAMS)
    return (tmp_path / "uninterrupted" / "model.safetensors").read_bytes()


# ---- kill, terminate, resume -------------------------------------------------------------------
def stop_at_next_checkpoint(base, folder, sent):
    """Train until the process's first checkpoint is saved, then send it `sent`."""
    marker = folder / f"saved-{sent}"
    proc = train_in_subprocess(base, folder / "model", folder / "ckpt", marker)
    deadline = time.time() + 240
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()[0][-4000:]
        assert time.time() < deadline, "no checkpoint within 240 s"
        time.sleep(0.2)
    proc.send_signal(sent)
    proc.communicate(timeout=60)
    assert proc.returncode == -sent, f"ended by {proc.returncode}, not by {sent!r}"
    assert not (folder / "model" / "model.safetensors").exists()
    return int(marker.read_text())


@pytest.mark.slow
def test_a_terminated_then_killed_training_resumes_to_the_same_model(base, uninterrupted, tmp_path):
    """SIGTERM (Snakemake cancelling, a batch time limit) at checkpoint-3, then SIGKILL (out of
    memory, a node lost) at checkpoint-6 of the resumed run, then a rerun: bit-identical weights
    to an uninterrupted run, the training time summed over the three segments."""
    assert stop_at_next_checkpoint(base, tmp_path, signal.SIGTERM) == 3
    assert stop_at_next_checkpoint(base, tmp_path, signal.SIGKILL) == 6
    finished(train_in_subprocess(base, tmp_path / "model", tmp_path / "ckpt"))
    summary = pd.read_json(tmp_path / "model" / "train_summary.json", typ="series")
    assert summary["resumed_from"].endswith("checkpoint-6")
    segments = summary["segments"]
    assert [(s["from_step"], s["to_step"]) for s in segments] == [(0, 3), (3, 6), (6, 9)]
    assert all(s["seconds"] > 0 for s in segments)
    assert summary["trainer_seconds"] == pytest.approx(sum(s["seconds"] for s in segments))
    assert (tmp_path / "model" / "model.safetensors").read_bytes() == uninterrupted, "not bit-identical"


# ---- a changed base model ------------------------------------------------------------------------
def test_a_stand_in_rebuilt_with_another_seed_has_another_signature(base, tmp_path):
    """Issue 25, defect 1: same config.json, same safetensors header, other weights."""
    other = build_tiny_byt5(tmp_path / "byt5-seed1", DIMS, seed=1)
    assert (Path(base) / "config.json").read_bytes() == (other / "config.json").read_bytes()
    frames = [rows(), rows(8)]
    seed0 = _run_signature(base, frames, "description", "text", PARAMS)
    assert seed0 == _run_signature(base, frames, "description", "text", PARAMS)
    assert seed0 != _run_signature(other, frames, "description", "text", PARAMS)


@pytest.mark.slow
def test_checkpoints_of_another_base_model_are_not_resumed(base, tmp_path):
    """The repro: kill at the first checkpoint, rerun on a stand-in built with another seed: it
    trains from scratch, and its model is not the first base model's."""
    with pytest.raises(KeyboardInterrupt):
        train_seq2seq(
            base, rows(), rows(8), tmp_path / "m0", tmp_path / "ckpt", PARAMS, extra_callbacks=[KillAfterFirstSave()]
        )
    assert (tmp_path / "ckpt" / "checkpoint-3").is_dir()
    other = build_tiny_byt5(tmp_path / "byt5-seed1", DIMS, seed=1)
    summary = train_seq2seq(other, rows(), rows(8), tmp_path / "m1", tmp_path / "ckpt", PARAMS)
    assert summary["resumed_from"] is None and summary["global_step"] == 9
    assert [s["from_step"] for s in summary["segments"]] == [0]


# ---- a damaged checkpoint ------------------------------------------------------------------------
@pytest.mark.slow
def test_a_truncated_checkpoint_is_set_aside_and_the_previous_one_resumed(base, tmp_path, caplog):
    class KillAfterSecondSave(KillAfterFirstSave):
        saves = 0

        def on_save(self, args, state, control, **kwargs):
            KillAfterSecondSave.saves += 1
            if KillAfterSecondSave.saves == 2:
                raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        train_seq2seq(
            base, rows(), rows(8), tmp_path / "m", tmp_path / "ckpt", PARAMS, extra_callbacks=[KillAfterSecondSave()]
        )
    state = tmp_path / "ckpt" / "checkpoint-6" / "trainer_state.json"
    truncate(state)  # power lost mid-write
    with caplog.at_level("WARNING", logger="prodcat.runtime.checkpoints"):
        summary = train_seq2seq(base, rows(), rows(8), tmp_path / "m", tmp_path / "ckpt", PARAMS)
    assert summary["resumed_from"].endswith("checkpoint-3") and summary["global_step"] == 9
    assert f"set aside incomplete checkpoint {state.parent} as {SET_ASIDE_PREFIX}checkpoint-6" in caplog.text


def test_an_incomplete_checkpoint_is_logged_when_set_aside(tmp_path, caplog):
    (tmp_path / "checkpoint-4").mkdir()
    (tmp_path / "checkpoint-4" / "trainer_state.json").write_text('{"global_st')
    (tmp_path / "run_signature.txt").write_text("s\n")
    assert last_checkpoint_of_run(tmp_path, "s") is None
    assert "set aside incomplete checkpoint" in caplog.text and "trainer_state.json does not read back" in caplog.text


# ---- damaged model files -------------------------------------------------------------------------
def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_a_truncated_labeler_is_an_input_error_naming_the_file(base, tmp_path):
    model = tmp_path / "byt5"
    shutil.copytree(base, model)
    truncate(model / "model.safetensors")
    with pytest.raises(InputError) as caught:
        load_trained_model(model, "cpu", None)
    message = str(caught.value)
    assert str(model / "model.safetensors") in message and "--forcerun train_labeler" in message
    assert "delete it" in message


def test_a_truncated_charngram_is_an_input_error_naming_the_file(tmp_path):
    from tests.test_charngram import PARAMS as NGRAM_PARAMS
    from tests.test_charngram import make_rows

    from prodcat.data.hierarchy import Hierarchy
    from prodcat.labelers.charngram import CharNgramLabeler, train_charngram

    train = make_rows(5, seed=1)
    train_charngram(train, Hierarchy.from_frame(train), params=NGRAM_PARAMS).save(tmp_path / "model")
    truncate(tmp_path / "model" / "charngram.safetensors")
    with pytest.raises(InputError, match="charngram.safetensors.*--forcerun train_charngram"):
        CharNgramLabeler.load(tmp_path / "model")


@pytest.mark.slow
def test_prodcat_predict_with_a_truncated_model_exits_2_naming_it(finished_test_run, tmp_path, capsys):
    results = tmp_path / "results"
    shutil.copytree(finished_test_run[0], results, ignore=shutil.ignore_patterns("logs", "benchmarks", "checkpoints"))
    weights = results / "models" / "byt5" / "model.safetensors"
    truncate(weights)
    new = tmp_path / "new.jsonl"
    new.write_text('{"indoml_id": 1, "description": "cad 5 pk creme egg", "retailer": "x", "price": 1.0}\n')
    out = tmp_path / "labels.parquet"
    assert main(["predict", "--models", str(results), "--input", str(new), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert str(weights) in error and "--forcerun train_labeler" in error
    assert not out.exists()


# ---- a full disk ---------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    """A 5 MB tmpfs (mounting needs root and a kernel that lets this container mount)."""
    if os.geteuid() != 0:
        pytest.skip("a full disk is simulated on a 5 MB tmpfs, which only root can mount")
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=5m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def big_table(rows_count=400_000):
    rng = np.random.default_rng(0)
    return pd.DataFrame({"indoml_id": np.arange(rows_count), "x": rng.random(rows_count), "y": rng.random(rows_count)})


def test_a_full_disk_names_the_file_and_the_errno_and_leaves_nothing(small_disk):
    from prodcat.data.io import write_parquet

    target = small_disk / "predictions.parquet"
    with pytest.raises(OutputError) as caught:
        write_parquet(big_table(), target)
    assert (
        caught.value.errno == "ENOSPC" and str(target) in str(caught.value) and "free some space" in str(caught.value)
    )
    assert list(small_disk.iterdir()) == [], "nothing half-written"


def test_the_cli_says_a_full_disk_plainly_with_exit_2(small_disk, tmp_path, capsys):
    table = tmp_path / "predictions.parquet"
    big = big_table(200_000)
    big = pd.DataFrame({"indoml_id": big["indoml_id"], "description": [f"row {i} " * 3 for i in big["indoml_id"]]})
    for level in ("supergroup", "group", "module", "brand"):
        big[level] = "x"
    big.to_parquet(table)
    out = small_disk / "submission.jsonl"
    assert main(["submission", "--predictions", str(table), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert f"cannot write file {out}: ENOSPC" in error
    assert list(small_disk.iterdir()) == []


def test_a_profile_that_finds_the_disk_full_says_so(small_disk):
    from tests.test_profiling import run_steps, tiny_step

    from prodcat.runtime.profiling import StepProfiler

    with open(small_disk / "filler", "wb", buffering=0) as filler:  # fill the disk to the last byte
        with pytest.raises(OSError):
            for _ in range(10_000):
                filler.write(b"\0" * 4096)

    profiler = StepProfiler({"skip_first": 0, "warmup": 0, "steps": 2}, small_disk / "model", use_cuda=False)
    run_steps(profiler, 3, tiny_step())
    summary = profiler.finish()
    assert summary["error"] and "No space left on device" in summary["error"]
    assert not (small_disk / "model" / "profile").exists(), "no half-written profile"


def test_errno_of_a_pyarrow_style_error_without_errno():
    from prodcat.runtime.errors import errno_of

    assert errno_of(OSError("Error writing bytes to file. Detail: [errno 28] No space left on device")) == "ENOSPC"
    assert errno_of(OSError(errno.EACCES, "Permission denied")) == "EACCES"

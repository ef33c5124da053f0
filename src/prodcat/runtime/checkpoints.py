"""Resumable training: checkpoints are resumed only by the run they belong to, and only whole.

A run is identified by a signature (a hash of its parameters, what its base model's weights are
and its training data), written next to the checkpoints. A rerun with the same signature continues
from the newest complete checkpoint; any other run discards them first, so that a changed
hyper-parameter or base model never silently continues an old run.

What the weights are (`model_identity`): a hub model's repo id and commit, the stand-in's build
parameters (`STANDIN_FILE`, written by the build), and always the folder's config.json and weight
files by size, safetensors header digest and a digest of `SAMPLED_BLOCKS` blocks spread over the
tensor data. Reading every byte of 16 GB of Llama weights at each job start is not acceptable; the
header and the sampled blocks are (measured in NOTE-faults: ~1 MB read per file). A re-initialised
or retrained model differs in nearly every block, so a different seed or warm-up is noticed even
without its build record.

A checkpoint is complete when its files read back: trainer_state.json parses, every safetensors
file's header and size agree, every torch `.pt`/`.pth` file (optimizer, scheduler, RNG) is a whole
zip archive. An incomplete checkpoint (killed or power lost mid-write) is set aside under
`incomplete-<name>` and logged, and the previous one is resumed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import struct
import time
import zipfile
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)

STANDIN_FILE = "standin_build.json"  # a stand-in's build parameters (prodcat.workflow.build_tiny_model)
SEGMENTS_FILE = "training_segments.json"  # in each checkpoint: the training segments that led to it
SAMPLED_BLOCKS, BLOCK_BYTES = 16, 64 * 1024
SET_ASIDE_PREFIX = "incomplete-"


def weight_file_identity(path) -> dict:
    """Size, header digest and sampled-data digest of one safetensors file (reads ~1 MB)."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        header_length = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
        header = handle.read(min(header_length, max(0, size - 8)))
        data_start = 8 + header_length
        sampled = hashlib.sha256()
        span = max(0, size - data_start)
        for i in range(SAMPLED_BLOCKS if span else 0):
            handle.seek(data_start + (span - min(span, BLOCK_BYTES)) * i // max(1, SAMPLED_BLOCKS - 1))
            sampled.update(handle.read(BLOCK_BYTES))
    return {
        "size": size,
        "header_sha256": hashlib.sha256(head + header).hexdigest(),
        "sampled_sha256": sampled.hexdigest(),
    }


def model_identity(name_or_path) -> dict:
    """What a base model's weights are: for a hub id its repo id and the commit its snapshot
    resolves to; for any folder its build or download record, config and weight files."""
    from prodcat.runtime.hub import COMMIT, SOURCE_FILE, local_model_dir

    identity: dict = {}
    folder = Path(name_or_path)
    if not folder.is_dir():
        folder = local_model_dir(name_or_path)
        identity["hub"] = {"repo_id": str(name_or_path), "commit": folder.name if COMMIT.match(folder.name) else None}
    elif COMMIT.match(folder.name) and folder.parent.name == "snapshots":  # a hub cache snapshot given as a path
        identity["hub"] = {"repo_id": folder.parent.parent.name, "commit": folder.name}
    for record in (SOURCE_FILE, STANDIN_FILE):
        if (folder / record).is_file():
            identity[record] = json.loads((folder / record).read_text())
    identity["config_sha256"] = hashlib.sha256((folder / "config.json").read_bytes()).hexdigest()
    identity["weights"] = {
        str(p.relative_to(folder)): weight_file_identity(p) for p in sorted(folder.rglob("*.safetensors"))
    }
    return identity


def run_signature(settings: dict, base_model_dir, frames: list[pd.DataFrame]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    digest.update(json.dumps(model_identity(base_model_dir), sort_keys=True).encode())
    for frame in frames:
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def checkpoint_problem(checkpoint) -> str | None:
    """Why `checkpoint` cannot be resumed (a file missing or not reading back whole), or None."""
    checkpoint = Path(checkpoint)
    state = checkpoint / "trainer_state.json"
    try:
        if not isinstance(json.loads(state.read_text()).get("global_step"), int):
            return f"{state} has no global_step"
    except (OSError, ValueError, AttributeError) as error:
        return f"{state} does not read back ({error})"
    weights = sorted(checkpoint.glob("*.safetensors"))
    if not weights and not any(checkpoint.glob("pytorch_model_fsdp*")):  # FSDP saves its own shards
        return f"no *.safetensors weights in {checkpoint}"
    for path in weights:
        problem = safetensors_problem(path)
        if problem:
            return problem
    for path in sorted([*checkpoint.glob("*.pt"), *checkpoint.glob("*.pth")]):
        try:
            with zipfile.ZipFile(path) as archive:
                archive.namelist()
        except (OSError, zipfile.BadZipFile) as error:
            return f"{path} is not a whole torch file ({error})"
    return None


def safetensors_problem(path) -> str | None:
    """Why `path` is not a whole safetensors file (header unreadable, or its size not what the
    header says), or None. Reads the header only."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                return f"{path} is {size} bytes, shorter than a safetensors header"
            length = struct.unpack("<Q", head)[0]
            if length > size - 8:
                return f"{path}: its header says {length} bytes but the file has {size - 8} after the length"
            header = json.loads(handle.read(length))
    except (OSError, ValueError) as error:
        return f"{path}: the safetensors header does not read ({error})"
    ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
    expected = 8 + length + max(ends, default=0)
    if expected != size:
        return f"{path} is {size} bytes but its header describes {expected} (cut short or overwritten)"
    return None


def _step(path: Path) -> int:
    return int(path.name.rsplit("-", 1)[-1])


def last_checkpoint_of_run(checkpoint_dir, signature: str) -> str | None:
    """The newest complete checkpoint of this same run; checkpoints of another run are removed,
    incomplete ones of this run set aside (renamed `incomplete-checkpoint-N`)."""
    checkpoint_dir = Path(checkpoint_dir)
    marker = checkpoint_dir / "run_signature.txt"
    if checkpoint_dir.exists() and (not marker.exists() or marker.read_text().strip() != signature):
        log.info("discarding checkpoints in %s: another run's (base model, data or settings differ)", checkpoint_dir)
        shutil.rmtree(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    if not marker.exists():
        tmp = marker.with_name(marker.name + ".tmp")
        tmp.write_text(signature + "\n")
        os.replace(tmp, marker)
    candidates = [p for p in checkpoint_dir.glob("checkpoint-*") if p.is_dir() and p.name.rsplit("-", 1)[-1].isdigit()]
    for checkpoint in sorted(candidates, key=_step, reverse=True):
        problem = checkpoint_problem(checkpoint)
        if problem is None:
            log.info("resuming from %s", checkpoint)
            return str(checkpoint)
        aside = checkpoint.with_name(SET_ASIDE_PREFIX + checkpoint.name)
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(checkpoint, aside)
        log.warning("set aside incomplete checkpoint %s as %s: %s", checkpoint, aside.name, problem)
    return None


def read_segments(checkpoint) -> list[dict]:
    """The training segments recorded with a checkpoint ([] for none; a segment from before such
    records has unknown seconds)."""
    if checkpoint is None:
        return []
    path = Path(checkpoint) / SEGMENTS_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
        return [{"from_step": 0, "to_step": state.get("global_step"), "seconds": None}]


def write_segments(checkpoint, segments: list[dict]) -> None:
    checkpoint = Path(checkpoint)
    tmp = checkpoint / (SEGMENTS_FILE + ".tmp")
    tmp.write_text(json.dumps(segments, indent=1) + "\n")
    os.replace(tmp, checkpoint / SEGMENTS_FILE)


def segment_clock(prior: list[dict], start_step: int):
    """A TrainerCallback that records, with each checkpoint it saves, the segments before this run
    (`prior`) and this run's so far; `.segments()` at the end gives them all."""
    from transformers import TrainerCallback

    class SegmentClock(TrainerCallback):
        def __init__(self):
            self.started = time.time()
            self.step = start_step

        def current(self) -> dict:
            return {"from_step": start_step, "to_step": self.step, "seconds": time.time() - self.started}

        def segments(self) -> list[dict]:
            return [*prior, self.current()]

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.time()

        def on_step_end(self, args, state, control, **kwargs):
            self.step = state.global_step

        def on_save(self, args, state, control, **kwargs):
            self.step = state.global_step
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if state.is_world_process_zero and checkpoint.is_dir():  # data-parallel: one writer
                write_segments(checkpoint, self.segments())

    return SegmentClock()


def damaged_model_file(path) -> tuple[Path, str] | None:
    """The first file of a model folder (or the file itself) that does not read back, and why:
    a safetensors file whose header or size is wrong, a JSON file that does not parse."""
    path = Path(path)
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    for file in files:
        if file.suffix == ".safetensors":
            problem = safetensors_problem(file)
            if problem:
                return file, problem
        elif file.suffix == ".json" and file.is_file():
            try:
                json.loads(file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:
                return file, f"{file} is not valid JSON ({error})"
    return None


@contextlib.contextmanager
def reading_model(path, what: str, *, rule: str | None = None):
    """Around a model's load: when it fails and a file of `path` is damaged (cut short, overwritten),
    an InputError names that file, what was expected and what to do, instead of the loader's
    traceback (safetensors' "incomplete metadata" names no file). Other failures pass unchanged."""
    from prodcat.runtime.errors import InputError, load_error

    try:
        yield
    except InputError:
        raise
    except Exception as error:
        damaged = damaged_model_file(path)
        if damaged is None:
            raise
        raise load_error(damaged[0], what, ValueError(damaged[1]), rule=rule) from error

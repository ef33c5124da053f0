"""Resumable training: checkpoints are resumed only by the run they belong to.

A run is identified by a signature (a hash of its parameters, its base model's config and its
training data), written next to the checkpoints. A rerun with the same signature continues from
the newest complete checkpoint; any other run discards them first, so that a changed
hyper-parameter never silently continues an old run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)


def run_signature(settings: dict, base_model_dir, frames: list[pd.DataFrame]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    # the base model's config: from its folder, or from the hub cache for a hub id
    from prodcat.runtime.hub import local_model_dir

    digest.update((local_model_dir(base_model_dir) / "config.json").read_bytes())
    for frame in frames:
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def last_checkpoint_of_run(checkpoint_dir, signature: str) -> str | None:
    """The newest complete checkpoint of this same run; checkpoints of another run are removed."""
    checkpoint_dir = Path(checkpoint_dir)
    marker = checkpoint_dir / "run_signature.txt"
    if checkpoint_dir.exists() and (not marker.exists() or marker.read_text().strip() != signature):
        log.info("discarding checkpoints in %s: they belong to a different run", checkpoint_dir)
        shutil.rmtree(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(signature + "\n")
    done = [p for p in checkpoint_dir.glob("checkpoint-*") if (p / "trainer_state.json").exists()]
    if not done:
        return None
    latest = str(max(done, key=lambda p: int(p.name.rsplit("-", 1)[-1])))
    log.info("resuming from %s", latest)
    return latest

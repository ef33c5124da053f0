"""The two summaries every trained model writes: how its training went (MODEL/train_summary.json)
and how one prediction went (predictions/MODEL/SPLIT.DECODING.summary.json, names/.../SPLIT.summary.json).

One type each for every labeler kind and for the namer, so that Table 2 reads every model the same
way. The common fields are named; what only one kind records (a Trainer's log history, the
profile, the lengths "auto" resolved to, charngram's validation metrics, the namer's shards) rides
along in `details` and is written beside them at the top level of the JSON file.

Timing names: `trainer_seconds` is the training loop's own time (the Trainer's train() call, or
charngram's fit), measured inside the job; Table 2's `train_wall_seconds` is the whole training
job's wall time from its Snakemake benchmark file (loading, tokenising, saving included).
"""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

TRAIN_SUMMARY = "train_summary.json"


def _split(cls, data: dict, path) -> dict:
    """`data` as keyword arguments of dataclass `cls`: its fields, the rest under details."""
    from prodcat.runtime.errors import InputError

    if not isinstance(data, dict):
        raise InputError(path, f"expected a JSON object, got {type(data).__name__}")
    names = {f.name for f in fields(cls)} - {"details"}
    required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
    missing = sorted(required - set(data))
    if missing:
        raise InputError(path, f"not a {cls.__name__}: missing {', '.join(missing)}")
    known = {k: v for k, v in data.items() if k in names}
    return {**known, "details": {k: v for k, v in data.items() if k not in names and k not in DERIVED}}


# computed from the fields when written, so not read back
DERIVED = {"predict_seconds_per_1k"}


@dataclass
class TrainingSummary:
    """How a model was trained. `trainer_seconds`: the training loop's own time (not the job's)."""

    kind: str
    device: str
    parameters: int | None
    trainer_seconds: float | None
    train_gflops_per_step: float | None = None  # None: not counted (charngram has no step)
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        data = asdict(self)
        return {**{k: v for k, v in data.items() if k != "details"}, **self.details}

    def __getitem__(self, key):
        """A field or a detail, as the JSON file has it."""
        return self.to_dict()[key]

    def write(self, model_dir) -> Path:
        from prodcat.data.io import write_json

        path = Path(model_dir) / TRAIN_SUMMARY
        write_json(self.to_dict(), path)
        return path

    @classmethod
    def read(cls, model_dir_or_file) -> TrainingSummary:
        from prodcat.data.io import read_json

        path = Path(model_dir_or_file)
        path = path / TRAIN_SUMMARY if path.is_dir() else path
        return cls(**_split(cls, read_json(path, "a training summary"), path))


@dataclass
class PredictionSummary:
    """How one prediction of a split went. `predict_seconds`: generation (or scoring) time, model
    loading left out; `predict_gflops_per_batch`: FLOPs of one batch where counted (else None)."""

    kind: str
    decoding: str  # raw, constrained (charngram: raw, always a valid path) or names (the namer)
    rows: int
    parse_failures: int
    predict_seconds: float
    batch_size: int
    device: str
    predict_gflops_per_batch: float | None = None
    details: dict = field(default_factory=dict)

    @property
    def predict_seconds_per_1k(self) -> float:
        return self.predict_seconds / max(self.rows, 1) * 1000

    @property
    def predict_seconds_per_batch(self) -> float:
        return self.predict_seconds / max(math.ceil(self.rows / self.batch_size), 1)

    def to_dict(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if k != "details"}
        return {**data, "predict_seconds_per_1k": self.predict_seconds_per_1k, **self.details}

    def __getitem__(self, key):
        """A field or a detail, as the JSON file has it."""
        return self.to_dict()[key]

    def write(self, path) -> None:
        from prodcat.data.io import write_json

        write_json(self.to_dict(), path)

    @classmethod
    def read(cls, path) -> PredictionSummary:
        from prodcat.data.io import read_json

        return cls(**_split(cls, read_json(path, "a prediction summary"), path))

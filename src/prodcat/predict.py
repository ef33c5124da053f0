"""Predicting for a new file from the trained artifacts of a finished run, without retraining.

A run writes `manifest.json` into its results folder: which labelers exist, what each reads, how
it predicts, how predictions are corrected and combined. `predict_new_rows` replays that: inferred
names (when a labeler reads them) → every labeler → correction → the hierarchy-compliant vote or,
with `ensemble.method: stack`, the learned arbiter fit on the run's validation predictions.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from . import LEVELS
from .errors import InputError

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"


def write_manifest(config: dict, stage: str, path) -> None:
    """What `predict_new_rows` needs from the run's configuration (paths relative to the results folder)."""
    from .io import write_json

    submit = config["ensemble"]["submit"]
    labelers = config["ensemble"]["members"][submit]
    method = config["ensemble"].get("method", "vote")
    write_json({
        "labelers": {name: config["labelers"][name] for name in labelers},
        "namer": {"templates": config["namer"]["templates"], "generate": config["namer"]["student"]},
        "correction": {**config["correction"], "stage": stage},
        "ensemble": {**config["ensemble"], "method": method},
        "hierarchy": "data/hierarchy.json",
        "level_accuracy": f"ensemble/level_accuracy.{stage}.json",
        # the learned arbiter (prodcat.stack), fit on all validation rows; used when method is stack
        "stack_model": f"ensemble/{submit}.{stage}.stack.json" if method == "stack" else None,
    }, path)


def load_manifest(results_dir) -> dict:
    path = Path(results_dir) / MANIFEST
    if not path.is_file():
        raise InputError(path, "not a finished prodcat run: no manifest (run the workflow first)")
    return json.loads(path.read_text())


def predict_new_rows(results_dir, rows: pd.DataFrame, keep_dir=None) -> pd.DataFrame:
    """The ensemble's labels for `rows` (validated rows table; vote or stack as the run was
    configured), plus each labeler's corrected labels as `<labeler>_<level>` columns. With keep_dir,
    every intermediate table is written there."""
    from .correct import correct_predictions
    from .hierarchy import Hierarchy
    from .io import write_parquet
    from .seq2seq import predict_labeler
    from .vote import vote_predictions
    from .workflow import with_names

    results_dir = Path(results_dir)
    manifest = load_manifest(results_dir)
    hierarchy = Hierarchy.from_json(results_dir / manifest["hierarchy"])
    accuracy = json.loads((results_dir / manifest["level_accuracy"]).read_text())
    keep = Path(keep_dir) if keep_dir else None

    names = None
    if any(cfg.get("source") == "name" for cfg in manifest["labelers"].values()):
        from .namer import infer_names

        names = infer_names(results_dir / "models" / "namer" / "merged", rows, manifest["namer"]["templates"],
                            manifest["namer"]["generate"])
        if keep:
            write_parquet(names, keep / "names.parquet")

    corrected, scorers = {}, {}
    for name, cfg in manifest["labelers"].items():
        if cfg["kind"] == "charngram":
            from .charngram import CharNgramLabeler

            labeler = CharNgramLabeler.load(results_dir / "models" / name)
            raw = labeler.predict(rows)
            scorers[name] = lambda paths, labeler=labeler: labeler.score_paths(rows, paths)
        else:
            from .seq2seq import load_trained_model, score_paths

            source_rows = with_names(rows, names) if cfg["source"] == "name" else rows
            loaded = load_trained_model(results_dir / "models" / name)
            raw, summary = predict_labeler(results_dir / "models" / name, source_rows, cfg["predict"],
                                           source_column=cfg["source"], loaded=loaded)
            log.info("%s: %d rows, %d parse failures", name, len(raw), summary["parse_failures"])
            scorers[name] = lambda paths, cfg=cfg, source_rows=source_rows, loaded=loaded: score_paths(
                None, source_rows, paths, cfg["predict"], source_column=cfg["source"], loaded=loaded)
        corrected[name] = correct_predictions(raw, hierarchy, method=manifest["correction"]["method"],
                                              salvage=manifest["correction"].get("salvage", False))
        if keep:
            write_parquet(raw, keep / f"{name}.raw.parquet")
            write_parquet(corrected[name], keep / f"{name}.corrected.parquet")

    models = list(corrected)
    if manifest["ensemble"].get("method", "vote") == "stack":
        from .stack import StackModel

        arbiter = StackModel.load(results_dir / manifest["stack_model"])
        candidate_scores = {}
        if arbiter.layout.candidate_columns:  # every member scores every path the members propose
            from .stack import candidate_union

            paths = candidate_union([corrected[m] for m in models], hierarchy)
            candidate_scores = {m: scorers[m](paths) for m in arbiter.layout.candidate_columns}
            if keep:
                for m, table in candidate_scores.items():
                    write_parquet(table, keep / f"{m}.candidates.parquet")
        voted = arbiter.predict([corrected[m] for m in models], models, hierarchy, candidate_scores=candidate_scores,
                                rows=rows)
    else:
        voted = vote_predictions([corrected[m] for m in models], models, hierarchy, level_accuracy=accuracy,
                                 weighted=manifest["ensemble"].get("weighted", False))
    for model in models:
        for level in LEVELS:
            voted[f"{model}_{level}"] = corrected[model][level].to_numpy()
    return voted

"""Predicting for a new file from the trained artifacts of a finished run, without retraining.

A run writes `manifest.json` into its results folder: which labelers exist, what each reads, how
it predicts, how predictions are corrected and combined. `predict_new_rows` replays that: inferred
names (when a labeler reads them) → every labeler → correction → the hierarchy-compliant vote or,
with `ensemble.method: stack`, the learned arbiter fit on the run's validation predictions.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from prodcat import LEVELS
from prodcat.runtime.errors import InputError

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"


def choose_submission(ensemble_config: dict, validation: dict[str, dict], stage: str) -> dict:
    """Which ensemble and method the run submits. `ensemble.submit: auto`: the combination with the
    best validation item accuracy among every ensemble's vote and its stack (the stack's is
    cross-fitted; ties: the configured order, the vote first). Otherwise ensemble.submit and
    ensemble.method as configured. validation: per ensemble, its stack model's `validation` dict."""
    candidates = {}
    for ensemble in ensemble_config["members"]:
        numbers = validation.get(ensemble) or {}
        candidates[f"{ensemble}"] = (ensemble, "vote", numbers.get("vote_item_accuracy"))
        candidates[f"{ensemble}_stack"] = (ensemble, "stack", numbers.get("cross_fitted_item_accuracy"))
    accuracy = {model: value for model, (_, _, value) in candidates.items()}
    if ensemble_config["submit"] == "auto":
        known = [m for m, a in accuracy.items() if a is not None]
        if not known:
            raise ValueError("ensemble.submit is auto, but no ensemble has validation accuracies")
        model = max(known, key=lambda m: (accuracy[m], -list(accuracy).index(m)))
        how = "auto: the best validation item accuracy (stacks cross-fitted)"
    else:
        suffix = "_stack" if ensemble_config.get("method", "vote") == "stack" else ""
        model = f"{ensemble_config['submit']}{suffix}"
        how = "configured (ensemble.submit, ensemble.method)"
    ensemble, method, _ = candidates[model]
    return {
        "ensemble": ensemble,
        "method": method,
        "model": model,
        "stage": stage,
        "chosen_by": how,
        "validation_item_accuracy": accuracy,
    }


def write_manifest(
    config: dict, stage: str, path, hierarchy, level_accuracy, stack_model=None, calibrations=None
) -> None:
    """What `predict_new_rows` needs from the run's configuration, with the run's files as the
    manifest rule receives them (its inputs: the hierarchy, the submitted stage's level accuracy and,
    when ensemble.method is stack, the arbiter fit on all validation rows), recorded relative to the
    manifest's folder, the results folder."""
    import os

    from prodcat.data.io import write_json

    folder = Path(path).parent

    def relative(file) -> str:
        return Path(os.path.relpath(file, folder)).as_posix()

    submit = config["ensemble"]["submit"]
    labelers = config["ensemble"]["members"][submit]
    method = config["ensemble"]["method"]
    if submit == "auto":
        raise ValueError("write_manifest needs the chosen ensemble (choose_submission), not auto")
    if (method == "stack") != (stack_model is not None):
        raise ValueError(f"ensemble.method is {method}: a stack model is needed exactly when it is stack")
    write_json(
        {
            "labelers": {name: config["labelers"][name] for name in labelers},
            "namer": {"templates": config["namer"]["templates"], "generate": config["namer"]["student"]},
            "correction": {**config["correction"], "stage": stage},
            "ensemble": {**config["ensemble"], "method": method},
            "hierarchy": relative(hierarchy),
            "level_accuracy": relative(level_accuracy),
            # the learned arbiter (prodcat.ensemble.stack); used when method is stack
            "stack_model": relative(stack_model) if stack_model is not None else None,
            # confidence calibrations (prodcat.ensemble.calibration) of the vote and the members
            "calibrations": {name: relative(p) for name, p in (calibrations or {}).items()},
        },
        path,
    )


# What predict_new_rows reads from a manifest; anything else in it is left alone.
MANIFEST_SCHEMA = {
    "type": "object",
    "required": ["labelers", "namer", "correction", "ensemble", "hierarchy", "level_accuracy"],
    "properties": {
        "labelers": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {
                "type": "object",
                "required": ["kind"],
                "properties": {"kind": {"enum": ["text", "multimodal", "charngram"]}},
                "if": {"properties": {"kind": {"enum": ["text", "multimodal"]}}},
                "then": {
                    "required": ["source", "predict"],
                    "properties": {"source": {"enum": ["description", "name"]}, "predict": {"type": "object"}},
                },
            },
        },
        "namer": {
            "type": "object",
            "required": ["templates", "generate"],
            "properties": {"templates": {"type": "object"}, "generate": {"type": "object"}},
        },
        "correction": {
            "type": "object",
            "required": ["method"],
            "properties": {"method": {"enum": ["topdown", "joint"]}, "salvage": {"type": "boolean", "default": False}},
        },
        "ensemble": {
            "type": "object",
            "properties": {
                "weighted": {"type": "boolean", "default": False},
                "method": {"enum": ["vote", "stack"], "default": "vote"},
            },
        },
        "hierarchy": {"type": "string", "minLength": 1},
        "level_accuracy": {"type": "string", "minLength": 1},
        "calibrations": {"type": "object", "additionalProperties": {"type": "string", "minLength": 1}},
    },
}


def load_manifest(results_dir) -> dict:
    from prodcat.data.io import read_json

    path = Path(results_dir) / MANIFEST
    if not path.is_file():
        raise InputError(path, "not a finished prodcat run: no manifest (run the workflow first)")
    manifest = read_json(path, "the run's manifest")
    _validate_manifest(manifest, path)
    return manifest


def _validate_manifest(manifest, path) -> None:
    """Check the manifest against MANIFEST_SCHEMA and fill in the schema's defaults."""
    errors = sorted(
        _validator_with_defaults()(MANIFEST_SCHEMA).iter_errors(manifest),
        key=lambda e: [str(k) for k in e.absolute_path],
    )
    if errors:
        error = errors[0]
        raise InputError(
            path, f"not a prodcat manifest: {error.message}", key=".".join(map(str, error.absolute_path)) or None
        )


def _validator_with_defaults():
    """Draft 2020-12 validation that also sets each property's `default` where it is missing (as
    Snakemake does for the config): the defaults live in the schema, not in the reading code."""
    import jsonschema

    base = jsonschema.Draft202012Validator
    check_properties = base.VALIDATORS["properties"]

    def properties_with_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema:
                    instance.setdefault(name, subschema["default"])
        yield from check_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(base, {"properties": properties_with_defaults})


def _require_model(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise InputError(path, f"{what} is missing from the run (an incomplete or moved results folder)")
    return path


def predict_new_rows(results_dir, rows: pd.DataFrame, keep_dir=None, with_candidates: bool = False):
    """The ensemble's labels for `rows` (validated rows table; vote or stack as the run was
    configured) with their calibrated `confidence`, plus each labeler's corrected labels as
    `<labeler>_<level>` columns and its confidence as `<labeler>_confidence`. With keep_dir, every
    intermediate table is written there. with_candidates: (that table, every row's ranked
    candidates with who proposed them: prodcat.ensemble.review)."""
    from prodcat.data.hierarchy import Hierarchy
    from prodcat.data.io import read_level_accuracy, write_parquet
    from prodcat.ensemble.calibration import with_confidence
    from prodcat.ensemble.correct import correct_predictions
    from prodcat.ensemble.vote import vote_predictions
    from prodcat.labelers.interface import labeler_for, load_labeler, with_names

    results_dir = Path(results_dir)
    manifest = load_manifest(results_dir)
    hierarchy = Hierarchy.from_json(results_dir / manifest["hierarchy"])
    accuracy = read_level_accuracy(results_dir / manifest["level_accuracy"], list(manifest["labelers"]))
    for name in manifest["labelers"]:
        _require_model(results_dir / "models" / name, f"the model of labeler {name!r}")
    uses_names = any(labeler_for(cfg["kind"]).source_of(cfg) == "name" for cfg in manifest["labelers"].values())
    if uses_names:
        _require_model(results_dir / "models" / "namer" / "merged", "the namer")
    keep = Path(keep_dir) if keep_dir else None

    names = None
    if uses_names:
        from prodcat.names.generation import generate_student_names

        names = generate_student_names(
            results_dir / "models" / "namer" / "merged",
            rows,
            manifest["namer"]["templates"],
            manifest["namer"]["generate"],
        )
        if keep:
            write_parquet(names, keep / "names.parquet")

    corrected, loaded = {}, {}  # loaded: name → (labeler, the rows as it reads them)
    for name, cfg in manifest["labelers"].items():
        labeler = load_labeler(results_dir / "models" / name, cfg)
        source_rows = with_names(rows, names) if labeler.source == "name" else rows
        raw, summary = labeler.predict(source_rows)
        log.info("%s: %d rows, %d parse failures", name, len(raw), summary.parse_failures)
        loaded[name] = (labeler, source_rows)
        corrected[name] = correct_predictions(
            raw, hierarchy, method=manifest["correction"]["method"], salvage=manifest["correction"]["salvage"]
        )
        if keep:
            write_parquet(raw, keep / f"{name}.raw.parquet")
            write_parquet(corrected[name], keep / f"{name}.corrected.parquet")

    models = list(corrected)
    if manifest["ensemble"]["method"] == "stack":
        from prodcat.ensemble.stack import StackModel

        arbiter = StackModel.load(results_dir / manifest["stack_model"])
        candidate_scores = {}
        # the k best paths of members that rank every path (charngram): more candidates
        alternatives = {m: loaded[m][0].alternatives(loaded[m][1], k) for m, k in arbiter.layout.alternatives.items()}
        if keep:
            for m, table in alternatives.items():
                write_parquet(table, keep / f"{m}.alternatives.parquet")
        if arbiter.layout.candidate_columns:  # every member scores every path the members propose
            from prodcat.ensemble.stack import candidate_union

            paths = candidate_union([corrected[m] for m in models] + list(alternatives.values()), hierarchy)
            candidate_scores = {
                m: loaded[m][0].score_paths(loaded[m][1], paths) for m in arbiter.layout.candidate_columns
            }
            if keep:
                for m, table in candidate_scores.items():
                    write_parquet(table, keep / f"{m}.candidates.parquet")
        candidates = arbiter.rank_candidates(
            [corrected[m] for m in models],
            models,
            hierarchy,
            candidate_scores=candidate_scores,
            rows=rows,
            alternatives=alternatives,
        )
        voted = arbiter.chosen(candidates)
    else:
        from prodcat.ensemble.review import vote_candidates

        voted = vote_predictions(
            [corrected[m] for m in models],
            models,
            hierarchy,
            level_accuracy=accuracy,
            weighted=manifest["ensemble"]["weighted"],
        )
        vote_calibration = _calibration(results_dir, manifest, manifest["ensemble"]["submit"])
        if vote_calibration is not None:
            voted = with_confidence(voted, vote_calibration, "the vote")
        candidates = vote_candidates(voted, {m: corrected[m] for m in models}) if with_candidates else None
    for model in models:
        for level in LEVELS:
            voted[f"{model}_{level}"] = corrected[model][level].to_numpy()
        calibration = _calibration(results_dir, manifest, model)
        if calibration is not None:
            position = pd.Index(corrected[model]["indoml_id"]).get_indexer(voted["indoml_id"])
            member = with_confidence(corrected[model].iloc[position], calibration, model)
            voted[f"{model}_confidence"] = member["confidence"].to_numpy()
    return (voted, candidates) if with_candidates else voted


def _calibration(results_dir: Path, manifest: dict, model: str):
    """A model's confidence calibration recorded in the manifest (None for a run without one)."""
    from prodcat.data.io import read_json
    from prodcat.ensemble.calibration import check_calibration

    relative = (manifest.get("calibrations") or {}).get(model)
    if relative is None:
        return None
    path = results_dir / relative
    return check_calibration(read_json(path, f"the confidence calibration of {model}"), path)

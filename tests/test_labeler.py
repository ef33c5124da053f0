"""The one Labeler interface (prodcat.labelers.interface): every kind trains on tiny data, saves, loads and
predicts through it, with the same summary types; the configs come from the config schema, so
its defaults complete every setting the labelers read."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from prodcat import LEVELS
from prodcat.data.hierarchy import Hierarchy
from prodcat.labelers.interface import Labeler, labeler_for, load_labeler, train_configured_labeler
from prodcat.labelers.summaries import PredictionSummary, TrainingSummary
from prodcat.runtime.errors import InputError
from prodcat.standins.tiny_seq2seq import build_tiny_byt5

ROOT = Path(__file__).resolve().parent.parent
DIMS = {"d_model": 32, "d_ff": 64, "num_layers": 1, "num_heads": 2, "dropout_rate": 0.0}
# only what the schema requires (and a few small numbers): the rest are the schema's defaults
SEQ2SEQ_TRAIN = {
    "per_device_train_batch_size": 8,
    "learning_rate": 3e-3,
    "num_train_epochs": 1,
    "early_stopping_patience": 1,
    "seed": 1,
    "logging_steps": 2,
}
PREDICT = {"batch_size": 4, "max_new_tokens": "auto", "max_source_length": "auto"}
MINIMAL = {
    "text": {"kind": "text", "base": "byt5", "source": "description", "train": SEQ2SEQ_TRAIN, "predict": PREDICT},
    "multimodal": {
        "kind": "multimodal",
        "base": "byt5",
        "source": "description",
        "train": SEQ2SEQ_TRAIN,
        "predict": PREDICT,
    },
    "charngram": {"kind": "charngram", "params": {"hash_buckets": 4096, "min_df": 1}},
}


def validated(labelers: dict) -> dict:
    """config.yaml with these labelers, validated (and completed) by the workflow's schema."""
    from snakemake.utils import validate

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["labelers"] = json.loads(json.dumps(labelers))
    config["ensemble"]["members"] = {"ensemble": list(labelers)}
    validate(config, str(ROOT / "schemas" / "config.schema.yaml"))
    return config["labelers"]


CONFIGS = validated(MINIMAL)


def rows(n=24):
    paths = [("sg a", "g x", "m 1", "b c"), ("sg b", "g y", "m 2", "b d")]
    return pd.DataFrame(
        [
            {
                "indoml_id": i,
                "description": f"item {i % 2}",
                "retailer": f"shop{i % 3}",
                "price": 1.0 + i % 2,
                **dict(zip(LEVELS, paths[i % 2])),
            }
            for i in range(n)
        ]
    )


@pytest.fixture(scope="module")
def tiny_byt5(tmp_path_factory):
    return build_tiny_byt5(tmp_path_factory.mktemp("base") / "byt5", DIMS)


def test_the_schema_completes_the_settings_the_labelers_read():
    train = CONFIGS["text"]["train"]
    assert train["lr_scheduler_type"] == "linear" and train["gradient_accumulation_steps"] == 1
    assert train["per_device_eval_batch_size"] is None and train["keep_checkpoints"] is False
    assert CONFIGS["text"]["predict"]["num_beams"] == 1
    assert (CONFIGS["multimodal"]["side_dim"], CONFIGS["multimodal"]["fusion"]) == (8, "first")
    assert CONFIGS["charngram"]["source"] == "description"
    assert "side_dim" not in CONFIGS["text"]


def test_one_registry_maps_every_kind():
    assert {kind: labeler_for(kind).kind for kind in MINIMAL} == {kind: kind for kind in MINIMAL}
    assert all(issubclass(labeler_for(kind), Labeler) for kind in MINIMAL)
    with pytest.raises(ValueError, match="unknown labeler kind 'svm'"):
        labeler_for("svm")


@pytest.mark.parametrize("kind", list(MINIMAL))
def test_every_kind_trains_saves_loads_and_predicts_through_the_interface(kind, tiny_byt5, tmp_path):
    cfg = CONFIGS[kind]
    train, val, new = rows(), rows(8), rows(6)
    new.loc[0, "retailer"] = "never seen"
    hierarchy = Hierarchy.from_frame(train)
    labeler = train_configured_labeler(
        cfg,
        train,
        val,
        tmp_path / "model",
        base_dir=tiny_byt5,
        hierarchy=hierarchy,
        checkpoint_dir=tmp_path / "ckpt",
        profile=None,
    )
    assert type(labeler) is labeler_for(kind)

    trained = labeler.training_summary
    assert isinstance(trained, TrainingSummary) and trained.kind == kind
    assert trained.parameters > 0 and trained.trainer_seconds > 0
    assert TrainingSummary.read(tmp_path / "model").to_dict() == json.loads(json.dumps(trained.to_dict()))

    table, summary = labeler.predict(new)
    assert isinstance(summary, PredictionSummary)
    assert (summary.kind, summary.decoding, summary.rows) == (kind, "raw", 6)
    assert summary.predict_seconds >= 0 and summary.batch_size > 0
    assert table["indoml_id"].tolist() == list(range(6))
    assert {"text", "parse_ok", "logprob", *LEVELS} <= set(table.columns)
    summary.write(tmp_path / "raw.summary.json")
    assert PredictionSummary.read(tmp_path / "raw.summary.json") == summary
    assert (
        json.loads((tmp_path / "raw.summary.json").read_text())["predict_seconds_per_1k"]
        == summary.predict_seconds_per_1k
    )

    constrained, constrained_summary = labeler.predict(new, decoding="constrained", hierarchy=hierarchy)
    assert constrained_summary.decoding == "constrained" and constrained_summary.parse_failures == 0
    valid = set(hierarchy.paths[list(LEVELS)].itertuples(index=False, name=None))
    assert set(constrained[list(LEVELS)].itertuples(index=False, name=None)) <= valid

    labeler.save(tmp_path / "copy")
    again = load_labeler(tmp_path / "copy", cfg)
    assert type(again) is type(labeler) and again.training_summary == TrainingSummary.read(tmp_path / "model")
    table_again, summary_again = again.predict(new)
    pd.testing.assert_frame_equal(table_again[["indoml_id", *LEVELS, "text"]], table[["indoml_id", *LEVELS, "text"]])
    assert type(summary_again) is PredictionSummary

    paths = constrained[["indoml_id", *LEVELS]]
    scored = again.score_paths(new, paths)
    assert len(scored) == len(paths) and (scored["logprob"] <= 0).all()


def test_loading_a_folder_without_a_trained_labeler_names_it(tmp_path):
    with pytest.raises(InputError, match="not a trained labeler"):
        load_labeler(tmp_path, CONFIGS["charngram"])


def test_an_unknown_decoding_is_refused(tmp_path):
    labeler = train_configured_labeler(
        CONFIGS["charngram"], rows(), rows(4), tmp_path / "m", hierarchy=Hierarchy.from_frame(rows())
    )
    with pytest.raises(ValueError, match="unknown decoding 'beam'"):
        labeler.predict(rows(2), decoding="beam")


def test_a_summary_file_missing_a_field_is_an_input_error(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps({"kind": "text", "rows": 3}))
    with pytest.raises(InputError, match="missing batch_size, decoding, device, parse_failures, predict_seconds"):
        PredictionSummary.read(tmp_path / "s.json")


def test_the_charngram_labeler_runs_without_torch(tmp_path):
    """Its rules run in envs/cpu.yaml, which has no torch: train, save, load and predict with
    torch's import blocked."""
    import subprocess
    import sys

    rows(12).to_parquet(tmp_path / "rows.parquet")
    script = f"""
import sys
sys.modules["torch"] = None  # any import of torch now fails
import pandas as pd
from prodcat.data.hierarchy import Hierarchy
from prodcat.labelers.interface import load_labeler, train_configured_labeler
from prodcat.workflow import _set_threads
_set_threads(1)
rows = pd.read_parquet({str(tmp_path / "rows.parquet")!r})
cfg = {CONFIGS["charngram"]!r}
train_configured_labeler(cfg, rows, rows, {str(tmp_path / "m")!r}, hierarchy=Hierarchy.from_frame(rows))
table, summary = load_labeler({str(tmp_path / "m")!r}, cfg).predict(rows)
print(summary.rows, summary.device.startswith("cpu:"), "torch" in sys.modules and sys.modules["torch"] is not None)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["12", "True", "False"]

"""The shared Trainer runner (prodcat.runtime.trainer), the TrainingArguments that the labelers and
the namer build through it from the .test config, the one parameter merge (prodcat.runtime.params)
and the defaults' one copy (schema or code, never both)."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from prodcat.runtime.params import merge_params
from prodcat.runtime.trainer import run_trainer, training_arguments

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = yaml.safe_load((ROOT / "schemas" / "config.schema.yaml").read_text())


def workflow_config() -> dict:
    """config.yaml with .test/config.yaml merged over it, validated and completed by the schema."""
    from snakemake.utils import validate

    def merge(base, override):
        return {
            **base,
            **{
                k: merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
                for k, v in override.items()
            },
        }

    config = merge(
        yaml.safe_load((ROOT / "config.yaml").read_text()), yaml.safe_load((ROOT / ".test" / "config.yaml").read_text())
    )
    config = json.loads(json.dumps(config))
    validate(config, str(ROOT / "schemas" / "config.schema.yaml"))
    return config


# ---- TrainingArguments by name -------------------------------------------------------------
def test_settings_pass_through_by_name_as_their_fields_types():
    from transformers import TrainingArguments

    args = training_arguments(
        TrainingArguments,
        {"num_train_epochs": 2, "warmup_steps": 50, "learning_rate": 1e-3, "per_device_train_batch_size": 4},
        "test settings",
        output_dir="out",
        use_cpu=True,
        report_to="none",
    )
    # as the field's default: num_train_epochs 3.0 (float), warmup_steps 0 (int)
    assert args.num_train_epochs == 2.0 and isinstance(args.num_train_epochs, float)
    assert args.warmup_steps == 50 and isinstance(args.warmup_steps, int)
    assert (args.learning_rate, args.per_device_train_batch_size, args.output_dir) == (1e-3, 4, "out")


def test_a_key_that_is_no_training_argument_or_is_set_by_the_code_is_refused():
    from transformers import TrainingArguments

    with pytest.raises(ValueError, match=r"test settings: \['early_stopping_patience'\] are not TrainingArguments"):
        training_arguments(TrainingArguments, {"early_stopping_patience": 2}, "test settings", output_dir="out")
    with pytest.raises(ValueError, match=r"\['output_dir'\] are set by the code"):
        training_arguments(TrainingArguments, {"output_dir": "elsewhere"}, "test settings", output_dir="out")


LABELER_EXPECTED = {  # what the labelers trained with before the runner (fixed by the code)
    "eval_strategy": "epoch",
    "save_strategy": "epoch",
    "save_total_limit": 2,
    "load_best_model_at_end": True,
    "metric_for_best_model": "eval_loss",
    "greater_is_better": False,
    "logging_first_step": True,
    "report_to": [],
    "bf16": False,
    "use_cpu": True,
    "dataloader_num_workers": 0,
    "disable_tqdm": True,
}


@pytest.mark.parametrize("name", ["byt5", "mmbyt5", "flant5"])
def test_labeler_training_arguments_of_the_test_config(name, tmp_path):
    from prodcat.labelers.interface import Seq2SeqLabeler
    from prodcat.labelers.seq2seq import training_arguments as labeler_arguments

    cfg = workflow_config()["labelers"][name]
    params = {**cfg["train"], **{k: cfg[k] for k in Seq2SeqLabeler.SIDE_SETTINGS if k in cfg}}
    args = labeler_arguments(params, tmp_path / "ckpt", "cpu", torch.float32).to_dict()
    train = cfg["train"]
    assert {key: args[key] for key in LABELER_EXPECTED} == LABELER_EXPECTED
    assert args["output_dir"] == str(tmp_path / "ckpt")
    assert args["per_device_train_batch_size"] == args["per_device_eval_batch_size"] == 32  # eval null: as train
    assert (args["learning_rate"], args["num_train_epochs"], args["logging_steps"]) == (3e-3, 2.0, 5)
    assert isinstance(args["num_train_epochs"], float)
    assert (args["seed"], args["data_seed"]) == (train["seed"], train["seed"])
    # config.yaml's (under .test's), passed through by name
    assert (args["gradient_accumulation_steps"], args["weight_decay"], args["warmup_steps"]) == (1, 0.01, 50)
    assert isinstance(args["warmup_steps"], int)
    assert args["lr_scheduler_type"] == "linear"


def test_namer_sft_config_of_the_test_config(tmp_path):
    from prodcat.names.lora import DEFAULT_TRAIN_PARAMS, TRAIN_PARAMS, sft_config

    params = merge_params(DEFAULT_TRAIN_PARAMS, workflow_config()["namer"]["train"], TRAIN_PARAMS)
    config = sft_config(params, tmp_path / "ckpt", 77, "cpu", torch.float32)
    expected = {
        "output_dir": str(tmp_path / "ckpt"),
        "per_device_train_batch_size": 32,
        "gradient_accumulation_steps": 1,
        "learning_rate": 1e-3,
        "lr_scheduler_type": "linear",
        "warmup_steps": 0,
        "weight_decay": 0.0,
        "optim": "adamw_torch",
        "num_train_epochs": 1,
        "max_steps": -1,
        "activation_checkpointing": False,  # the namer's gradient_checkpointing
        "gradient_checkpointing": False,  # SFTConfig follows activation_checkpointing
        "bf16": False,
        "logging_steps": 5,
        "logging_first_step": True,
        "save_strategy": "steps",
        "save_steps": 50,
        "save_total_limit": 2,
        "eval_strategy": "no",
        "report_to": [],
        "dataloader_pin_memory": False,
        "seed": 1,
        "data_seed": 1,
        "max_length": 77,
        "completion_only_loss": True,
        "disable_tqdm": True,
    }
    got = config.to_dict()
    assert {key: got[key] for key in expected} == expected


# ---- resuming through the runner ------------------------------------------------------------
class _Regression(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 1)

    def forward(self, x, labels):
        return {"loss": ((self.linear(x).squeeze(-1) - labels) ** 2).mean()}


def _run(tmp_path, signature, callbacks=()):
    from transformers import Trainer, TrainingArguments, set_seed

    set_seed(0)
    args = TrainingArguments(
        output_dir=str(tmp_path / "ckpt"),
        max_steps=4,
        save_strategy="steps",
        save_steps=2,
        per_device_train_batch_size=2,
        logging_steps=1,
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
    )
    data = [{"x": [float(i), 1.0], "labels": float(2 * i)} for i in range(8)]
    return run_trainer(Trainer, args, signature=signature, callbacks=callbacks, model=_Regression(), train_dataset=data)


def test_the_runner_resumes_the_newest_checkpoint_of_its_own_run_only(tmp_path):
    from transformers import TrainerCallback

    class KillAfterFirstSave(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, "run a", [KillAfterFirstSave()])
    resumed = _run(tmp_path, "run a")
    assert Path(resumed.resumed_from).name == "checkpoint-2"
    assert (resumed.steps_run, resumed.trainer.state.global_step) == (2, 4)
    assert resumed.seconds > 0 and resumed.profile is None and resumed.result.global_step == 4
    # the training time is the sum over both segments, each recorded
    assert [(seg["from_step"], seg["to_step"]) for seg in resumed.segments] == [(0, 2), (2, 4)]
    assert resumed.seconds == pytest.approx(sum(seg["seconds"] for seg in resumed.segments))
    assert resumed.segments[0]["seconds"] > 0

    other = _run(tmp_path, "run b")  # another run's checkpoints are discarded, not resumed
    assert other.resumed_from is None and other.steps_run == 4


def test_the_runner_checks_before_training_and_profiles_when_asked(tmp_path):
    seen = []
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(
        output_dir=str(tmp_path / "ckpt"), max_steps=3, report_to="none", use_cpu=True, disable_tqdm=True
    )
    data = [{"x": [float(i), 1.0], "labels": float(i)} for i in range(6)]
    run = run_trainer(
        Trainer,
        args,
        signature="s",
        profile={"enabled": True, "skip_first": 0, "warmup": 0, "steps": 1},
        profile_dir=tmp_path / "model",
        before_train=lambda trainer, resumed_from: seen.append((trainer.state.global_step, resumed_from)),
        model=_Regression(),
        train_dataset=data,
    )
    assert seen == [(0, None)]
    assert run.profile["recorded_steps"] == 1 and run.profile["error"] is None
    assert (tmp_path / "model" / "profile").is_dir()


# ---- one merge, one copy of each default ----------------------------------------------------
def test_merge_params_puts_params_over_defaults_and_names_an_unknown_key():
    defaults = {"a": 1, "b": [1, 2]}
    assert merge_params(defaults, {"a": 3}, "test params") == {"a": 3, "b": [1, 2]}
    assert merge_params(defaults, None, "test params") == defaults
    with pytest.raises(ValueError, match=r"unknown test params \['c', 'd'\]; known: a, b"):
        merge_params(defaults, {"c": 0, "d": 0, "a": 2}, "test params")
    assert defaults == {"a": 1, "b": [1, 2]}  # not changed


def test_every_code_default_is_a_schema_key_without_a_second_default():
    """charngram, namer training and the stack's fit settings default in the code (their
    DEFAULT_PARAMS): the schema lists exactly those keys and restates none of their values."""
    from prodcat.ensemble.stack import DEFAULT_PARAMS as STACK
    from prodcat.labelers.charngram import DEFAULT_PARAMS as CHARNGRAM
    from prodcat.names.lora import DEFAULT_TRAIN_PARAMS

    props = SCHEMA["properties"]
    sections = [
        (CHARNGRAM, SCHEMA["$defs"]["charngram_labeler"]["properties"]["params"]["properties"]),
        (DEFAULT_TRAIN_PARAMS, props["namer"]["properties"]["train"]["properties"]),
        (STACK, props["ensemble"]["properties"]["stack"]["properties"]),
    ]
    for defaults, schema in sections:
        assert set(defaults) <= set(schema)
        assert not [key for key in defaults if "default" in schema[key]]
    assert set(sections[0][1]) == set(CHARNGRAM) and set(sections[1][1]) == set(DEFAULT_TRAIN_PARAMS)
    # the stack's other keys are the workflow's, defaulted by the schema alone
    assert {key for key in sections[2][1] if key not in STACK} == {"rescore", "descriptions", "alternatives"}

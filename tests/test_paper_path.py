"""The paper configuration, run for real: configs/paper.yaml with its hub ids and pinned revisions,
resolved offline from a local hub cache that holds tiny stand-ins under those ids (each with its
real model's tokenizer kind and special tokens). Only data, epochs and batch sizes are overridden:
no stand-in is built by the workflow, the namer trains on a 16-bit base (not LLM.int8) and is
merged, the three labelers, the vote and the report run. The Llama
stand-in carries the real Llama-3.1 tokenizer (prodcat.standins.llama3_tokenizer): every prompt,
pad and stop token is the real one."""

import json
import os

import pandas as pd
import pytest
import yaml
from tests.conftest import REPO, run_snakemake

from prodcat.data.io import ingest
from prodcat.runtime.hub import SOURCE_FILE, place_in_hub_cache
from prodcat.standins.tiny_seq2seq import build_hub_standin
from prodcat.workflow import tokenizer_corpus

PAPER = yaml.safe_load((REPO / "configs" / "paper.yaml").read_text())
DEFAULT = yaml.safe_load((REPO / "config.yaml").read_text())
TEST_DATA = REPO / ".test" / "data"


@pytest.fixture(scope="module")
def paper_hub(tmp_path_factory):
    """HF_HOME whose hub cache holds a stand-in for every base model of configs/paper.yaml, at its
    pinned revision."""
    root = tmp_path_factory.mktemp("paper-hub")
    rows = ingest(TEST_DATA / "train.features", TEST_DATA / "train.labels")
    texts = tokenizer_corpus(rows, DEFAULT["namer"]["templates"])
    for arch, spec in PAPER["base_models"].items():
        folder = build_hub_standin(arch, root / "standins" / arch, texts)
        place_in_hub_cache(folder, spec["id"], spec["revision"], root / "hf_home")
    return root / "hf_home"


def paper_override(results) -> dict:
    """The test's only changes to configs/paper.yaml: the .test data (test labels hidden, as in the
    competition), one epoch and small batches."""
    fast_train = {
        "num_train_epochs": 1,
        "per_device_train_batch_size": 16,
        "gradient_accumulation_steps": 1,
        "logging_steps": 5,
    }
    return {
        "data": {
            "train_features": str(TEST_DATA / "train.features"),
            "train_labels": str(TEST_DATA / "train.labels"),
            "test_features": str(TEST_DATA / "test.features"),
            "test_labels": "",
            "true_names": "",
        },
        "results": str(results),
        # one naming job per split (the paper's 8 shards are covered by tests/test_sharding.py)
        "namer": {
            "shards": 1,
            "teacher": {"batch_size": 32, "max_new_tokens": 12},
            "student": {"batch_size": 32, "max_new_tokens": 12},
            "train": {
                "per_device_train_batch_size": 16,
                "gradient_accumulation_steps": 1,
                # the real 128,256-token vocabulary: a CPU step computes 16 x ~140 x 128,256 logits
                # (the whole epoch, 23 steps, took 400 s of CPU); 10 steps cover the profiler's
                # 5 skipped + 2 warm-up + 3 recorded steps and two checkpoints
                "max_steps": 10,
                "logging_steps": 5,
                "save_steps": 5,
            },
        },
        "labelers": {
            name: {"train": fast_train, "predict": {"batch_size": 64}} for name in ("byt5", "flant5", "mmbyt5")
        },
        "threads": {"train": 2, "predict": 2},
    }


def offline_env(hf_home) -> dict:
    env = {key: value for key, value in os.environ.items() if key not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    return dict(env, HF_HOME=str(hf_home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1")


@pytest.fixture(scope="module")
def paper_run(paper_hub, tmp_path_factory):
    root = tmp_path_factory.mktemp("paper-run")
    override = root / "override.yaml"
    override.write_text(yaml.safe_dump(paper_override(root / "results")))
    proc = run_snakemake(
        "--cores",
        "2",
        "--resources",
        "gpu=1",
        "--configfile",
        "configs/paper.yaml",
        str(override),
        env=offline_env(paper_hub),
    )
    return root / "results", override, proc.stderr


@pytest.mark.slow
def test_paper_config_runs_to_the_end_on_hub_standins(paper_run):
    results, _, log = paper_run
    # the hub models were fetched (from the cache: offline), no stand-in was built by the workflow
    assert "build_tiny_model" not in log
    for arch, spec in PAPER["base_models"].items():
        source = json.loads((results / "models" / "hub" / arch / SOURCE_FILE).read_text())
        assert (source["repo_id"], source["commit"]) == (spec["id"], spec["revision"])
    namer_log = (results / "logs" / "train_namer.log").read_text()
    checkpointing = "on" if PAPER["namer"]["train"]["gradient_checkpointing"] else "off"
    assert "8-bit linear layers" not in namer_log and f"gradient checkpointing {checkpointing}" in namer_log
    metrics = pd.read_csv(results / "report" / "metrics.csv")
    assert set(metrics["split"]) == {"val"}  # test labels hidden, as in the competition
    assert {"byt5", "flant5", "mmbyt5", "charngram", "ensemble"} <= set(metrics["model"])
    test_rows = sum(1 for _ in open(TEST_DATA / "test.features"))
    assert sum(1 for _ in open(results / "submission" / "ensemble.predict")) == test_rows
    efficiency = pd.read_csv(results / "report" / "efficiency.csv").set_index("model")
    assert efficiency.loc["namer", "train_gflops_per_step"] > 0


@pytest.mark.slow
def test_paper_namer_is_merged_in_bf16_and_loads(paper_run):
    from safetensors import safe_open

    from prodcat.names.generation import load_causal_lm

    merged = paper_run[0] / "models" / "namer" / "merged"
    dtypes = set()
    for path in merged.glob("*.safetensors"):
        with safe_open(path, framework="pt") as handle:
            dtypes |= {handle.get_slice(name).get_dtype() for name in handle.keys()}
    assert dtypes == {"BF16"}
    model, tokenizer = load_causal_lm(merged)
    assert tokenizer.eos_token == "<|eot_id|>" and tokenizer.pad_token == "<|finetune_right_pad_id|>"
    # the real Llama-3.1 vocabulary and ids, through training and the merge
    assert len(tokenizer) == model.config.vocab_size == 128_256
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id) == (128004, 128009)
    assert sorted(model.generation_config.eos_token_id) == [128001, 128008, 128009]


@pytest.mark.slow
def test_changed_revision_reruns_what_depends_on_it(paper_run, paper_hub):
    results, override, _ = paper_run
    proc = run_snakemake(
        "-n", "--quiet", "rules", "--configfile", "configs/paper.yaml", str(override), env=offline_env(paper_hub)
    )
    assert "Nothing to be done" in proc.stdout + proc.stderr
    changed = yaml.safe_load(override.read_text())
    changed["base_models"] = {"byt5": {"id": "google/byt5-small", "revision": "f" * 40}}
    override.with_name("changed.yaml").write_text(yaml.safe_dump(changed))
    proc = run_snakemake(
        "-n",
        "--quiet",
        "rules",
        "--configfile",
        "configs/paper.yaml",
        str(override.with_name("changed.yaml")),
        env=offline_env(paper_hub),
    )
    out = proc.stdout + proc.stderr
    planned = {line.split()[0] for line in out.splitlines() if line.strip() and line.split()[0].isidentifier()}
    assert {"download_model", "train_labeler", "predict_labeler"} <= planned
    # byt5 and mmbyt5 start from ByT5; Flan-T5 and the namer do not
    assert "train_namer" not in planned and "synthesize_names" not in planned


def test_t5_standins_keep_an_untied_lm_head_through_every_loader(tmp_path):
    """ByT5 and Flan-T5 ship their own lm_head (T5 v1.1) and no output scaling; transformers 5
    builds T5 tied. The plain loader keeps the checkpoint's lm_head; the multimodal labeler must
    too, or the lm_head's values overwrite the input embedding (a bug only the real checkpoints,
    or stand-ins saved like them, can show)."""
    import torch
    from transformers import AutoModelForSeq2SeqLM

    from prodcat.labelers.mmt5 import MultimodalT5ForConditionalGeneration

    folder = build_hub_standin("byt5", tmp_path / "byt5", [])
    text = AutoModelForSeq2SeqLM.from_pretrained(folder)
    assert text.lm_head.weight is not text.shared.weight and not text.config.scale_decoder_outputs
    model = MultimodalT5ForConditionalGeneration.from_text_model(
        str(folder), retailers=["a", "b"], price_min=0.0, price_max=9.0
    )
    model.save_pretrained(tmp_path / "mm")
    reloaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "mm")
    for loaded in (model, reloaded):
        assert torch.equal(loaded.shared.weight, text.shared.weight)
        assert torch.equal(loaded.lm_head.weight, text.lm_head.weight)
        assert not loaded.config.scale_decoder_outputs


def test_real_shapes_reproduce_the_paper_parameter_counts():
    """The public configurations, built on the meta device, give PRMAS's Table 2 counts (as loaded
    from the hub: ByT5 and Flan-T5 carry their own lm_head); the multimodal labeler differs by its
    unknown-retailer row and missing-price vector (8 + 8 values), which the paper's model lacked."""
    from prodcat.standins.paper_models import parameter_counts

    counts = parameter_counts()
    assert counts["llama_lora"]["base"] == 8_030_261_248 and counts["llama_lora"]["lora"] == 41_943_040
    for model in ("byt5", "flant5", "llama_lora"):
        assert counts[model]["as_loaded"] == counts[model]["table2"], model
    assert counts["mmbyt5"]["as_loaded"] - counts["mmbyt5"]["table2"] == 16
    assert counts["byt5"]["from_config"] == 299_072_512 and counts["flant5"]["from_config"] == 222_903_552

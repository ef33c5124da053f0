import json

import numpy as np
import pandas as pd
import pytest

from prodcat.runtime.checkpoints import (
    SET_ASIDE_PREFIX,
    checkpoint_problem,
    last_checkpoint_of_run,
    model_identity,
    run_signature,
    weight_file_identity,
)


def make_checkpoint(folder, step: int, *, seed: int = 0):
    """A checkpoint as the Trainer leaves it: trainer state, safetensors weights, a torch file."""
    import torch
    from safetensors.numpy import save_file

    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    save_file({"w": np.random.default_rng(seed).normal(size=(64, 64)).astype(np.float32)}, folder / "model.safetensors")
    torch.save({"step": step}, folder / "optimizer.pt")
    return folder


def test_checkpoints_of_another_run_are_discarded(tmp_path):
    checkpoints = tmp_path / "ckpt"
    make_checkpoint(checkpoints / "checkpoint-3", 3)
    make_checkpoint(checkpoints / "checkpoint-12", 12)
    (checkpoints / "checkpoint-20").mkdir()  # killed while saving: no trainer state
    (checkpoints / "run_signature.txt").write_text("abc\n")
    assert last_checkpoint_of_run(checkpoints, "abc") == str(checkpoints / "checkpoint-12")
    assert (checkpoints / f"{SET_ASIDE_PREFIX}checkpoint-20").is_dir()  # set aside, not deleted
    assert last_checkpoint_of_run(checkpoints, "other") is None
    assert not (checkpoints / "checkpoint-12").exists()


@pytest.mark.parametrize("damaged", ["trainer_state.json", "model.safetensors", "optimizer.pt"])
def test_a_truncated_newest_checkpoint_is_set_aside_and_the_previous_one_resumed(tmp_path, damaged):
    checkpoints = tmp_path / "ckpt"
    make_checkpoint(checkpoints / "checkpoint-6", 6)
    newest = make_checkpoint(checkpoints / "checkpoint-12", 12)
    data = (newest / damaged).read_bytes()
    (newest / damaged).write_bytes(data[: len(data) // 2])  # a kill or power loss mid-write
    assert damaged in checkpoint_problem(newest)
    (checkpoints / "run_signature.txt").write_text("abc\n")
    assert last_checkpoint_of_run(checkpoints, "abc") == str(checkpoints / "checkpoint-6")
    assert not newest.exists() and (checkpoints / f"{SET_ASIDE_PREFIX}checkpoint-12").is_dir()


def test_signature_changes_with_settings_and_data(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    frame = pd.DataFrame({"a": [1, 2]})
    base = run_signature({"lr": 1}, tmp_path, [frame])
    assert base == run_signature({"lr": 1}, tmp_path, [frame.copy()])
    assert base != run_signature({"lr": 2}, tmp_path, [frame])
    assert base != run_signature({"lr": 1}, tmp_path, [frame.assign(a=[1, 3])])


def test_signature_changes_with_the_base_weights_not_only_its_config(tmp_path):
    """Issue 25, defect 1: a stand-in rebuilt with another seed has the same config.json and the
    same safetensors header, but other weights."""
    from safetensors.numpy import save_file

    frame = pd.DataFrame({"a": [1, 2]})
    signatures = []
    for seed in (0, 1):
        folder = tmp_path / f"seed{seed}"
        folder.mkdir()
        (folder / "config.json").write_text("{}")
        weights = {"w": np.random.default_rng(seed).normal(size=(512, 512)).astype(np.float32)}
        save_file(weights, folder / "model.safetensors")
        signatures.append(run_signature({"lr": 1}, folder, [frame]))
    assert signatures[0] != signatures[1]
    one, other = (weight_file_identity(tmp_path / f"seed{s}" / "model.safetensors") for s in (0, 1))
    assert one["header_sha256"] == other["header_sha256"] and one["sampled_sha256"] != other["sampled_sha256"]


def test_model_identity_of_a_hub_model_names_its_commit(tmp_path, monkeypatch):
    from safetensors.numpy import save_file

    from prodcat.runtime.hub import place_in_hub_cache

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    save_file({"w": np.zeros(4, dtype=np.float32)}, model / "model.safetensors")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    identities = []
    for commit in ("a" * 40, "b" * 40):
        place_in_hub_cache(model, "org/model", commit, tmp_path / "hf")
        identities.append(model_identity("org/model"))
    assert identities[0]["hub"] == {"repo_id": "org/model", "commit": "a" * 40}
    assert identities[1]["hub"]["commit"] == "b" * 40

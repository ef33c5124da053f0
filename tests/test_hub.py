"""Fetching base models through the hub cache: pinned revisions, offline use, clear errors."""

import json
import os

import pytest

from prodcat.runtime.hub import SOURCE_FILE, HubError, fetch_model, place_in_hub_cache

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def offline(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def fake_model(folder, *, weights="model.safetensors"):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "t5"}')
    (folder / "tokenizer_config.json").write_text("{}")
    (folder / weights).write_bytes(b"weights")
    (folder / "original").mkdir()
    (folder / "original" / "consolidated.00.pth").write_bytes(b"pickle")
    return folder


def test_fetch_resolves_a_pinned_revision_offline_and_links_only_model_files(tmp_path, offline):
    place_in_hub_cache(fake_model(tmp_path / "m"), "org/model", COMMIT, tmp_path / "hf")
    out = fetch_model("org/model", COMMIT, tmp_path / "out" / "model", cache_dir=tmp_path / "hf" / "hub")
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        SOURCE_FILE,
        "model.safetensors",
        "tokenizer_config.json",
    ]
    source = json.loads((out / SOURCE_FILE).read_text())
    assert (source["repo_id"], source["revision"], source["commit"]) == ("org/model", COMMIT, COMMIT)
    cached = tmp_path / "hf" / "hub" / "models--org--model" / "snapshots" / COMMIT / "model.safetensors"
    assert os.path.samefile(out / "model.safetensors", cached)  # a hard link, not a second copy
    # the branch name resolves through refs/main too
    assert (
        json.loads(
            (
                fetch_model("org/model", "main", tmp_path / "out2", cache_dir=tmp_path / "hf" / "hub") / SOURCE_FILE
            ).read_text()
        )["commit"]
        == COMMIT
    )


def test_fetch_offline_without_the_model_says_what_to_do(tmp_path, offline):
    with pytest.raises(HubError, match="not in the local hub cache.*HF_HUB_OFFLINE.*base_models"):
        fetch_model("org/absent", COMMIT, tmp_path / "out", cache_dir=tmp_path / "hf" / "hub")
    assert not (tmp_path / "out").exists()


def test_fetch_refuses_pickled_weights(tmp_path, offline):
    place_in_hub_cache(fake_model(tmp_path / "m", weights="pytorch_model.bin"), "org/old", COMMIT, tmp_path / "hf")
    with pytest.raises(HubError, match="no safetensors weights.*pickled"):
        fetch_model("org/old", COMMIT, tmp_path / "out", cache_dir=tmp_path / "hf" / "hub")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.tmp").exists()


def test_gated_model_error_says_how_to_give_a_token(tmp_path, monkeypatch):
    import httpx2
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError

    def gated(*args, **kwargs):
        request = httpx2.Request("GET", "https://huggingface.co/api/models/meta-llama/Llama-3.1-8B-Instruct")
        raise GatedRepoError("401 gated", response=httpx2.Response(401, request=request))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", gated)
    with pytest.raises(HubError, match=r"gated model.*HF_TOKEN.*hf auth login"):
        fetch_model("meta-llama/Llama-3.1-8B-Instruct", "main", tmp_path / "out")


def test_place_in_hub_cache_needs_a_commit(tmp_path):
    with pytest.raises(ValueError, match="commit hash"):
        place_in_hub_cache(fake_model(tmp_path / "m"), "org/model", "main", tmp_path / "hf")

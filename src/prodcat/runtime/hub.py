"""Base models from the Hugging Face hub: fetched once, pinned, and then read from a local folder.

`configs/paper.yaml` names `google/byt5-small`, `google/flan-t5-base` and
`meta-llama/Llama-3.1-8B-Instruct`, each at a pinned revision. The `download_model` rule (a local
rule: compute nodes often have no internet) resolves one through the hub cache with
`snapshot_download` — a download when online, the cache alone with `HF_HUB_OFFLINE=1` — and links
its files into the results folder, so every later rule, on any node, reads a plain local folder.
Only what transformers needs is fetched: configs, tokenizer files and safetensors weights (never
pickled `*.bin` weights, and not Llama's `original/` checkpoint).

`place_in_hub_cache` writes a model folder into a hub cache under a repo id and revision, laid out
as the hub writes it; the tests and benchmarks use it to run the paper configuration on stand-ins.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

# What a transformers model folder needs; pickled weights (*.bin, *.pth) are never fetched.
MODEL_FILE_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "tokenizer*"]
IGNORED_PATTERNS = ["original/*", "*.bin", "*.pth", "*.h5", "*.msgpack", "*.ot"]
SOURCE_FILE = "hub_source.json"
COMMIT = re.compile(r"^[0-9a-f]{40}$")

GATED_HELP = (
    "{repo} is a gated model: accept its licence on https://huggingface.co/{repo} with your account, "
    "then give this workflow a token: `export HF_TOKEN=hf_...` (a read token from "
    "https://huggingface.co/settings/tokens) or `hf auth login` once on the machine that runs the "
    "download_model rule. Or download it yourself and put the folder path under base_models."
)


class HubError(RuntimeError):
    """A base model could not be fetched; the message says why and what to do."""


def fetch_model(repo_id: str, revision: str, out_dir, *, token=None, cache_dir=None) -> Path:
    """Resolve `repo_id` at `revision` (hub or cache) and link its files into `out_dir`.

    Files are hard-linked from the hub cache when it is on the same file system (no second copy of
    16 GB of Llama weights), else copied. `out_dir` appears complete or not at all; it records
    where it came from in hub_source.json."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError
    from huggingface_hub.utils import filter_repo_objects

    out_dir = Path(out_dir)
    try:
        snapshot = Path(
            snapshot_download(
                repo_id,
                revision=revision,
                allow_patterns=MODEL_FILE_PATTERNS,
                ignore_patterns=IGNORED_PATTERNS,
                token=token,
                cache_dir=cache_dir,
            )
        )
    except GatedRepoError as error:
        raise HubError(GATED_HELP.format(repo=repo_id) + f" (hub said: {error})") from error
    except RepositoryNotFoundError as error:
        raise HubError(
            f"{repo_id}: no such model on the hub, or it is private/gated and no valid token was given "
            f"({GATED_HELP.format(repo=repo_id)})"
        ) from error
    except LocalEntryNotFoundError as error:
        raise HubError(
            f"{repo_id} at revision {revision} is not in the local hub cache "
            f"({os.environ.get('HF_HUB_CACHE') or os.environ.get('HF_HOME') or '~/.cache/huggingface'}) "
            f"and the hub cannot be reached (HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '0')}): "
            "run the download_model rule once where there is internet, or put a local folder under "
            f"base_models ({error})"
        ) from error
    except HfHubHTTPError as error:
        if error.response is not None and error.response.status_code in (401, 403):
            raise HubError(GATED_HELP.format(repo=repo_id) + f" (hub said: {error})") from error
        raise
    # offline, snapshot_download returns the cached snapshot whole: filter it the same way
    files = sorted(
        filter_repo_objects(
            [p.relative_to(snapshot) for p in snapshot.rglob("*") if p.is_file()],
            allow_patterns=MODEL_FILE_PATTERNS,
            ignore_patterns=IGNORED_PATTERNS,
            key=str,
        )
    )
    names = {str(f) for f in files}
    if "config.json" not in names:
        raise HubError(f"{repo_id}@{revision}: no config.json in {snapshot}; not a transformers model")
    if not any(name.endswith(".safetensors") for name in names):
        raise HubError(
            f"{repo_id}@{revision} has no safetensors weights in {snapshot} (files: {', '.join(sorted(names))}). "
            "This workflow never loads pickled weights (*.bin) it did not make: pick a revision with "
            "model.safetensors (the hub's safetensors conversion is often the revision refs/pr/N), or convert "
            "the weights yourself and put that folder under base_models."
        )
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for rel in files:
        target = tmp / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        source = (snapshot / rel).resolve()  # the cache's snapshot entries are links to blobs
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)
    commit = snapshot.name if COMMIT.match(snapshot.name) else None
    (tmp / SOURCE_FILE).write_text(
        json.dumps({"repo_id": repo_id, "revision": revision, "commit": commit, "files": sorted(names)}, indent=1)
        + "\n"
    )
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    log.info("%s@%s (commit %s): %d files in %s", repo_id, revision, commit, len(files), out_dir)
    return out_dir


def local_model_dir(name_or_path, revision: str | None = None) -> Path:
    """A model folder on disk: the path itself, or a hub id's snapshot in the hub cache (fetched
    when online, the cache alone offline), for code that reads a model's files directly."""
    if Path(name_or_path).is_dir():
        return Path(name_or_path)
    from huggingface_hub import snapshot_download

    return Path(
        snapshot_download(
            str(name_or_path), revision=revision, allow_patterns=MODEL_FILE_PATTERNS, ignore_patterns=IGNORED_PATTERNS
        )
    )


def hub_cache_dir(hf_home) -> Path:
    return Path(hf_home) / "hub"


def place_in_hub_cache(model_dir, repo_id: str, revision: str, hf_home, *, branch: str = "main") -> Path:
    """Copy a model folder into `$HF_HOME/hub` as the hub's cache holds `repo_id` at commit `revision`
    (models--ORG--NAME/refs/<branch> + snapshots/<revision>/...), so that `from_pretrained(repo_id)`
    and `snapshot_download(repo_id, revision=...)` resolve it with HF_HUB_OFFLINE=1."""
    if not COMMIT.match(revision):
        raise ValueError(f"place_in_hub_cache: revision must be a 40-hex commit hash, got {revision!r}")
    repo_dir = hub_cache_dir(hf_home) / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / revision
    if snapshot.exists():
        shutil.rmtree(snapshot)
    shutil.copytree(model_dir, snapshot)
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / branch).write_text(revision)
    return snapshot

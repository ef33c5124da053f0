"""Sharded name generation: the same names whatever the shard count, prompts tokenised a batch at a
time, and a killed run that redoes only the shards that did not finish.

Unit tests run the generation functions on a tiny random Llama; the workflow tests run the naming
stage of the .test workflow through Snakemake (3 shards against 1, and a real interrupted run).
"""

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from prodcat import LEVELS
from prodcat.names import generation
from prodcat.names.prompts import student_messages
from prodcat.standins.tiny_llama import build_tiny_llama

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = {
    "system": "Name the product.",
    "teacher_user": "{description} | {price} | {supergroup} | {group} | {module} | {brand}",
    "student_user": "{description} | {price}",
}
WORDS = ["cad", "creme", "egg", "hnz", "bkd", "beans", "tsco", "wht", "brd", "zero", "btl", "crsp", "salt"]
GEN = {"batch_size": 4, "max_new_tokens": 6}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def varied_rows(ids: np.ndarray, seed: int) -> pd.DataFrame:
    """One row per id, whose prompts have many different lengths (1 to 9 words), every 5th price
    missing (test_prefix_reuse.py uses them too)."""
    rng = np.random.default_rng(seed)
    n = len(ids)
    return pd.DataFrame(
        {
            "indoml_id": ids,
            "description": [" ".join(rng.choice(WORDS, size=rng.integers(1, 10))) for _ in range(n)],
            "retailer": "r1",
            "price": [np.nan if i % 5 == 0 else round(0.5 + i * 0.37, 2) for i in range(n)],
            "supergroup": "food",
            "group": "grocery",
            "module": "misc",
            "brand": [WORDS[i % len(WORDS)] for i in range(n)],
        }
    )


def sharpened_tiny_llama(path: Path, texts) -> Path:
    """A tiny random Llama (tokenizer trained on `texts`) with its weight matrices scaled up 8x:
    at the usual init (std 0.02) its answers barely depend on the prompt (4 distinct answers for
    30 rows), scaled they do (28), so that equal answers from two ways of generating mean something."""
    import torch
    from transformers import AutoModelForCausalLM

    path = build_tiny_llama(path, list(texts))
    model = AutoModelForCausalLM.from_pretrained(path)
    with torch.no_grad():
        for weight in model.parameters():
            if weight.dim() >= 2:
                weight.mul_(8)
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def rows():
    """30 rows, ids not in sorted order."""
    return varied_rows(np.arange(500, 530, dtype="int64")[::-1].copy(), seed=3)


@pytest.fixture(scope="module")
def base(tmp_path_factory, rows):
    return sharpened_tiny_llama(tmp_path_factory.mktemp("tiny") / "llama", [*rows["description"], *TEMPLATES.values()])


# ---- the plan ------------------------------------------------------------------------------------


def test_shard_batches_split_the_same_batches_round_robin():
    lengths = np.array([5, 9, 9, 3, 7, 5, 1, 8, 2, 6, 4])
    one = generation.shard_batches(lengths, 3)
    # longest first, ties by position, cut into batches of 3
    assert [b.tolist() for b in one] == [[1, 2, 7], [4, 9, 0], [5, 10, 3], [8, 6]]
    for shards in (2, 3, 4, 7):
        parts = [generation.shard_batches(lengths, 3, shard, shards) for shard in range(shards)]
        for shard, part in enumerate(parts):  # the same batches, dealt round robin
            assert [b.tolist() for b in part] == [b.tolist() for b in one[shard::shards]]
        positions = np.concatenate([b for part in parts for b in part])
        assert sorted(positions.tolist()) == list(range(len(lengths)))  # every row in exactly one shard
    with pytest.raises(ValueError, match="shard 3 of 3"):
        generation.shard_batches(lengths, 3, 3, 3)
    with pytest.raises(ValueError, match="batch_size"):
        generation.shard_batches(lengths, 0)


def test_prompts_are_tokenised_a_chunk_or_a_batch_at_a_time(base, rows, monkeypatch):
    """Memory does not grow with the rows: no call tokenises more than a chunk (lengths) or a
    batch (generation), and the chats are built per row on demand."""
    model, tokenizer = generation.load_causal_lm(base)
    chats = generation.Chats(rows[["description", "price"]], student_messages, TEMPLATES)
    assert len(chats) == len(rows) and chats[3] == student_messages(rows.iloc[3], TEMPLATES)
    whole = generation._prompt_ids(tokenizer, [chats[i] for i in range(len(chats))])
    assert generation.prompt_lengths(tokenizer, chats, chunk_size=7).tolist() == [len(ids) for ids in whole]

    calls = []
    real = generation._prompt_ids

    def recording(tok, messages):
        calls.append(len(messages))
        return real(tok, messages)

    monkeypatch.setattr(generation, "_prompt_ids", recording)
    monkeypatch.setattr(generation, "LENGTH_CHUNK", 8)
    ids = generation.generate_token_ids(model, tokenizer, chats, batch_size=4, max_new_tokens=3)
    assert len(ids) == len(rows) and max(calls) <= 8 and sum(calls) == 2 * len(rows)


# ---- names do not depend on the shard count -----------------------------------------------------


def _gathered(fn, model_dir, rows, shards):
    parts = [fn(model_dir, rows, TEMPLATES, GEN, shard=k, shards=shards) for k in range(shards)]
    for part in parts:  # each shard keeps the split's row order
        order = rows.reset_index(drop=True).reset_index().set_index("indoml_id").loc[part["indoml_id"], "index"]
        assert order.is_monotonic_increasing
    return generation.gather_shards(rows["indoml_id"], parts)


def test_teacher_names_are_identical_from_1_or_3_shards(base, rows):
    one = generation.generate_teacher_names(base, rows, TEMPLATES, GEN)
    three = _gathered(generation.generate_teacher_names, base, rows, 3)
    pd.testing.assert_frame_equal(three, one)
    assert list(one.columns) == ["indoml_id", "name", "status", "answer", "description", "price", *LEVELS]
    assert one["indoml_id"].tolist() == rows["indoml_id"].tolist()
    # the raw answers differ from row to row, so their equality above says something
    assert one["answer"].nunique() > len(rows) // 2


def test_student_names_are_identical_from_1_or_3_shards(base, rows):
    student_rows = rows[["indoml_id", "description", "price"]]
    one = generation.generate_student_names(base, student_rows, TEMPLATES, GEN)
    three = _gathered(generation.generate_student_names, base, student_rows, 3)
    pd.testing.assert_frame_equal(three, one)
    assert one["answer"].nunique() > len(rows) // 2
    # more shards than batches: the extra shards are empty, and still gather to the same table
    many = _gathered(generation.generate_student_names, base, student_rows, 9)
    pd.testing.assert_frame_equal(many, one)


def test_gather_refuses_a_row_in_two_shards_or_in_none():
    a = pd.DataFrame({"indoml_id": [1, 3], "name": ["x", "y"]})
    b = pd.DataFrame({"indoml_id": [2], "name": ["z"]})
    assert generation.gather_shards([3, 2, 1], [a, b])["name"].tolist() == ["y", "z", "x"]
    with pytest.raises(ValueError, match="indoml_id 3 is in more than one shard"):
        generation.gather_shards([1, 2, 3], [a, b, a.tail(1)])
    with pytest.raises(ValueError, match="1 row\\(s\\) in no shard, e.g. indoml_id 4"):
        generation.gather_shards([1, 2, 3, 4], [a, b])
    with pytest.raises(ValueError, match="indoml_id 2 is not a row of the split"):
        generation.gather_shards([1, 3], [a, b])


# ---- the workflow: 3 shards against 1, and a killed run ------------------------------------------


def _snakemake_args(results: Path, shards: int, target: str) -> list[str]:
    overlay = results.parent / f"shards{shards}.yaml"
    overlay.write_text(yaml.safe_dump({"results": str(results), "namer": {"shards": shards}}))
    return [
        "--cores",
        "1",
        "--resources",
        "gpu=1",
        "--configfile",
        ".test/config.yaml",
        str(overlay),
        "--",
        str(results / target),
    ]


def _planned_jobs(text: str) -> set[tuple[str, str]]:
    """(rule, wildcards) of each job a dry run lists."""
    jobs, rule = set(), None
    for line in text.splitlines() + [""]:
        if header := re.fullmatch(r"(?:local)?rule (\w+):", line):
            rule, wildcards = header.group(1), ""
        elif rule and line.strip().startswith("wildcards:"):
            wildcards = line.split(":", 1)[1].strip()
        elif rule and not line.startswith(" "):
            jobs.add((rule, wildcards))
            rule = None
    return jobs


def _env():
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")


@pytest.mark.slow
def test_killed_sharded_run_redoes_only_unfinished_shards_and_names_match_one_shard(tmp_path):
    from conftest import run_snakemake

    results, target = tmp_path / "results", "names/teacher/train.parquet"
    run_snakemake(*_snakemake_args(results, 1, target))
    one_shard = pd.read_parquet(results / target)

    # 3 shards, one job at a time, killed outright (SIGKILL to Snakemake and its job, as a lost node
    # or the OOM killer would) as soon as the first shard has finished. (SIGTERM can deadlock
    # Snakemake 9.27: its handler takes a lock the main thread may be holding.)
    proc = subprocess.Popen(
        [sys.executable, "-m", "snakemake", *_snakemake_args(results, 3, target)],
        cwd=REPO,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    log, shard_of_job, finished, job = [], {}, None, None
    for line in proc.stderr:
        log.append(line)
        if re.fullmatch(r"(?:local)?rule synthesize_names:", line.strip()):
            job = {}
        elif job is not None and (jobid := re.fullmatch(r"jobid: (\d+)", line.strip())):
            job["id"] = jobid.group(1)
        elif job is not None and (shard := re.fullmatch(r"wildcards: split=train, shard=(\d+)", line.strip())):
            shard_of_job[job["id"]], job = shard.group(1), None
        elif finished is None and (done := re.match(r"Finished jobid: (\d+) \(Rule: synthesize_names\)", line)):
            finished = shard_of_job[done.group(1)]
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=600)
    assert finished is not None, "".join(log[-60:])
    assert (results / f"names/teacher/shards/train.{finished}-of-3.parquet").exists()
    # what a user does after a crash: remove the dead run's lock, then look at the plan
    run_snakemake("--unlock", "--configfile", ".test/config.yaml", str(tmp_path / "shards3.yaml"))

    dry = run_snakemake("-n", *_snakemake_args(results, 3, target))
    planned = _planned_jobs(dry.stdout + dry.stderr)
    unfinished = {str(k) for k in range(3)} - {finished}
    assert planned == {("synthesize_names", f"split=train, shard={k}") for k in unfinished} | {
        ("gather_names", "which=teacher, split=train")
    }, sorted(planned)

    rerun = run_snakemake(*_snakemake_args(results, 3, target))
    ran = _planned_jobs(rerun.stderr)
    assert {job for job in ran if job[0] == "synthesize_names"} == {
        ("synthesize_names", f"split=train, shard={k}") for k in unfinished
    }
    three_shards = pd.read_parquet(results / target)
    pd.testing.assert_frame_equal(three_shards, one_shard)
    # names differ from row to row (the .test teacher is a pretrained stand-in), so equal tables
    # mean every row got its own name back: a name shifted by one row would differ in most rows
    assert (one_shard["name"] != one_shard["name"].shift()).mean() > 0.5
    summary = json.loads((results / target).with_name("train.summary.json").read_text())
    assert summary["shards"] == 3 and summary["rows"] == len(one_shard) == len(set(one_shard["indoml_id"]))

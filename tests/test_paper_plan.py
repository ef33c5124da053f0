"""bench/paper_plan.py: the paper run's work counted on the data, and hours on a named GPU."""

import importlib.util
import json
import sys

import numpy as np
import pytest
import yaml
from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("paper_plan", REPO / "bench" / "paper_plan.py")
paper_plan = importlib.util.module_from_spec(spec)
sys.modules["paper_plan"] = paper_plan  # dataclasses look their module up there
spec.loader.exec_module(paper_plan)


def test_padding_of_sorted_and_given_batches_by_hand():
    lengths = np.array([5, 1, 4, 2])
    batches = paper_plan.sorted_batches(lengths, 2)  # longest first: [5, 4], [2, 1]
    assert [b.tolist() for b in batches] == [[0, 2], [3, 1]]
    assert paper_plan.padded(lengths, batches) == 2 * 5 + 2 * 2
    assert paper_plan.padded(lengths, [np.array([0, 1]), np.array([2, 3])]) == 2 * 5 + 2 * 4


def test_length_grouping_leaves_padding_only_where_lengths_differ():
    # 400 rows, half of length 1 and half of length 3, batch 2: HF's sampler sorts megabatches of
    # 50 batches (100 rows), so at most one batch of each of the 4 megabatches mixes the lengths
    lengths = np.array([1, 3] * 200)
    real = int(lengths.sum())
    grouped = paper_plan.padded(lengths, paper_plan.training_batches(lengths, 2, grouped=True))
    assert real <= grouped <= real + 4 * 2 * (3 - 1)
    shuffled = paper_plan.padded(lengths, paper_plan.training_batches(lengths, 2, grouped=False))
    assert shuffled > grouped + 100  # ~half the random pairs mix: ~200 padded tokens


def test_prefix_reuse_prefills_the_shared_prefix_once_per_job():
    prompts = np.array([10, 12, 12, 14])
    counts = paper_plan.Counts(
        rows=4,
        byt5_source=prompts,
        target_bytes=prompts,
        t5_source=prompts,
        t5_target=prompts,
        teacher_prompt=prompts,
        student_prompt=prompts,
        answer=np.array([3, 3, 3, 3]),
        teacher_prefix=8,
    )
    sizes = paper_plan.model_sizes()
    gen = {"batch_size": 2, "max_new_tokens": 48}
    gpu = paper_plan.GPUS["h100"]
    reused = paper_plan.generation(counts, "teacher", gen, 2, sizes, gpu, reuse=True)
    whole = paper_plan.generation(counts, "teacher", gen, 2, sizes, gpu, reuse=False)
    # batches [14, 12], [12, 10]; the rests after 8 shared tokens are padded to 6 and 4; 2 jobs
    assert reused["prefilled_tokens"] == 2 * 6 + 2 * 4 + 2 * 8
    assert whole["prefilled_tokens"] == 2 * 14 + 2 * 12
    assert reused["decode_steps_per_batch"] == 3 and reused["seconds"] < whole["seconds"]
    assert paper_plan.common_prefix([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2


def test_critical_path_on_one_and_two_gpus():
    jobs = [
        paper_plan.Job("r", "a", 7200.0),
        paper_plan.Job("r", "b", 3600.0, deps=["a"]),
        paper_plan.Job("r", "c", 7200.0),
        paper_plan.Job("r", "d", 3600.0, gpus=2, deps=["b", "c"]),
    ]
    assert paper_plan.schedule(jobs, 1) == pytest.approx(6 * 3600)
    assert paper_plan.schedule(jobs, 2) == pytest.approx(4 * 3600)


def test_plan_runs_on_the_test_data_and_writes_its_json(tmp_path, capsys):
    out = tmp_path / "plan.json"
    args = ["--configfile", str(REPO / "configs" / "paper.yaml"), "--data", str(REPO / ".test" / "data")]
    assert paper_plan.main([*args, "--gpu", "h100", "--gpus", "2", "--json", str(out)]) == 0
    plan = json.loads(out.read_text())
    assert (plan["gpu"], plan["gpus"]) == ("h100", 2) and "| train_namer |" in capsys.readouterr().out
    rules = {r["rule"]: r for r in plan["rules"]}
    assert {"synthesize_names[train]", "train_namer", "infer_names[test]", "train_labeler[byt5]"} <= set(rules)
    assert all(r["tokens"] > 0 and r["flops"] > 0 and r["hours"] > 0 for r in plan["rules"])
    assert max(r["hours"] for r in plan["rules"]) <= plan["total_hours"] <= plan["gpu_hours"]
    # the real tokenizer's chat prompts: all share the chat header and system message
    assert rules["synthesize_names[train]"]["shared_prefix"] > 40
    assert (
        rules["train_namer"]["gpus"] == 2
        and rules["train_namer"]["padded_tokens"] >= rules["train_namer"]["real_tokens"]
    )
    # the parent's code on the same counts: no reuse, no grouping, one GPU per training
    config = paper_plan.load_config([REPO / "configs" / "paper.yaml"])
    counts = paper_plan.workload(config, REPO / ".test" / "data", paper_plan.llama_tokenizer())
    base = paper_plan.plan(config, counts, paper_plan.model_sizes(), "h100", 2, baseline=True)
    base_rules = {r["rule"]: r for r in base["rules"]}
    assert base_rules["synthesize_names[train]"]["shared_prefix"] == 0
    assert (
        base_rules["synthesize_names[train]"]["prefilled_tokens"] > rules["synthesize_names[train]"]["prefilled_tokens"]
    )
    # the namer groups by length (its default); the labelers keep random batches (theirs)
    assert base_rules["train_namer"]["padded_tokens"] > rules["train_namer"]["padded_tokens"]
    assert base_rules["train_labeler[byt5]"]["padded_tokens"] == rules["train_labeler[byt5]"]["padded_tokens"]
    assert base["total_hours"] > plan["total_hours"]
    yaml.safe_dump(plan)  # plain numbers only


def test_gpu_check_sets_measured_efficiencies_beside_the_plan_constants():
    """bench/gpu_check.py's arithmetic on a made-up H100 report (no GPU needed): a T5 step that
    runs at exactly the plan's 40 % of peak reads back as 0.40."""
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "bench" / "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    size = paper_plan.model_sizes()["byt5"]
    flops = 6 * 32 * (size["encoder"] * 69 + (size["decoder"] + size["head"]) * 166)
    step = {"batch": 32, "source": 69, "target": 166, "step_seconds": flops / (0.4 * 989e12)}
    report = {"device": "NVIDIA H100 80GB HBM3", "smoke": False, "byt5": step, "flant5": dict(step)}
    result = gpu_check.efficiencies(report)
    assert result["gpu"] == "h100" and result["plan"]["matmul share of peak"] == 0.4
    assert result["measured"]["train_labeler[byt5] matmul share of peak"] == pytest.approx(0.4)
    assert gpu_check.efficiencies(dict(report, device="cpu")) is None

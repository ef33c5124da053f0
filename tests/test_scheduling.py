"""Local scheduling with the GPU cap: GPU jobs one at a time, CPU jobs beside them.

The .test DAG has GPU jobs that could run together (each labeler's predict_labeler for val and
test, infer_names for val and test: same inputs, no edge between them, 2 threads each, so both
fit in --cores 4); only `--resources gpu=1` keeps them apart. And when predict_labeler[val] ends,
its correct[val] (CPU) and predict_labeler[test] (GPU) start in the same scheduling round, so a
CPU job runs beside a GPU job whatever the timings.

Start and end of every job come from Snakemake's own log: a `[date]` line precedes each
`rule NAME:` block (which names its jobid and resources) and each `Finished jobid: N` line.
Dates have one-second resolution; Snakemake logs a finish before it starts the job that the
freed resource allows, so even truncated seconds never show a false GPU overlap.
"""

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@dataclass
class JobSpan:
    jobid: int
    rule: str
    gpu: int
    start: datetime
    end: datetime | None = None

    def overlaps(self, other: "JobSpan") -> bool:
        return self.start < other.end and other.start < self.end


def job_spans(log: str) -> list[JobSpan]:
    """Every job Snakemake started, with its GPU count and start/end times, from its log."""
    spans, now, current = {}, None, None
    for line in log.splitlines():
        if stamp := re.fullmatch(r"\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]", line.strip()):
            now = datetime.strptime(stamp.group(1), "%a %b %d %H:%M:%S %Y")
        elif header := re.fullmatch(r"(?:local)?rule (\w+):", line):
            current = {"rule": header.group(1), "start": now, "gpu": 0}
        elif current is not None and (jobid := re.fullmatch(r"\s+jobid: (\d+)", line)):
            current["jobid"] = int(jobid.group(1))
            spans[current["jobid"]] = JobSpan(**current)
        elif current is not None and line.strip().startswith("resources:"):
            gpu = re.search(r"\bgpu=(\d+)", line)
            spans[current["jobid"]].gpu = int(gpu.group(1)) if gpu else 0
            current = None
        elif finished := re.match(r"Finished jobid: (\d+)", line):
            spans[int(finished.group(1))].end = now
    return list(spans.values())


def test_job_spans_reads_starts_ends_and_gpus():
    log = """[Mon Nov 30 09:33:58 2026]
localrule predict_labeler:
    jobid: 15
    threads: 2
    resources: tmpdir=/tmp, gpu=1
[Mon Nov 30 09:33:58 2026]
rule correct:
    jobid: 9
    resources: tmpdir=/tmp
[Mon Nov 30 09:34:03 2026]
Finished jobid: 9 (Rule: correct)
[Mon Nov 30 09:35:12 2026]
Finished jobid: 15 (Rule: predict_labeler)
"""
    predict, correct = sorted(job_spans(log), key=lambda span: -span.gpu)
    assert (predict.rule, predict.gpu, predict.end.minute, predict.end.second) == ("predict_labeler", 1, 35, 12)
    assert (correct.rule, correct.gpu, correct.end.second) == ("correct", 0, 3)
    assert predict.overlaps(correct)


@pytest.mark.slow
def test_gpu_jobs_never_overlap_and_cpu_jobs_run_beside_them(finished_test_run):
    # the shared run: the whole .test DAG with --cores 4 --resources gpu=1
    _, log = finished_test_run
    spans = [span for span in job_spans(log) if span.rule != "all"]
    assert spans and all(span.end is not None for span in spans)
    gpu = sorted((span for span in spans if span.gpu), key=lambda span: span.start)
    cpu = [span for span in spans if not span.gpu]
    assert {"train_labeler", "predict_labeler"} <= {span.rule for span in gpu}
    for earlier, later in zip(gpu, gpu[1:]):
        assert later.start >= earlier.end, f"GPU jobs {earlier} and {later} overlap"
    beside = [(c.rule, g.rule) for c in cpu for g in gpu if c.overlaps(g)]
    assert beside, "no CPU job ran while a GPU job ran"
    print(f"{len(gpu)} GPU jobs in sequence; CPU beside GPU: {sorted(set(beside))}")

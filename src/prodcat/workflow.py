"""Glue for Snakemake `script:` rules: each script is one call into here.

A script gets the `snakemake` object; its stdout, stderr and Python logging go to the rule's log
file, as lines (prodcat.runtime.progress): a line every `logging_steps` training steps, no progress bars.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

import pandas as pd

from prodcat import LEVELS

# Table 2 reads generation FLOPs from the test split's prediction summaries (rules/common.smk,
# efficiency_files); FlopCounterMode is slow, so the other splits skip counting.
FLOPS_SPLIT = "test"


def logging_to(path):
    """The job's log at `path` for the block (`_logging_to_file`); in a torchrun worker of a
    data-parallel job, whose launching process already sends everything there, lines on that
    stream instead (`_worker_logging`)."""
    from prodcat.runtime.distributed import world_size

    return _worker_logging() if world_size() > 1 else _logging_to_file(path)


@contextlib.contextmanager
def _worker_logging():
    """Python logging to stderr (the job's log, inherited from the launching process), each line
    with the process's rank; the other processes than the main one log warnings and errors only."""
    import sys

    from prodcat.runtime.distributed import is_main_process, rank
    from prodcat.runtime.progress import no_progress_bars

    no_progress_bars()
    level = logging.INFO if is_main_process() else logging.WARNING
    with _root_logging(sys.stderr, f"%(asctime)s %(levelname)s rank {rank()} %(name)s: %(message)s", level):
        yield


@contextlib.contextmanager
def _root_logging(stream, line_format: str, level: int):
    """Python's root logger also writes to `stream` for the block; an exception is logged on its way out."""
    root = logging.getLogger()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(line_format))
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield
    except Exception:
        logging.exception("failed")
        raise
    finally:
        root.removeHandler(handler)


@contextlib.contextmanager
def _logging_to_file(path):
    """Everything the process writes goes to the log file at `path` for the block: Python's stdout,
    stderr and logging, and also the OS-level file descriptors 1 and 2, which C and C++ code (torch's
    kineto profiler, CUDA, tokenizers) writes to directly, past sys.stderr; all restored after."""
    import os
    import sys

    from prodcat.runtime.progress import no_progress_bars

    no_progress_bars()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", buffering=1) as handle, contextlib.ExitStack() as stack:
        for stream in (sys.stdout, sys.stderr):  # what Python holds for the console goes there first
            if stream is not None:
                stream.flush()
        for fd in (1, 2):
            saved = os.dup(fd)
            stack.callback(os.close, saved)
            stack.callback(os.dup2, saved, fd)
            stack.callback(handle.flush)  # Python's writes reach the file before fd gets the console back
            os.dup2(handle.fileno(), fd)
        stack.enter_context(contextlib.redirect_stdout(handle))
        stack.enter_context(contextlib.redirect_stderr(handle))
        stack.enter_context(_root_logging(handle, "%(asctime)s %(levelname)s %(name)s: %(message)s", logging.INFO))
        yield


def _set_threads(n: int) -> None:
    try:
        import torch
    except ImportError:  # a CPU-only environment (envs/cpu.yaml: the charngram rules) runs no torch
        return
    torch.set_num_threads(max(1, int(n)))


def tokenizer_corpus(rows: pd.DataFrame, templates: dict | None = None) -> list[str]:
    """What a stand-in's tokenizer is trained on: the receipt lines, the target texts and (for the
    chat model) every row's teacher and student prompt as the model reads them.

    Whole prompts, not the templates once: BPE merges follow frequency, and the template's words
    come with every row. Trained on the templates once, the tiny tokenizer spelled the prompt prose
    out at ~2 characters per token (380 tokens a prompt); the real Llama-3 tokenizer encodes English
    at ~4, and every namer stage's cost grows with the prompt length."""
    from prodcat.data.target_text import format_target
    from prodcat.names.prompts import student_messages, teacher_messages
    from prodcat.standins.tiny_llama import CHAT_HEADER_TEXT

    texts = rows["description"].astype(str).tolist()
    texts += [
        format_target(labels) for labels in rows[list(LEVELS)].drop_duplicates().itertuples(index=False, name=None)
    ]
    if templates:
        texts.append(CHAT_HEADER_TEXT)
        for row in rows.to_dict("records"):
            texts += [message["content"] for message in teacher_messages(row, templates)[1:]]
            texts += [message["content"] for message in student_messages(row, templates)]
    return texts


def build_tiny_model(smk) -> None:
    from prodcat.data.io import read_rows
    from prodcat.standins.tiny_llama import build_tiny_llama
    from prodcat.standins.tiny_seq2seq import build_tiny_byt5, build_tiny_flant5

    with logging_to(smk.log[0]):
        _set_threads(smk.threads)
        arch, dims, seed = smk.wildcards.arch, dict(smk.params.dims), smk.params.seed
        if arch == "byt5":
            build_tiny_byt5(smk.output[0], dims, seed=seed)
        elif arch == "flant5":
            rows = read_rows(smk.input.train, labelled=True)
            build_tiny_flant5(
                smk.output[0], tokenizer_corpus(rows), dims, vocab_size=dims.pop("vocab_size", 1000), seed=seed
            )
        elif arch == "llama":
            rows = read_rows(smk.input.train, labelled=True)
            warmup = dims.pop("warmup", None) or {"enabled": False}
            build_tiny_llama(smk.output[0], tokenizer_corpus(rows, smk.params.templates), seed=seed, **dims)
            if warmup["enabled"]:
                pretrain_llama_standin(
                    smk.output[0], [smk.input.train, smk.input.val], warmup, dict(smk.params.templates)
                )
        else:
            raise ValueError(f"no tiny stand-in for {arch!r}: expected byt5, flant5 or llama")
        # what the stand-in is, for the run signatures of the checkpoints trained from it
        write_standin_record(smk.output[0], arch, dict(smk.params.dims), seed)


def write_standin_record(model_dir, arch: str, dims: dict, seed: int) -> None:
    from prodcat.data.io import write_json
    from prodcat.runtime.checkpoints import STANDIN_FILE

    write_json({"arch": arch, "seed": seed, "dims": dims}, Path(model_dir) / STANDIN_FILE)


def pretrain_llama_standin(model_dir, run_row_paths: list[str], warmup: dict, templates: dict) -> dict:
    """The Llama stand-in's pretraining (tiny.llama.warmup): prompts → true product names on rows of
    the sample's catalogue drawn apart from the run's rows (`synthetic.pretraining_rows`), checked
    against those of `run_row_paths`."""
    from prodcat.data.io import read_rows, write_json
    from prodcat.standins.synthetic import pretraining_rows
    from prodcat.standins.tiny_llama import pretrain_tiny_llama

    # the labels, where a table has them, let pretraining_rows check that the data is the catalogue's
    run_rows = pd.concat([read_rows(path) for path in run_row_paths], ignore_index=True)
    settings = {
        k: warmup[k]
        for k in ("steps", "batch_size", "learning_rate", "warmup_steps", "student_share", "seed")
        if k in warmup
    }
    try:
        # one fresh row per training example
        rows = pretraining_rows(
            warmup["catalogue_seed"],
            warmup["steps"] * warmup["batch_size"],
            seed=warmup["rows_seed"],
            run_rows=run_rows,
        )
    except ValueError as exc:
        raise ValueError(
            f"tiny.llama.warmup: {exc}. Set tiny.llama.warmup.catalogue_seed to the seed the data was "
            "made with (prodcat make-sample --seed), or tiny.llama.warmup.enabled: false for other data"
        ) from exc
    # Rows apart, products shared: how many pretraining receipt lines also occur among the run's
    # rows (the same product printed the same way by the same till is expected, as on real receipts).
    seen = set(zip(run_rows["description"], run_rows["retailer"]))
    repeated = sum(pair in seen for pair in zip(rows["description"], rows["retailer"]))
    logging.info(
        "pretraining rows: %d (ids %d to %d, none of the %d checked run ids); %d share description and "
        "retailer with a checked run row",
        len(rows),
        rows["indoml_id"].min(),
        rows["indoml_id"].max(),
        len(run_rows),
        repeated,
    )
    summary = pretrain_tiny_llama(model_dir, rows, templates, settings)
    summary = {
        "what": "the tiny Llama stand-in's pretraining (not a stage of the method)",
        "catalogue_seed": warmup["catalogue_seed"],
        "rows_seed": warmup["rows_seed"],
        "ids": [int(rows["indoml_id"].min()), int(rows["indoml_id"].max())],
        "shared_description_retailer": repeated,
        **summary,
    }
    write_json(summary, Path(model_dir) / "pretraining.json")
    return summary


def download_model(smk) -> None:
    from prodcat.runtime.hub import fetch_model

    with logging_to(smk.log[0]):
        fetch_model(smk.params.repo_id, smk.params.revision, smk.output[0])


# ---- data-parallel training: one job, N torchrun processes ----------------------------------
class _Named(list):
    """Snakemake's Namedlist as far as these steps read it: values by position, by name
    (attribute), `get(name, default)` and `items()`."""

    def __init__(self, values, names):
        super().__init__(values)
        self._names = dict(names)

    def __getattr__(self, name):
        try:
            return self.__dict__["_names"][name]
        except KeyError:
            raise AttributeError(name) from None

    def get(self, name, default=None):
        return self._names.get(name, default)

    def items(self):
        return self._names.items()


class _Job:
    """What a step reads of the `snakemake` object, rebuilt in a torchrun worker from JSON."""

    def __init__(self, record: dict):
        for part in ("input", "output", "params", "log", "wildcards", "resources"):
            setattr(self, part, _Named(record[part]["values"], record[part]["names"]))
        self.threads = record["threads"]


def _job_record(smk, step: str, processes: int) -> dict:
    def named(part):
        return {"values": list(part), "names": dict(part.items())}

    return {
        "step": step,
        **{part: named(getattr(smk, part)) for part in ("input", "output", "params", "log", "wildcards", "resources")},
        "threads": max(1, int(smk.threads) // processes),  # each process its share of the job's threads
    }


def _launched_data_parallel(smk, step: str) -> bool:
    """With resources gpu=N > 1 (config resources.RULE.gpus; Snakemake caps it at --resources gpu),
    runs `step` in N torchrun processes on this job's machine and returns True; else False (the
    caller trains in this process). Inside a worker: False."""
    import tempfile

    from prodcat.runtime.distributed import launch_processes, world_size

    processes = int(smk.resources.get("gpu", 1) or 1)
    if processes <= 1 or world_size() > 1:
        return False
    with logging_to(smk.log[0]), tempfile.TemporaryDirectory() as tmp:
        job = Path(tmp) / "job.json"
        job.write_text(json.dumps(_job_record(smk, step, processes), default=str))
        launch_processes("prodcat.workflow", [str(job)], processes, int(smk.threads))
    return True


DATA_PARALLEL_STEPS = ("train_labeler", "train_namer")


def data_parallel_worker(job_path) -> None:
    """A torchrun worker: the step of the job file, in this process's share (prodcat.runtime.distributed)."""
    import torch.distributed as dist

    from prodcat.runtime.distributed import init_process_group

    record = json.loads(Path(job_path).read_text())
    if record["step"] not in DATA_PARALLEL_STEPS:
        raise ValueError(f"{record['step']!r} is not a data-parallel step: expected one of {DATA_PARALLEL_STEPS}")
    init_process_group()
    try:
        globals()[record["step"]](_Job(record))
    finally:
        dist.destroy_process_group()


def train_labeler(smk) -> None:
    """Any labeler kind's training (rules train_labeler and train_charngram), through prodcat.labelers.interface;
    data-parallel with resources gpu > 1."""
    from prodcat.data.hierarchy import Hierarchy
    from prodcat.data.io import read_rows
    from prodcat.labelers.interface import labeler_for, train_configured_labeler, with_source

    if _launched_data_parallel(smk, "train_labeler"):
        return
    with logging_to(smk.log[0]):
        _set_threads(smk.threads)
        cfg = dict(smk.params.cfg)
        source = labeler_for(cfg["kind"]).source_of(cfg)
        train_rows = with_source(read_rows(smk.input.train, labelled=True), source, smk.input.get("train_names"))
        val_rows = with_source(read_rows(smk.input.val, labelled=True), source, smk.input.get("val_names"))
        hierarchy = Hierarchy.from_json(smk.input.hierarchy) if smk.input.get("hierarchy") else None
        profile = smk.params.get("profile")
        train_configured_labeler(
            cfg,
            train_rows,
            val_rows,
            smk.output[0],
            base_dir=smk.params.get("base"),
            hierarchy=hierarchy,
            checkpoint_dir=smk.params.get("checkpoints"),
            profile=dict(profile) if profile is not None else None,
        )


def predict_labeler(smk) -> None:
    """Any labeler kind's predictions of a split, one table and summary per decoding (rules
    predict_labeler and predict_charngram); the model is loaded once."""
    from prodcat.data.hierarchy import Hierarchy
    from prodcat.data.io import read_rows, write_parquet
    from prodcat.labelers.interface import RAW, load_labeler, with_source

    with logging_to(smk.log[0]):
        _set_threads(smk.threads)
        labeler = load_labeler(smk.input.model, dict(smk.params.cfg))
        rows = with_source(read_rows(smk.input.rows), labeler.source, smk.input.get("names"))
        hierarchy = Hierarchy.from_json(smk.input.hierarchy) if smk.input.get("hierarchy") else None
        for decoding, predictions, summary_path in zip(
            smk.params.decodings, smk.output.predictions, smk.output.summaries
        ):
            table, summary = labeler.predict(
                rows,
                decoding=decoding,
                hierarchy=hierarchy,
                count_flops=smk.wildcards.split == FLOPS_SPLIT and decoding == RAW,
            )
            summary.write(summary_path)
            write_parquet(table, predictions)


def level_accuracy(smk) -> None:
    """Per-level validation accuracy of each labeler's corrected predictions: the tie rule and the
    optional weights of the vote."""
    from prodcat.data.io import read_rows, read_table, write_json
    from prodcat.report.metrics import score

    with logging_to(smk.log[0]):
        truth = read_rows(smk.input.truth, labelled=True)
        accuracy = {}
        for model, path in zip(smk.params.models, smk.input.predictions):
            result = score(truth, read_table(path), name=path)
            accuracy[model] = {level: result[f"accuracy_{level}"] for level in LEVELS}
        write_json(accuracy, smk.output[0])
        logging.info("%s", json.dumps(accuracy, indent=1))


def _submission(smk) -> dict:
    from prodcat.data.io import read_json

    return read_json(smk.input.submission, "the submission choice")


def report_tables(smk) -> None:
    from prodcat.labelers.summaries import TrainingSummary
    from prodcat.report.tables import (
        VALIDATION_CAVEAT,
        efficiency_note,
        efficiency_table,
        ensemble_comparison,
        ensemble_section,
        metrics_table,
        operators_table,
        profile_note,
        unseen_retailer_note,
        write_table,
    )

    with logging_to(smk.log[0]):
        metrics = metrics_table(smk.input.metrics)
        comparison = ensemble_comparison(metrics, smk.params.ensembles)
        write_table(
            metrics,
            smk.output.metrics_csv,
            smk.output.metrics_md,
            "Table 1: accuracy per model and stage",
            f"{VALIDATION_CAVEAT} {unseen_retailer_note(smk.input.metrics)} An ensemble's name is its hard vote "
            "(the paper); NAME_stack is the same members combined by the learned arbiter, cross-fitted on validation.",
            extra_markdown=ensemble_section(comparison, _submission(smk)),
        )
        logging.info("\n%s", comparison.to_string(index=False))
        constrained = dict(zip(smk.params.constrained_models, smk.input.constrained_summaries))
        entries = [
            (model, Path(model_dir) / "train_summary.json", predict, bench, constrained.get(model))
            for model, model_dir, predict, bench in zip(
                smk.params.models, smk.input.models, smk.input.predict_summaries, smk.input.train_benchmarks
            )
        ]
        efficiency = efficiency_table(entries)
        summaries = {model: TrainingSummary.read(train_json).to_dict() for model, train_json, *_ in entries}
        profiled = profile_note(summaries)
        write_table(
            efficiency,
            smk.output.efficiency_csv,
            smk.output.efficiency_md,
            "Table 2: efficiency per model",
            efficiency_note(profiled),
        )
        operators = operators_table(
            [(model, model_dir) for model, model_dir in zip(smk.params.models, smk.input.models)],
            smk.params.top_operators,
        )
        write_table(
            operators,
            smk.output.operators_csv,
            smk.output.operators_md,
            "Table 3: top operators of a profiled training step per model",
            f"The {smk.params.top_operators} operators with the most self CPU time per model, per optimizer "
            "step (mean over the recorded steps): self_cpu_percent is the share of the step's self CPU time "
            "(the rest: other operators and Python between them), cpu_total_ms includes the operators it "
            "calls, cuda_total_ms the kernels it and they launch, calls and MFLOPs (torch.profiler's "
            f"with_flops estimate: matrix products and convolutions) per step. {profiled} "
            "The Chrome trace of each model's recorded steps is in results/models/MODEL/profile/trace.json.gz "
            "(chrome://tracing or https://ui.perfetto.dev).",
        )
        logging.info("\n%s", metrics.to_string(index=False))
        logging.info("\n%s", efficiency.to_string(index=False))


def synthesize_names(smk) -> None:
    """One shard of the teacher names of a split, with its timing."""
    import time

    from prodcat.data.io import read_rows, write_parquet
    from prodcat.names.generation import generate_teacher_names

    with logging_to(smk.log[0]):
        _set_threads(smk.threads)
        rows, generate = read_rows(smk.input.rows, labelled=True), dict(smk.params.generate)
        started = time.time()
        names = generate_teacher_names(
            smk.params.base,
            rows,
            dict(smk.params.templates),
            generate,
            shard=smk.params.shard,
            shards=smk.params.shards,
        )
        _generation_summary("teacher", names, time.time() - started, generate, smk.params).write(smk.output.summary)
        write_parquet(names, smk.output.names)


def _generation_summary(kind: str, names: pd.DataFrame, seconds: float, generate: dict, params, gflops=None):
    """The PredictionSummary of one shard of names; its parse failures are the answers that fell
    back to the description."""
    from prodcat.labelers.summaries import PredictionSummary
    from prodcat.names.generation import status_counts
    from prodcat.runtime.device import describe_device

    return PredictionSummary(
        kind=kind,
        decoding="names",
        rows=len(names),
        parse_failures=len(names) - status_counts(names)["ok"],
        predict_seconds=seconds,
        batch_size=generate["batch_size"],
        device=describe_device(),
        predict_gflops_per_batch=gflops,
        details={"shard": params.shard, "shards": params.shards},
    )


def train_namer(smk) -> None:
    """The LoRA namer's training (rule train_namer); data-parallel with resources gpu > 1."""
    from prodcat.data.io import read_table
    from prodcat.names.lora import train_lora_namer
    from prodcat.runtime.distributed import is_main_process

    if _launched_data_parallel(smk, "train_namer"):
        return
    with logging_to(smk.log[0]):
        _set_threads(smk.threads)
        # The teacher table carries the prompt's source fields (description, price) with each name.
        rows = read_table(smk.input.names)
        params, templates = dict(smk.params.train), dict(smk.params.templates)
        metrics = train_lora_namer(
            smk.params.base,
            rows,
            smk.output[0],
            params,
            templates=templates,
            checkpoint_dir=smk.params.checkpoints,
            profile=dict(smk.params.profile),
        )
        if not is_main_process():  # data-parallel: the main process writes the summary
            return
        # Table 2's figures: counted on the meta device (no memory), and report-only: a failure here
        # is logged and leaves the trained namer in place.
        from prodcat.labelers.summaries import TrainingSummary
        from prodcat.names.lora import training_step_costs
        from prodcat.runtime.device import describe_device
        from prodcat.runtime.efficiency import report_only

        costs = (
            report_only(
                "the namer's training-step FLOPs", training_step_costs, smk.params.base, rows, templates, params
            )
            or {}
        )
        TrainingSummary(
            kind="namer",
            device=describe_device(),
            parameters=costs.pop("parameters", None),
            trainer_seconds=metrics.get("trainer_seconds"),
            train_gflops_per_step=costs.pop("train_gflops_per_step", None),
            details={**costs, "profile": metrics.get("profile"), "segments": metrics.get("segments")},
        ).write(smk.output[0])


def infer_names(smk) -> None:
    """One shard of the student names of a split, with its timing (and, for the split Table 2
    reads, the FLOPs of one generation batch)."""
    import time

    from prodcat.data.io import read_rows, write_parquet
    from prodcat.names.generation import Chats, generate_student_names, generate_token_ids, load_causal_lm
    from prodcat.names.prompts import student_messages
    from prodcat.runtime.efficiency import count_flops

    with logging_to(smk.log[0]):
        _set_threads(smk.threads)
        merged, templates, generate = (
            Path(smk.input.model) / "merged",
            dict(smk.params.templates),
            dict(smk.params.generate),
        )
        rows = read_rows(smk.input.rows)
        started = time.time()
        names = generate_student_names(
            merged, rows, templates, generate, shard=smk.params.shard, shards=smk.params.shards
        )
        seconds = time.time() - started
        # FLOPs of one generation batch (Table 2 reads the test split's), counted by the first shard
        # on a separate pass so the timing above is clean.
        flops = None
        if smk.wildcards.split == FLOPS_SPLIT and smk.params.shard == 0:
            model, tokenizer = load_causal_lm(merged, load_in_8bit=generate["load_in_8bit"])
            chats = Chats(rows.head(generate["batch_size"])[["description", "price"]], student_messages, templates)
            flops, _ = count_flops(
                generate_token_ids,
                model,
                tokenizer,
                chats,
                batch_size=len(chats),
                max_new_tokens=generate["max_new_tokens"],
                num_beams=generate["num_beams"],
            )
        _generation_summary(
            "namer", names, seconds, generate, smk.params, flops / 1e9 if flops is not None else None
        ).write(smk.output.summary)
        write_parquet(names, smk.output.names)


def gather_names(smk) -> None:
    """The shards of a split's names as one table in the split's row order, and one summary:
    rows and generation seconds summed over the shards (GPU-seconds when they ran side by side)."""
    from prodcat.data.io import read_rows, read_table, write_parquet
    from prodcat.labelers.summaries import PredictionSummary
    from prodcat.names.generation import gather_shards

    with logging_to(smk.log[0]):
        names = gather_shards(
            read_rows(smk.input.rows)["indoml_id"],
            [read_table(p) for p in smk.input.names],
            what=f"{smk.wildcards.which} names of {smk.wildcards.split}",
        )
        summaries = [PredictionSummary.read(p) for p in smk.input.summaries]
        seconds = sum(s.predict_seconds for s in summaries)
        gflops = [s.predict_gflops_per_batch for s in summaries if s.predict_gflops_per_batch is not None]
        PredictionSummary(
            kind=summaries[0].kind,
            decoding="names",
            rows=len(names),
            parse_failures=sum(s.parse_failures for s in summaries),
            predict_seconds=seconds,
            batch_size=summaries[0].batch_size,
            device=summaries[0].device,
            predict_gflops_per_batch=gflops[0] if gflops else None,
            details={"shards": len(summaries), "shard_seconds": [s.predict_seconds for s in summaries]},
        ).write(smk.output.summary)
        write_parquet(names, smk.output.names)
        logging.info("%d names from %d shard(s), %.1f s of generation", len(names), len(summaries), seconds)


# The file a workflow split's rows come from: validation rows are training rows.
DATASET_OF_SPLIT = {"train": "train", "val": "train", "test": "test"}


def true_names_by_dataset(table: pd.DataFrame, path) -> dict[str, pd.Series]:
    """The true product names per input file ("train", "test"), each indexed by indoml_id: ids are
    unique within a file, not across files (real test files number rows from 0 like training).
    A table without a `split` column holds one name per id for both files."""
    from prodcat.runtime.errors import InputError

    for column in ("indoml_id", "name"):
        if column not in table.columns:
            raise InputError(path, "missing column", column=column)
    datasets = table["split"] if "split" in table.columns else pd.Series([None] * len(table), index=table.index)
    out = {}
    for dataset in sorted(set(DATASET_OF_SPLIT.values())):
        part = table[datasets.isna() | (datasets == dataset)]
        duplicated = part["indoml_id"].duplicated().to_numpy()
        if duplicated.any():
            i = int(part.index[duplicated.argmax()])
            raise InputError(
                path,
                f"two names for indoml_id {table['indoml_id'].iloc[i]} of the {dataset} file",
                column="indoml_id",
                row=i + 1,
            )
        out[dataset] = part.set_index("indoml_id")["name"]
    return out


def name_quality(smk) -> None:
    """chrF (and exact match) of teacher and student names against the true product names. Every
    table is matched on (split, indoml_id): a split's names, its rows and the true names of the
    file it comes from."""
    from prodcat.data.io import read_rows, read_table
    from prodcat.names.generation import status_counts
    from prodcat.names.quality import chrf
    from prodcat.report.tables import write_table
    from prodcat.runtime.errors import InputError

    with logging_to(smk.log[0]):
        truth = true_names_by_dataset(read_table(smk.input.truth).reset_index(drop=True), smk.input.truth)
        descriptions = {Path(p).stem: read_rows(p).set_index("indoml_id")["description"] for p in smk.input.rows}
        records = []
        for who, paths in (("teacher", smk.input.teacher), ("student", smk.input.student)):
            for path in paths:
                split = Path(path).stem
                names = read_table(path)
                refs = truth[DATASET_OF_SPLIT[split]].reindex(names["indoml_id"])
                if refs.isna().any():
                    missing = names["indoml_id"][refs.isna().to_numpy()].iloc[0]
                    raise InputError(
                        smk.input.truth,
                        f"no true name for indoml_id {missing} of the "
                        f"{DATASET_OF_SPLIT[split]} file (needed by {path})",
                        column="indoml_id",
                    )
                counts = status_counts(names)
                records.append(
                    {
                        "names": who,
                        "split": split,
                        "n": len(names),
                        "chrf": chrf(names["name"].tolist(), refs.tolist()),
                        "chrf_description": chrf(
                            descriptions[split].reindex(names["indoml_id"]).tolist(), refs.tolist()
                        ),
                        "exact": float((names["name"].to_numpy() == refs.to_numpy()).mean()),
                        "fallbacks": len(names) - counts.get("ok", 0),
                    }
                )
        table = pd.DataFrame(records)
        write_table(
            table,
            smk.output.csv,
            smk.output.md,
            "Name quality against the true product names",
            "chrF (0-100) of each name against the sample's true product name; chrf_description scores "
            "the raw receipt line the same way, the floor a namer must beat; fallbacks are empty or "
            "runaway or short answers replaced by the description. " + standin_caption(smk.params.teacher),
        )
        logging.info("\n%s", table.to_string(index=False))


def standin_caption(teacher: dict) -> str:
    """What the names table's reader must know about the teacher ({"tiny": bool, "warmup": the
    tiny.llama.warmup settings}): a real Llama, or a tiny stand-in (pretrained here, or not at all)."""
    if not teacher["tiny"]:
        return "Teacher and namer start from the configured Llama."
    warmup = teacher.get("warmup") or {}
    if not warmup.get("enabled"):
        return (
            "The teacher is a tiny random-init Llama stand-in that knows no products: its names fall back to the "
            "description, and the stages only show that they run."
        )
    rows = warmup["steps"] * warmup["batch_size"]
    share = warmup["student_share"]
    prompts = (
        f"{1 - share:.0%} in the teacher's prompt, {share:.0%} in the student's (without labels)"
        if share
        else "in the teacher's prompt"
    )
    return (
        "The teacher is a tiny Llama stand-in that had a stand-in's pretraining before the run, in place of what a "
        "pretrained LLM knows about products (the real Llama needs none): "
        f"{warmup['steps']} steps on {rows:,} rows of the sample's catalogue drawn apart from the train, "
        f"validation and test rows, prompt → true product name, {prompts} (tiny.llama.warmup). The student is "
        "the LoRA namer trained on the teacher's names. Tiny models cannot show the real method's quality."
    )


def plots(smk) -> None:
    from prodcat.report.plots import accuracy_bars, f1_by_level, read_history, training_curves

    with logging_to(smk.log[0]):
        metrics = pd.read_csv(smk.input.metrics)
        accuracy_bars(
            metrics,
            smk.output.accuracy,
            ensembles=list(smk.params.ensembles),
            submitted=(_submission(smk)["model"], _submission(smk)["stage"]),
        )
        f1_by_level(metrics, smk.output.f1)
        training_curves(
            {model: read_history(path) for model, path in zip(smk.params.models, smk.input.models)}, smk.output.curves
        )


def choose_submission(smk) -> None:
    """The submitted ensemble and method (prodcat.predict.choose_submission), from the stacks'
    validation numbers; the manifest, the report and its figures read it."""
    from prodcat.data.io import read_json, write_json

    from .predict import choose_submission as choose

    with logging_to(smk.log[0]):
        validation = {
            ensemble: read_json(path, "a stack model").get("validation", {})
            for ensemble, path in zip(smk.params.ensembles, smk.input.stacks)
        }
        chosen = choose(dict(smk.params.ensemble), validation, smk.params.stage)
        write_json(chosen, smk.output[0])
        logging.info("submitting %s (%s): %s", chosen["model"], chosen["chosen_by"], chosen["validation_item_accuracy"])


def manifest(smk) -> None:
    from prodcat.data.io import read_json

    from .predict import write_manifest

    with logging_to(smk.log[0]):
        chosen = read_json(smk.input.submission, "the submission choice")
        config = dict(smk.params.config)
        config["ensemble"] = {**config["ensemble"], "submit": chosen["ensemble"], "method": chosen["method"]}
        stacks = dict(zip(smk.params.ensembles, smk.input.stacks))
        calibrations = dict(zip(smk.params.calibrated, smk.input.calibrations))
        write_manifest(
            config,
            smk.params.stage,
            smk.output[0],
            hierarchy=smk.input.hierarchy,
            level_accuracy=smk.input.accuracy,
            stack_model=stacks[chosen["ensemble"]] if chosen["method"] == "stack" else None,
            calibrations={
                m: calibrations[m] for m in [chosen["ensemble"], *config["ensemble"]["members"][chosen["ensemble"]]]
            },
        )
        logging.info("manifest for %s (%s)", chosen["model"], chosen["chosen_by"])


def review_queue(smk) -> None:
    """The submitted model's test rows under ensemble.review_below, with their candidates."""
    from prodcat.data.io import read_json, read_rows, read_table, write_parquet
    from prodcat.ensemble.review import check_threshold, review_queue, vote_candidates

    with logging_to(smk.log[0]):
        chosen = read_json(smk.input.submission, "the submission choice")
        ensemble = chosen["ensemble"]
        if chosen["method"] == "stack":
            predictions = read_table(smk.input[f"stack.{ensemble}"])
            candidates = read_table(smk.input[f"ranked.{ensemble}"])
        else:
            predictions = read_table(smk.input[f"vote.{ensemble}"])
            members = {m: read_table(smk.input[f"member.{m}"]) for m in smk.params.ensembles[ensemble]}
            candidates = vote_candidates(predictions, members)
        below = check_threshold(smk.params.below)
        queue = review_queue(predictions, candidates, below, read_rows(smk.input.rows))
        write_parquet(queue, smk.output[0])
        logging.info(
            "%s: %d of %d test rows under confidence %g",
            chosen["model"],
            queue["review_order"].nunique(),
            len(predictions),
            below,
        )


def confidence_report(smk) -> None:
    """Calibration per model (ECE, accuracy of the 80 % most confident rows), the reliability and
    coverage figures, and the submitted model's errors table, validation and test apart."""
    from prodcat.data.io import read_json, read_rows, read_table
    from prodcat.report.confidence import (
        calibration_table,
        coverage_figure,
        errors_table,
        reliability_figure,
        scored,
    )
    from prodcat.report.tables import write_table

    with logging_to(smk.log[0]):
        chosen = read_json(smk.input.submission, "the submission choice")
        submitted = chosen["model"]
        truth = {split: read_rows(path, labelled=True) for split, path in zip(smk.params.splits, smk.input.truth)}
        train = read_rows(smk.input.train, labelled=True)
        entries, errors = [], []
        tables = iter(smk.input.tables)
        for model in smk.params.models:
            for split in smk.params.splits:
                path = next(tables)
                table = read_table(path)
                entries.append((model, split, *scored(table, truth[split], path)))
                if model == submitted:
                    errors.append(errors_table(table, truth[split], train, split))
        calibration = calibration_table(entries, submitted)
        write_table(
            calibration,
            smk.output.calibration_csv,
            smk.output.calibration_md,
            "Confidence: calibration per model",
            f"Submitted: `{submitted}` ({chosen['chosen_by']}). Each model's confidence is its own score "
            "(stack: softmax over its candidates at a fitted temperature; vote: the members' agreement; "
            "labelers: the probability of their answer) mapped by isotonic regression fit on validation "
            "(the stack's on its cross-fitted rows), so validation numbers are in-sample and test numbers "
            "are not, then scaled by the chance that a row's label path is seen in training (Good–Turing "
            "on the training paths; validation rows always have a seen path, so their confidence is that "
            "much below their accuracy). ece: expected calibration error over 10 equal-width bins; "
            "ece_noise_p95: the ECE that a perfectly calibrated model with these confidences stays under "
            "in 95 % of draws of these rows (sampling noise); accuracy_top80: item accuracy of the 80 % "
            "most confident rows.",
        )
        import pandas as pd

        write_table(
            pd.concat(errors, ignore_index=True),
            smk.output.errors_csv,
            smk.output.errors_md,
            f"Errors of the submitted model ({submitted})",
            "Per split: the most confused pairs (true path → predicted path; rows = how often), then item "
            "accuracy per true supergroup, per retailer seen or unseen in training, and per description "
            "length in characters.",
        )
        split = "test" if "test" in smk.params.splits else smk.params.splits[0]
        reliability_figure(entries, submitted, smk.output.reliability, split)
        coverage_figure(entries, submitted, smk.output.coverage, split)
        logging.info("\n%s", calibration.to_string(index=False))


def score_candidates(smk) -> None:
    """One labeler's log-probability of every path that any ensemble member proposes for the rows
    of one split (prodcat.ensemble.stack reads them as candidate scores)."""
    from prodcat.data.hierarchy import Hierarchy
    from prodcat.data.io import read_rows, read_table, write_parquet
    from prodcat.ensemble.stack import candidate_union
    from prodcat.labelers.interface import load_labeler, with_source

    with logging_to(smk.log[0]):
        _set_threads(smk.threads)
        hierarchy = Hierarchy.from_json(smk.input.hierarchy)
        labeler = load_labeler(smk.input.model, dict(smk.params.cfg))
        rows = with_source(read_rows(smk.input.rows), labeler.source, smk.input.get("names"))
        paths = candidate_union([read_table(p) for p in smk.input.proposals], hierarchy)
        logging.info("%s: %d candidate paths for %d rows", smk.wildcards.split, len(paths), len(rows))
        write_parquet(labeler.score_paths(rows, paths), smk.output[0])


def list_alternatives(smk) -> None:
    """The k best paths per row of one split, from a labeler that ranks every path (charngram):
    extra candidates for the stack (prodcat.ensemble.stack)."""
    from prodcat.data.io import read_rows, write_parquet
    from prodcat.labelers.interface import load_labeler, with_source

    with logging_to(smk.log[0]):
        labeler = load_labeler(smk.input.model, dict(smk.params.cfg))
        rows = with_source(read_rows(smk.input.rows), labeler.source, smk.input.get("names"))
        table = labeler.alternatives(rows, int(smk.params.k))
        logging.info("%s: the %d best paths of each of %d rows", smk.wildcards.split, int(smk.params.k), len(rows))
        write_parquet(table, smk.output[0])


if __name__ == "__main__":  # a torchrun worker of a data-parallel job (_launched_data_parallel)
    import sys

    data_parallel_worker(sys.argv[1])

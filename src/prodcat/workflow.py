"""Glue for Snakemake `script:` rules: each script is one call into here.

A script gets the `snakemake` object; its stdout, stderr and Python logging (including the
Trainer's progress and tqdm bars) go to the rule's log file.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

import pandas as pd

from . import LEVELS

# Table 2 reads generation FLOPs from the test split's prediction summaries (rules/common.smk,
# efficiency_files); FlopCounterMode is slow, so the other splits skip counting.
FLOPS_SPLIT = "test"


@contextlib.contextmanager
def logging_to(path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", buffering=1) as handle, contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle):
        root = logging.getLogger()
        handler = logging.StreamHandler(handle)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            yield
        except Exception:
            logging.exception("failed")
            raise
        finally:
            root.removeHandler(handler)


def _set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(max(1, int(n)))


def with_source(rows: pd.DataFrame, source: str, names_path: str | None) -> pd.DataFrame:
    """Rows with the labeler's input text: the description itself, or an inferred name joined on
    indoml_id (every row must have one)."""
    if source == "description":
        return rows
    from .io import read_table

    return with_names(rows, read_table(names_path), names_path)


def with_names(rows: pd.DataFrame, names: pd.DataFrame, source="names") -> pd.DataFrame:
    from .errors import InputError

    merged = rows.merge(names[["indoml_id", "name"]], on="indoml_id", how="left", validate="one_to_one")
    missing = merged["name"].isna()
    if missing.any():
        raise InputError(source, f"no name for indoml_id {merged.loc[missing, 'indoml_id'].iloc[0]}", column="name")
    return merged


def tokenizer_corpus(rows: pd.DataFrame, templates: dict | None = None) -> list[str]:
    """What a stand-in's tokenizer is trained on: the receipt lines, the target texts and (for the
    chat model) every row's teacher and student prompt as the model reads them.

    Whole prompts, not the templates once: BPE merges follow frequency, and the template's words
    come with every row. Trained on the templates once, the tiny tokenizer spelled the prompt prose
    out at ~2 characters per token (380 tokens a prompt); the real Llama-3 tokenizer encodes English
    at ~4, and every namer stage's cost grows with the prompt length."""
    from .prompts import student_messages, teacher_messages
    from .target_text import format_target
    from .tiny_llama import CHAT_HEADER_TEXT

    texts = rows["description"].astype(str).tolist()
    texts += [format_target(labels) for labels in rows[list(LEVELS)].drop_duplicates().itertuples(index=False, name=None)]
    if templates:
        texts.append(CHAT_HEADER_TEXT)
        for row in rows.to_dict("records"):
            texts += [message["content"] for message in teacher_messages(row, templates)[1:]]
            texts += [message["content"] for message in student_messages(row, templates)]
    return texts


def build_tiny_model(smk) -> None:
    from .io import read_rows
    from .tiny_llama import build_tiny_llama
    from .tiny_models import build_tiny_byt5, build_tiny_flant5

    with logging_to(smk.log[0]):
        _set_threads(smk.threads)
        arch, dims, seed = smk.wildcards.arch, dict(smk.params.dims), smk.params.seed
        if arch == "byt5":
            build_tiny_byt5(smk.output[0], dims, seed=seed)
        elif arch == "flant5":
            rows = read_rows(smk.input.train, labelled=True)
            build_tiny_flant5(smk.output[0], tokenizer_corpus(rows), dims, vocab_size=dims.pop("vocab_size", 1000), seed=seed)
        elif arch == "llama":
            rows = read_rows(smk.input.train, labelled=True)
            build_tiny_llama(smk.output[0], tokenizer_corpus(rows, smk.params.templates), seed=seed, **dims)
        else:
            raise ValueError(f"no tiny stand-in for {arch!r}: expected byt5, flant5 or llama")


def download_model(smk) -> None:
    from .hub import fetch_model

    with logging_to(smk.log[0]):
        fetch_model(smk.params.repo_id, smk.params.revision, smk.output[0])


def train_labeler(smk) -> None:
    from .io import read_rows
    from .seq2seq import train_labeler as train

    with logging_to(smk.log[0]):
        _set_threads(smk.threads)
        cfg = smk.params.cfg
        train_rows = with_source(read_rows(smk.input.train, labelled=True), cfg["source"], smk.input.get("train_names"))
        val_rows = with_source(read_rows(smk.input.val, labelled=True), cfg["source"], smk.input.get("val_names"))
        params = {**cfg["train"], **{k: cfg[k] for k in ("side_dim", "fusion") if k in cfg}}
        train(smk.params.base, train_rows, val_rows, smk.output[0], smk.params.checkpoints, params,
              source_column=cfg["source"], kind=cfg["kind"], profile=dict(smk.params.profile))


def predict_labeler(smk) -> None:
    from .hierarchy import Hierarchy
    from .io import read_rows, write_json, write_parquet
    from .seq2seq import load_trained_model, predict_labeler as predict

    with logging_to(smk.log[0]):
        _set_threads(smk.threads)
        cfg = smk.params.cfg
        rows = with_source(read_rows(smk.input.rows), cfg["source"], smk.input.get("names"))
        hierarchy = Hierarchy.from_json(smk.input.hierarchy) if "constrained" in smk.params.decodings else None
        loaded = load_trained_model(smk.input.model)
        for decoding, predictions, summary_path in zip(smk.params.decodings, smk.output.predictions, smk.output.summaries):
            constrained = decoding == "constrained"
            table, summary = predict(smk.input.model, rows, cfg["predict"], source_column=cfg["source"],
                                     hierarchy=hierarchy, constrained=constrained, loaded=loaded,
                                     count_batch_flops=smk.wildcards.split == FLOPS_SPLIT and not constrained)
            write_json(summary, summary_path)
            write_parquet(table, predictions)


def level_accuracy(smk) -> None:
    """Per-level validation accuracy of each labeler's corrected predictions: the tie rule and the
    optional weights of the vote."""
    from .io import read_rows, read_table, write_json
    from .metrics import score

    with logging_to(smk.log[0]):
        truth = read_rows(smk.input.truth, labelled=True)
        accuracy = {}
        for model, path in zip(smk.params.models, smk.input.predictions):
            result = score(truth, read_table(path), name=path)
            accuracy[model] = {level: result[f"accuracy_{level}"] for level in LEVELS}
        write_json(accuracy, smk.output[0])
        logging.info("%s", json.dumps(accuracy, indent=1))


def report_tables(smk) -> None:
    from .report import (VALIDATION_CAVEAT, efficiency_table, metrics_table, operators_table, profile_note,
                         write_table)

    with logging_to(smk.log[0]):
        metrics = metrics_table(smk.input.metrics)
        write_table(metrics, smk.output.metrics_csv, smk.output.metrics_md, "Table 1: accuracy per model and stage",
                    VALIDATION_CAVEAT)
        constrained = dict(zip(smk.params.constrained_models, smk.input.constrained_summaries))
        entries = [(model, Path(model_dir) / "train_summary.json", predict, bench, constrained.get(model))
                   for model, model_dir, predict, bench in zip(smk.params.models, smk.input.models,
                                                               smk.input.predict_summaries, smk.input.train_benchmarks)]
        efficiency = efficiency_table(entries)
        summaries = {model: json.loads(Path(train_json).read_text()) for model, train_json, *_ in entries}
        profiled = profile_note(summaries)
        write_table(efficiency, smk.output.efficiency_csv, smk.output.efficiency_md, "Table 2: efficiency per model",
                    "train_seconds and train_max_rss_mb come from the training rule's benchmark file (wall time and "
                    "peak memory of the whole job), less train_profiling_seconds, what profiling added to it. "
                    "train_step_self_cpu_ms and train_step_self_cuda_ms are torch.profiler's self CPU and self CUDA "
                    "time of one optimizer step (forward, backward, optimizer; the sum over every operator, as the "
                    f"profiler's table footer): {profiled} "
                    "FLOPs are counted by torch's FlopCounterMode for one training step and one prediction batch; the "
                    "namer's step (a LoRA step: frozen base, no weight gradients) is counted on the meta device, from "
                    "the model's configuration, with no memory. predict_seconds_per_batch is the generation time of "
                    "the test split over its batches (namer: summed over shards). "
                    "constrained_predict_seconds_per_1k is the same prediction decoded under the hierarchy trie.")
        operators = operators_table([(model, model_dir) for model, model_dir in zip(smk.params.models, smk.input.models)],
                                    smk.params.top_operators)
        write_table(operators, smk.output.operators_csv, smk.output.operators_md,
                    "Table 3: top operators of a profiled training step per model",
                    f"The {smk.params.top_operators} operators with the most self CPU time per model, per optimizer "
                    "step (mean over the recorded steps): self_cpu_percent is the share of the step's self CPU time "
                    "(the rest: other operators and Python between them), cpu_total_ms includes the operators it "
                    "calls, cuda_total_ms the kernels it and they launch, calls and MFLOPs (torch.profiler's "
                    f"with_flops estimate: matrix products and convolutions) per step. {profiled} "
                    "The Chrome trace of each model's recorded steps is in results/models/MODEL/profile/trace.json.gz "
                    "(chrome://tracing or https://ui.perfetto.dev).")
        logging.info("\n%s", metrics.to_string(index=False))
        logging.info("\n%s", efficiency.to_string(index=False))


def synthesize_names(smk) -> None:
    """One shard of the teacher names of a split, with its timing."""
    import time

    from .io import read_rows, write_json, write_parquet
    from .namer import synthesize_names as synthesize

    with logging_to(smk.log[0]):
        _set_threads(smk.threads)
        rows, generate = read_rows(smk.input.rows, labelled=True), dict(smk.params.generate)
        started = time.time()
        names = synthesize(smk.params.base, rows, dict(smk.params.templates), generate,
                           shard=smk.params.shard, shards=smk.params.shards)
        write_json(_generation_summary(names, time.time() - started, generate, smk.params), smk.output.summary)
        write_parquet(names, smk.output.names)


def _generation_summary(names: pd.DataFrame, seconds: float, generate: dict, params, gflops=None) -> dict:
    return {"rows": len(names), "predict_seconds": seconds, "predict_gflops_per_batch": gflops,
            "batch_size": generate["batch_size"], "shard": params.shard, "shards": params.shards}


def train_namer(smk) -> None:
    from .io import read_table, write_json
    from .namer import train_namer as train

    with logging_to(smk.log[0]):
        _set_threads(smk.threads)
        # The teacher table carries the prompt's source fields (description, price) with each name.
        rows = read_table(smk.input.names)
        params, templates = dict(smk.params.train), dict(smk.params.templates)
        metrics = train(smk.params.base, rows, smk.output[0], params, templates=templates,
                        checkpoint_dir=smk.params.checkpoints, profile=dict(smk.params.profile))
        # Table 2's figures: counted on the meta device (no memory), and report-only: a failure here
        # is logged and leaves the trained namer in place.
        from .device import describe_device
        from .efficiency import report_only
        from .namer import training_step_costs

        costs = report_only("the namer's training-step FLOPs", training_step_costs, smk.params.base, rows, templates,
                            params) or {}
        write_json({**costs, "device": describe_device(), "train_seconds": metrics.get("train_runtime"),
                    "profile": metrics.get("profile")}, Path(smk.output[0]) / "train_summary.json")


def infer_names(smk) -> None:
    """One shard of the student names of a split, with its timing (and, for the split Table 2
    reads, the FLOPs of one generation batch)."""
    import time

    from .efficiency import count_flops
    from .io import read_rows, write_json, write_parquet
    from .namer import Chats, generate_token_ids, infer_names as infer, load_causal_lm
    from .prompts import student_messages

    with logging_to(smk.log[0]):
        _set_threads(smk.threads)
        merged, templates, generate = Path(smk.input.model) / "merged", dict(smk.params.templates), dict(smk.params.generate)
        rows = read_rows(smk.input.rows)
        started = time.time()
        names = infer(merged, rows, templates, generate, shard=smk.params.shard, shards=smk.params.shards)
        seconds = time.time() - started
        # FLOPs of one generation batch (Table 2 reads the test split's), counted by the first shard
        # on a separate pass so the timing above is clean.
        flops = None
        if smk.wildcards.split == FLOPS_SPLIT and smk.params.shard == 0:
            model, tokenizer = load_causal_lm(merged, load_in_8bit=generate.get("load_in_8bit", False))
            chats = Chats(rows.head(generate["batch_size"])[["description", "price"]], student_messages, templates)
            flops, _ = count_flops(generate_token_ids, model, tokenizer, chats, batch_size=len(chats),
                                   max_new_tokens=generate["max_new_tokens"], num_beams=generate.get("num_beams", 1))
        write_json(_generation_summary(names, seconds, generate, smk.params, flops / 1e9 if flops is not None else None),
                   smk.output.summary)
        write_parquet(names, smk.output.names)


def gather_names(smk) -> None:
    """The shards of a split's names as one table in the split's row order, and one summary:
    rows and generation seconds summed over the shards (GPU-seconds when they ran side by side)."""
    from .io import read_rows, read_table, write_json, write_parquet
    from .namer import gather_shards

    with logging_to(smk.log[0]):
        names = gather_shards(read_rows(smk.input.rows)["indoml_id"], [read_table(p) for p in smk.input.names],
                              what=f"{smk.wildcards.which} names of {smk.wildcards.split}")
        summaries = [json.loads(Path(p).read_text()) for p in smk.input.summaries]
        seconds = sum(s["predict_seconds"] for s in summaries)
        gflops = [s["predict_gflops_per_batch"] for s in summaries if s.get("predict_gflops_per_batch") is not None]
        write_json({"rows": len(names), "predict_seconds": seconds,
                    "predict_seconds_per_1k": seconds / max(len(names), 1) * 1000,
                    "predict_gflops_per_batch": gflops[0] if gflops else None,
                    "batch_size": summaries[0]["batch_size"], "shards": len(summaries),
                    "shard_seconds": [s["predict_seconds"] for s in summaries]}, smk.output.summary)
        write_parquet(names, smk.output.names)
        logging.info("%d names from %d shard(s), %.1f s of generation", len(names), len(summaries), seconds)


def name_quality(smk) -> None:
    """chrF (and exact match) of teacher and student names against the true product names."""
    from .io import read_table
    from .namer import chrf, status_counts
    from .report import write_table

    from .io import read_rows

    with logging_to(smk.log[0]):
        truth = read_table(smk.input.truth).set_index("indoml_id")["name"]
        descriptions = pd.concat([read_rows(p) for p in smk.input.rows]).set_index("indoml_id")["description"]
        records = []
        for who, paths in (("teacher", smk.input.teacher), ("student", smk.input.student)):
            for path in paths:
                names = read_table(path)
                refs = truth.reindex(names["indoml_id"])
                if refs.isna().any():
                    raise ValueError(f"{smk.input.truth}: no true name for some rows of {path}")
                counts = status_counts(names)
                records.append({
                    "names": who, "split": Path(path).stem, "n": len(names),
                    "chrf": chrf(names["name"].tolist(), refs.tolist()),
                    "chrf_description": chrf(descriptions.reindex(names["indoml_id"]).tolist(), refs.tolist()),
                    "exact": float((names["name"].to_numpy() == refs.to_numpy()).mean()),
                    "fallbacks": len(names) - counts.get("ok", 0),
                })
        table = pd.DataFrame(records)
        write_table(table, smk.output.csv, smk.output.md, "Name quality against the true product names",
                    "chrF (0-100) of each name against the sample's true product name; chrf_description scores "
                    "the raw receipt line the same way, the floor a namer must beat; fallbacks are empty or "
                    "runaway or short answers replaced by the description. Tiny random-init stand-ins cannot show the "
                    "real method's quality: they show that the stages run and learn.")
        logging.info("\n%s", table.to_string(index=False))


def plots(smk) -> None:
    from .plots import accuracy_bars, f1_by_level, read_history, training_curves

    with logging_to(smk.log[0]):
        metrics = pd.read_csv(smk.input.metrics)
        accuracy_bars(metrics, smk.output.accuracy)
        f1_by_level(metrics, smk.output.f1)
        training_curves({model: read_history(path) for model, path in zip(smk.params.models, smk.input.models)},
                        smk.output.curves)


def manifest(smk) -> None:
    from .predict import write_manifest

    with logging_to(smk.log[0]):
        write_manifest(smk.params.config, smk.params.stage, smk.output[0])


def train_charngram(smk) -> None:
    import time

    from .charngram import train_charngram as train
    from .device import describe_device
    from .hierarchy import Hierarchy
    from .io import read_rows, write_json

    with logging_to(smk.log[0]):
        started = time.time()
        labeler = train(read_rows(smk.input.train, labelled=True), Hierarchy.from_json(smk.input.hierarchy),
                        params=dict(smk.params.cfg.get("params", {})), val_rows=read_rows(smk.input.val, labelled=True))
        labeler.save(smk.output[0])
        write_json({"kind": "charngram", "parameters": labeler.n_parameters, "device": describe_device(),
                    "train_seconds": time.time() - started, "train_gflops_per_step": float("nan"),
                    "val_metrics": labeler.metrics}, Path(smk.output[0]) / "train_summary.json")


def predict_charngram(smk) -> None:
    import time

    from .charngram import CharNgramLabeler
    from .device import describe_device
    from .io import read_rows, write_json, write_parquet

    with logging_to(smk.log[0]):
        labeler = CharNgramLabeler.load(smk.input.model)
        rows = read_rows(smk.input.rows)
        started = time.time()
        table = labeler.predict(rows)
        seconds = time.time() - started
        write_json({"kind": "charngram", "rows": len(table), "parse_failures": 0, "predict_seconds": seconds,
                    "predict_seconds_per_1k": seconds / max(len(table), 1) * 1000,
                    "predict_gflops_per_batch": float("nan"), "batch_size": labeler.params["predict_batch_rows"],
                    "device": describe_device()}, smk.output.summary)
        write_parquet(table, smk.output.predictions)

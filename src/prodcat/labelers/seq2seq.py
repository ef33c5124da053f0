"""Training and prediction for every seq2seq labeler (ByT5, Flan-T5, multimodal ByT5).

The labelers differ in their base model, in the column they read (`description` or an inferred
`name`) and, for the multimodal one, in the side features (retailer, price) that ride along with
each example. Everything else — tokenisation with masked label padding, Seq2SeqTrainer with
per-epoch evaluation, early stopping and best-checkpoint selection, resumable checkpoints,
length-sorted batched generation, parsing — is shared here.

Lengths: `max_source_length` and `max_target_length` (training) and `max_new_tokens` and
`max_source_length` (prediction) may be "auto". Training then takes the longest tokenised text
of its rows (training and validation) plus a margin (10 %, at least 8 tokens), within the model's
limit, logs it and records it in the model's train_summary.json; prediction's "auto" reads the
lengths the model was trained with. Explicit numbers are used as given.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from prodcat import LEVELS
from prodcat.data.target_text import format_target, parse_target
from prodcat.labelers.summaries import PredictionSummary, TrainingSummary
from prodcat.runtime.checkpoints import reading_model, run_signature
from prodcat.runtime.device import describe_device, pick_device
from prodcat.runtime.distributed import is_main_process, world_size
from prodcat.runtime.efficiency import count_flops, count_parameters, report_only, training_step_flops

log = logging.getLogger(__name__)

TEXT, MULTIMODAL = "text", "multimodal"
AUTO = "auto"
# "auto" lengths: the longest training text plus this margin (new data may run a little longer)
AUTO_MARGIN_SHARE, AUTO_MARGIN_MIN = 0.1, 8


# ---- data -------------------------------------------------------------------------------
class ExampleDataset:
    """A list of tokenised examples (dicts of lists), as the Trainer's data loader wants them.

    `lengths`: each example's source plus target tokens, what its batch is padded over (the
    length-grouped sampler reads them: prodcat.runtime.batching)."""

    def __init__(self, examples: list[dict]):
        self.examples = examples
        self.lengths = [len(e["input_ids"]) + len(e.get("labels", ())) for e in examples]

    def __len__(self):
        return len(self.examples)

    def __getitem__(self, i):
        return self.examples[i]


def encode_rows(tokenizer, rows: pd.DataFrame, source_column: str) -> dict:
    """Token ids of every row's source and, for labelled rows, target text, uncut: tokenised once,
    both to size "auto" lengths and to build the examples."""
    encoded = {"sources": tokenizer(rows[source_column].astype(str).tolist())["input_ids"]}
    if all(level in rows.columns for level in LEVELS):
        targets = [format_target(labels) for labels in rows[list(LEVELS)].itertuples(index=False, name=None)]
        encoded["targets"] = tokenizer(text_target=targets)["input_ids"]
    return encoded


def make_examples(
    tokenizer,
    rows: pd.DataFrame,
    source_column: str,
    *,
    max_source_length: int,
    max_target_length: int,
    side=None,
    encoded: dict | None = None,
) -> list[dict]:
    """Tokenised examples (from `encoded`, `encode_rows`' ids of these rows, when given). A source
    longer than max_source_length is cut (with a warning); a target longer than max_target_length
    is an error, not a silent cut: a truncated target would teach the model to stop mid-label."""
    encoded = encoded if encoded is not None else encode_rows(tokenizer, rows, source_column)
    source_ids = list(encoded["sources"])
    too_long = [i for i, ids in enumerate(source_ids) if len(ids) > max_source_length]
    if too_long:  # the tokenizer's own truncation (it keeps the end-of-sequence token)
        sources = rows[source_column].astype(str).tolist()
        cut = tokenizer([sources[i] for i in too_long], max_length=max_source_length, truncation=True)["input_ids"]
        for i, ids in zip(too_long, cut):
            source_ids[i] = ids
        log.warning(
            "%d of %d sources are longer than max_source_length=%d and are cut",
            len(too_long),
            len(source_ids),
            max_source_length,
        )
    examples = [{"input_ids": ids, "attention_mask": [1] * len(ids)} for ids in source_ids]
    if "targets" in encoded:
        labels = encoded["targets"]
        longest = max(len(ids) for ids in labels)
        if longest > max_target_length:
            raise ValueError(
                f"a target is {longest} tokens long but max_target_length is {max_target_length} "
                "(ByT5 counts bytes): raise it in config or set it to auto"
            )
        for example, ids in zip(examples, labels):
            example["labels"] = ids
    if side is not None:
        retailer_ids, prices = side
        for example, r, p in zip(examples, retailer_ids.tolist(), prices.tolist()):
            example["retailer_ids"] = r
            example["prices"] = p
    return examples


# ---- lengths -----------------------------------------------------------------------------
def model_length_limit(tokenizer, model=None) -> int | None:
    """The most tokens the model takes, when it has a limit (Flan-T5's tokenizer says 512; T5's
    relative attention itself has none, and ByT5's tokenizer states none)."""
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 1_000_000:
        return limit
    positions = getattr(getattr(model, "config", None), "n_positions", None)
    return positions if isinstance(positions, int) and positions > 0 else None


def auto_length(longest: int, limit: int | None) -> int:
    length = longest + max(AUTO_MARGIN_MIN, math.ceil(longest * AUTO_MARGIN_SHARE))
    return min(length, limit) if limit else length


def resolve_training_lengths(
    tokenizer, model, frames: list[pd.DataFrame], source_column: str, params: dict, encoded: list[dict] | None = None
) -> dict:
    """max_source_length and max_target_length as numbers: "auto" becomes the longest tokenised
    source / target text over `frames` (or their `encode_rows` ids) plus the margin, within the
    model's limit (logged)."""
    limit = model_length_limit(tokenizer, model)
    resolved = {}
    for key, part in (("max_source_length", "sources"), ("max_target_length", "targets")):
        value = params[key]
        if value != AUTO:
            resolved[key] = int(value)
            continue
        if encoded is None:
            encoded = [encode_rows(tokenizer, frame, source_column) for frame in frames]
        longest = max(len(ids) for enc in encoded for ids in enc.get(part, []))
        resolved[key] = auto_length(longest, limit)
        log.info(
            "%s auto: the longest training %s is %d tokens; with the margin %d (model limit: %s)",
            key,
            part[:-1],
            longest,
            resolved[key],
            limit or "none",
        )
    return resolved


def resolve_prediction_lengths(model_dir, params: dict) -> tuple[int, int]:
    """(max_source_length, max_new_tokens) for prediction: "auto" takes the model's training
    lengths (its train_summary.json), the target length being the most a target needs."""
    needs = {key: params[key] for key in ("max_source_length", "max_new_tokens")}
    if AUTO in needs.values():
        summary_path = Path(model_dir) / "train_summary.json"
        trained = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
        from_training = {
            "max_source_length": trained.get("max_source_length"),
            "max_new_tokens": trained.get("max_target_length"),
        }
        for key, value in needs.items():
            if value == AUTO:
                if from_training[key] is None:
                    raise ValueError(
                        f"{key}: auto needs the lengths the model was trained with, which "
                        f"{summary_path} does not record (a model from before auto lengths): set a number"
                    )
                needs[key] = int(from_training[key])
                log.info("%s auto: %d, as in training", key, needs[key])
    return int(needs["max_source_length"]), int(needs["max_new_tokens"])


def side_features(model_or_config, rows: pd.DataFrame):
    from prodcat.labelers.mmt5 import encode_side_features

    config = getattr(model_or_config, "config", model_or_config)
    prices = [None if (p is None or (isinstance(p, float) and math.isnan(p))) else float(p) for p in rows["price"]]
    return encode_side_features(config, rows["retailer"].tolist(), prices)


def _collator(tokenizer, model, kind: str):
    if kind == MULTIMODAL:
        from prodcat.labelers.mmt5 import MultimodalSeq2SeqCollator

        return MultimodalSeq2SeqCollator(tokenizer, model=model)  # pads labels with -100
    from transformers import DataCollatorForSeq2Seq

    return DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100, padding=True)


# ---- model loading ----------------------------------------------------------------------
def load_base_model(base_dir, kind: str, train_rows: pd.DataFrame | None = None, params: dict | None = None):
    """The model to fine-tune. For the multimodal labeler the side-feature layers are added to a
    plain (Byt5) checkpoint, with the retailer vocabulary and price scaler fitted on train_rows."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    base_model = "a base model folder (config, safetensors weights, tokenizer)"
    with reading_model(base_dir, base_model, rule="build_tiny_model or download_model"):
        tokenizer = AutoTokenizer.from_pretrained(base_dir)
    if kind == TEXT:
        with reading_model(base_dir, base_model, rule="build_tiny_model or download_model"):
            model = AutoModelForSeq2SeqLM.from_pretrained(base_dir)
        # T5's forward takes **kwargs, so the Trainer would assume it normalises the loss over
        # gradient-accumulation steps itself; it does not. This makes the Trainer divide.
        model.accepts_loss_kwargs = False
        return model, tokenizer
    if kind != MULTIMODAL:
        raise ValueError(f"unknown labeler kind {kind!r}: expected {TEXT!r} or {MULTIMODAL!r}")
    from prodcat.labelers.mmt5 import MultimodalT5ForConditionalGeneration

    prices = train_rows["price"].dropna()
    with reading_model(base_dir, base_model, rule="build_tiny_model or download_model"):
        model = MultimodalT5ForConditionalGeneration.from_text_model(
            str(base_dir),
            retailers=sorted(train_rows["retailer"].unique().tolist()),
            price_min=float(prices.min()) if len(prices) else 0.0,
            price_max=float(prices.max()) if len(prices) else 1.0,
            side_dim=int(params["side_dim"]),
            fusion=params["fusion"],
            retailer_dropout=float(params["retailer_dropout"]),
        )
    return model, tokenizer


def load_trained_model(model_dir, device: str | None = None, dtype=None):
    """(model, tokenizer) of a trained labeler, loaded straight onto its device in its dtype (bf16
    on a GPU), with no full-precision host copy first."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from prodcat.labelers import mmt5  # noqa: F401  registers the multimodal classes with the Auto* factories

    if device is None:
        device, dtype = pick_device()
    what = "a trained seq2seq labeler (config, safetensors weights, tokenizer)"
    with reading_model(model_dir, what, rule="train_labeler"):
        model = AutoModelForSeq2SeqLM.from_pretrained(model_dir, dtype=dtype, device_map={"": device})
        return model, AutoTokenizer.from_pretrained(model_dir)


# ---- training ---------------------------------------------------------------------------
def _run_signature(base_dir, rows: list[pd.DataFrame], source_column: str, kind: str, params: dict) -> str:
    """What a checkpoint was trained from; a checkpoint is only resumed when this matches."""
    side = ["retailer", "price"] if kind == MULTIMODAL else []
    frames = [frame[["indoml_id", source_column, *[c for c in LEVELS if c in frame], *side]] for frame in rows]
    return run_signature({"params": params, "kind": kind, "source": source_column}, base_dir, frames)


# Training settings that are not TrainingArguments fields (or whose value the labeler reads itself);
# every other key of a labeler's `train` section goes to Seq2SeqTrainingArguments by name.
LABELER_SETTINGS = (
    "early_stopping_patience",  # EarlyStoppingCallback's
    "max_source_length",
    "max_target_length",
    "keep_checkpoints",
    "side_dim",  # the multimodal model's side features (prodcat.labelers.mmt5)
    "fusion",
    "retailer_dropout",
)


def training_arguments(params: dict, checkpoint_dir, device: str, dtype):
    """The labeler's Seq2SeqTrainingArguments: its `train` settings by TrainingArguments name (less
    LABELER_SETTINGS; per_device_eval_batch_size null: as the training batch), and per-epoch
    evaluation and saving, the best checkpoint by validation loss kept and loaded at the end, log
    lines instead of bars, bf16 on a GPU that has it."""
    import torch
    from transformers import Seq2SeqTrainingArguments

    from prodcat.runtime.trainer import training_arguments as build

    settings = {key: value for key, value in params.items() if key not in LABELER_SETTINGS}
    if settings.get("per_device_eval_batch_size") is None:  # null: as the training batch
        settings["per_device_eval_batch_size"] = settings["per_device_train_batch_size"]
    return build(
        Seq2SeqTrainingArguments,
        settings,
        "labeler train settings",
        output_dir=str(checkpoint_dir),
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=2,  # with load_best_model_at_end the best one is kept as well
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        logging_first_step=True,
        report_to="none",
        data_seed=int(params["seed"]),
        bf16=device == "cuda" and dtype == torch.bfloat16,
        use_cpu=device == "cpu",
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,  # data-parallel: every parameter takes part in each step
        disable_tqdm=True,  # one log line every logging_steps instead (prodcat.runtime.progress)
    )


def train_seq2seq(
    base_dir,
    train_rows: pd.DataFrame,
    val_rows: pd.DataFrame,
    out_dir,
    checkpoint_dir,
    params: dict,
    *,
    source_column: str = "description",
    kind: str = TEXT,
    extra_callbacks=(),
    profile: dict | None = None,
) -> TrainingSummary | None:
    """Fine-tune a seq2seq labeler; the best checkpoint (lowest validation loss) is saved to out_dir
    with its TrainingSummary (train_summary.json; `trainer_seconds` is the Trainer's train() call).

    Checkpoints go to checkpoint_dir, outside the rule's output, so that a killed run resumes
    when the rule reruns (Snakemake removes incomplete outputs first); they are removed after a
    successful run unless params['keep_checkpoints']. `profile`: settings of prodcat.runtime.profiling
    (a few steps profiled, written to out_dir/profile, summarised under "profile").

    Under torchrun (prodcat.runtime.distributed) every process trains its share of each step and
    the main process alone saves; the others return None."""
    from transformers import EarlyStoppingCallback, Seq2SeqTrainer, set_seed

    from prodcat.runtime.trainer import run_trainer

    out_dir, checkpoint_dir = Path(out_dir), Path(checkpoint_dir)
    set_seed(int(params["seed"]))
    device, dtype = pick_device()
    model, tokenizer = load_base_model(base_dir, kind, train_rows, params)
    side = (lambda rows: side_features(model, rows)) if kind == MULTIMODAL else (lambda rows: None)
    encoded = [encode_rows(tokenizer, frame, source_column) for frame in (train_rows, val_rows)]
    lengths = resolve_training_lengths(tokenizer, model, [train_rows, val_rows], source_column, params, encoded=encoded)
    train_set = ExampleDataset(
        make_examples(tokenizer, train_rows, source_column, side=side(train_rows), encoded=encoded[0], **lengths)
    )
    val_set = ExampleDataset(
        make_examples(tokenizer, val_rows, source_column, side=side(val_rows), encoded=encoded[1], **lengths)
    )
    log.info("training %s labeler on %d rows (validation %d) from %s", kind, len(train_set), len(val_set), base_dir)

    run = run_trainer(
        Seq2SeqTrainer,
        training_arguments(params, checkpoint_dir, device, dtype),
        signature=_run_signature(base_dir, [train_rows, val_rows], source_column, kind, params),
        callbacks=[
            EarlyStoppingCallback(early_stopping_patience=int(params["early_stopping_patience"])),
            *extra_callbacks,
        ],
        profile=profile,
        profile_dir=out_dir,
        model=model,
        train_dataset=train_set,
        eval_dataset=val_set,
        data_collator=_collator(tokenizer, model, kind),
        processing_class=tokenizer,
    )
    trainer = run.trainer
    trainer.save_model(str(out_dir))  # the best checkpoint: load_best_model_at_end (main process only)
    if not is_main_process():  # data-parallel: the main process writes the model and its summary
        return None
    tokenizer.save_pretrained(str(out_dir))
    batch_size = trainer.args.per_device_train_batch_size
    batch = trainer.data_collator([train_set[i] for i in range(min(len(train_set), batch_size))])
    batch = {k: v.to(trainer.model.device) for k, v in batch.items()}
    summary = TrainingSummary(
        kind=kind,
        device=describe_device(),
        parameters=count_parameters(trainer.model),
        trainer_seconds=run.seconds,
        train_gflops_per_step=_gflops(
            report_only("the training-step FLOPs", training_step_flops, trainer.model, batch)
        ),
        details={
            "source_column": source_column,
            "base_model": str(base_dir),
            "train_rows": len(train_set),
            "val_rows": len(val_set),
            "resumed_from": run.resumed_from or None,
            "segments": run.segments,  # trainer_seconds is their sum
            "best_checkpoint": trainer.state.best_model_checkpoint,
            "best_eval_loss": trainer.state.best_metric,
            "epochs_run": trainer.state.epoch,
            "global_step": trainer.state.global_step,
            "train_batch_size": batch_size,
            "processes": world_size(),  # data-parallel: batch size per process
            **lengths,  # what prediction's "auto" lengths read
            "log_history": trainer.state.log_history,
            "profile": run.profile,
        },
    )
    summary.write(out_dir)
    if not params["keep_checkpoints"]:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return summary


def _gflops(flops):
    return flops / 1e9 if flops is not None else None


# ---- prediction -------------------------------------------------------------------------
def predict_seq2seq(
    model_dir,
    rows: pd.DataFrame,
    params: dict,
    *,
    source_column: str = "description",
    hierarchy=None,
    constrained: bool = False,
    count_batch_flops: bool = False,
    loaded=None,
) -> tuple[pd.DataFrame, PredictionSummary]:
    """Generate, parse and return the predictions table (labels None where the parse failed) and
    a summary (parse failures, unfinished generations, seconds and, with `count_batch_flops`, the
    FLOPs of generating the first (longest) batch, counted on an extra untimed pass: torch's FLOP
    counter slows every op down, ~5 s a batch for a tiny model).

    With `constrained`, decoding follows a prefix trie over the tokenised targets of the
    hierarchy's paths, so every output is a valid path and is read off the trie exactly.
    `loaded`: the (model, tokenizer) of `load_trained_model(model_dir)`, when the caller decodes
    the same rows more than one way.

    Confidence per row (`generated_token_logprobs`): `logprob`, the model's log-probability of the
    tokens it generated (end-of-sequence included), `logprob_per_token` (that over `n_tokens`) and
    `logprob_min` (the least likely token), for free and constrained decoding alike."""
    from prodcat.runtime.progress import log_progress

    decoder = _Decoder.of(model_dir, rows, params, hierarchy=hierarchy, constrained=constrained, loaded=loaded)
    sources = rows[source_column].astype(str).tolist()
    batches = length_sorted_batches(sources, decoder.batch_size)
    batch_flops = _batch_flops(decoder, sources, batches[0]) if count_batch_flops and batches else None
    started = time.time()
    generated = [decoder.generate(sources, idx) for idx in log_progress(batches, "predict")]
    seconds = time.time() - started
    table = _prediction_table(rows, _by_row(generated, len(sources)), constrained=decoder.trie is not None)
    summary = _prediction_summary(decoder, table, seconds, batch_flops, constrained=constrained)
    log.info(
        "predicted %d rows in %.1f s; %d parse failures, %d unfinished generations",
        len(table),
        seconds,
        summary.parse_failures,
        summary["unfinished"],
    )
    return table, summary


def length_sorted_batches(sources: list[str], batch_size: int) -> list[np.ndarray]:
    """Row positions in batches, longest text first: similar lengths share a batch (less padding)
    and a memory problem shows at once."""
    order = np.argsort([-len(s) for s in sources], kind="stable")
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


@dataclass
class _Decoder:
    """A trained labeler ready to generate: model on its device, lengths and decoding settings, the
    rows' side features (multimodal) and, for constrained decoding, the path trie."""

    model: object
    tokenizer: object
    device: str
    dtype: object
    kind: str
    batch_size: int
    num_beams: int
    max_source_length: int
    max_new_tokens: int
    side: tuple | None
    trie: object | None
    constraint: object | None  # the trie's LogitsProcessorList
    eos: int

    @classmethod
    def of(cls, model_dir, rows, params, *, hierarchy, constrained, loaded) -> _Decoder:
        device, dtype = pick_device()
        model, tokenizer = loaded if loaded is not None else load_trained_model(model_dir, device, dtype)
        model.to(device=device, dtype=dtype).eval()  # a no-op for a model from load_trained_model
        kind = MULTIMODAL if getattr(model.config, "retailers", None) is not None else TEXT
        max_source_length, max_new_tokens = resolve_prediction_lengths(model_dir, params)
        trie = constraint = None
        if constrained:
            from transformers import LogitsProcessorList

            from prodcat.labelers.constrained import PathTrie, constrained_logits_processor, max_target_tokens

            if hierarchy is None:
                raise ValueError("constrained decoding needs the hierarchy")
            trie = PathTrie.from_hierarchy(hierarchy, tokenizer)
            max_new_tokens = max(max_new_tokens, max_target_tokens(trie))
            constraint = LogitsProcessorList([constrained_logits_processor(trie)])
        eos = model.generation_config.eos_token_id
        return cls(
            model=model,
            tokenizer=tokenizer,
            device=device,
            dtype=dtype,
            kind=kind,
            batch_size=int(params["batch_size"]),
            num_beams=int(params["num_beams"]),
            max_source_length=max_source_length,
            max_new_tokens=max_new_tokens,
            side=side_features(model, rows) if kind == MULTIMODAL else None,
            trie=trie,
            constraint=constraint,
            eos=eos if eos is not None else tokenizer.eos_token_id,
        )

    def inputs(self, sources: list[str], idx) -> dict:
        """generate()'s arguments for the rows at positions `idx`."""
        enc = self.tokenizer(
            [sources[i] for i in idx],
            max_length=self.max_source_length,
            truncation=True,
            padding=True,
            return_tensors="pt",
        ).to(self.device)
        kwargs = dict(max_new_tokens=self.max_new_tokens, num_beams=self.num_beams, do_sample=False)
        if self.side is not None:
            kwargs["retailer_ids"] = self.side[0][idx].to(self.device)
            kwargs["prices"] = self.side[1][idx].to(device=self.device, dtype=self.dtype)
        if self.constraint is not None:
            kwargs["logits_processor"] = self.constraint
        return {**enc, **kwargs}

    def generate(self, sources: list[str], idx) -> dict:
        """One batch: its positions, decoded texts, whether each reached end-of-sequence, the
        confidences of `generated_token_logprobs` and (constrained) the paths read off the trie."""
        import torch

        with torch.inference_mode():
            out = self.model.generate(**self.inputs(sources, idx), return_dict_in_generate=True, output_logits=True)
            sequences = out.sequences
            token_logprobs, counted = generated_token_logprobs(self.model, out, self.eos)
            return {
                "positions": idx,
                "text": self.tokenizer.batch_decode(sequences, skip_special_tokens=True),
                "finished": [bool((sequences[j, 1:] == self.eos).any()) for j in range(len(idx))],
                "logprob": token_logprobs.sum(dim=1).tolist(),
                "logprob_min": token_logprobs.masked_fill(~counted, float("inf")).min(dim=1).values.tolist(),
                "n_tokens": counted.sum(dim=1).tolist(),
                "path": [self.trie.path_of(sequences[j, 1:].tolist()) for j in range(len(idx))]
                if self.trie is not None
                else None,
            }


def _by_row(generated: list[dict], n: int) -> dict:
    """The batches' results put back in row order."""
    columns = {
        "text": [None] * n,
        "finished": [False] * n,
        "logprob": np.zeros(n),
        "logprob_min": np.zeros(n),
        "n_tokens": np.zeros(n, dtype=np.int64),
        "path": [None] * n,
    }
    for batch in generated:
        for j, i in enumerate(batch["positions"]):
            for name, values in columns.items():
                if batch[name] is not None:
                    values[i] = batch[name][j]
    return columns


def _prediction_table(rows: pd.DataFrame, by_row: dict, *, constrained: bool) -> pd.DataFrame:
    """indoml_id, the four levels (parsed, or the trie's path), text, parse_ok, finished and the
    confidence columns."""
    parsed = by_row["path"] if constrained else [parse_target(t) for t in by_row["text"]]
    logprob, n_tokens = by_row["logprob"], by_row["n_tokens"]
    table = pd.DataFrame({"indoml_id": rows["indoml_id"].to_numpy()})
    for k, level in enumerate(LEVELS):
        table[level] = [p[k] if p is not None else None for p in parsed]
    table["text"] = by_row["text"]
    table["parse_ok"] = [p is not None for p in parsed]
    table["finished"] = by_row["finished"]
    table["logprob"] = logprob
    table["logprob_per_token"] = logprob / np.maximum(n_tokens, 1)
    table["logprob_min"] = by_row["logprob_min"]
    table["n_tokens"] = n_tokens
    return table


def _batch_flops(decoder: _Decoder, sources: list[str], idx) -> float | None:
    """FLOPs of generating one batch (report-only: None when counting fails)."""
    import torch

    with torch.inference_mode():
        counted = report_only(
            "the prediction-batch FLOPs", count_flops, decoder.model.generate, **decoder.inputs(sources, idx)
        )
    return counted[0] if counted else None


def _prediction_summary(decoder: _Decoder, table: pd.DataFrame, seconds: float, batch_flops, *, constrained: bool):
    return PredictionSummary(
        kind=decoder.kind,
        decoding="constrained" if constrained else "raw",
        rows=len(table),
        parse_failures=int((~table["parse_ok"]).sum()),
        predict_seconds=seconds,
        batch_size=decoder.batch_size,
        device=describe_device(),
        predict_gflops_per_batch=batch_flops / 1e9 if batch_flops is not None else None,
        details={
            "unfinished": int((~table["finished"]).sum()),
            "num_beams": decoder.num_beams,
            "parameters": count_parameters(decoder.model),
        },
    )


def generated_token_logprobs(model, out, eos: int):
    """Per generated token, the model's log-probability of it ((batch, steps) float32), and which
    tokens count: up to and including the first end-of-sequence token (later positions are padding).

    From the raw logits (`output_logits=True`), not the processed scores: under constrained
    decoding the trie masks the other tokens, and renormalising over the allowed ones would make a
    forced path look certain; the raw logits say how likely the model itself finds the path it
    wrote. With beam search the beam indices pick each token's row of the logits."""
    import torch

    logits = tuple(step.float() for step in out.logits)
    beam_indices = getattr(out, "beam_indices", None)
    scores = model.compute_transition_scores(out.sequences, logits, beam_indices=beam_indices, normalize_logits=True)
    generated = out.sequences[:, out.sequences.shape[1] - scores.shape[1] :]
    is_eos = generated == eos
    # a token counts when no end-of-sequence token came before it
    counted = (torch.cumsum(is_eos.long(), dim=1) - is_eos.long()) == 0
    if beam_indices is not None:
        counted &= beam_indices[:, : scores.shape[1]] >= 0
    scores = scores.masked_fill(~counted, 0.0)
    return scores.cpu(), counted.cpu()


def score_seq2seq_paths(
    model_dir, rows: pd.DataFrame, paths: pd.DataFrame, params: dict, *, source_column: str = "description", loaded=None
) -> pd.DataFrame:
    """The model's log-probability of given label paths (teacher forcing: one decoder pass, no
    generation), for reranking: `paths` has indoml_id and the four levels, any number of rows per
    id; the result is `paths` (same order) with `logprob` (the target text's tokens, end-of-sequence
    included), `logprob_per_token` and `n_tokens` added. Every id must be a row of `rows`."""
    import torch

    from prodcat.runtime.errors import InputError

    device, dtype = pick_device()
    model, tokenizer = loaded if loaded is not None else load_trained_model(model_dir)
    model.to(device=device, dtype=dtype).eval()
    kind = MULTIMODAL if getattr(model.config, "retailers", None) is not None else TEXT
    position = pd.Index(rows["indoml_id"].to_numpy()).get_indexer(paths["indoml_id"].to_numpy())
    if (position < 0).any():
        raise InputError(
            "paths",
            f"indoml_id {paths['indoml_id'].iloc[int(np.argmax(position < 0))]} is not among the rows",
            column="indoml_id",
        )
    sources = rows[source_column].astype(str).to_numpy()[position]
    targets = [format_target(labels) for labels in paths[list(LEVELS)].itertuples(index=False, name=None)]
    target_ids = tokenizer(text_target=targets)["input_ids"]
    side = side_features(model, rows) if kind == MULTIMODAL else None
    batch_size = int(params["batch_size"])
    max_source_length, _ = resolve_prediction_lengths(model_dir, params)  # "auto": as trained
    logprob = np.zeros(len(paths))
    n_tokens = np.array([len(ids) for ids in target_ids], dtype=np.int64)
    order = np.argsort(-n_tokens, kind="stable")
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            enc = tokenizer(
                [sources[i] for i in idx],
                max_length=max_source_length,
                truncation=True,
                padding=True,
                return_tensors="pt",
            ).to(device)
            longest = int(n_tokens[idx].max())
            labels = torch.full((len(idx), longest), -100, dtype=torch.long)
            for j, i in enumerate(idx):
                labels[j, : n_tokens[i]] = torch.tensor(target_ids[i])
            labels = labels.to(device)
            kwargs = {}
            if side is not None:
                kwargs = {
                    "retailer_ids": side[0][position[idx]].to(device),
                    "prices": side[1][position[idx]].to(device=device, dtype=dtype),
                }
            logits = model(**enc, labels=labels, **kwargs).logits.float()
            token = torch.log_softmax(logits, dim=-1).gather(2, labels.clamp(min=0)[:, :, None])[:, :, 0]
            logprob[idx] = (token * (labels >= 0)).sum(dim=1).cpu().numpy()
    out = paths.copy()
    out["logprob"] = logprob
    out["logprob_per_token"] = logprob / np.maximum(n_tokens, 1)
    out["n_tokens"] = n_tokens
    return out

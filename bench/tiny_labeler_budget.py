"""Training budget of the tiny ByT5 stand-in: seconds against corrected validation accuracy.

Builds a fresh stand-in with the given dimensions, trains it with `prodcat.labelers.seq2seq.train_seq2seq`
on a finished run's split, predicts the validation rows, corrects them top-down (with salvage) and
scores them; with --profile it instead prints torch's profile of one training step (which ops
the CPU time goes to). This is how the default config's tiny dimensions and epochs were chosen.

    python bench/tiny_labeler_budget.py --run results --epochs 2 --dropout 0.0
    python bench/tiny_labeler_budget.py --profile --dropout 0.1
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def profile_step(dims: dict, batch: int, source: int, target: int, threads: int) -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile
    from transformers import T5ForConditionalGeneration

    from prodcat.standins.tiny_seq2seq import build_tiny_byt5

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        model = T5ForConditionalGeneration.from_pretrained(build_tiny_byt5(Path(tmp) / "base", dims))
    model.train()
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    x, y = torch.randint(3, 259, (batch, source)), torch.randint(3, 259, (batch, target))

    def step():
        model(input_ids=x, labels=y).loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    for _ in range(5):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        started = time.perf_counter()
        for _ in range(10):
            step()
        seconds = (time.perf_counter() - started) / 10
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    print(f"{seconds * 1000:.0f} ms per step (profiled), batch {batch}, {source} x {target} tokens")


def train_and_score(run: Path, dims: dict, params: dict, threads: int) -> dict:
    import pandas as pd
    import torch

    from prodcat.data.hierarchy import Hierarchy
    from prodcat.ensemble.correct import correct_predictions
    from prodcat.labelers.seq2seq import predict_seq2seq, train_seq2seq
    from prodcat.report.metrics import score
    from prodcat.standins.tiny_seq2seq import build_tiny_byt5

    torch.set_num_threads(threads)
    train, val = pd.read_parquet(run / "data/train.parquet"), pd.read_parquet(run / "data/val.parquet")
    hierarchy = Hierarchy.from_json(run / "data/hierarchy.json")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        build_tiny_byt5(tmp / "base", dims)
        started = time.perf_counter()
        summary = train_seq2seq(tmp / "base", train, val, tmp / "model", tmp / "ckpt", params)
        train_wall_seconds = time.perf_counter() - started
        predictions, _ = predict_seq2seq(
            tmp / "model",
            val,
            {
                "batch_size": 128,
                "num_beams": 1,
                "max_new_tokens": 128,
                "max_source_length": params["max_source_length"],
            },
        )
    return {
        "dims": dims,
        "params": params,
        "train_wall_seconds": round(train_wall_seconds, 1),
        "trainer_seconds": round(summary.trainer_seconds, 1),
        "best_eval_loss": summary["best_eval_loss"],
        "parameters": summary["parameters"],
        "val_raw": score(val, predictions)["item_accuracy"],
        "val_corrected": score(val, correct_predictions(predictions, hierarchy, salvage=True))["item_accuracy"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=Path("results"), help="a finished run's results folder (its data/)")
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--d-ff", type=int, default=256)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--decoder-layers", type=int, default=2)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="profile one training step instead of training")
    args = parser.parse_args()
    dims = {
        "d_model": args.d_model,
        "d_ff": args.d_ff,
        "num_layers": args.layers,
        "num_decoder_layers": args.decoder_layers,
        "num_heads": 4,
        "dropout_rate": args.dropout,
    }
    if args.profile:
        # a random batch shaped like the sample's: padded description ~33 bytes, padded target ~79
        profile_step(dims, args.batch_size, 33, 79, args.threads)
        return
    params = {
        "per_device_train_batch_size": args.batch_size,
        "per_device_eval_batch_size": None,
        "gradient_accumulation_steps": 1,
        "learning_rate": args.lr,
        "weight_decay": 0.01,
        "num_train_epochs": args.epochs,
        "early_stopping_patience": 2,
        "warmup_steps": 50,
        "lr_scheduler_type": "linear",
        "max_source_length": 80,
        "max_target_length": 128,
        "logging_steps": 1000,
        "seed": 42,
        "keep_checkpoints": False,
    }
    print(json.dumps(train_and_score(args.run, dims, params, args.threads)))


if __name__ == "__main__":
    main()

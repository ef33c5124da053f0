"""Tiny stand-ins for the hub models, built here from random weights and local tokenizers.

No model hub is reachable in development, CI or the demo, so the default run trains the real
code paths (`from_pretrained`, Trainer, generate) on small models that are saved with
`save_pretrained` exactly like `google/byt5-small` and `google/flan-t5-base`. They cannot show
the method's real quality; they show that every stage runs and learns.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)


def _t5_config(vocab_size: int, dims: dict, **extra):
    from transformers import T5Config

    decoder_layers = dims.get("num_decoder_layers", dims["num_layers"])
    if decoder_layers > dims["num_layers"]:
        # transformers 5.24 sizes the generation cache by the encoder depth (ByT5 itself has a
        # deeper encoder than decoder), so a deeper decoder fails only at generate time.
        raise ValueError(f"num_decoder_layers ({decoder_layers}) must not exceed num_layers ({dims['num_layers']})")
    return T5Config(
        vocab_size=vocab_size,
        d_model=dims["d_model"],
        d_kv=dims["d_model"] // dims["num_heads"],
        d_ff=dims["d_ff"],
        num_layers=dims["num_layers"],
        num_decoder_layers=decoder_layers,
        num_heads=dims["num_heads"],
        feed_forward_proj="gated-gelu",  # as in ByT5 and Flan-T5
        # tied embeddings with scaled decoder outputs (the transformers default): a sane initial
        # loss when training from random weights
        dropout_rate=dims.get("dropout_rate", 0.1),
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
        **extra,
    )


def build_tiny_byt5(out_dir, dims: dict, seed: int = 0) -> Path:
    """A ByT5 stand-in: the real byte tokenizer (it needs no files) and a small random T5."""
    import torch
    from transformers import ByT5Tokenizer, T5ForConditionalGeneration

    torch.manual_seed(seed)
    tokenizer = ByT5Tokenizer()
    model = T5ForConditionalGeneration(_t5_config(len(tokenizer), dims))
    return _save(model, tokenizer, out_dir)


def build_tiny_flant5(out_dir, texts: list[str], dims: dict, vocab_size: int = 800, seed: int = 0) -> Path:
    """A Flan-T5 stand-in: a SentencePiece unigram tokenizer trained on `texts` and a small random T5.

    The tokenizer is built from the trained pieces (`vocab=`), which is what the T5 tokenizer of
    transformers 5 needs; passing a model file path would silently give a broken tokenizer."""
    import sentencepiece as spm
    import torch
    from sentencepiece import sentencepiece_model_pb2 as model_pb2
    from transformers import T5ForConditionalGeneration, T5Tokenizer

    if not texts:
        raise ValueError("build_tiny_flant5 needs training texts for its tokenizer")
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text("\n".join(t.replace("\n", " ") for t in texts) + "\n")
        prefix = str(Path(tmp) / "spm")
        spm.SentencePieceTrainer.train(
            input=str(corpus), model_prefix=prefix, vocab_size=vocab_size, model_type="unigram",
            pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0,
            hard_vocab_limit=False, num_threads=1, seed_sentencepiece_size=200000,
            minloglevel=2,
        )
        proto = model_pb2.ModelProto()
        proto.ParseFromString(Path(prefix + ".model").read_bytes())
    pieces = [(p.piece, float(p.score)) for p in proto.pieces]
    tokenizer = T5Tokenizer(vocab=pieces, extra_ids=100)
    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(_t5_config(len(tokenizer), dims))
    return _save(model, tokenizer, out_dir)


def _save(model, tokenizer, out_dir) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    n = sum(p.numel() for p in model.parameters())
    log.info("saved %s (%s parameters) to %s", type(model).__name__, f"{n:,}", out_dir)
    return out_dir

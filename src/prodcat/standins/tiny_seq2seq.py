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
            input=str(corpus),
            model_prefix=prefix,
            vocab_size=vocab_size,
            model_type="unigram",
            pad_id=0,
            eos_id=1,
            unk_id=2,
            bos_id=-1,
            character_coverage=1.0,
            hard_vocab_limit=False,
            num_threads=1,
            seed_sentencepiece_size=200000,
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


# ---- stand-ins under the paper's hub ids ---------------------------------------------------
# Tiny widths, but each real model's tokenizer kind, special tokens and config traits: ByT5's byte
# tokenizer, a deeper encoder than decoder and an untied lm_head; Flan-T5's SentencePiece tokenizer
# and untied lm_head; Llama-3.1's real tokenizer (128,256 ids, prodcat.standins.llama3_tokenizer),
# chat template, <|eot_id|> and <|finetune_right_pad_id|>: "vocab_size" below is not used for it.
HUB_STANDIN_DIMS = {
    "byt5": {"d_model": 32, "d_ff": 64, "num_layers": 2, "num_decoder_layers": 1, "num_heads": 2, "dropout_rate": 0.0},
    "flant5": {
        "d_model": 32,
        "d_ff": 64,
        "num_layers": 1,
        "num_decoder_layers": 1,
        "num_heads": 2,
        "dropout_rate": 0.0,
    },
    "llama": {
        "vocab_size": 400,
        "hidden_size": 32,
        "num_layers": 1,
        "num_heads": 2,
        "num_kv_heads": 1,
        "intermediate_size": 64,
    },
}


def build_hub_standin(arch: str, out_dir, texts: list[str], *, seed: int = 0) -> Path:
    """A tiny random-init stand-in for the paper's `arch` (byt5, flant5 or llama), saved like the real one."""
    import torch
    from transformers import ByT5Tokenizer, T5ForConditionalGeneration

    dims = dict(HUB_STANDIN_DIMS[arch])
    if arch == "byt5":
        torch.manual_seed(seed)
        tokenizer = ByT5Tokenizer()
        out = _save(T5ForConditionalGeneration(_t5_config(len(tokenizer), dims)), tokenizer, out_dir)
        return _untie_lm_head(out, seed)
    if arch == "flant5":
        return _untie_lm_head(build_tiny_flant5(out_dir, texts, dims, vocab_size=400, seed=seed), seed)
    if arch == "llama":
        # the real Llama-3.1 tokenizer (128,256 ids, its chat template, pad and stop ids): every
        # prompt, pad and stop token of the paper path is the real one; `texts` are not needed
        from prodcat.standins.llama3_tokenizer import build_llama31_tokenizer
        from prodcat.standins.tiny_llama import build_tiny_llama

        return build_tiny_llama(out_dir, texts, seed=seed, tokenizer=build_llama31_tokenizer(), **dims)
    raise ValueError(f"no hub stand-in for {arch!r}: expected byt5, flant5 or llama")


def _untie_lm_head(model_dir: Path, seed: int) -> Path:
    """Give a saved T5 its own lm_head, as the T5 v1.1 family (ByT5, Flan-T5) ships it.

    transformers 5 always builds T5 with a tied lm_head, but keeps a checkpoint's own lm_head when
    it differs from the embedding (and the config says tie_word_embeddings: false); a stand-in
    must be saved that way for the real checkpoints' loading path to be the one tested."""
    import json

    import torch
    from safetensors.torch import load_file, save_file

    weights = Path(model_dir) / "model.safetensors"
    tensors = load_file(weights)
    generator = torch.Generator().manual_seed(seed + 1)
    shared = tensors["shared.weight"]
    tensors["lm_head.weight"] = torch.randn(shared.shape, generator=generator, dtype=shared.dtype) * shared.std()
    save_file(tensors, weights, metadata={"format": "pt"})
    config_path = Path(model_dir) / "config.json"
    config = json.loads(config_path.read_text())
    config["tie_word_embeddings"] = False
    config.pop("scale_decoder_outputs", None)  # derived from tie_word_embeddings; the hub configs have no such key
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    return Path(model_dir)

"""The real Llama-3.1 tokenizer, built offline from Meta's `llama-models` package (a development
dependency, with `tiktoken` to read its BPE file).

The hub's tokenizer of meta-llama/Llama-3.1-8B-Instruct is gated; the same 128,000 BPE ranks ship in
`llama_models/llama3/tokenizer.model`. `TikTokenConverter` with the Llama-3 split pattern and the
256 special tokens named as 3.1 names them gives the 128,256-id fast tokenizer, so that tests and
benchmarks count and feed the real token ids. The workflow itself still loads the hub's tokenizer.
"""

from __future__ import annotations

import sys
from pathlib import Path

from prodcat.standins.tiny_llama import (
    BOS,
    EOS_TEXT,
    EOT,
    LLAMA3_SPLIT_PATTERN,
    LLAMA31_CHAT_TEMPLATE,
    PAD,
)

BASE_VOCAB = 128_000
VOCAB_SIZE = 128_256
EOM = "<|eom_id|>"
# Llama-3.1's generation_config.json stops on these three (end_of_text, eom, eot)
STOP_TOKENS = (EOS_TEXT, EOM, EOT)


def llama31_special_tokens() -> list[str]:
    """The 256 special tokens in id order from 128,000, named as the hub's Llama-3.1 tokenizer names
    them (llama-models 0.3.0 names 128005 and 128011 after later Llama versions)."""
    named = [
        BOS,  # 128000
        EOS_TEXT,  # 128001
        "<|reserved_special_token_0|>",  # 128002
        "<|reserved_special_token_1|>",  # 128003
        PAD,  # 128004
        "<|reserved_special_token_2|>",  # 128005
        "<|start_header_id|>",  # 128006
        "<|end_header_id|>",  # 128007
        EOM,  # 128008
        EOT,  # 128009
        "<|python_tag|>",  # 128010
    ]
    return named + [f"<|reserved_special_token_{i}|>" for i in range(3, 3 + 256 - len(named))]


def installed_package(name: str) -> Path | None:
    """The folder of an installed package, found on sys.path without importing it: llama_models'
    own imports need packages this project does not install (it is installed --no-deps)."""
    for entry in sys.path:
        folder = Path(entry or ".") / name
        if (folder / "__init__.py").is_file():
            return folder
    return None


def bpe_file() -> Path:
    """Path of llama-models' tiktoken BPE file; a clear error when the dev packages are missing."""
    missing = [name for name in ("llama_models", "tiktoken") if installed_package(name) is None]
    if missing:
        raise RuntimeError(
            f"the real Llama-3.1 tokenizer needs the development package(s) {missing}: "
            "pip install tiktoken==0.14.0 && pip install --no-deps llama-models==0.3.0 "
            "(`make install` does: requirements.txt, requirements-nodeps.txt)"
        )
    path = installed_package("llama_models") / "llama3" / "tokenizer.model"
    if not path.is_file():
        raise RuntimeError(f"llama-models is installed but has no {path}: expected llama-models==0.3.0")
    return path


def build_llama31_tokenizer(out_dir=None):
    """The Llama-3.1 fast tokenizer (chat template, pad <|finetune_right_pad_id|>, eos <|eot_id|>).

    Saved as a normal tokenizer folder in `out_dir` (returns the Path) when given; otherwise the
    PreTrainedTokenizerFast itself is returned."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    specials = llama31_special_tokens()
    core = TikTokenConverter(
        vocab_file=str(bpe_file()), pattern=LLAMA3_SPLIT_PATTERN, extra_special_tokens=specials
    ).converted()
    # As the hub's tokenizer.json: plain encoding prepends <|begin_of_text|> (the chat template
    # writes it itself, so chat prompts are encoded with add_special_tokens=False).
    core.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, BASE_VOCAB)]
            ),
        ]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token=BOS, eos_token=EOT, pad_token=PAD, clean_up_tokenization_spaces=False
    )
    tokenizer.chat_template = LLAMA31_CHAT_TEMPLATE
    tokenizer.model_max_length = 131072
    if len(tokenizer) != VOCAB_SIZE or tokenizer.convert_tokens_to_ids(BOS) != BASE_VOCAB:
        raise RuntimeError(f"built a Llama-3.1 tokenizer of {len(tokenizer)} ids; expected {VOCAB_SIZE}")
    if out_dir is None:
        return tokenizer
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def stop_token_ids(tokenizer) -> list[int]:
    """128001, 128008, 128009: the eos ids of Llama-3.1's generation config."""
    return [tokenizer.convert_tokens_to_ids(token) for token in STOP_TOKENS]

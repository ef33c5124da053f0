"""The paper's three hub models at their real shapes, without their weights.

The public configurations of google/byt5-small, google/flan-t5-base and
meta-llama/Llama-3.1-8B-Instruct, so that real-size models can be built with random weights (for
timing and memory on a CPU or a GPU) or on the meta device (parameter counts and FLOPs in no
memory), and memory can be planned for the paper's run before anyone downloads 16 GB.
"""

from __future__ import annotations

T5_V11 = {
    "feed_forward_proj": "gated-gelu",
    "d_kv": 64,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "layer_norm_epsilon": 1e-6,
    "dropout_rate": 0.1,
    "decoder_start_token_id": 0,
    "pad_token_id": 0,
    "eos_token_id": 1,
}
CONFIGS = {
    "byt5": dict(T5_V11, vocab_size=384, d_model=1472, d_ff=3584, num_layers=12, num_decoder_layers=4, num_heads=6),
    "flant5": dict(
        T5_V11, vocab_size=32128, d_model=768, d_ff=2048, num_layers=12, num_decoder_layers=12, num_heads=12
    ),
    "llama": {
        "vocab_size": 128256,
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "hidden_act": "silu",
        "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "tie_word_embeddings": False,
        "bos_token_id": 128000,
        "eos_token_id": [128001, 128008, 128009],
        "rope_scaling": {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
    },
}
HUB_IDS = {"byt5": "google/byt5-small", "flant5": "google/flan-t5-base", "llama": "meta-llama/Llama-3.1-8B-Instruct"}
# PRMAS's Table 2 (seed report); see parameter_counts for how each is reproduced.
TABLE2_PARAMETERS = {"byt5": 299_637_760, "flant5": 247_577_856, "mmbyt5": 301_830_088, "llama_lora": 8_072_204_288}
PAPER_LORA = {
    "r": 16,
    "alpha": 16,
    "dropout": 0.0,
    "use_rslora": True,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}


def config(arch: str, **overrides):
    """The transformers config of `arch` (byt5, flant5, llama), optionally narrowed by overrides."""
    from transformers import LlamaConfig, T5Config

    settings = {**CONFIGS[arch], **overrides}
    return LlamaConfig(**settings) if arch == "llama" else T5Config(**settings)


def build(arch: str, *, device: str = "meta", dtype=None, **overrides):
    """A random-init (or, on the meta device, storage-free) model of `arch` at its real shape."""
    import torch
    from transformers import AutoModelForCausalLM, T5ForConditionalGeneration

    cfg = config(arch, **overrides)
    with torch.device(device):
        if arch == "llama":
            return AutoModelForCausalLM.from_config(cfg, dtype=dtype or torch.bfloat16, attn_implementation="eager")
        model = T5ForConditionalGeneration(cfg)
    return model.to(dtype) if dtype is not None else model


def unique_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def parameter_counts(retailers: int = 63) -> dict:
    """Each paper model's parameters, counted on the meta device, next to Table 2's.

    transformers 5 builds T5 with a tied lm_head, while the ByT5 and Flan-T5 checkpoints carry their
    own: loaded from the hub they have one vocab x d_model matrix more, which is Table 2's count.
    The multimodal labeler adds its side layers to that (PRMAS: 63 retailers and no unknown row;
    this project adds an unknown-retailer row of side_dim values)."""
    import torch
    from peft import get_peft_model

    from prodcat.labelers.mmt5 import MultimodalT5Config, MultimodalT5ForConditionalGeneration
    from prodcat.names.lora import lora_config

    counts = {}
    for arch in ("byt5", "flant5"):
        model = build(arch)
        head = model.config.vocab_size * model.config.d_model
        counts[arch] = {
            "from_config": unique_parameters(model),
            "as_loaded": unique_parameters(model) + head,
            "table2": TABLE2_PARAMETERS[arch],
        }
    with torch.device("meta"):
        mm = MultimodalT5ForConditionalGeneration(
            MultimodalT5Config(
                **CONFIGS["byt5"],
                retailers=[f"r{i}" for i in range(retailers)],
                side_dim=8,
                price_min=0.0,
                price_max=1.0,
            )
        )
    head = mm.config.vocab_size * mm.config.d_model
    counts["mmbyt5"] = {
        "from_config": unique_parameters(mm),
        "as_loaded": unique_parameters(mm) + head,
        "table2": TABLE2_PARAMETERS["mmbyt5"],
    }
    llama = build("llama")
    base = unique_parameters(llama)
    lora = get_peft_model(llama, lora_config(PAPER_LORA))
    counts["llama_lora"] = {
        "from_config": unique_parameters(lora),
        "as_loaded": unique_parameters(lora),
        "base": base,
        "lora": unique_parameters(lora) - base,
        "table2": TABLE2_PARAMETERS["llama_lora"],
    }
    return counts

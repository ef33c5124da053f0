"""The namer's streaming LoRA merge and its meta-device training cost, against PEFT and a real step."""

import json

import pytest
import torch
from tests.test_namer import PAIRS, TEMPLATES

from prodcat.names.lora import lora_config, training_step_costs
from prodcat.names.merge import merge_lora
from prodcat.standins.tiny_llama import build_tiny_llama

pytestmark = pytest.mark.usefixtures("one_torch_thread")
LORA = {
    "r": 4,
    "alpha": 8,
    "dropout": 0.0,
    "use_rslora": True,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    texts = [d for pair in PAIRS for d in pair] + list(TEMPLATES.values())
    return build_tiny_llama(
        tmp_path_factory.mktemp("merge") / "llama",
        texts,
        hidden_size=32,
        intermediate_size=64,
        num_layers=2,
        num_heads=2,
        num_kv_heads=1,
    )


@pytest.fixture(scope="module")
def adapter(base, tmp_path_factory):
    """A LoRA adapter with non-zero B (a trained adapter's shape, random values)."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(3)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), lora_config(LORA))
    for name, param in model.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0, 0.5)
    out = tmp_path_factory.mktemp("adapter") / "adapter"
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    return out


def peft_merged(base, adapter):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    return PeftModel.from_pretrained(model, adapter).merge_and_unload()


def test_streaming_merge_equals_peft_merge_to_bf16_rounding(base, adapter, tmp_path):
    from transformers import AutoModelForCausalLM

    stats = merge_lora(base, adapter, tmp_path / "merged")
    assert stats["merged_tensors"] == 2 * 7  # 7 target projections in each of 2 layers
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert merged.dtype == torch.bfloat16
    reference = dict(peft_merged(base, adapter).named_parameters())
    changed = 0
    for name, param in merged.named_parameters():
        expected = reference[name].detach()
        # one rounding of the fp32 sum to bf16: exactly what casting PEFT's fp32 merge gives
        assert torch.equal(param.detach(), expected.to(torch.bfloat16)), name
        changed += "proj" in name
    assert changed == 14
    ids = torch.tensor([[1, 5, 9, 12, 20]])
    with torch.no_grad():
        ours = merged.float()(ids).logits
        theirs = peft_merged(base, adapter)(ids).logits
    assert torch.allclose(ours, theirs, atol=0.05)


def test_streaming_merge_writes_shards_with_an_index_and_nothing_on_failure(base, adapter, tmp_path):
    from transformers import AutoModelForCausalLM

    stats = merge_lora(base, adapter, tmp_path / "merged", max_shard_bytes=20_000)
    assert stats["shards"] > 1
    index = json.loads((tmp_path / "merged" / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) == stats["shards"]
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "merged").dtype == torch.bfloat16
    # an adapter for another architecture: a clear error, and no output folder
    config = json.loads((adapter / "adapter_config.json").read_text())
    other = tmp_path / "other"
    other.mkdir()
    from safetensors.torch import load_file, save_file

    tensors = {
        k.replace("layers.1.", "layers.7."): v for k, v in load_file(adapter / "adapter_model.safetensors").items()
    }
    save_file(tensors, other / "adapter_model.safetensors")
    (other / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="match no tensor"):
        merge_lora(base, other, tmp_path / "bad")
    assert not (tmp_path / "bad").exists() and not (tmp_path / "bad.tmp").exists()


@pytest.mark.parametrize("checkpointing", [False, True])
def test_meta_device_step_flops_equal_a_real_lora_step(base, checkpointing):
    import pandas as pd
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prodcat.names.lora import _sequence_lengths, _training_records
    from prodcat.runtime.efficiency import count_flops

    rows = pd.DataFrame(
        {"indoml_id": range(6), "description": [d for d, _ in PAIRS], "price": 1.5, "name": [n for _, n in PAIRS]}
    )
    params = {**LORA, "per_device_train_batch_size": 4, "gradient_checkpointing": checkpointing}
    costs = training_step_costs(base, rows, TEMPLATES, params)
    # the same step for real, on the CPU
    tokenizer = AutoTokenizer.from_pretrained(base)
    length = max(_sequence_lengths(tokenizer, _training_records(rows.head(4), TEMPLATES)))
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, attn_implementation="eager"),
        lora_config(params),
    )
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    ids = torch.randint(0, 100, (4, length))
    # eager attention and a 4-d mask, as on the meta device (a fused attention kernel would hide
    # the attention matmuls from torch's FLOP counter)
    mask = torch.zeros((4, 1, length, length))
    flops, _ = count_flops(lambda: model(input_ids=ids, attention_mask=mask, labels=ids).loss.backward())
    assert costs["train_gflops_per_step"] * 1e9 == flops
    assert costs["parameters"] == sum(p.numel() for p in model.parameters())
    assert costs["train_step_tokens"] == 4 * length

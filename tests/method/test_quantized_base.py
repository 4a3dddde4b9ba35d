"""A bitsandbytes 4-bit (NF4, FP4) or 8-bit base, QLoRA's setting, on CPU.

Eq. 7 holds on the quantized layers (the reference is testing_common.eq7_logits on a plain quantized model),
gradients reach every memory, the memories stay fp32, and an adapter moves between the quantized and the
full-precision base in both directions: the file is the ordinary one.
"""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

import prefixmemory

from .testing_common import adapter_params, build_adapted, eq7_logits, load_adapter_values, logits, random_adapter

bnb = pytest.importorskip("bitsandbytes")

# As LLaMA-Factory's configure_quantization builds them (compute dtype fp32 on a CPU without bf16 flags).
QUANTIZATIONS = {
    "nf4": dict(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True),
    "fp4": dict(load_in_4bit=True, bnb_4bit_quant_type="fp4", bnb_4bit_use_double_quant=False),
    "int8": dict(load_in_8bit=True),
}
LAYER_TYPES = {"nf4": "Linear4bit", "fp4": "Linear4bit", "int8": "Linear8bitLt"}


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    """A tiny Qwen2 (hidden size 64: one bitsandbytes block per row) saved in fp32."""
    from prefixmemory_study.tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp("models") / "tiny-qwen2", "qwen2")


def quantized(folder, name: str):
    kwargs = dict(QUANTIZATIONS[name])
    if kwargs.get("load_in_4bit"):
        kwargs.update(bnb_4bit_compute_dtype=torch.float32, bnb_4bit_quant_storage=torch.float32)
    config = BitsAndBytesConfig(**kwargs)
    return AutoModelForCausalLM.from_pretrained(folder, quantization_config=config, device_map={"": "cpu"}).eval()


@pytest.mark.parametrize("name", list(QUANTIZATIONS))
def test_eq7_on_a_quantized_base(name, base_dir, sample_ids):
    model = get_peft_model(quantized(base_dir, name), prefixmemory.PrefixMemoryConfig(feature_map="gelu"))
    reference = quantized(base_dir, name)
    assert type(reference.model.layers[0].self_attn.q_proj).__name__ == LAYER_TYPES[name]
    values = random_adapter(reference, "gelu", scale=0.2)
    load_adapter_values(model, values)
    torch.testing.assert_close(logits(model, sample_ids), eq7_logits(reference, [values], sample_ids))


@pytest.mark.parametrize("name", list(QUANTIZATIONS))
def test_gradients_reach_every_memory_and_nothing_else(name, base_dir, sample_ids):
    # A fresh model in train mode: bitsandbytes repacks 4-bit weights for a CPU at the first eval-mode forward
    # without grad, and a training forward on repacked weights fails (docs/quantization.md).
    model = get_peft_model(quantized(base_dir, name), prefixmemory.PrefixMemoryConfig(feature_map="mlp")).train()
    load_adapter_values(model, random_adapter(model, "mlp", scale=0.2))  # nonzero M: the kernel gets gradients too
    params = adapter_params(model)
    assert params and all(p.dtype == torch.float32 and p.requires_grad for p in params.values())
    assert all(not p.requires_grad for n, p in model.named_parameters() if "prefixmemory" not in n)
    model(sample_ids, labels=sample_ids).loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params.values()), "a memory got no gradient"


def _distance(first: torch.Tensor, second: torch.Tensor) -> float:
    return (first - second).abs().max().item()


def test_an_adapter_moves_between_the_quantized_and_the_full_precision_base(base_dir, sample_ids, tmp_path):
    """Trained on fp32, served on 4-bit, and the other way round: each time eq. 7 on the base it lands on."""
    full = AutoModelForCausalLM.from_pretrained(base_dir).eval()
    model, reference, values = build_adapted(full, dict(feature_map="elu"), scale=0.2)
    model.save_pretrained(tmp_path / "from_fp32")
    on_4bit = PeftModel.from_pretrained(quantized(base_dir, "nf4"), tmp_path / "from_fp32")
    expected_4bit = eq7_logits(quantized(base_dir, "nf4"), [values], sample_ids)
    torch.testing.assert_close(logits(on_4bit, sample_ids), expected_4bit)

    trained_on_4bit = get_peft_model(quantized(base_dir, "nf4"), prefixmemory.PrefixMemoryConfig(feature_map="elu"))
    load_adapter_values(trained_on_4bit, values)
    trained_on_4bit.save_pretrained(tmp_path / "from_4bit")
    on_fp32 = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir).eval(), tmp_path / "from_4bit")
    expected_fp32 = eq7_logits(reference, [values], sample_ids)
    torch.testing.assert_close(logits(on_fp32, sample_ids), expected_fp32, rtol=0, atol=1e-5)

    # The adapter adds no quantization error of its own: the two bases differ by about as much with it as without.
    with_adapter = _distance(expected_4bit, expected_fp32)
    bare = _distance(logits(quantized(base_dir, "nf4"), sample_ids), logits(reference, sample_ids))
    assert 0 < with_adapter < 3 * bare, (with_adapter, bare)

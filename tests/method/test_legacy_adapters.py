"""Adapters saved before ``memory_bias`` existed load without a bias and compute exactly what they did."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

FIXTURES = Path(__file__).parent / "fixtures" / "legacy_adapters"


@pytest.mark.filterwarnings("ignore:Could not find a config file")  # the tiny base has no hub name
@pytest.mark.parametrize("name", ["qwen2-elu", "qwen3-mlp"])
def test_legacy_adapter_logits(name):
    base = AutoModelForCausalLM.from_pretrained(FIXTURES / name / "base")
    model = PeftModel.from_pretrained(base, FIXTURES / name / "adapter").eval()
    assert model.peft_config["default"].memory_bias is False
    assert not [key for key, _ in model.named_parameters() if key.endswith("prefixmemory_memory.default.bias")]

    expected = load_file(FIXTURES / name / "expected.safetensors")
    with torch.no_grad():
        adapted = model(input_ids=expected["input_ids"]).logits
        with model.disable_adapter():
            plain = model(input_ids=expected["input_ids"]).logits
    assert (expected["logits"] - plain).abs().max() > 1e-2, "the stored adapter does not change the logits"
    torch.testing.assert_close(adapted, expected["logits"], atol=1e-6, rtol=0)

"""Bad input raises ValueError naming the key, on one line, before the model is changed."""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel, get_peft_model
from transformers import AutoConfig, AutoModelForCausalLM

from prefixmemory import PrefixMemoryConfig
from prefixmemory.architectures import ATTENTION_LAYOUTS

UNSUPPORTED = {
    # GPT-2's c_attn and GPT-NeoX's query_key_value interleave q, k, v per head: not in the table.
    "gpt2": dict(n_layer=1, n_embd=32, n_head=2, vocab_size=64, n_positions=32),
    "gpt_neox": dict(num_hidden_layers=1, hidden_size=32, num_attention_heads=2, intermediate_size=64, vocab_size=64),
}


def _raises(match: str, call, *args, **kwargs) -> str:
    with pytest.raises(ValueError, match=match) as excinfo:
        call(*args, **kwargs)
    message = str(excinfo.value)
    assert "\n" not in message, f"error message spans several lines: {message!r}"
    return message


def _module_types(model) -> list[tuple[str, type]]:
    return [(name, type(module)) for name, module in model.named_modules()]


@pytest.mark.parametrize("model_type", sorted(UNSUPPORTED))
def test_unsupported_architecture(model_type):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **UNSUPPORTED[model_type]))
    before = _module_types(model)
    message = _raises(f"model_type `{model_type}`", get_peft_model, model, PrefixMemoryConfig())
    assert message.endswith(f"supported: {', '.join(sorted(ATTENTION_LAYOUTS))}.")
    assert _module_types(model) == before


def test_unknown_feature_map():
    message = _raises("`feature_map`", PrefixMemoryConfig, feature_map="tanh")
    assert "'tanh'" in message and "elu" in message and "mlp" in message


@pytest.mark.parametrize("feature_map", ["elu", "gelu", "relu"])
def test_feature_dim_with_elementwise_map(feature_map):
    _raises("`feature_dim`", PrefixMemoryConfig, feature_map=feature_map, feature_dim=32)


@pytest.mark.parametrize("feature_dim", [0, -4, 2.5, True, "64"])
def test_bad_feature_dim(feature_dim):
    _raises("`feature_dim`", PrefixMemoryConfig, feature_map="mlp", feature_dim=feature_dim)


@pytest.mark.parametrize("layers", [[-1], [0, 0], [], [1.0], ["0"], [True], "0-x", "1,1", ""])
def test_bad_layers(layers):
    _raises("`layers`", PrefixMemoryConfig, layers=layers)


@pytest.mark.parametrize(
    ("text", "layers"), [("all", None), (" ALL ", None), ("3", [3]), ("4,0,2", [0, 2, 4]), ("0-2, 5", [0, 1, 2, 5])]
)
def test_layers_written_as_text(text, layers):
    assert PrefixMemoryConfig(layers=text).layers == layers


@pytest.mark.parametrize("layers", [[2], [0, 7]])
def test_layer_out_of_range_at_get_peft_model(tiny_model, layers):
    model = tiny_model("qwen2")  # 2 decoder layers
    before = _module_types(model)
    config = PrefixMemoryConfig(layers=layers)  # the upper bound is only known with the model
    message = _raises("`layers`", get_peft_model, model, config)
    assert "out of range" in message and "2" in message
    assert _module_types(model) == before


def test_bad_adapter_config_on_load(tiny_model, tmp_path):
    """A hand-edited adapter_config.json is validated too, when the adapter is loaded."""
    (tmp_path / "adapter_config.json").write_text(
        json.dumps({"peft_type": "PREFIXMEMORY", "task_type": "CAUSAL_LM", "feature_map": "softmax"})
    )
    _raises("`feature_map`", PeftModel.from_pretrained, tiny_model("llama"), tmp_path)


def test_bad_memory_bias():
    _raises("`memory_bias`", PrefixMemoryConfig, memory_bias="yes")


def test_memory_bias_default_new_and_loaded(tmp_path):
    """A new config has the bias; a saved config keeps what it says; one without the key predates it: off."""
    assert PrefixMemoryConfig().memory_bias is True
    for value in (True, False):
        PrefixMemoryConfig(memory_bias=value).save_pretrained(tmp_path / str(value))
        assert PrefixMemoryConfig.from_pretrained(tmp_path / str(value)).memory_bias is value
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "adapter_config.json").write_text(
        json.dumps({"peft_type": "PREFIXMEMORY", "task_type": "CAUSAL_LM", "feature_map": "elu"})
    )
    assert PrefixMemoryConfig.from_pretrained(legacy).memory_bias is False

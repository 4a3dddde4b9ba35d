"""Several adapters on one model: active memory terms add up; switching, deleting and saving keep them apart."""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel

import prefixmemory

from .testing_common import (
    LayerAdapter,
    adapter_params,
    build_peft,
    eq7_logits,
    load_adapter_values,
    logits,
    random_adapter,
)

PAIRS = [
    pytest.param("qwen2", dict(feature_map="elu"), dict(feature_map="elu"), id="qwen2-elu+elu"),
    pytest.param("qwen3", dict(feature_map="relu"), dict(feature_map="mlp", feature_dim=16), id="qwen3-relu+mlp"),
    pytest.param("llama-gqa", dict(feature_map="gelu"), dict(feature_map="mlp"), id="llama-gqa-gelu+mlp"),
]


def _two_adapters(tiny_model, architecture, config_a, config_b):
    model, reference = build_peft(tiny_model(architecture), config_a, adapter_name="a")
    model.add_adapter("b", prefixmemory.PrefixMemoryConfig(**config_b))
    values = {
        "a": random_adapter(reference, config_a["feature_map"], config_a.get("feature_dim"), seed=1),
        "b": random_adapter(reference, config_b["feature_map"], config_b.get("feature_dim"), seed=2),
    }
    for name, adapter_values in values.items():
        load_adapter_values(model, adapter_values, adapter_name=name)
    return model.eval(), reference, values


@pytest.mark.parametrize("architecture, config_a, config_b", PAIRS)
def test_active_adapters_add_up(tiny_model, sample_ids, architecture, config_a, config_b):
    model, reference, values = _two_adapters(tiny_model, architecture, config_a, config_b)
    assert model.active_adapters == ["a"]
    only_a = eq7_logits(reference, [values["a"]], sample_ids)
    torch.testing.assert_close(logits(model, sample_ids), only_a, atol=1e-5, rtol=1e-5)

    model.base_model.set_adapter(["a", "b"])
    both = eq7_logits(reference, [values["a"], values["b"]], sample_ids)
    assert (both - only_a).abs().max() > 1e-2, "adapter b too small to test"
    torch.testing.assert_close(logits(model, sample_ids), both, atol=1e-5, rtol=1e-5)

    model.set_adapter("b")
    only_b = eq7_logits(reference, [values["b"]], sample_ids)
    torch.testing.assert_close(logits(model, sample_ids), only_b, atol=1e-5, rtol=1e-5)


def test_same_feature_map_sums_memories(tiny_model, sample_ids):
    """With one element-wise phi, phi(q) @ M_a + phi(q) @ M_b == phi(q) @ (M_a + M_b): one summed adapter."""
    model, reference, values = _two_adapters(tiny_model, "mistral", dict(feature_map="elu"), dict(feature_map="elu"))
    model.base_model.set_adapter(["a", "b"])
    a, b = values["a"], values["b"]
    summed = {
        i: LayerAdapter("elu", a[i].memory + b[i].memory, memory_bias=a[i].memory_bias + b[i].memory_bias) for i in a
    }
    torch.testing.assert_close(
        logits(model, sample_ids), eq7_logits(reference, [summed], sample_ids), atol=1e-5, rtol=1e-5
    )


def test_both_active_adapters_train(tiny_model, sample_ids):
    model, _, _ = _two_adapters(tiny_model, "qwen2", dict(feature_map="elu"), dict(feature_map="mlp"))
    model.base_model.set_adapter(["a", "b"])
    model(sample_ids, labels=sample_ids).loss.backward()
    for name in ("a", "b"):
        for key, param in adapter_params(model, name).items():
            assert param.requires_grad and param.grad is not None and torch.count_nonzero(param.grad) > 0, (name, key)


def test_delete_adapter(tiny_model, sample_ids):
    model, reference, values = _two_adapters(tiny_model, "qwen3", dict(feature_map="gelu"), dict(feature_map="mlp"))
    model.base_model.set_adapter(["a", "b"])
    model.delete_adapter("b")
    assert not adapter_params(model, "b")
    assert model.active_adapters == ["a"]
    only_a = eq7_logits(reference, [values["a"]], sample_ids)
    torch.testing.assert_close(logits(model, sample_ids), only_a, atol=1e-5, rtol=1e-5)


@pytest.mark.filterwarnings("ignore:Could not find a config file")
def test_save_and_load_two_adapters(tiny_model, sample_ids, tmp_path):
    model, _, _ = _two_adapters(tiny_model, "llama", dict(feature_map="relu"), dict(feature_map="mlp", feature_dim=16))
    model.base_model.set_adapter(["a", "b"])
    expected = logits(model, sample_ids)
    model.save_pretrained(tmp_path)  # a non-default adapter goes to a sub-folder named after it

    loaded = PeftModel.from_pretrained(tiny_model("llama"), tmp_path / "a", adapter_name="a")
    loaded.load_adapter(tmp_path / "b", adapter_name="b")
    loaded.base_model.set_adapter(["a", "b"])
    assert loaded.peft_config["b"].feature_dim == 16
    assert torch.equal(logits(loaded.eval(), sample_ids), expected)

"""Trainable parameters at real model sizes, built on the meta device (no memory, no download).

Expected counts are written out: layers x heads x feature_dim x head_dim for M, layers x heads x head_dim for its
bias (on by default, as the paper's Table 8 counts), plus heads x (head_dim x feature_dim + feature_dim) per layer
for the mlp kernel.
"""

from __future__ import annotations

import pytest
import torch
from peft import get_peft_model
from transformers import AutoConfig, AutoModelForCausalLM

from prefixmemory import PrefixMemoryConfig

GEOMETRIES = {
    "qwen2.5-3b": dict(
        model_type="qwen2", num_hidden_layers=36, num_attention_heads=16, num_key_value_heads=2, hidden_size=2048,
        intermediate_size=11008, vocab_size=151936, tie_word_embeddings=True,
    ),
    "llama2-7b": dict(
        model_type="llama", num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32, hidden_size=4096,
        intermediate_size=11008, vocab_size=32000,
    ),
    # head_dim 128 != hidden_size / heads = 80: the count must follow head_dim.
    "qwen3-4b": dict(
        model_type="qwen3", num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8, hidden_size=2560,
        head_dim=128, intermediate_size=9728, vocab_size=151936, tie_word_embeddings=True,
    ),
}  # fmt: skip

EXPECTED = [
    # (geometry, config kwargs, memory parameters (M and its bias), mlp kernel parameters, M shape)
    # Table 8 of the paper: 9.51M and 16.91M. M 36 * 16 * 128 * 128 + bias 36 * 16 * 128 = 9,437,184 + 73,728
    ("qwen2.5-3b", dict(feature_map="elu"), 9_510_912, 0, (16, 128, 128)),
    # M 32 * 32 * 128 * 128 + bias 32 * 32 * 128 = 16,777,216 + 131,072
    ("llama2-7b", dict(feature_map="elu"), 16_908_288, 0, (32, 128, 128)),
    # eq. 7 as written, no bias: 36 * 16 * 128 * 128 and 32 * 32 * 128 * 128
    ("qwen2.5-3b", dict(feature_map="elu", memory_bias=False), 9_437_184, 0, (16, 128, 128)),
    ("llama2-7b", dict(feature_map="elu", memory_bias=False), 16_777_216, 0, (32, 128, 128)),
    ("qwen3-4b", dict(feature_map="relu", memory_bias=False), 18_874_368, 0, (32, 128, 128)),  # 36 * 32 * 128 * 128
    # M: 36 * 16 * 64 * 128 = 4,718,592; kernel: 36 * 16 * (128 * 64 + 64) = 4,755,456
    ("qwen2.5-3b", dict(feature_map="mlp", feature_dim=64, memory_bias=False), 4_718_592, 4_755_456, (16, 64, 128)),
    # M: 32 * 32 * 64 * 128 + bias 32 * 32 * 128 = 8,388,608 + 131,072; kernel: 32 * 32 * (128 * 64 + 64) = 8,454,144
    ("llama2-7b", dict(feature_map="mlp", feature_dim=64), 8_519_680, 8_454_144, (32, 64, 128)),
    # feature_dim defaults to head_dim: M 16,777,216 (no bias); kernel 32 * 32 * (128 * 128 + 128) = 16,908,288
    ("llama2-7b", dict(feature_map="mlp", memory_bias=False), 16_777_216, 16_908_288, (32, 128, 128)),
]


def _meta_model(geometry: str):
    settings = dict(GEOMETRIES[geometry])
    with torch.device("meta"):
        config = AutoConfig.for_model(settings.pop("model_type"), **settings)
        return AutoModelForCausalLM.from_config(config)


@pytest.mark.parametrize(
    "geometry, config_kwargs, memory_count, kernel_count, memory_shape",
    EXPECTED,
    ids=[
        f"{row[0]}-{row[1]['feature_map']}{row[1].get('feature_dim', '')}-bias{row[1].get('memory_bias', True)}"
        for row in EXPECTED
    ],
)
def test_trainable_parameter_count(geometry, config_kwargs, memory_count, kernel_count, memory_shape):
    model = get_peft_model(_meta_model(geometry), PrefixMemoryConfig(**config_kwargs))
    trainable = {name: param for name, param in model.named_parameters() if param.requires_grad}
    memories = {name: param for name, param in trainable.items() if "prefixmemory_memory" in name}
    kernels = {name: param for name, param in trainable.items() if "prefixmemory_kernel" in name}

    weights = {name: param for name, param in memories.items() if name.endswith(".weight")}
    biases = {name: param for name, param in memories.items() if name.endswith(".bias")}
    num_layers, heads, head_dim = GEOMETRIES[geometry]["num_hidden_layers"], memory_shape[0], memory_shape[2]
    assert len(weights) == num_layers and len(biases) == (num_layers if config_kwargs.get("memory_bias", True) else 0)
    assert {tuple(param.shape) for param in weights.values()} == {memory_shape}
    assert {tuple(param.shape) for param in biases.values()} <= {(heads, 1, head_dim)}
    assert sum(param.numel() for param in memories.values()) == memory_count
    assert sum(param.numel() for param in kernels.values()) == kernel_count
    assert trainable.keys() == memories.keys() | kernels.keys()
    assert model.get_nb_trainable_parameters()[0] == memory_count + kernel_count


def test_layer_subset_count():
    model = get_peft_model(_meta_model("llama2-7b"), PrefixMemoryConfig(layers=[0, 15, 31]))
    assert model.get_nb_trainable_parameters()[0] == 3 * 32 * (128 * 128 + 128)

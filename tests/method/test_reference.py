"""The adapter against eq. 7 computed independently (hooks + einsum on a plain copy), every row of TEST_CASES."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from .testing_common import (
    QUERY_MODULE,
    TEST_CASES,
    adapter_params,
    build_adapted,
    eq7_logits,
    logits,
)


@pytest.mark.parametrize("architecture, config_kwargs", TEST_CASES)
def test_matches_eq7(tiny_model, batch_ids, architecture, config_kwargs):
    model, reference, values = build_adapted(tiny_model(architecture), config_kwargs)

    expected = eq7_logits(reference, [values], batch_ids)
    assert (expected - logits(reference, batch_ids)).abs().max() > 1e-2, "memory term too small to test"
    without_bias = {index: dataclasses.replace(layer, memory_bias=None) for index, layer in values.items()}
    assert (expected - eq7_logits(reference, [without_bias], batch_ids)).abs().max() > 1e-2, "bias too small to test"
    torch.testing.assert_close(logits(model, batch_ids), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("architecture, config_kwargs", [case for case in TEST_CASES if "llama" not in case.id])
def test_matches_eq7_without_bias(tiny_model, batch_ids, architecture, config_kwargs):
    """memory_bias=False: eq. 7 as written, no bias parameter at all."""
    model, reference, values = build_adapted(tiny_model(architecture), dict(config_kwargs, memory_bias=False))
    assert all(key[1:] != ("memory", "bias") for key in adapter_params(model))
    torch.testing.assert_close(
        logits(model, batch_ids), eq7_logits(reference, [values], batch_ids), atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize("architecture, config_kwargs", TEST_CASES)
def test_layer_subset_leaves_layer_zero_untouched(tiny_model, sample_ids, architecture, config_kwargs):
    model, reference, values = build_adapted(tiny_model(architecture), dict(config_kwargs, layers=[1]))
    assert sorted(values) == [1]
    assert {layer for layer, _, _ in adapter_params(model)} == {1}

    query_name = QUERY_MODULE.get(reference.config.model_type, "q_proj")
    adapted_attention = model.base_model.model.model.layers[0].self_attn
    plain_attention = reference.model.layers[0].self_attn
    for name in (query_name, "o_proj"):
        assert type(getattr(adapted_attention, name)) is type(getattr(plain_attention, name)), name

    with torch.no_grad():
        adapted = model(sample_ids, output_hidden_states=True)
        plain = reference(sample_ids, output_hidden_states=True)
    assert torch.equal(adapted.hidden_states[1], plain.hidden_states[1]), "layer 0 output changed"
    assert not torch.allclose(adapted.hidden_states[2], plain.hidden_states[2], atol=1e-3), "layer 1 not adapted"
    torch.testing.assert_close(adapted.logits, eq7_logits(reference, [values], sample_ids), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("architecture", ["qwen2", "qwen3"])
def test_noncontiguous_layers(tiny_model, sample_ids, architecture):
    base = tiny_model(architecture, num_hidden_layers=3)
    model, reference, values = build_adapted(base, dict(feature_map="gelu", layers=[2, 0]))
    assert sorted(values) == [0, 2]
    assert type(model.base_model.model.model.layers[1].self_attn.o_proj) is nn.Linear
    torch.testing.assert_close(
        logits(model, sample_ids), eq7_logits(reference, [values], sample_ids), atol=1e-5, rtol=1e-5
    )

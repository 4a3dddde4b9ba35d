"""Sequence packing: the memory term is per token, so packed rows behave like separate sequences.

Flash-attention varlen packing is not available on CPU. transformers builds the same block-diagonal causal mask
for sdpa and eager when it sees restarting ``position_ids`` with no attention mask and no cache, which is what
LLaMA-Factory's packed training batches look like.
"""

from __future__ import annotations

import pytest
import torch

from .testing_common import build_adapted, logits

CASES = [
    pytest.param("qwen2", dict(feature_map="elu"), id="qwen2-elu"),
    pytest.param("qwen3", dict(feature_map="mlp", feature_dim=16), id="qwen3-mlp-f16"),
]


def _packed(sample_pair):
    first, second = sample_pair
    input_ids = torch.cat([first, second], dim=1)
    position_ids = torch.cat([torch.arange(first.shape[1]), torch.arange(second.shape[1])])[None]
    return input_ids, position_ids, first.shape[1]


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
@pytest.mark.parametrize("architecture, config_kwargs", CASES)
def test_packed_equals_separate(tiny_model, sample_pair, architecture, config_kwargs, attn_implementation):
    base = tiny_model(architecture)
    base.set_attn_implementation(attn_implementation)
    model, reference, _ = build_adapted(base, config_kwargs)
    input_ids, position_ids, split = _packed(sample_pair)

    # Precondition: the base model isolates packed sequences here, otherwise this test would prove nothing.
    base_packed = logits(reference, input_ids, position_ids=position_ids, use_cache=False)
    torch.testing.assert_close(base_packed[:, split:], logits(reference, sample_pair[1]), atol=1e-5, rtol=1e-5)

    packed = logits(model, input_ids, position_ids=position_ids, use_cache=False)
    for part, ids in zip((packed[:, :split], packed[:, split:]), sample_pair, strict=True):
        torch.testing.assert_close(part, logits(model, ids), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("architecture, config_kwargs", CASES)
def test_memory_term_depends_only_on_its_token(tiny_model, sample_pair, architecture, config_kwargs):
    """Layer 0's o_proj input, adapted minus base, at token t is a function of q_t alone.

    Checked with a plain causal mask over the packed row (attention does mix the two sequences there) and with
    shifted positions: the difference still equals the one of each sequence run alone, token for token.
    """
    base = tiny_model(architecture)
    seen = []
    base.model.layers[0].self_attn.o_proj.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    model, reference, _ = build_adapted(base, config_kwargs)
    input_ids, _, split = _packed(sample_pair)

    def o_proj_input_delta(ids):
        seen.clear()
        logits(model, ids)
        with model.disable_adapter():
            logits(model, ids)
        adapted, plain = seen
        return adapted - plain

    packed = o_proj_input_delta(input_ids)
    assert packed.abs().max() > 1e-3, "memory term too small to test"
    torch.testing.assert_close(packed[:, :split], o_proj_input_delta(sample_pair[0]), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(packed[:, split:], o_proj_input_delta(sample_pair[1]), atol=1e-6, rtol=1e-5)

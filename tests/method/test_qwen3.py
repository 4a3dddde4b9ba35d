"""Qwen3 quirks: per-head q_norm before rotary embedding, and head_dim != hidden_size / num_attention_heads."""

from __future__ import annotations

import torch

from .testing_common import QUERY_MODULE, build_peft, geometry, load_adapter_values, logits, random_adapter


def test_qwen3_query_is_read_after_q_norm(tiny_model, sample_ids):
    """Qwen3: phi sees q_norm's output. Scaling q_norm's weight must change the memory term accordingly."""
    assert QUERY_MODULE["qwen3"] == "q_norm"
    base = tiny_model("qwen3")
    q_norm = base.model.layers[0].self_attn.q_norm
    _, heads, head_dim = geometry(base)
    seen = []
    base.model.layers[0].self_attn.o_proj.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    model, reference = build_peft(base, dict(feature_map="relu", layers=[0], memory_bias=False))
    values = random_adapter(reference, "relu", layers=[0], memory_bias=False)
    load_adapter_values(model, values)

    def term():
        seen.clear()
        logits(model, sample_ids)
        with model.disable_adapter():
            logits(model, sample_ids)
        return (seen[0] - seen[1]).reshape(*seen[0].shape[:2], heads, head_dim)

    before = term()
    with torch.no_grad():
        q_norm.weight.mul_(2.0)
    # relu is positively homogeneous: doubling the normalised q doubles phi(q) @ M.
    torch.testing.assert_close(term(), 2 * before, atol=1e-6, rtol=1e-5)


def test_qwen3_head_dim_is_not_hidden_over_heads(tiny_model):
    base = tiny_model("qwen3")
    assert base.config.head_dim * base.config.num_attention_heads != base.config.hidden_size  # the quirk is present
    model, _ = build_peft(base, dict(feature_map="elu"))
    for name, param in model.named_parameters():
        if "prefixmemory_memory" in name:
            assert tuple(param.shape) == ((4, 24, 24) if name.endswith("weight") else (4, 1, 24)), name

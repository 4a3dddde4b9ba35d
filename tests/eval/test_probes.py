"""The diagnostics' readings against independent computations on the tiny Qwen2 (q/k/RoPE and phi(q) @ M by hand)."""

import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers.models.qwen2.modeling_qwen2 import apply_rotary_pos_emb

from prefixmemory_study.diagnostics import loading, metrics, probes

LENGTH = 96
PREFIX_LENGTH = 8  # the prefix-tuning adapter of conftest.py


@pytest.fixture(scope="module")
def ids():
    return torch.randint(20, 500, (1, LENGTH), generator=torch.Generator().manual_seed(3))


def _spec(adapters, name):
    return loading.parse_adapters([str(adapters[name])])[0]


def _first_layer_input(model, ids):
    """Layer 0's normalised input and its attention block: nothing before layer 0 depends on the adapter."""
    inner = model.get_base_model().model if hasattr(model, "get_base_model") else model.model
    embeddings = inner.embed_tokens(ids)
    return inner, embeddings, inner.layers[0].input_layernorm(embeddings), inner.layers[0].self_attn


def test_alpha_for_a_fixed_prefix_falls_as_the_input_grows(tiny_model, adapters, ids):
    spec = _spec(adapters, "prefix")
    assert spec.num_virtual_tokens == PREFIX_LENGTH
    model = loading.load_tuned(tiny_model, spec, eager=True)
    alpha, layers = probes.prefix_mass(model, [ids], PREFIX_LENGTH)
    assert alpha.shape == (1, 2, LENGTH) and layers == [0, 1]
    curve = alpha.mean(dim=(0, 1))
    assert torch.all((curve > 0) & (curve < 1))
    assert curve[:4].mean() > 0.5 > 0.1 > curve[-16:].mean()
    _, binned = metrics.log_bins(torch.arange(1, LENGTH + 1), curve, bins=6)
    assert all(a > b for a, b in zip(binned, binned[1:], strict=False))


def test_alpha_equals_the_softmax_mass_computed_from_q_and_the_prefix_keys(tiny_model, adapters, ids):
    model = loading.load_tuned(tiny_model, _spec(adapters, "prefix"), eager=True)
    alpha, _ = probes.prefix_mass(model, [ids], PREFIX_LENGTH)
    with torch.no_grad():
        inner, embeddings, hidden, attention = _first_layer_input(model, ids)
        heads, kv_heads, dim = 4, 2, attention.head_dim
        q = attention.q_proj(hidden).view(1, LENGTH, heads, dim).transpose(1, 2)
        k = attention.k_proj(hidden).view(1, LENGTH, kv_heads, dim).transpose(1, 2)
        positions = torch.arange(PREFIX_LENGTH, PREFIX_LENGTH + LENGTH)[None]  # the prefix takes positions 0..p-1
        q, k = apply_rotary_pos_emb(q, k, *inner.rotary_emb(embeddings, positions))
        prefix_keys = model.get_prompt(batch_size=1).layers[0].keys  # (1, kv_heads, p, dim), used as they are
        keys = torch.cat([prefix_keys, k], dim=2).repeat_interleave(heads // kv_heads, dim=1)
        scores = q @ keys.transpose(-1, -2) / math.sqrt(dim)  # (1,H,T,p+T)
        future = torch.ones(LENGTH, LENGTH, dtype=torch.bool).triu(1)
        scores[..., PREFIX_LENGTH:] = scores[..., PREFIX_LENGTH:].masked_fill(future, float("-inf"))
        expected = scores.softmax(-1)[..., :PREFIX_LENGTH].sum(-1).mean(1)[0]  # (T,)
    torch.testing.assert_close(alpha[0, 0], expected, rtol=1e-4, atol=1e-5)


def _memory_term(adapters, layer: int, q: torch.Tensor) -> torch.Tensor:
    """elu(q) @ M + bias per head with the memory read from the saved adapter file: (T, H*D)."""
    weights = load_file(adapters["pmt"] / "adapter_model.safetensors")
    saved = {
        k.rsplit(".", 1)[1]: v for k, v in weights.items() if f"layers.{layer}." in k and "prefixmemory_memory" in k
    }
    memory = saved["weight"]
    heads, dim = memory.shape[0], memory.shape[-1]
    term = torch.einsum("thd,hde->the", F.elu(q.view(-1, heads, dim)), memory)  # (T,H,D) x (H,D,D) -> (T,H,D)
    term = term + saved["bias"][:, 0]  # (H,1,D): the same for every token
    return term.reshape(q.shape[0], heads * dim)


def _layer0_q(model, ids):
    with torch.no_grad():
        _, _, hidden, attention = _first_layer_input(model, ids)
        return attention.q_proj.base_layer(hidden)[0]  # the real q_proj inside the PrefixMemory layer: (T, H*D)


def test_pmt_ratio_is_the_real_memory_term_over_the_attention_output(tiny_model, adapters, ids):
    tuned = loading.load_tuned(tiny_model, _spec(adapters, "pmt"))
    ratio, layers = probes.memory_ratio(tuned, [ids])
    assert ratio.shape == (1, 2, LENGTH) and layers == [0, 1]
    term = _memory_term(adapters, 0, _layer0_q(tuned, ids))
    base = loading.load_base(tiny_model)
    output = probes.attention_outputs(base, [ids], 0)  # layer 0's softmax attention output: the base model's
    torch.testing.assert_close(ratio[0, 0], term.norm(dim=-1) / output.norm(dim=-1), rtol=1e-4, atol=1e-6)


def test_attention_site_bias_of_pmt_is_its_memory_term(tiny_model, adapters, ids):
    tuned = loading.load_tuned(tiny_model, _spec(adapters, "pmt"))
    base = loading.load_base(tiny_model)
    term = _memory_term(adapters, 0, _layer0_q(tuned, ids))
    delta = probes.attention_outputs(tuned, [ids], 0) - probes.attention_outputs(base, [ids], 0)
    torch.testing.assert_close(delta, term, rtol=1e-4, atol=1e-5)
    o_proj = base.model.layers[0].self_attn.o_proj
    tuned_out, base_out = (probes.attention_outputs(m, [ids], 0, "o_proj") for m in (tuned, base))
    delta_out = tuned_out - base_out
    torch.testing.assert_close(delta_out, term @ o_proj.weight.T, rtol=1e-4, atol=1e-5)


def test_ratio_needs_a_pmt_adapter_and_alpha_a_prefix(tiny_model, adapters, ids):
    lora = loading.load_tuned(tiny_model, _spec(adapters, "lora"))
    with pytest.raises(ValueError, match="PrefixMemory"):
        probes.memory_ratio(lora, [ids])
    with pytest.raises(ValueError, match="prefix-tuning"):
        probes.prefix_mass(lora, [ids], 0)


def test_prefix_columns_are_dropped_and_rows_renormalised(tiny_model, adapters, ids):
    model = loading.load_tuned(tiny_model, _spec(adapters, "prefix"), eager=True)
    weights = probes.attention_map(model, ids[:, :12], -1, PREFIX_LENGTH)
    assert weights.shape == (12, 12)
    torch.testing.assert_close(weights.sum(-1), torch.ones(12))
    assert torch.all(weights.triu(1) == 0)  # causal: no weight on later tokens


def test_hidden_state_pooling_shapes(tiny_model, ids):
    base = loading.load_base(tiny_model)
    inputs = [ids[:, :10], ids[:, :7]]
    assert [s.shape for s in probes.hidden_states(base, inputs, "last")] == [(2, 64), (2, 64)]
    assert [s.shape for s in probes.hidden_states(base, inputs, "tokens")] == [(17, 64), (17, 64)]
    last = probes.hidden_states(base, inputs, "last")[-1]
    torch.testing.assert_close(last[1], probes.hidden_states(base, inputs, "tokens")[-1][-1])

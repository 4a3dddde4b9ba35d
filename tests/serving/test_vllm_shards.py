"""Tensor parallelism without a process group: the memories rank r loads, and the term it adds, are those of its
own query heads, so o_proj's all-reduce sees exactly the unsharded input.

Rank r of tp holds q heads [r*H/tp, (r+1)*H/tp) (QKVParallelLinear) and the same o_proj input columns
(RowParallelLinear). The equality run under tensor_parallel_size=2 (test_vllm_equality.py) checks it in vLLM.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from prefixmemory_vllm.memory import PrefixMemory

HEADS, HEAD_DIM, TOKENS = 8, 16, 5


def checkpoint(feature_map: str, feature_dim: int, bias: bool) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    tensors = {"memory": torch.randn(HEADS, feature_dim, HEAD_DIM, generator=generator)}
    if feature_map == "mlp":
        tensors["kernel_weight"] = torch.randn(HEADS, HEAD_DIM, feature_dim, generator=generator)
        tensors["kernel_bias"] = torch.randn(HEADS, feature_dim, generator=generator)
    if bias:
        tensors["memory_bias"] = torch.randn(HEADS, HEAD_DIM, generator=generator)
    return tensors


def full_term(q: torch.Tensor, feature_map: str, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """phi(q_h) @ M_h (+ b_h), head by head, written out: the unsharded model's term (tokens, H*D)."""
    heads = []
    for h in range(HEADS):
        q_h = q[:, h * HEAD_DIM : (h + 1) * HEAD_DIM]
        if feature_map == "mlp":
            features = F.relu(q_h @ tensors["kernel_weight"][h] + tensors["kernel_bias"][h])
        else:
            features = {"elu": F.elu, "gelu": F.gelu, "relu": F.relu}[feature_map](q_h)
        heads.append(features @ tensors["memory"][h] + tensors.get("memory_bias", torch.zeros(HEADS, HEAD_DIM))[h])
    return torch.cat(heads, dim=1)


@pytest.mark.parametrize(
    "feature_map, feature_dim, bias",
    [("elu", HEAD_DIM, False), ("gelu", HEAD_DIM, True), ("relu", HEAD_DIM, False), ("mlp", 24, True)],
)
def test_each_rank_holds_and_applies_its_own_heads(feature_map, feature_dim, bias):
    tensors = checkpoint(feature_map, feature_dim, bias)
    q, attention, o_proj = (
        torch.randn(TOKENS, HEADS * HEAD_DIM),
        torch.randn(TOKENS, HEADS * HEAD_DIM),
        torch.randn(32, HEADS * HEAD_DIM),
    )
    expected = (attention + full_term(q, feature_map, tensors)) @ o_proj.T
    for tp in (1, 2, 4):
        reduced = torch.zeros_like(expected)
        for rank in range(tp):
            memory = PrefixMemory(HEADS, HEAD_DIM, feature_map, feature_dim, bias, layer=0, tp_rank=rank, tp_size=tp)
            parameters = dict(memory.named_parameters())
            assert set(parameters) == set(tensors)
            for name, value in tensors.items():  # as vLLM's AutoWeightsLoader does, with the full tensor
                parameters[name].weight_loader(parameters[name], value)
            columns = slice(rank * HEAD_DIM * HEADS // tp, (rank + 1) * HEAD_DIM * HEADS // tp)
            reduced += (attention[:, columns] + memory(q[:, columns])) @ o_proj[:, columns].T  # RowParallelLinear
        torch.testing.assert_close(reduced, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    "name, saved, tp",
    [
        ("memory", (HEADS + 1, HEAD_DIM, HEAD_DIM), 2),  # 9 // 2 = 4 heads a rank: the old cut fitted, a head lost
        ("memory", (HEADS + 3, HEAD_DIM, HEAD_DIM), 4),
        ("kernel_bias", (HEADS + 1, 24), 2),
        ("memory", (HEADS, HEAD_DIM + 1, HEAD_DIM), 1),
    ],
)
def test_a_memory_of_another_model_is_refused_on_every_rank(name, saved, tp):
    for rank in range(tp):
        memory = PrefixMemory(HEADS, HEAD_DIM, "mlp", 24, layer=3, tp_rank=rank, tp_size=tp)
        expected = (HEADS, *dict(memory.named_parameters())[name].shape[1:])
        with pytest.raises(ValueError) as error:
            memory.weight_loader(getattr(memory, name), torch.zeros(saved))
        assert str(error.value) == (
            f"prefixmemory.safetensors: model.layers.3.self_attn.prefix_memory.{name} has shape {saved}, this model "
            f"expects {expected} (its {HEADS} query heads first; rank {rank} of {tp} holds "
            f"{(HEADS // tp, *expected[1:])})."
        )


@pytest.mark.parametrize("feature_map, feature_dim", [("elu", HEAD_DIM), ("mlp", 24)])
def test_memories_follow_a_q_reordered_at_load(feature_map, feature_dim):
    """vLLM loads Llama 4's q_proj rows, per head, as the halves (0, 2, 4, ...), (1, 3, 5, ...) of the saved rotary
    pairs: with ``pairs_to_halves`` the term of the reordered q is the saved model's term of the saved q."""
    tensors = checkpoint(feature_map, feature_dim, bias=True)
    q = torch.randn(TOKENS, HEADS * HEAD_DIM)
    order = torch.cat([torch.arange(0, HEAD_DIM, 2), torch.arange(1, HEAD_DIM, 2)])
    reordered = q.view(TOKENS, HEADS, HEAD_DIM)[:, :, order].reshape(TOKENS, HEADS * HEAD_DIM)
    memory = PrefixMemory(HEADS, HEAD_DIM, feature_map, feature_dim, True, layer=0, tp_rank=0, tp_size=1,
                          pairs_to_halves=True)  # fmt: skip
    parameters = dict(memory.named_parameters())
    for name, value in tensors.items():
        parameters[name].weight_loader(parameters[name], value)
    torch.testing.assert_close(memory(reordered), full_term(q, feature_map, tensors), rtol=1e-5, atol=1e-4)
    assert not torch.allclose(memory(q), full_term(q, feature_map, tensors), atol=1e-2)  # the order matters

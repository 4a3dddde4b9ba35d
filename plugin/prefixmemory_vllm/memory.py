"""The memory term inside vLLM: ``phi(q) @ M (+ b)`` per query head, sharded by query heads under tensor parallelism.

Semantics are the PEFT method's: phi is plain ``F.elu``, exact ``F.gelu``, ``F.relu``, or the mlp kernel
``ReLU(q_h @ W_h + c_h)``; M is (H, F, D); the term is computed in the memories' dtype (fp32) and cast to q's.
Every tensor holds the query heads first, and rank r of tp holds heads [r*H/tp, (r+1)*H/tp): the heads
QKVParallelLinear gives it for q and the o_proj input columns RowParallelLinear gives it. A saved tensor must hold
all H heads: cut by tp, one with more or fewer could still fit a rank and be served wrong.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import WEIGHTS_FILE
from .convert import memory_key

ELEMENTWISE = {"elu": F.elu, "gelu": F.gelu, "relu": F.relu}
FEATURE_MAPS = (*ELEMENTWISE, "mlp")


def shard_heads(full: torch.Tensor, tp_rank: int, tp_size: int) -> torch.Tensor:
    """The rows (query heads, dim 0) of a full checkpoint tensor that rank ``tp_rank`` of ``tp_size`` holds."""
    per_rank = full.shape[0] // tp_size
    return full.narrow(0, tp_rank * per_rank, per_rank)


def pairs_to_halves(full: torch.Tensor) -> torch.Tensor:
    """Reorder dim 1 (one head's q dims) from rotary pairs (0, 1), (2, 3), ... to halves (0, 2, ...), (1, 3, ...), as
    vLLM reorders q_proj's rows when it loads Llama 4: phi is elementwise, so phi(q) is reordered alike and the
    memory (or the mlp kernel's weight) must be too for ``phi(q) @ M`` to keep its value."""
    heads, dims = full.shape[:2]
    return full.reshape(heads, dims // 2, 2, -1).transpose(1, 2).reshape(full.shape)


class PrefixMemory(nn.Module):
    """One attention layer's memories, this rank's heads only; ``forward(q)`` is the term added to o_proj's input."""

    def __init__(
        self,
        total_num_heads: int,
        head_dim: int,
        feature_map: str,
        feature_dim: int | None = None,
        bias: bool = False,
        *,
        layer: int,
        tp_rank: int | None = None,
        tp_size: int | None = None,
        pairs_to_halves: bool = False,
    ):
        super().__init__()
        if feature_map not in FEATURE_MAPS:
            raise ValueError(f"`feature_map` must be one of {', '.join(FEATURE_MAPS)}, got {feature_map!r}.")
        if tp_rank is None or tp_size is None:
            from vllm.distributed import get_tensor_model_parallel_rank, get_tensor_model_parallel_world_size

            tp_rank, tp_size = get_tensor_model_parallel_rank(), get_tensor_model_parallel_world_size()
        if total_num_heads % tp_size:
            raise ValueError(f"{total_num_heads} query heads cannot be split over tensor_parallel_size={tp_size}.")
        self.layer, self.tp_rank, self.tp_size = layer, tp_rank, tp_size
        self.pairs_to_halves = pairs_to_halves
        self.num_heads, self.head_dim = total_num_heads // tp_size, head_dim
        self.feature_map = feature_map
        feature_dim = (feature_dim or head_dim) if feature_map == "mlp" else head_dim
        heads = self.num_heads
        self.memory = self._parameter(heads, feature_dim, head_dim)
        # No name ends in ".bias": vLLM's loaders skip checkpoint entries named so when the model lacks them.
        self.kernel_weight = self._parameter(heads, head_dim, feature_dim) if feature_map == "mlp" else None
        self.kernel_bias = self._parameter(heads, feature_dim) if feature_map == "mlp" else None
        self.memory_bias = self._parameter(heads, head_dim) if bias else None

    def _parameter(self, *shape: int) -> nn.Parameter:
        parameter = nn.Parameter(torch.empty(*shape, dtype=torch.float32), requires_grad=False)
        parameter.weight_loader = self.weight_loader  # what vLLM's AutoWeightsLoader calls
        return parameter

    def weight_loader(self, parameter: nn.Parameter, loaded: torch.Tensor) -> None:
        """Copy this rank's query heads of a full checkpoint tensor into ``parameter``. A tensor of another head count
        is refused even where this rank's slice of it would fit (9 heads over tp 2: 4 each, the ninth dropped)."""
        expected = (self.num_heads * self.tp_size, *parameter.shape[1:])  # all query heads: the rank's slice fits
        name = self._name(parameter)
        if tuple(loaded.shape) != expected:
            raise ValueError(
                f"{WEIGHTS_FILE}: {memory_key(self.layer, name)} has shape {tuple(loaded.shape)}, this model expects "
                f"{expected} (its {expected[0]} query heads first; rank {self.tp_rank} of {self.tp_size} holds "
                f"{tuple(parameter.shape)})."
            )
        if self.pairs_to_halves and name == ("memory" if self.kernel_weight is None else "kernel_weight"):
            loaded = pairs_to_halves(loaded)  # the tensor whose dim 1 is indexed by q's dims
        parameter.data.copy_(shard_heads(loaded, self.tp_rank, self.tp_size))

    def _name(self, parameter: nn.Parameter) -> str:
        return next(name for name, own in self.named_parameters() if own is parameter)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        """q: this rank's pre-rotary queries (tokens, H*D). Returns the term (tokens, H*D) in q's dtype."""
        tokens = q.shape[0]
        heads_first = q.reshape(tokens, self.num_heads, self.head_dim).transpose(0, 1).to(self.memory.dtype)
        if self.kernel_weight is not None:
            features = F.relu(torch.baddbmm(self.kernel_bias.unsqueeze(1), heads_first, self.kernel_weight))
        else:
            features = ELEMENTWISE[self.feature_map](heads_first)  # a new tensor: rotary may rotate q in place
        term = torch.bmm(features, self.memory)  # (H, N, F) @ (H, F, D) -> (H, N, D)
        if self.memory_bias is not None:
            term = term + self.memory_bias.unsqueeze(1)
        return term.transpose(0, 1).reshape(tokens, self.num_heads * self.head_dim).to(q.dtype)

    def extra_repr(self) -> str:
        return (
            f"feature_map={self.feature_map}, heads={self.num_heads} of {self.num_heads * self.tp_size}, "
            f"head_dim={self.head_dim}, bias={self.memory_bias is not None}"
        )

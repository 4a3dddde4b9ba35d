"""Feature maps phi: element-wise activations, and the learnable per-head MLP kernel of Remark 1.

Element-wise maps keep feature_dim = head_dim and have no weights. elu is the map of the paper's main tables
and is used as plain F.elu: Katharopoulos et al. add +1 to keep linear-attention normalisers positive, but
eq. 7 has no normaliser, and a constant shift would only add a per-head output bias.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .loading import AdapterWeights


class _ELU(torch.autograd.Function):
    """F.elu whose backward reads its output, as in-place ``F.elu_`` does, instead of its input.

    The output is what the memory's matmul saves anyway, so q is not kept alive for backward: one (tokens, heads,
    head_dim) tensor less per layer, half of what the memory term saves.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = F.elu(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (out,) = ctx.saved_tensors
        # grad * (out + 1) where out <= 0, else grad; written in out's layout, which is q's (tokens first), so the
        # gradient goes back to the q_proj output without a transpose copy.
        grad_input = torch.empty_like(out)
        return torch.ops.aten.elu_backward.grad_input(grad, 1.0, 1, 1, True, out, grad_input=grad_input)


def elu(x: torch.Tensor) -> torch.Tensor:
    """F.elu (alpha 1), with a leaner backward (see _ELU)."""
    if torch.is_grad_enabled() and x.requires_grad:
        return _ELU.apply(x)
    return F.elu(x)


ELEMENTWISE_FEATURE_MAPS = {"elu": elu, "gelu": F.gelu, "relu": F.relu}
# The element-wise maps whose backward reads their input; elu (see _ELU) and relu read their output.
_BACKWARD_READS_INPUT = frozenset({"gelu"})
LEARNED_FEATURE_MAPS = ("mlp",)  # the ones with weights, whose output size `feature_dim` sets
FEATURE_MAPS = (*ELEMENTWISE_FEATURE_MAPS, *LEARNED_FEATURE_MAPS)


def takes_feature_dim(name: str) -> bool:
    """Whether the feature map ``name`` has its own output size (element-wise maps keep head_dim)."""
    return name in LEARNED_FEATURE_MAPS


def build_feature_map(name: str, num_heads: int, head_dim: int, feature_dim: int | None = None, device=None):
    """phi of one adapter in one layer, as a module with a ``feature_dim``; resolved once, when the layer is built."""
    if name in ELEMENTWISE_FEATURE_MAPS:
        return ElementwiseMap(name, head_dim)
    return MLPKernel(num_heads, head_dim, feature_dim or head_dim, device)


class ElementwiseMap(nn.Module):
    """A weightless phi (elu, gelu, relu): no parameters, so nothing of it is saved with the adapter."""

    def __init__(self, name: str, head_dim: int):
        super().__init__()
        self.name, self.feature_dim, self.function = name, head_dim, ELEMENTWISE_FEATURE_MAPS[name]

    def keeps_input(self, q: torch.Tensor) -> bool:
        """Whether autograd keeps ``q`` itself for this map's backward (the layer then hands it a private copy)."""
        return self.name in _BACKWARD_READS_INPUT and q.requires_grad

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return self.function(q)  # (H,N,D) -> (H,N,D)

    def extra_repr(self) -> str:
        return self.name


class MLPKernel(AdapterWeights):
    """phi_W(q) = ReLU(W_h q + b_h), one (feature_dim x head_dim) W_h per query head.

    The paper leaves open whether W is shared across heads; per head matches M, which is per head too.
    Initialised like nn.Linear, so phi is non-degenerate while M = 0 keeps the model unchanged.
    """

    def __init__(self, num_heads: int, head_dim: int, feature_dim: int, device=None):
        super().__init__()
        self.feature_dim = feature_dim
        self.weight = nn.Parameter(torch.empty(num_heads, head_dim, feature_dim, device=device, dtype=torch.float32))
        self.bias = nn.Parameter(torch.empty(num_heads, 1, feature_dim, device=device, dtype=torch.float32))
        bound = 1.0 / math.sqrt(head_dim)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def keeps_input(self, q: torch.Tensor) -> bool:
        """Whether autograd keeps ``q`` itself for backward: W's gradient reads it."""
        return q.requires_grad or self.weight.requires_grad

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return F.relu(torch.baddbmm(self.bias, q, self.weight))  # (H,N,D) @ (H,D,F) + (H,1,F) -> (H,N,F)

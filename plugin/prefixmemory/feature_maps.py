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

ELEMENTWISE_FEATURE_MAPS = {"elu": F.elu, "gelu": F.gelu, "relu": F.relu}
FEATURE_MAPS = (*ELEMENTWISE_FEATURE_MAPS, "mlp")


class MLPKernel(nn.Module):
    """phi_W(q) = ReLU(W_h q + b_h), one (feature_dim x head_dim) W_h per query head.

    The paper leaves open whether W is shared across heads; per head matches M, which is per head too.
    Initialised like nn.Linear, so phi is non-degenerate while M = 0 keeps the model unchanged.
    """

    def __init__(self, num_heads: int, head_dim: int, feature_dim: int, device=None):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_heads, head_dim, feature_dim, device=device))
        self.bias = nn.Parameter(torch.empty(num_heads, 1, feature_dim, device=device))
        bound = 1.0 / math.sqrt(head_dim)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return F.relu(torch.baddbmm(self.bias, q, self.weight))  # (H,N,D) @ (H,D,F) + (H,1,F) -> (H,N,F)

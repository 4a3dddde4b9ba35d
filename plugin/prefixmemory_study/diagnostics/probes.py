"""What the diagnostics read out of a forward pass, with plain forward hooks on the real modules.

- ``attention_outputs``: one decoder layer's attention output per token, at the o_proj input (the concatenated
  heads, where eq. 3's prefix bias and eq. 7's phi(q) @ M live) or at the o_proj output.
- ``hidden_states``: every decoder layer's output, one row per text (last token or mean) or per token.
- ``attention_map``: one layer's softmax weights, averaged over heads; prefix-tuning's prefix columns dropped and
  the rows renormalised (appendix B.2).
- ``prefix_mass`` (section 4.2): prefix-tuning's ``alpha_i = sum_{j<=p} alpha_ij``, the softmax mass on the p prefix
  keys, per layer and position. Read from the eager attention weights, whose first p key columns are the prefix.
- ``memory_ratio``: PMT's ``||phi(q_i) @ M|| / ||o_i||`` per layer and position, where phi(q_i) @ M is the term the
  PrefixMemory layer really computed (read from its slot right after its forward) and o_i the softmax attention
  output (the o_proj wrapper's input, before the term is added).

Position i of a causal sequence has seen i + 1 input tokens, so one long sequence gives every input length at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from prefixmemory.architectures import attention_layout
from prefixmemory.layer import MemoryInjector, PrefixMemoryLayer

_LAYER_INDEX = re.compile(r"(?:^|\.)layers\.(\d+)\.")
SITES = ("attention", "o_proj")


def _model_type(model: nn.Module) -> str:
    return model.config.model_type


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The attention block of every decoder layer, in layer order (the architecture table names it)."""
    layout = attention_layout(_model_type(model))
    found = {}
    for name, module in model.named_modules():
        match = _LAYER_INDEX.search(name + ".")
        if match and name.endswith("." + layout.attention_module):
            found[int(match.group(1))] = module
    if not found:
        raise ValueError(f"no `{layout.attention_module}` blocks found under `layers.N.` in {type(model).__name__}.")
    return [found[index] for index in sorted(found)]


def layer_index(model: nn.Module, layer: int) -> int:
    """``layer`` as a non-negative index; negative counts from the last decoder layer."""
    count = len(attention_modules(model))
    if not -count <= layer < count:
        raise ValueError(f"`--layer` {layer} out of range: the model has {count} decoder layers.")
    return layer % count


@contextmanager
def hooked(*handles) -> Iterator[None]:
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _forward(model: nn.Module, ids: torch.Tensor, **kwargs):
    device = next(model.parameters()).device
    with torch.inference_mode():
        return model(input_ids=ids.to(device), **kwargs)


def attention_outputs(model: nn.Module, inputs: list[torch.Tensor], layer: int, site: str = "attention"):
    """(tokens, features) fp32: layer ``layer``'s attention output for every token of every input.

    ``attention``: the input of the innermost o_proj Linear, i.e. what o_proj multiplies (for PMT, attention output
    plus the memory term). ``o_proj``: the output of the whole o_proj (adapter wrappers included).
    """
    if site not in SITES:
        raise ValueError(f"`--site` must be one of {', '.join(SITES)}; got {site!r}.")
    attention = attention_modules(model)[layer_index(model, layer)]
    module = getattr(attention, attention_layout(_model_type(model)).output_module)
    rows: list[torch.Tensor] = []
    if site == "attention":
        while hasattr(module, "base_layer"):  # LoRA's and PMT's wrappers keep the real Linear as base_layer
            module = module.base_layer
        handle = module.register_forward_pre_hook(lambda _m, args: rows.append(args[0].detach().float().cpu()))
    else:
        handle = module.register_forward_hook(lambda _m, _a, out: rows.append(out.detach().float().cpu()))
    with hooked(handle):
        for ids in inputs:
            _forward(model, ids)
    return torch.cat([row.reshape(-1, row.shape[-1]) for row in rows])  # (B,T,F) -> (B*T,F), then all inputs


def hidden_states(model: nn.Module, inputs: list[torch.Tensor], pool: str = "last") -> list[torch.Tensor]:
    """Per decoder layer, (samples, hidden) fp32: ``last`` token or ``mean`` over tokens per input, or ``tokens``."""
    if pool not in ("last", "mean", "tokens"):
        raise ValueError(f"`--pool` must be one of last, mean, tokens; got {pool!r}.")
    per_input = []
    for ids in inputs:
        states = _forward(model, ids, output_hidden_states=True).hidden_states[1:]  # [0] is the embeddings
        per_input.append([_pool(state[0].float().cpu(), pool) for state in states])
    return [torch.cat(rows) for rows in zip(*per_input, strict=True)]


def _pool(state: torch.Tensor, pool: str) -> torch.Tensor:
    if pool == "last":
        return state[-1:]  # (T,D) -> (1,D)
    return state.mean(0, keepdim=True) if pool == "mean" else state


@contextmanager
def attention_weights(model: nn.Module, layers: list[int], reduce=None) -> Iterator[dict[int, list[torch.Tensor]]]:
    """Collects each listed layer's softmax weights (B,H,T,keys) per forward, or ``reduce(weights)`` of them, reduced
    on the model's device (a 7B model's weights at 2k tokens are gigabytes). Needs eager attention."""
    modules = attention_modules(model)
    captured: dict[int, list[torch.Tensor]] = {index: [] for index in layers}

    def hook(index):
        def read(_module, _args, output):
            weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
            if weights is None:
                raise RuntimeError("no attention weights: load the model with attn_implementation='eager'.")
            weights = weights.detach().float()
            captured[index].append((reduce(weights) if reduce else weights).cpu())

        return read

    with hooked(*(modules[index].register_forward_hook(hook(index)) for index in captured)):
        yield captured


def attention_map(model: nn.Module, ids: torch.Tensor, layer: int, prefix_length: int = 0) -> torch.Tensor:
    """(T, T) head-averaged attention weights of ``layer``; prefix columns removed and rows renormalised."""
    index = layer_index(model, layer)
    with attention_weights(model, [index]) as captured:
        _forward(model, ids)
    weights = captured[index][0][0].mean(0)  # (H,T,P+T) -> (T,P+T)
    if prefix_length:
        weights = weights[:, prefix_length:]
        weights = weights / weights.sum(-1, keepdim=True).clamp_min(1e-12)
    return weights


def prefix_mass(model: nn.Module, inputs: list[torch.Tensor], prefix_length: int) -> tuple[torch.Tensor, list[int]]:
    """alpha (sequences, layers, T), softmax mass on the first ``prefix_length`` keys averaged over heads; layers."""
    if prefix_length <= 0:
        raise ValueError("alpha needs a prefix-tuning adapter (num_virtual_tokens > 0).")
    layers = list(range(len(attention_modules(model))))

    def mass(weights):  # (B,H,T,P+T) -> (B,T)
        if weights.shape[-1] != prefix_length + weights.shape[-2]:
            raise RuntimeError(f"{weights.shape[-1]} keys for {weights.shape[-2]} queries: expected prefix + input.")
        return weights[..., :prefix_length].sum(-1).mean(1)

    with attention_weights(model, layers, mass) as captured:
        for ids in inputs:
            _forward(model, ids)
    return torch.stack([torch.cat(captured[index]) for index in layers], dim=1), layers  # (S,L,T)


def memory_ratio(model: nn.Module, inputs: list[torch.Tensor]) -> tuple[torch.Tensor, list[int]]:
    """||phi(q_i) @ M|| / ||o_i|| (sequences, PMT layers, T) from the terms the PrefixMemory layers computed; the
    indices of those layers. Norms are over the whole o_proj input (all heads) of token i. Inputs are one row each.

    The term is read from the layer's slot right after its forward, whatever its layout ((N,H,D) or (B,T,H*D)): both
    hold the tokens in order, so it is viewed as (tokens, H*D) like the o_proj input it is added to.
    """
    named = [(n, m) for n, m in model.named_modules() if isinstance(m, PrefixMemoryLayer)]
    injectors = {id(m.slot): m for m in model.modules() if isinstance(m, MemoryInjector)}
    if not named:
        raise ValueError("memory ratio needs a PrefixMemory adapter: the model has no PrefixMemory layer.")
    term_norms: dict[int, list[torch.Tensor]] = {id(m.slot): [] for _n, m in named}
    output_norms: dict[int, list[torch.Tensor]] = {id(m.slot): [] for _n, m in named}

    def read_term(module, _args, _out):
        if module.slot.term is None:
            raise RuntimeError("the PrefixMemory layer computed no term: is the adapter active?")
        term = module.slot.term.detach().float().reshape(-1, module.num_heads * module.head_dim)  # (tokens, H*D)
        term_norms[id(module.slot)].append(term.norm(dim=-1).cpu())

    def read_output(module, args):
        output = args[0].detach().float()
        output_norms[id(module.slot)].append(output.reshape(-1, output.shape[-1]).norm(dim=-1).cpu())

    handles = [m.register_forward_hook(read_term) for _n, m in named]
    handles += [injectors[id(m.slot)].register_forward_pre_hook(read_output) for _n, m in named]
    with hooked(*handles):
        for ids in inputs:
            _forward(model, ids)
    ratios = [
        torch.stack(term_norms[key]) / torch.stack(output_norms[key]).clamp_min(1e-12) for key in term_norms
    ]  # per layer: (S,T)
    return torch.stack(ratios, dim=1), [int(_LAYER_INDEX.search(n).group(1)) for n, _m in named]

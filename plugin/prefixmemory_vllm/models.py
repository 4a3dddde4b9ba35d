"""PrefixMemory variants of vLLM's models, one per family of ``families.SERVED``, built when vLLM first asks for one.

Per family two classes change:
  * the attention: vLLM's own forward (copied; ``seams`` checks that the installed vLLM's still has that shape),
    whose end computes the term from q right after the qkv split (after a per-head q_norm where the family has one)
    and before rotary, which vLLM's kernels apply to q in place, and adds it to the attention output before o_proj;
  * the CausalLM: vLLM's ``__init__``, then the adapted layers' attention modules switch class (nothing is rebuilt,
    so the KV-cache registration stays vLLM's) and get a ``prefix_memory`` child with this rank's heads.
vLLM's AutoWeightsLoader finds ``model.layers.{i}.self_attn.prefix_memory.*`` by module name; its check that every
parameter was loaded makes a missing memory an error.
"""

from __future__ import annotations

import importlib
import logging

import torch
import vllm

from . import CONFIG_KEY
from .families import SERVED, Family
from .memory import PrefixMemory
from .seams import CHECKED_VLLM, SeamError, implementation, installed_reader


class MemoryAttention:
    """The part the PrefixMemory attentions share: the term from pre-rotary q, added before o_proj."""

    def attend_with_memory(self, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        term = self.prefix_memory(q)  # before rotary_emb, which rotates q in place
        q, k = self.rotary_emb(positions, q, k)
        output, _ = self.o_proj(self.attn(q, k, v) + term)
        return output


def plain_forward(self, positions: torch.Tensor, hidden_states: torch.Tensor) -> torch.Tensor:
    qkv, _ = self.qkv_proj(hidden_states)
    q, k, v = qkv.split([self.q_size, self.kv_size, self.kv_size], dim=-1)
    return self.attend_with_memory(positions, q, k, v)


def optional_head_norm_forward(self, positions: torch.Tensor, hidden_states: torch.Tensor) -> torch.Tensor:
    """Qwen2 from vLLM 0.32: q and k normalised per head where the config asks for it."""
    qkv, _ = self.qkv_proj(hidden_states)
    q, k, v = qkv.split([self.q_size, self.kv_size, self.kv_size], dim=-1)
    if self.qk_norm:
        total_tokens = q.shape[0]
        q = self.q_norm(q.view(total_tokens, self.num_heads, self.head_dim)).view(total_tokens, self.q_size)
        k = self.k_norm(k.view(total_tokens, self.num_kv_heads, self.head_dim)).view(total_tokens, self.kv_size)
    return self.attend_with_memory(positions, q, k, v)


def head_norm_forward(self, positions: torch.Tensor, hidden_states: torch.Tensor) -> torch.Tensor:
    """Qwen3, Qwen3-MoE: the term reads q after the per-head q_norm."""
    qkv, _ = self.qkv_proj(hidden_states)
    q, k, v = qkv.split([self.q_size, self.kv_size, self.kv_size], dim=-1)
    q = self.q_norm(q.view(*q.shape[:-1], q.shape[-1] // self.head_dim, self.head_dim)).view(q.shape)
    k = self.k_norm(k.view(*k.shape[:-1], k.shape[-1] // self.head_dim, self.head_dim)).view(k.shape)
    return self.attend_with_memory(positions, q, k, v)


def head_norm_unflatten_forward(self, positions: torch.Tensor, hidden_states: torch.Tensor) -> torch.Tensor:
    """Gemma 3: the term reads q after the per-head q_norm (query scaling and sliding windows are the softmax's)."""
    qkv, _ = self.qkv_proj(hidden_states)
    q, k, v = qkv.split([self.q_size, self.kv_size, self.kv_size], dim=-1)
    q = self.q_norm(q.unflatten(-1, (self.num_heads, self.head_dim))).flatten(-2, -1)
    k = self.k_norm(k.unflatten(-1, (self.num_kv_heads, self.head_dim))).flatten(-2, -1)
    return self.attend_with_memory(positions, q, k, v)


def gemma4_forward(self, positions: torch.Tensor, hidden_states: torch.Tensor, **kwargs) -> torch.Tensor:
    """Gemma 4: the term reads q after the per-head q_norm, in KV-sharing layers (q projected alone) too."""
    if self.is_kv_shared_layer:
        q, _ = self.q_proj(hidden_states)
        q = self.q_norm(q.unflatten(-1, (self.num_heads, self.head_dim))).flatten(-2, -1)
        term = self.prefix_memory(q)
        q, _ = self.rotary_emb(positions, q, None)
        attn_output = self.attn(q, None, None)
    else:
        qkv, _ = self.qkv_proj(hidden_states)
        q, k, v = qkv.split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        q = self.q_norm(q.unflatten(-1, (self.num_heads, self.head_dim))).flatten(-2, -1)
        k = self.k_norm(k.unflatten(-1, (self.num_kv_heads, self.head_dim))).flatten(-2, -1)
        term = self.prefix_memory(q)
        q, k = self.rotary_emb(positions, q, k)
        v = self.v_norm(v.unflatten(-1, (self.num_kv_heads, self.head_dim))).flatten(-2, -1)
        attn_output = self.attn(q, k, v)
    output, _ = self.o_proj(attn_output + term)
    return output


def switched_head_norm_forward(self, positions: torch.Tensor, hidden_states: torch.Tensor) -> torch.Tensor:
    """GLM-4-MoE: the term reads q after the per-head q_norm where use_qk_norm is on, else q_proj's q."""
    qkv, _ = self.qkv_proj(hidden_states)
    q, k, v = qkv.split([self.q_size, self.kv_size, self.kv_size], dim=-1)
    if self.use_qk_norm:
        q = self.q_norm(q.reshape(-1, self.num_heads, self.head_dim)).reshape(q.shape)
        k = self.k_norm(k.reshape(-1, self.num_kv_heads, self.head_dim)).reshape(k.shape)
    return self.attend_with_memory(positions, q, k, v)


def llama4_forward(self, positions: torch.Tensor, hidden_states: torch.Tensor) -> torch.Tensor:
    """Llama 4: the term reads q before rotary, the weightless L2 qk_norm and the temperature tuning of NoPE layers."""
    qkv, _ = self.qkv_proj(hidden_states)
    q, k, v = qkv.split([self.q_size, self.kv_size, self.kv_size], dim=-1)
    term = self.prefix_memory(q)
    if self.rotary_emb is not None:
        q, k = self.rotary_emb(positions, q, k)
    if self.qk_norm is not None:
        q = self.qk_norm(q.reshape(-1, self.head_dim).float()).reshape(-1, self.q_size).to(q.dtype)
        k = self.qk_norm(k.reshape(-1, self.head_dim).float()).reshape(-1, self.kv_size).to(k.dtype)
    if self.attn_temperature_tuning and self.nope:
        q = (q * self._get_attn_scale(positions)).to(q.dtype)
    output, _ = self.o_proj(self.attn(q, k, v) + term)
    return output


def llama4_scaling_forward(self, positions: torch.Tensor, hidden_states: torch.Tensor) -> torch.Tensor:
    """Mistral from vLLM 0.32: the term reads q before rotary and before the llama-4 scaling of q."""
    qkv, _ = self.qkv_proj(hidden_states)
    q, k, v = qkv.split([self.q_size, self.kv_size, self.kv_size], dim=-1)
    term = self.prefix_memory(q)
    q, k = self.rotary_emb(positions, q, k)
    if self.do_llama_4_scaling:
        q = (q * self._get_llama_4_attn_scale(positions)).to(q.dtype)
    output, _ = self.o_proj(self.attn(q, k, v) + term)
    return output


FORWARDS = {
    "plain": plain_forward,
    "optional_head_norm": optional_head_norm_forward,
    "head_norm": head_norm_forward,
    "head_norm_unflatten": head_norm_unflatten_forward,
    "switched_head_norm": switched_head_norm_forward,
    "gemma4": gemma4_forward,
    "llama4": llama4_forward,
    "llama4_scaling": llama4_scaling_forward,
}


def install_memories(model, hf_config, base_cls: type, memory_cls: type, pairs_to_halves: bool = False) -> None:
    """Give the adapted decoder layers of ``model`` (vLLM's *Model, with .layers) their memories."""
    settings = getattr(hf_config, CONFIG_KEY, None)
    if not isinstance(settings, dict):
        raise ValueError(f"config.json has no `{CONFIG_KEY}` entry: this folder is not a PrefixMemory export.")
    num_layers = hf_config.num_hidden_layers
    layers = settings["layers"]
    if any(not 0 <= i < num_layers for i in layers):
        raise ValueError(f"`{CONFIG_KEY}.layers` {layers} lie outside the model's {num_layers} layers.")
    for i in layers:
        if not model.start_layer <= i < model.end_layer:
            continue  # another pipeline stage holds this layer
        attention = model.layers[i].self_attn
        if type(attention) is not base_cls:
            raise TypeError(f"layer {i} has a {type(attention).__name__}, expected vLLM's {base_cls.__name__}.")
        attention.__class__ = memory_cls
        attention.prefix_memory = PrefixMemory(
            total_num_heads=attention.total_num_heads,
            head_dim=attention.head_dim,
            feature_map=settings["feature_map"],
            feature_dim=settings.get("feature_dim"),
            bias=bool(settings.get("bias", False)),
            layer=i,
            pairs_to_halves=pairs_to_halves,
        )


def memory_model(family: Family) -> type:
    """The PrefixMemory variant of ``family``'s vLLM model; SeamError (one line) where vLLM's source has changed."""
    try:
        chosen = implementation(family, installed_reader())
    except SeamError as error:
        raise SeamError(
            f"prefixmemory_vllm cannot serve {family.architecture} with vLLM {vllm.__version__}: {error}"
        ) from None
    if vllm.__version__.split("+")[0] not in CHECKED_VLLM:
        logging.getLogger(__name__).info(
            f"vLLM {vllm.__version__}: {family.architecture}'s attention has the shape of the checked releases "
            f"({', '.join(CHECKED_VLLM)})."
        )
    model_cls, attention_cls = _load(chosen.model), _load(chosen.attention)
    attention = type(
        f"PrefixMemory{attention_cls.__name__}",
        (MemoryAttention, attention_cls),
        {"forward": FORWARDS[chosen.forward], "__module__": __name__},
    )

    def __init__(self, *, vllm_config, prefix: str = "", **kwargs):
        model_cls.__init__(self, vllm_config=vllm_config, prefix=prefix, **kwargs)
        hf_config = vllm_config.model_config.hf_config
        install_memories(self.model, hf_config, attention_cls, attention, chosen.pairs_to_halves)

    return type(family.memory_architecture, (model_cls,), {"__init__": __init__, "__module__": __name__})


def _load(dotted: str) -> type:
    module, name = dotted.rsplit(".", 1)
    return getattr(importlib.import_module(f"vllm.model_executor.models.{module}"), name)


def __getattr__(name: str) -> type:
    """vLLM's registry imports ``prefixmemory_vllm.models:PrefixMemory<Architecture>``: built here on first use."""
    family = next((family for family in SERVED.values() if family.memory_architecture == name), None)
    if family is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = built = memory_model(family)
    return built

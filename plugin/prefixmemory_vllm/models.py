"""PrefixMemory variants of vLLM's Qwen2, Qwen3, LLaMA and Mistral.

Per architecture two classes change:
  * the attention: vLLM's own forward (copied from the releases in ``SUPPORTED_VLLM``), whose end computes the term
    from q right after the qkv split (after Qwen3's q_norm) and before rotary, which vLLM's kernels apply to q in
    place, and adds it to the attention output before o_proj;
  * the CausalLM: vLLM's ``__init__``, then the adapted layers' attention modules switch class (nothing is rebuilt,
    so the KV-cache registration stays vLLM's) and get a ``prefix_memory`` child with this rank's heads.
vLLM's AutoWeightsLoader finds ``model.layers.{i}.self_attn.prefix_memory.*`` by module name; its check that every
parameter was loaded makes a missing memory an error.
"""

from __future__ import annotations

import torch
import vllm
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from . import CONFIG_KEY, SUPPORTED_VLLM

VLLM_VERSION = Version(vllm.__version__)
if not any(SpecifierSet(spec).contains(VLLM_VERSION.base_version) for spec in SUPPORTED_VLLM):
    raise ImportError(
        f"prefixmemory_vllm serves with vLLM {' or '.join(SUPPORTED_VLLM)} (its attention forwards are copies of "
        f"those releases'); found vLLM {vllm.__version__}."
    )

from vllm.model_executor.models.llama import LlamaAttention, LlamaForCausalLM  # noqa: E402
from vllm.model_executor.models.qwen2 import Qwen2Attention, Qwen2ForCausalLM  # noqa: E402
from vllm.model_executor.models.qwen3 import Qwen3Attention, Qwen3ForCausalLM  # noqa: E402

from .memory import PrefixMemory  # noqa: E402

# vLLM 0.11 serves Mistral with its LLaMA classes; 0.32 has Mistral's own (llama-4 scaling of q).
if VLLM_VERSION.release >= (0, 32):
    from vllm.model_executor.models.mistral import MistralAttention, MistralForCausalLM
else:
    MistralAttention, MistralForCausalLM = LlamaAttention, LlamaForCausalLM


class MemoryAttention:
    """The part the PrefixMemory attentions share: the term from pre-rotary q, added before o_proj."""

    def attend_with_memory(self, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        term = self.prefix_memory(q)  # before rotary_emb, which rotates q in place
        q, k = self.rotary_emb(positions, q, k)
        output, _ = self.o_proj(self.attn(q, k, v) + term)
        return output


class PrefixMemoryQwen2Attention(MemoryAttention, Qwen2Attention):
    def forward(self, positions: torch.Tensor, hidden_states: torch.Tensor) -> torch.Tensor:
        qkv, _ = self.qkv_proj(hidden_states)
        q, k, v = qkv.split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        if getattr(self, "qk_norm", False):  # vLLM 0.32's Qwen2 may normalise q and k; 0.11's never does
            total_tokens = q.shape[0]
            q = self.q_norm(q.view(total_tokens, self.num_heads, self.head_dim)).view(total_tokens, self.q_size)
            k = self.k_norm(k.view(total_tokens, self.num_kv_heads, self.head_dim)).view(total_tokens, self.kv_size)
        return self.attend_with_memory(positions, q, k, v)


class PrefixMemoryQwen3Attention(MemoryAttention, Qwen3Attention):
    def forward(self, positions: torch.Tensor, hidden_states: torch.Tensor) -> torch.Tensor:
        qkv, _ = self.qkv_proj(hidden_states)
        q, k, v = qkv.split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        q = self.q_norm(q.view(*q.shape[:-1], q.shape[-1] // self.head_dim, self.head_dim)).view(q.shape)
        k = self.k_norm(k.view(*k.shape[:-1], k.shape[-1] // self.head_dim, self.head_dim)).view(k.shape)
        return self.attend_with_memory(positions, q, k, v)


class PrefixMemoryLlamaAttention(MemoryAttention, LlamaAttention):
    def forward(self, positions: torch.Tensor, hidden_states: torch.Tensor) -> torch.Tensor:
        qkv, _ = self.qkv_proj(hidden_states)
        q, k, v = qkv.split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        return self.attend_with_memory(positions, q, k, v)


class PrefixMemoryMistralAttention(MistralAttention):
    """vLLM 0.32's Mistral attention (on 0.11, MistralAttention is LlamaAttention and this forward equals its own)."""

    def forward(self, positions: torch.Tensor, hidden_states: torch.Tensor) -> torch.Tensor:
        qkv, _ = self.qkv_proj(hidden_states)
        q, k, v = qkv.split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        term = self.prefix_memory(q)  # before rotary and before the llama-4 scaling of q
        q, k = self.rotary_emb(positions, q, k)
        if getattr(self, "do_llama_4_scaling", False):
            q = (q * self._get_llama_4_attn_scale(positions)).to(q.dtype)
        attn_output = self.attn(q, k, v)
        output, _ = self.o_proj(attn_output + term)
        return output


def install_memories(model, hf_config, base_cls: type, memory_cls: type) -> None:
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
        )


class PrefixMemoryQwen2ForCausalLM(Qwen2ForCausalLM):
    def __init__(self, *, vllm_config, prefix: str = ""):
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        install_memories(self.model, self.config, Qwen2Attention, PrefixMemoryQwen2Attention)


class PrefixMemoryQwen3ForCausalLM(Qwen3ForCausalLM):
    def __init__(self, *, vllm_config, prefix: str = ""):
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        install_memories(self.model, self.config, Qwen3Attention, PrefixMemoryQwen3Attention)


class PrefixMemoryLlamaForCausalLM(LlamaForCausalLM):
    def __init__(self, *, vllm_config, prefix: str = "", **kwargs):
        super().__init__(vllm_config=vllm_config, prefix=prefix, **kwargs)
        install_memories(self.model, self.config, LlamaAttention, PrefixMemoryLlamaAttention)


class PrefixMemoryMistralForCausalLM(MistralForCausalLM):
    def __init__(self, *, vllm_config, prefix: str = "", **kwargs):
        super().__init__(vllm_config=vllm_config, prefix=prefix, **kwargs)
        install_memories(self.model, self.config, MistralAttention, PrefixMemoryMistralAttention)

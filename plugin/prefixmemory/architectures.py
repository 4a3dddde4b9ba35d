"""Per-architecture attention facts: where PrefixMemory reads q and where it adds the memory term.

One frozen row per ``config.model_type``, looked up once (PEFT adaption_prompt's TRANSFORMERS_MODEL_CONFIG
is the model). Head geometry is never derived from ``hidden_size / num_heads``: it is read from the attention
module (``head_dim``) and the config (``num_attention_heads``), which is what Qwen3 needs.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class AttentionLayout:
    """Names inside one decoder layer's attention block.

    ``query_module`` is the last module that produces q before rotary embedding: its output is what phi sees,
    flat ``(..., heads * head_dim)`` from q_proj or ``(..., heads, head_dim)`` from Qwen3's per-head q_norm; the
    layer reshapes either the same way.
    """

    attention_module: str = "self_attn"
    query_module: str = "q_proj"
    output_module: str = "o_proj"


_LLAMA_LIKE = AttentionLayout()

ATTENTION_LAYOUTS: dict[str, AttentionLayout] = {
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": AttentionLayout(query_module="q_norm"),
}


def attention_layout(model_type: str) -> AttentionLayout:
    """The layout for ``model_type``, or a ValueError naming the supported ones."""
    try:
        return ATTENTION_LAYOUTS[model_type]
    except KeyError:
        supported = ", ".join(sorted(ATTENTION_LAYOUTS))
        raise ValueError(f"PrefixMemory does not support model_type `{model_type}`; supported: {supported}.") from None

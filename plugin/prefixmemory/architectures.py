"""Per-family attention facts: where PrefixMemory reads q, where it adds the memory term, the head geometry.

One frozen row per ``config.model_type``, looked up once (PEFT adaption_prompt's TRANSFORMERS_MODEL_CONFIG
is the model). Everything else that needs the families reads this table: the tuner, the LLaMA-Factory checks, the
vLLM plugin, the tiny-model builder, the test matrix and the docs table. Head geometry is never derived from
``hidden_size / num_heads``: it is read from the attention module (the attributes the row names) and the config
(``num_attention_heads``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# How the query module's output holds q, per token and head (B: batch, T: tokens, H: query heads, D: head_dim):
TOKENS = "tokens"  # (B, T, H*D) from q_proj or a whole-projection q norm, or (B, T, H, D) from a per-head q norm
HEADS = "heads"  # (B, H, T, D): a per-head q norm applied after the transpose to heads first (Gemma 3)
FUSED_QKV = "fused_qkv"  # (B, T, (H + 2 * KV) * D) from a fused qkv projection: q is the first H*D features
QUERY_LAYOUTS = (TOKENS, HEADS, FUSED_QKV)


@dataclass(frozen=True)
class AttentionLayout:
    """Names inside one decoder layer, and what the attention block computes there.

    ``query_module`` is the last module that produces q before rotary embedding (and before any query scaling):
    its output is what phi sees, held as ``query_layout`` says. ``output_module`` is the projection whose input is
    the per-head attention output: the term is added to that input. Decoder layers are the modules named
    ``{layers}.{i}`` (``language_model.layers`` keeps a vision tower's own ``layers`` out); a decoder layer without
    an ``attention_module`` child (a linear-attention layer) gets no memory. ``query_head_dim`` and
    ``value_head_dim`` name the attention module's attributes that give q's and the output's per-head sizes
    (they differ in multi-head latent attention). ``note`` says what is unusual, for the docs table.
    """

    family: str
    query_module: str = "q_proj"
    query_layout: str = TOKENS
    attention_module: str = "self_attn"
    output_module: str = "o_proj"
    layers: str = "layers"
    query_head_dim: str = "head_dim"
    value_head_dim: str = "head_dim"
    note: str = ""

    def __post_init__(self):
        if self.query_layout not in QUERY_LAYOUTS:
            raise ValueError(f"`query_layout` {self.query_layout!r}: one of {', '.join(QUERY_LAYOUTS)}.")

    @property
    def query_read(self) -> str:
        """Where q is read, in words (messages and the docs table)."""
        where = {TOKENS: "{}", HEADS: "{} (heads first)", FUSED_QKV: "{}[: heads * head_dim]"}[self.query_layout]
        return where.format(self.query_module)

    def attention_key(self) -> re.Pattern:
        """Matches the module name of a decoder layer's attention block; group 1 is the layer index."""
        return re.compile(rf"(?:^|\.){re.escape(self.layers)}\.(\d+)\.{re.escape(self.attention_module)}$")


_LLAMA = AttentionLayout("LLaMA")

ATTENTION_LAYOUTS: dict[str, AttentionLayout] = {
    "llama": _LLAMA,
    "mistral": AttentionLayout("Mistral"),
    "qwen2": AttentionLayout("Qwen2 / Qwen2.5"),
    "qwen3": AttentionLayout("Qwen3", query_module="q_norm", note="q_norm is per head"),
}


def attention_layout(model_type: str) -> AttentionLayout:
    """The layout for ``model_type``, or a ValueError naming the supported ones."""
    try:
        return ATTENTION_LAYOUTS[model_type]
    except KeyError:
        supported = ", ".join(sorted(ATTENTION_LAYOUTS))
        raise ValueError(f"PrefixMemory does not support model_type `{model_type}`; supported: {supported}.") from None


def text_config(model_config: dict) -> dict:
    """The decoder's part of a config dict: its ``text_config`` in a vision-language model, else the config."""
    return model_config.get("text_config") or model_config

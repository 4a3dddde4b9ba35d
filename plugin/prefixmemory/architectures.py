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
    its output is what phi sees, held as ``query_layout`` says; ``query_fallback`` is read instead where a config
    leaves ``query_module`` out (a q norm switched off, a query projection without low rank). ``output_module``
    is the projection whose input is the per-head attention output: the term is added to that input. Decoder
    layers are the modules named ``{layers}.{i}`` (``language_model.layers`` keeps a vision tower's own
    ``layers`` out); a decoder layer without an ``attention_module`` child (a linear-attention layer) gets no
    memory. ``query_head_dim`` and ``value_head_dim`` name the attention module's attributes that give q's and the
    output's per-head sizes (they differ in multi-head latent attention), read under the same names from the text
    config; ``full_attention_head_dim`` names the config's head size of its ``full_attention`` layers where they have
    their own. ``note`` says what is unusual.
    """

    family: str
    query_module: str = "q_proj"
    query_layout: str = TOKENS
    query_fallback: str = ""
    attention_module: str = "self_attn"
    output_module: str = "o_proj"
    layers: str = "layers"
    query_head_dim: str = "head_dim"
    value_head_dim: str = "head_dim"
    full_attention_head_dim: str = ""
    note: str = ""

    def __post_init__(self):
        if self.query_layout not in QUERY_LAYOUTS:
            raise ValueError(f"`query_layout` {self.query_layout!r}: one of {', '.join(QUERY_LAYOUTS)}.")

    @property
    def query_modules(self) -> tuple[str, ...]:
        """The names q may be read at, preferred first."""
        return tuple(name for name in (self.query_module, self.query_fallback) if name)

    def query_module_of(self, attention) -> str:
        """The name q is read at in this attention block: ``query_module``, or ``query_fallback`` where it lacks it."""
        return next((name for name in self.query_modules if hasattr(attention, name)), self.query_module)

    @property
    def query_read(self) -> str:
        """Where q is read, in words (messages and the docs table)."""
        where = {TOKENS: "{}", HEADS: "{} (heads first)", FUSED_QKV: "{}[: heads * head_dim]"}[self.query_layout]
        return " or ".join(where.format(name) for name in self.query_modules)

    def attention_key(self) -> re.Pattern:
        """Matches the module name of a decoder layer's attention block; group 1 is the layer index."""
        return re.compile(rf"(?:^|\.){re.escape(self.layers)}\.(\d+)\.{re.escape(self.attention_module)}$")


_GATED = (
    "full-attention layers: the term is added to o_proj's input, after the sigmoid output gate (the term is not "
    "gated); Gated DeltaNet layers have no softmax attention and get no memory"
)
_SLIDING = "sliding-window layers keep their window for the softmax; the term, independent of keys, is added alike"
_VISION = "the language model's layers only, the vision tower untouched; multimodal rotary comes after q is read"
_GEMMA3 = f"q_norm per head (heads first); query scaling inside the softmax; {_SLIDING}"
_GEMMA4 = (
    "q_norm per head; full-attention layers have their own head_dim (global_head_dim), so their memories are "
    f"larger; KV-sharing layers still compute q; {_SLIDING}"
)
_QWEN3_VL = AttentionLayout("Qwen3-VL", "q_norm", layers="language_model.layers", note=f"q_norm per head; {_VISION}")

ATTENTION_LAYOUTS: dict[str, AttentionLayout] = {
    "llama": AttentionLayout("LLaMA / SmolLM2"),
    "mistral": AttentionLayout("Mistral", note=_SLIDING),
    "mixtral": AttentionLayout("Mixtral", note=_SLIDING),
    "qwen2": AttentionLayout("Qwen2 / Qwen2.5", note=_SLIDING),
    "qwen3": AttentionLayout("Qwen3", "q_norm", note="q_norm per head"),
    "qwen3_moe": AttentionLayout("Qwen3-MoE", "q_norm", note="q_norm per head"),
    "qwen3_5": AttentionLayout("Qwen3.5", "q_norm", layers="language_model.layers", note=f"{_GATED}; {_VISION}"),
    "qwen3_5_text": AttentionLayout("Qwen3.5 (text)", "q_norm", note=_GATED),
    "qwen3_5_moe": AttentionLayout("Qwen3.5-MoE", "q_norm", layers="language_model.layers", note=_GATED),
    "qwen3_5_moe_text": AttentionLayout("Qwen3.5-MoE (text)", "q_norm", note=_GATED),
    "qwen2_5_vl": AttentionLayout("Qwen2.5-VL", layers="language_model.layers", note=_VISION),
    "qwen3_vl": _QWEN3_VL,
    "gemma2": AttentionLayout("Gemma 2", note=f"query scaling and logit soft-capping inside the softmax; {_SLIDING}"),
    "gemma3_text": AttentionLayout("Gemma 3 (text)", "q_norm", HEADS, note=_GEMMA3),
    "gemma3": AttentionLayout("Gemma 3", "q_norm", HEADS, layers="language_model.layers", note=_GEMMA3),
    "gemma4_text": AttentionLayout(
        "Gemma 4 (text)", "q_norm", full_attention_head_dim="global_head_dim", note=_GEMMA4
    ),
    "gemma4": AttentionLayout(
        "Gemma 4", "q_norm", layers="language_model.layers", full_attention_head_dim="global_head_dim", note=_GEMMA4
    ),
    "phi3": AttentionLayout("Phi-3 / Phi-4", "qkv_proj", FUSED_QKV, note="fused qkv_proj: q is its first slice"),
    "glm4": AttentionLayout("GLM-4", note="partial rotary comes after q is read"),
    "glm4_moe": AttentionLayout(
        "GLM-4-MoE",
        "q_norm",
        query_fallback="q_proj",
        note="q_norm per head where use_qk_norm is on, else q_proj; partial rotary comes after q is read",
    ),
    "olmo2": AttentionLayout("OLMo 2", "q_norm", note="q_norm over the whole projection (flat)"),
    "olmo3": AttentionLayout("OLMo 3", "q_norm", note=f"q_norm over the whole projection (flat); {_SLIDING}"),
    "smollm3": AttentionLayout("SmolLM3", note="NoPE layers (no rotary) read the same q"),
    "llama4_text": AttentionLayout("Llama 4 (text)", note="q before rotary, the L2 qk_norm and temperature tuning"),
    "llama4": AttentionLayout(
        "Llama 4",
        layers="language_model.model.layers",
        note=f"q before rotary, the L2 qk_norm and temperature tuning; {_VISION}",
    ),
    "deepseek_v3": AttentionLayout(
        "DeepSeek-V3",
        "q_b_proj",
        query_fallback="q_proj",
        query_head_dim="qk_head_dim",
        value_head_dim="v_head_dim",
        note="multi-head latent attention: phi reads the whole pre-rotary query head (nope + rope parts, "
        "qk_head_dim), q_b_proj's output (q_proj's without q_lora_rank); M maps to v_head_dim, the size of the head "
        "output o_proj reads",
    ),
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


def attention_geometry(model_config) -> dict[int, tuple[int, int, int]]:
    """(query heads, q head dim, value head dim) of each decoder layer with softmax attention, by layer index, from a
    model's config (a PretrainedConfig or config.json's dict), as its attention modules set them.

    ``layer_types`` marks the layers without softmax attention (``linear_attention``: no memory) and those with
    their own head size (``full_attention`` where the row names one). A dict is built into its transformers config
    class first, so that sizes the class derives (DeepSeek-V3's qk_head_dim) are there as the modules see them.
    """
    if isinstance(model_config, dict):
        from transformers import CONFIG_MAPPING

        attention_layout(model_config.get("model_type"))  # unsupported: the ValueError with the supported list
        model_config = CONFIG_MAPPING[model_config["model_type"]].from_dict(model_config)
    layout = attention_layout(model_config.model_type)
    text = model_config.get_text_config()
    heads = text.num_attention_heads
    types = getattr(text, "layer_types", None) or [None] * text.num_hidden_layers
    geometry = {}
    for index, kind in enumerate(types[: text.num_hidden_layers]):
        if kind == "linear_attention":
            continue
        own = kind == "full_attention" and layout.full_attention_head_dim
        own = own and getattr(text, layout.full_attention_head_dim, None)
        sizes = [
            own or getattr(text, name, None) or text.hidden_size // heads
            for name in (layout.query_head_dim, layout.value_head_dim)
        ]
        geometry[index] = (heads, *sizes)
    return geometry

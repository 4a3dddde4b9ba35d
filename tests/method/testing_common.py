"""The test matrix and an independent implementation of eq. 7 that the adapter is checked against.

Eq. 7 (arXiv 2506.13674), per query head h and token i of an adapted attention layer:

    o_i[h] = softmax_attention(q_i[h], K[h], V[h]) + phi(q_i[h]) @ M[h]

``eq7_hooks`` / ``eq7_logits`` compute it on a plain, unwrapped copy of the base model with two hooks per layer:
a forward hook on the module whose output is q before rotary embedding (QUERY_READ: q_proj, a q norm, a slice of
a fused qkv projection) captures q, and a forward pre-hook on o_proj adds ``einsum(phi(q), M)`` (plus the memory
bias, when the adapter has one) to o_proj's input. The term is computed in the memories' precision (the project
keeps them fp32, whatever the base model's dtype) and added in o_proj's input dtype. phi is written out here with
plain torch ops. Nothing from ``prefixmemory`` is used to compute the reference.
"""

from __future__ import annotations

import copy
import math
import re
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import torch
from peft import get_peft_model

import prefixmemory
from prefixmemory_study.tiny import ARCHITECTURES as TINY_MODELS

# Every feature map runs on these; every family in TINY_MODELS runs through FAMILY_CASES (test_families.py).
ARCHITECTURES = ("qwen2", "llama", "llama-gqa", "qwen3", "mistral")

# (id, PrefixMemoryConfig kwargs). mlp without feature_dim uses head_dim; mlp-f16 checks feature_dim != head_dim.
FEATURE_MAPS = (
    ("elu", dict(feature_map="elu")),
    ("gelu", dict(feature_map="gelu")),
    ("relu", dict(feature_map="relu")),
    ("mlp", dict(feature_map="mlp")),
    ("mlp-f16", dict(feature_map="mlp", feature_dim=16)),
)

TEST_CASES = [
    pytest.param(architecture, config_kwargs, id=f"{architecture}-{name}")
    for architecture in ARCHITECTURES
    for name, config_kwargs in FEATURE_MAPS
]

# One case per tiny model (family), the feature maps taken in turn, so that each map meets several families.
FAMILY_CASES = [
    pytest.param(architecture, FEATURE_MAPS[index % len(FEATURE_MAPS)][1], id=architecture)
    for index, architecture in enumerate(TINY_MODELS)
]

# Where q is read before rotary embedding and how that module's output holds it, written down here from
# transformers 5.5's modeling_<family>.py (not from the project's architecture table). "flat": (B,T,H*D) or
# (B,T,H,D); "heads_first": (B,H,T,D), Gemma 3 normalises q after its transpose; "qkv": the first H*D features of
# Phi-3's fused projection. Anything not listed reads q_proj's flat output.
QUERY_READ = {
    **dict.fromkeys(("qwen3", "qwen3_moe", "qwen3_vl", "gemma4", "gemma4_text"), ("q_norm", "flat")),
    **dict.fromkeys(("qwen3_5", "qwen3_5_text", "qwen3_5_moe", "qwen3_5_moe_text"), ("q_norm", "flat")),
    **dict.fromkeys(("olmo2", "olmo3"), ("q_norm", "flat")),  # one RMSNorm over all heads' features
    "glm4_moe": ("q_norm", "flat"),  # the tiny config turns use_qk_norm on
    **dict.fromkeys(("gemma3", "gemma3_text"), ("q_norm", "heads_first")),
    "phi3": ("qkv_proj", "qkv"),
    "deepseek_v3": ("q_b_proj", "flat"),  # q_lora_rank set: q_b_proj(q_a_layernorm(q_a_proj(x)))
}
QUERY_MODULE = {model_type: module for model_type, (module, _) in QUERY_READ.items()}

_ADAPTER_PARAM = re.compile(r"\.layers\.(\d+)\..*prefixmemory_(memory|kernel)\.([^.]+)\.(weight|bias)$")


@dataclass
class LayerAdapter:
    """The values of one adapter in one layer: M (H,F,D), its bias (H,1,D) or None, for mlp W (H,D,F), b (H,1,F)."""

    feature_map: str
    memory: torch.Tensor
    kernel_weight: torch.Tensor | None = None
    kernel_bias: torch.Tensor | None = None
    memory_bias: torch.Tensor | None = None


def geometry(model) -> tuple[int, int, int]:
    """(layers, query heads, head_dim) from the config; Qwen3's head_dim is not hidden_size / heads."""
    config = model.config.get_text_config()
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return config.num_hidden_layers, config.num_attention_heads, head_dim


def layer_geometry(config, index: int) -> tuple[int, int, int]:
    """(query heads, q head dim, output head dim) of decoder layer ``index``, from a model's config: DeepSeek-V3's
    query heads are nope + rope parts and its value heads v_head_dim; Gemma 4's full-attention layers use
    global_head_dim."""
    text = config.get_text_config()
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    if config.model_type == "deepseek_v3":
        return heads, text.qk_nope_head_dim + text.qk_rope_head_dim, text.v_head_dim
    if text.model_type == "gemma4_text" and text.layer_types[index] == "full_attention":
        return heads, text.global_head_dim, text.global_head_dim
    return heads, head_dim, head_dim


def attention_layers(config) -> list[int]:
    """Decoder layers with softmax attention, from a model's config: Qwen3.5's Gated DeltaNet layers (layer_types)
    have none."""
    text = config.get_text_config()
    types = getattr(text, "layer_types", None) if text.model_type.startswith("qwen3_5") else None
    return [i for i in range(text.num_hidden_layers) if types is None or types[i] == "full_attention"]


def decoder_layers(model):
    """The language model's decoder layers (a vision-language model's vision tower left out)."""
    decoder = model.get_decoder() or model.model  # transformers 4 CausalLMs may answer None
    return decoder.layers if hasattr(decoder, "layers") else decoder.model.layers  # Llama 4: a CausalLM


def random_adapter(
    model, feature_map: str, feature_dim: int | None = None, layers=None, seed: int = 1, scale=0.5, memory_bias=True
):
    """Random nonzero values for every adapted layer (bias included unless ``memory_bias`` is False)."""
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape, std):
        return torch.randn(*shape, generator=generator) * std

    values = {}
    for index in attention_layers(model.config) if layers is None else layers:
        heads, head_dim, value_dim = layer_geometry(model.config, index)
        features = feature_dim if feature_map == "mlp" and feature_dim else head_dim
        values[index] = LayerAdapter(feature_map, randn(heads, features, value_dim, std=scale))
        if feature_map == "mlp":
            values[index].kernel_weight = randn(heads, head_dim, features, std=1.0 / math.sqrt(head_dim))
            values[index].kernel_bias = randn(heads, 1, features, std=0.1)
        if memory_bias:
            values[index].memory_bias = randn(heads, 1, value_dim, std=scale)
    return values


def layer_tensors(values: dict[int, LayerAdapter]) -> dict[tuple[int, str, str], torch.Tensor]:
    """The test's adapter values keyed like ``adapter_params``: (layer, "memory" | "kernel", "weight" | "bias")."""
    tensors = {}
    for index, layer in values.items():
        tensors[index, "memory", "weight"] = layer.memory
        if layer.memory_bias is not None:
            tensors[index, "memory", "bias"] = layer.memory_bias
        if layer.kernel_weight is not None:
            tensors[index, "kernel", "weight"] = layer.kernel_weight
            tensors[index, "kernel", "bias"] = layer.kernel_bias
    return tensors


def adapter_params(peft_model, adapter_name: str = "default") -> dict[tuple[int, str, str], torch.nn.Parameter]:
    """The adapter's parameters, found by their (saved) names: ``...layers.{i}...prefixmemory_memory.{name}...``."""
    params = {}
    for name, param in peft_model.named_parameters():
        match = _ADAPTER_PARAM.search(name)
        if match is not None and match.group(3) == adapter_name:
            params[int(match.group(1)), match.group(2), match.group(4)] = param
    return params


@torch.no_grad()
def load_adapter_values(peft_model, values: dict[int, LayerAdapter], adapter_name: str = "default") -> None:
    """Copy ``values`` into the adapter's parameters; fails unless they are exactly the adapter's parameters."""
    params, tensors = adapter_params(peft_model, adapter_name), layer_tensors(values)
    assert sorted(params) == sorted(tensors), f"adapter parameters {sorted(params)}, test values {sorted(tensors)}"
    for key, param in params.items():
        assert param.shape == tensors[key].shape, f"{key}: {tuple(param.shape)} != {tuple(tensors[key].shape)}"
        param.copy_(tensors[key])


def with_leaves(values: dict[int, LayerAdapter]) -> dict[int, LayerAdapter]:
    """A copy of ``values`` whose tensors are fresh leaves that require grad (for reference gradients)."""

    def leaf(tensor):
        return None if tensor is None else tensor.detach().clone().requires_grad_(True)

    return {
        index: LayerAdapter(
            layer.feature_map,
            leaf(layer.memory),
            leaf(layer.kernel_weight),
            leaf(layer.kernel_bias),
            leaf(layer.memory_bias),
        )
        for index, layer in values.items()
    }


def phi_reference(layer: LayerAdapter, q: torch.Tensor) -> torch.Tensor:
    """phi written out with plain torch ops: (B,T,H,D) -> (B,T,H,F)."""
    if layer.feature_map == "elu":
        return torch.where(q > 0, q, torch.exp(q) - 1)
    if layer.feature_map == "gelu":
        return 0.5 * q * (1 + torch.erf(q / math.sqrt(2.0)))  # exact (erf) GELU, as torch's default
    if layer.feature_map == "relu":
        return torch.where(q > 0, q, torch.zeros_like(q))
    if layer.feature_map == "mlp":  # Remark 1: ReLU(W_h q + b_h), one W_h per head
        pre = torch.einsum("bthd,hdf->bthf", q, layer.kernel_weight) + layer.kernel_bias[:, 0]
        return torch.where(pre > 0, pre, torch.zeros_like(pre))
    raise AssertionError(layer.feature_map)


@contextmanager
def eq7_hooks(model, adapters: list[dict[int, LayerAdapter]]):
    """Add ``sum over adapters of phi(q) @ M`` to o_proj's input of each adapted layer of the plain ``model``.

    Yields a dict counting how many times each layer's term was added, so a test can check the hooks fired.
    """
    query_name, holds = QUERY_READ.get(model.config.model_type, ("q_proj", "flat"))
    handles, captured, fired = [], {}, {}
    for index in sorted(set().union(*adapters)):
        attention = decoder_layers(model)[index].self_attn
        heads, head_dim, _ = layer_geometry(model.config, index)

        def capture(module, args, output, index=index, heads=heads, head_dim=head_dim):
            if holds == "heads_first":
                output = output.transpose(1, 2)  # (B,H,T,D) -> (B,T,H,D)
            elif holds == "qkv":
                output = output[..., : heads * head_dim]  # q, k, v side by side: q first
            captured[index] = output.reshape(*output.shape[:2], heads, head_dim)  # (B,T,H*D) -> (B,T,H,D)

        def add_term(module, args, index=index):
            q = captured.pop(index)
            term = 0
            for adapter in adapters:
                if index in adapter:
                    layer = adapter[index]
                    features = phi_reference(layer, q.to(layer.memory.dtype))
                    term = term + torch.einsum("bthf,hfv->bthv", features, layer.memory)
                    if layer.memory_bias is not None:
                        term = term + layer.memory_bias[:, 0]  # (H,D), the same for every token
            fired[index] = fired.get(index, 0) + 1
            return (args[0] + term.reshape(args[0].shape).to(args[0].dtype), *args[1:])

        handles.append(getattr(attention, query_name).register_forward_hook(capture))
        handles.append(attention.o_proj.register_forward_pre_hook(add_term))
    try:
        yield fired
    finally:
        for handle in handles:
            handle.remove()


def eq7_logits(reference_model, adapters: list[dict[int, LayerAdapter]], input_ids, **kwargs) -> torch.Tensor:
    """Logits of eq. 7 computed on the plain ``reference_model`` (not wrapped, not modified)."""
    with eq7_hooks(reference_model, adapters) as fired, torch.no_grad():
        logits = reference_model(input_ids, **kwargs).logits
    assert sorted(fired) == sorted(set().union(*adapters)), "a reference hook did not fire"
    return logits


def build_peft(base, config_kwargs: dict, adapter_name: str = "default"):
    """``get_peft_model`` on ``base`` (modified in place) and a deep copy of the untouched base for references."""
    reference = copy.deepcopy(base)
    model = get_peft_model(base, prefixmemory.PrefixMemoryConfig(**config_kwargs), adapter_name=adapter_name)
    return model.eval(), reference.eval()


def build_adapted(base, config_kwargs: dict, **random_kwargs):
    """``build_peft`` plus random nonzero adapter values: (peft model, plain base copy, {layer: LayerAdapter})."""
    model, reference = build_peft(base, config_kwargs)
    feature_dim = config_kwargs.get("feature_dim")
    values = random_adapter(
        reference,
        config_kwargs["feature_map"],
        feature_dim,
        config_kwargs.get("layers"),
        memory_bias=config_kwargs.get("memory_bias", True),
        **random_kwargs,
    )
    load_adapter_values(model, values)
    return model, reference, values


def logits(model, input_ids, **kwargs) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids, **kwargs).logits


def adapter_param_names(model) -> list[str]:
    return [name for name, _ in model.named_parameters() if _ADAPTER_PARAM.search(name)]


def transformers_load_adapter(base, folder):
    """transformers' PEFT integration (PreTrainedModel.load_adapter); skipped where that transformers cannot run it
    with the installed PEFT (transformers 5.8 imports a PEFT helper that 0.18 lacks)."""
    try:
        base.load_adapter(str(folder))
    except ImportError as err:
        import transformers

        pytest.skip(f"transformers {transformers.__version__}'s load_adapter needs a newer PEFT ({err})")
    return base

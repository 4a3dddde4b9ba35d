"""The base model's geometry, read from its config.json: what a PrefixMemory adapter needs, before weights load.

Loading a model takes minutes at real sizes; the architecture, the layer count and the adapter's size are all
known from the config file, so a run that cannot work is refused (and an oversized one flagged) first.
"""

from __future__ import annotations

import json
import os
import re

from ...errors import PrefixMemoryError

# A PrefixMemory tensor in an adapter file: the layer, the module that reads q, which weight, which part of it.
_ADAPTER_TENSOR = re.compile(r"layers\.(\d+)\.\w+\.(\w+)\.prefixmemory_(memory|kernel)\.(weight|bias)$")


def read_model_config(model_name_or_path: str) -> dict | None:
    """The model folder's config.json as a dict; None for a hub id (its config is checked when it loads)."""
    path = os.path.join(model_name_or_path, "config.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except (OSError, ValueError) as err:
        raise PrefixMemoryError(f"`model_name_or_path` {path} is unreadable ({err}).") from None


def layer_geometry(model_config: dict) -> dict[int, tuple[int, int, int]] | None:
    """(query heads, q head dim, value head dim) per decoder layer with softmax attention, as the method reads them
    (``attention_geometry``: a vision-language model's text_config, DeepSeek-V3's qk/v head dims, Gemma 4's
    full-attention head_dim); None for a config without the decoder's sizes (nothing to compare against)."""
    from prefixmemory.architectures import attention_geometry, text_config

    if not {"hidden_size", "num_attention_heads", "num_hidden_layers"} <= set(text_config(model_config)):
        return None
    return attention_geometry(model_config)


def check_model_fits(model_config: dict, layers, model_name_or_path: str, source: str) -> None:
    """Refuse an architecture PrefixMemory has no layout for, and ``layers`` (named by ``source``) beyond its depth or
    without softmax attention (Qwen3.5's Gated DeltaNet layers)."""
    from prefixmemory.architectures import attention_layout, text_config

    try:
        attention_layout(model_config.get("model_type"))
    except ValueError as err:
        raise PrefixMemoryError(f"`model_name_or_path` {model_name_or_path}: {err}") from None
    model = f"the model in `model_name_or_path` {model_name_or_path}"
    num_layers = text_config(model_config).get("num_hidden_layers")
    out_of_range = [i for i in layers or () if num_layers is not None and i >= num_layers]
    if out_of_range:
        raise PrefixMemoryError(
            f"{source} {out_of_range} out of range: {model} has {num_layers} decoder layers (0-{num_layers - 1})."
        )
    geometry = layer_geometry(model_config) if layers else None
    without = [i for i in layers or () if geometry is not None and i not in geometry]
    if without:
        raise PrefixMemoryError(
            f"{source} {without}: those decoder layers of {model} have no softmax attention to add a memory to; its "
            f"attention layers are {_span(geometry)}."
        )


def check_adapter_fits(model_config: dict, saved, header: dict, model_name_or_path: str, where: str) -> None:
    """The tensors of a PrefixMemory adapter (names and shapes, from its safetensors header) fit this model: a place
    the family reads q at, every attention layer it adapts, each layer's heads and head sizes.

    ``saved`` is the adapter's PrefixMemoryConfig, ``where`` names the adapter (`adapter_name_or_path` run).
    """
    from prefixmemory.architectures import attention_layout

    found = [(match, entry["shape"]) for name, entry in header.items() if (match := _ADAPTER_TENSOR.search(name))]
    model = f"the model in `model_name_or_path` {model_name_or_path}"
    model_type = model_config.get("model_type")
    query_modules = attention_layout(model_type).query_modules
    read_at = sorted({match.group(2) for match, _ in found} - set(query_modules))
    if read_at:
        raise PrefixMemoryError(
            f"{where} was trained on another architecture: it reads q at {read_at[0]}, {model} (model_type "
            f"`{model_type}`) at {' or '.join(query_modules)}; use it with the model it was trained on."
        )
    layers = sorted({int(match.group(1)) for match, _ in found})
    check_model_fits(model_config, layers, model_name_or_path, f"{where} adapts layers")
    geometry = layer_geometry(model_config)
    if saved.layers is None and geometry is not None and layers and layers != sorted(geometry):
        raise PrefixMemoryError(
            f"{where} adapts layers {_span(layers)}, all attention layers of the model it was trained on; {model} "
            f"has attention layers {_span(geometry)}; use it with the model it was trained on."
        )
    if geometry is not None:
        _check_tensor_shapes(geometry, saved, found, model, where)


def check_recorded_model(model_config: dict, adapter_config: dict, model_name_or_path: str, where: str) -> None:
    """The base model an adapter records in adapter_config.json (`base_model_type`, `base_num_layers`,
    `base_num_heads`, `base_head_dim`; adapters saved before it was recorded have none) is this one, compared as the
    method compares it when the adapter loads."""
    from prefixmemory.config import base_model_differences
    from prefixmemory.loading import config_geometry

    ours = config_geometry(model_config) if layer_geometry(model_config) is not None else {}
    ours.setdefault("base_model_type", model_config.get("model_type"))
    differ = [f"{name[5:]} {saved} vs {value}" for name, saved, value in base_model_differences(adapter_config, ours)]
    if differ:
        raise PrefixMemoryError(
            f"{where} was made for another model: {'; '.join(differ)} (adapter vs the model in `model_name_or_path` "
            f"{model_name_or_path}); use it with the model it was trained on."
        )


def _check_tensor_shapes(geometry: dict, saved, found, model: str, where: str) -> None:
    """Each memory is (heads, feature_dim, value head dim), its bias (heads, 1, value head dim), the mlp kernel
    (heads, q head dim, feature_dim) and its bias (heads, 1, feature_dim), with the layer's heads and head sizes."""
    for match, shape in found:
        heads, head_dim, value_dim = geometry[int(match.group(1))]
        feature_dim = saved.feature_dim or head_dim
        wanted = {
            ("memory", "weight"): [heads, feature_dim, value_dim],
            ("memory", "bias"): [heads, 1, value_dim],
            ("kernel", "weight"): [heads, head_dim, feature_dim],
            ("kernel", "bias"): [heads, 1, feature_dim],
        }[match.group(3), match.group(4)]
        if list(shape) != wanted:
            sizes = f"head_dim {head_dim}" if head_dim == value_dim else f"q head dim {head_dim}, value {value_dim}"
            raise PrefixMemoryError(
                f"{where} does not fit {model}: `{match.group(0)}` is {list(shape)}, the model needs {wanted} "
                f"({heads} query heads, {sizes}); use it with the model it was trained on."
            )


def _span(layers) -> str:
    """``0-3`` for consecutive layers, else ``1, 3``."""
    layers = sorted(layers)
    consecutive = layers == list(range(layers[0], layers[-1] + 1))
    return f"{layers[0]}-{layers[-1]}" if consecutive and len(layers) > 1 else ", ".join(map(str, layers))


def _heads(model_config: dict) -> tuple[int, int, int, int]:
    from prefixmemory.architectures import text_config

    text = text_config(model_config)
    hidden, heads = text["hidden_size"], text["num_attention_heads"]
    kv_heads = text.get("num_key_value_heads") or heads
    head_dim = text.get("head_dim") or hidden // heads
    return hidden, heads, kv_heads, head_dim


def adapter_parameters(model_config: dict, peft_config) -> int:
    """Trainable parameters of the adapter: per adapted layer, M (heads x F x value head dim), its bias, the mlp
    kernel (heads x (q head dim x F + F)), with each layer's sizes."""
    from prefixmemory.feature_maps import takes_feature_dim

    geometry = layer_geometry(model_config) or {}  # none: model_parameters raises KeyError for that config
    total = 0
    for index in peft_config.layers or geometry:
        heads, head_dim, value_dim = geometry[index]
        feature_dim = peft_config.feature_dim or head_dim
        kernel = heads * (head_dim * feature_dim + feature_dim) if takes_feature_dim(peft_config.feature_map) else 0
        bias = heads * value_dim if peft_config.memory_bias else 0
        total += heads * feature_dim * value_dim + bias + kernel
    return total


def attention_parameters(model_config: dict) -> int:
    """Weights of the q, k, v and o projections over all decoder layers (biases left out)."""
    from prefixmemory.architectures import text_config

    hidden, heads, kv_heads, head_dim = _heads(model_config)
    return text_config(model_config)["num_hidden_layers"] * hidden * head_dim * (2 * heads + 2 * kv_heads)


def model_parameters(model_config: dict) -> int:
    """About the base model's parameter count: embeddings, (untied) head, attention and gated MLP weights."""
    from prefixmemory.architectures import text_config

    text = text_config(model_config)
    hidden, vocab = text["hidden_size"], text.get("vocab_size", 0)
    embeddings = vocab * hidden * (1 if model_config.get("tie_word_embeddings", False) else 2)
    mlp = text["num_hidden_layers"] * 3 * hidden * text.get("intermediate_size", 4 * hidden)
    return embeddings + attention_parameters(model_config) + mlp


def check_adapter_size(model_config: dict, peft_config, model_name_or_path: str) -> None:
    """Refuse an adapter with more parameters than the whole base model (`pmt_feature_dim` of 2**31 would only fail
    after the model has loaded, allocating it)."""
    try:
        adapter, model = adapter_parameters(model_config, peft_config), model_parameters(model_config)
    except (KeyError, TypeError):
        return  # a config without the usual keys: nothing to compare against
    if adapter > model:
        raise PrefixMemoryError(
            f"`pmt_feature_dim` {peft_config.feature_dim} makes an adapter of {adapter:,} parameters, more than the "
            f"whole model in `model_name_or_path` {model_name_or_path} (about {model:,}); choose a smaller "
            "`pmt_feature_dim` (default: head_dim)."
        )


def size_warning(model_config: dict, peft_config) -> str | None:
    """A warning when the adapter outgrows the attention projections it sits on (e.g. a huge `pmt_feature_dim`)."""
    try:
        adapter, attention = adapter_parameters(model_config, peft_config), attention_parameters(model_config)
        share = adapter / (adapter + model_parameters(model_config))
    except (KeyError, TypeError, ZeroDivisionError):
        return None  # a config without the usual keys: nothing to compare against
    if adapter <= attention:
        return None
    return (
        f"The PrefixMemory adapter has {adapter:,} trainable parameters ({share:.1%} of the model), more than the "
        f"model's attention projections ({attention:,}); check `pmt_feature_dim` and `pmt_layers`."
    )

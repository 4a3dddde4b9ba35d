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
_ADAPTER_TENSOR = re.compile(r"layers\.(\d+)\.self_attn\.(\w+)\.prefixmemory_(memory|kernel)\.(weight|bias)$")


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


def check_model_fits(model_config: dict, layers, model_name_or_path: str, source: str) -> None:
    """Refuse an architecture PrefixMemory has no layout for, and ``layers`` (named by ``source``) beyond its depth."""
    from prefixmemory.architectures import attention_layout

    try:
        attention_layout(model_config.get("model_type"))
    except ValueError as err:
        raise PrefixMemoryError(f"`model_name_or_path` {model_name_or_path}: {err}") from None
    num_layers = model_config.get("num_hidden_layers")
    out_of_range = [i for i in layers or () if num_layers is not None and i >= num_layers]
    if out_of_range:
        raise PrefixMemoryError(
            f"{source} {out_of_range} out of range: the model in `model_name_or_path` {model_name_or_path} has "
            f"{num_layers} decoder layers (0-{num_layers - 1})."
        )


def check_adapter_fits(model_config: dict, saved, header: dict, model_name_or_path: str, where: str) -> None:
    """The tensors of a PrefixMemory adapter (names and shapes, from its safetensors header) fit this model: the same
    place q is read (q_proj, or Qwen3's q_norm), every layer it adapts, the same heads and head_dim.

    ``saved`` is the adapter's PrefixMemoryConfig, ``where`` names the adapter (`adapter_name_or_path` run).
    """
    from prefixmemory.architectures import attention_layout

    found = [(match, entry["shape"]) for name, entry in header.items() if (match := _ADAPTER_TENSOR.search(name))]
    model = f"the model in `model_name_or_path` {model_name_or_path}"
    model_type = model_config.get("model_type")
    query_module = attention_layout(model_type).query_module
    read_at = sorted({match.group(2) for match, _ in found} - {query_module})
    if read_at:
        raise PrefixMemoryError(
            f"{where} was trained on another architecture: it reads q at {read_at[0]}, {model} (model_type "
            f"`{model_type}`) at {query_module}; use it with the model it was trained on."
        )
    num_layers = model_config.get("num_hidden_layers")
    layers = sorted({int(match.group(1)) for match, _ in found})
    check_model_fits(model_config, layers, model_name_or_path, f"{where} adapts layers")
    if saved.layers is None and num_layers is not None and layers and layers != list(range(num_layers)):
        raise PrefixMemoryError(
            f"{where} adapts layers 0-{layers[-1]}, all layers of the model it was trained on; {model} has "
            f"{num_layers} decoder layers; use it with the model it was trained on."
        )
    _check_tensor_shapes(model_config, saved, found, model, where)


def check_recorded_model(model_config: dict, adapter_config: dict, model_name_or_path: str, where: str) -> None:
    """The base model an adapter records in adapter_config.json (`base_model_type`, `base_num_layers`,
    `base_num_heads`, `base_head_dim`; adapters saved before it was recorded have none) is this one."""
    _, heads, _, head_dim = _heads(model_config)
    ours = {"model_type": model_config.get("model_type"), "num_layers": model_config.get("num_hidden_layers")}
    ours.update(num_heads=heads, head_dim=head_dim)
    differ = [
        f"{name} {recorded} vs {value}"
        for name, value in ours.items()
        if (recorded := adapter_config.get("base_" + name)) is not None and recorded != value
    ]
    if differ:
        raise PrefixMemoryError(
            f"{where} was made for another model: {'; '.join(differ)} (adapter vs the model in `model_name_or_path` "
            f"{model_name_or_path}); use it with the model it was trained on."
        )


def _check_tensor_shapes(model_config: dict, saved, found, model: str, where: str) -> None:
    """Each memory is (heads, feature_dim, head_dim), its bias (heads, 1, head_dim), the mlp kernel (heads, head_dim,
    feature_dim) and its bias (heads, 1, feature_dim), with this model's heads and head_dim."""
    _, heads, _, head_dim = _heads(model_config)
    feature_dim = saved.feature_dim or head_dim
    expected = {
        ("memory", "weight"): [heads, feature_dim, head_dim],
        ("memory", "bias"): [heads, 1, head_dim],
        ("kernel", "weight"): [heads, head_dim, feature_dim],
        ("kernel", "bias"): [heads, 1, feature_dim],
    }
    for match, shape in found:
        wanted = expected[match.group(3), match.group(4)]
        if list(shape) != wanted:
            raise PrefixMemoryError(
                f"{where} does not fit {model}: `{match.group(0)}` is {list(shape)}, the model needs {wanted} "
                f"({heads} query heads, head_dim {head_dim}); use it with the model it was trained on."
            )


def _heads(model_config: dict) -> tuple[int, int, int, int]:
    hidden, heads = model_config["hidden_size"], model_config["num_attention_heads"]
    kv_heads = model_config.get("num_key_value_heads") or heads
    head_dim = model_config.get("head_dim") or hidden // heads
    return hidden, heads, kv_heads, head_dim


def adapter_parameters(model_config: dict, peft_config) -> int:
    """Trainable parameters of the adapter: per adapted layer, M (heads x F x head_dim), its bias, the mlp kernel."""
    from prefixmemory.feature_maps import takes_feature_dim

    _, heads, _, head_dim = _heads(model_config)
    layers = len(peft_config.layers) if peft_config.layers else model_config["num_hidden_layers"]
    feature_dim = peft_config.feature_dim or head_dim
    kernel = heads * (head_dim * feature_dim + feature_dim) if takes_feature_dim(peft_config.feature_map) else 0
    bias = heads * head_dim if peft_config.memory_bias else 0
    return layers * (heads * feature_dim * head_dim + bias + kernel)


def attention_parameters(model_config: dict) -> int:
    """Weights of the q, k, v and o projections over all decoder layers (biases left out)."""
    hidden, heads, kv_heads, head_dim = _heads(model_config)
    return model_config["num_hidden_layers"] * hidden * head_dim * (2 * heads + 2 * kv_heads)


def model_parameters(model_config: dict) -> int:
    """About the base model's parameter count: embeddings, (untied) head, attention and gated MLP weights."""
    hidden, vocab = model_config["hidden_size"], model_config.get("vocab_size", 0)
    embeddings = vocab * hidden * (1 if model_config.get("tie_word_embeddings", False) else 2)
    mlp = model_config["num_hidden_layers"] * 3 * hidden * model_config.get("intermediate_size", 4 * hidden)
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

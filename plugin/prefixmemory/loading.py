"""What a loading adapter must satisfy: made for this model, every memory present and expected, all finite.

PEFT only warns about missing adapter keys and drops unexpected ones; transformers' load_adapter only reports them.
An adapter that does not fit would then run as the base model, or with some layers' memories left at zero, and
one holding NaN would poison every output. These checks refuse it, in one line, before it is used.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from .architectures import attention_geometry, text_config

# ``...layers.{i}.self_attn.{q_proj|q_norm}.prefixmemory_{memory|kernel}.{adapter}.{weight|bias}``
_ADAPTER_KEY = re.compile(r"(?:^|\.)prefixmemory_(?:memory|kernel)\.([^.]+)\.[^.]+$")
_WRAPPERS = re.compile(r"(?:_fsdp_wrapped_module|_checkpoint_wrapped_module|_orig_mod)\.")
# the same, as saved: ``...prefixmemory_{memory|kernel}.{weight|bias}``
_SAVED_KEY = re.compile(r"(\.prefixmemory_(?:memory|kernel))(\.[^.]+)$")


class AdapterWeights(nn.Module):
    """Base of the modules holding one adapter's weights in one layer (M and its bias, the mlp kernel).

    Every loader is checked for NaN and inf here, before a value lands: those that set new parameters
    (transformers 5's load_adapter) and those that copy through ``load_state_dict`` without the tuner around the
    model (transformers 4's load_adapter); the tuner also checks the fit first (check_state_dict).
    """

    key = ""  # the module's name in the model, for messages; set by the layer that owns it

    def register_parameter(self, name: str, param: nn.Parameter | None) -> None:
        if param is not None and name in self._parameters:  # a loader replacing a weight
            check_finite(param, f"{self.key}.{name}")
        super().register_parameter(name, param)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in self._parameters:
            if (tensor := state_dict.get(prefix + name)) is not None:
                check_finite(tensor, prefix + name)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def check_finite(tensor: torch.Tensor, key: str) -> None:
    """Refuse an adapter tensor holding NaN or inf, naming the adapter and the tensor.

    Plain tensors only: a sharded or meta one (a distributed checkpoint, an empty init) is not an adapter file.
    """
    if type(tensor) not in (torch.Tensor, nn.Parameter) or tensor.is_meta or torch.isfinite(tensor).all():
        return
    found = "NaN" if torch.isnan(tensor).any() else "inf"
    match = _ADAPTER_KEY.search(key)
    adapter = match.group(1) if match else "?"
    raise ValueError(f"PrefixMemory adapter `{adapter}` holds {found} in `{key}`: retrain it or load another one.")


def with_adapter_name(key: str, adapter_name: str) -> str:
    """A saved adapter key with the adapter's name put in, as the model names it; other keys unchanged."""
    return _SAVED_KEY.sub(lambda match: f"{match.group(1)}.{adapter_name}{match.group(2)}", key)


def check_state_dict(tuner: nn.Module, state_dict: dict, prefix: str) -> None:
    """Refuse PrefixMemory weights that do not fit ``tuner``'s memories or hold NaN or inf, before any is copied.

    Missing or unexpected keys and other shapes do not fit. Only adapters the state dict holds keys for are checked,
    so loading one adapter beside others is fine. Names are compared without the segments FSDP, activation
    checkpointing and torch.compile insert.
    """
    given: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state_dict.items():
        match = _ADAPTER_KEY.search(key) if key.startswith(prefix) else None
        if match:
            given.setdefault(match.group(1), {})[_WRAPPERS.sub("", key)] = tensor
    expected: dict[str, dict[str, torch.Tensor]] = {}
    for name, param in tuner.named_parameters():
        match = _ADAPTER_KEY.search(name)
        if match and match.group(1) in given:
            expected.setdefault(match.group(1), {})[_WRAPPERS.sub("", prefix + name)] = param
    for adapter, tensors in given.items():
        if adapter in expected:  # else a wrapper (FSDP's flat parameters) hides the memories: nothing to compare
            _check_fit(adapter, tensors, expected[adapter])
        for key, tensor in tensors.items():
            check_finite(tensor, key)


def _check_fit(adapter: str, given: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    missing, unexpected = sorted(expected.keys() - given.keys()), sorted(given.keys() - expected.keys())
    if missing or unexpected:
        found = [f"{len(missing)} missing (`{missing[0]}`)"] if missing else []
        found += [f"{len(unexpected)} unexpected (`{unexpected[0]}`)"] if unexpected else []
        raise ValueError(
            f"PrefixMemory adapter `{adapter}` does not fit this model: of its weights, {' and '.join(found)}."
        )
    for key, tensor in given.items():
        param = expected[key]
        # A sharded parameter (ZeRO-3, FSDP) is flat: only a parameter of the tensor's rank shows the model's shape.
        if param.dim() == tensor.dim() and param.shape != tensor.shape:
            raise ValueError(
                f"PrefixMemory adapter `{adapter}` does not fit this model: `{key}` is {tuple(tensor.shape)}, this "
                f"model's {tuple(param.shape)}."
            )


def attention_blocks(model: nn.Module, layout) -> dict[int, nn.Module]:
    """The attention block of each decoder layer that has one, by layer index (``layout``: an AttentionLayout)."""
    key = layout.attention_key()
    return {int(match.group(1)): module for name, module in model.named_modules() if (match := key.search(name))}


def model_geometry(model_config: dict, attentions: dict[int, nn.Module], layout) -> dict:
    """The base model facts an adapter's shapes depend on, under PrefixMemoryConfig's field names.

    Heads and head_dim are read from the first attention block, as the layers are built, never from
    hidden_size / heads.
    """
    attention = attentions[min(attentions)] if attentions else None
    return {
        "base_model_type": model_config.get("model_type"),
        "base_num_layers": text_config(model_config).get("num_hidden_layers"),
        "base_num_heads": None if attention is None else attention.config.num_attention_heads,
        "base_head_dim": None if attention is None else getattr(attention, layout.query_head_dim),
    }


def config_geometry(model_config: dict) -> dict:
    """``model_geometry`` read from config.json's dict alone (before any weight loads): the same facts, the heads and
    head_dim of the first layer with softmax attention as its module sets them (``attention_geometry``)."""
    layers = attention_geometry(model_config)
    heads, head_dim, _ = layers[min(layers)] if layers else (None, None, None)
    return {
        "base_model_type": model_config.get("model_type"),
        "base_num_layers": text_config(model_config).get("num_hidden_layers"),
        "base_num_heads": heads,
        "base_head_dim": head_dim,
    }

"""Adapter folders read by a run (`adapter_name_or_path`, a checkpoint to resume, an export's adapter): present,
whole, consistent, finite.

Checked from adapter_config.json, the safetensors header and (small) the tensors themselves, so a bad adapter is
refused before the model loads, with the file named, instead of surfacing as a hub lookup, a header parse error,
an optimizer mismatch, a loss of 0.0 from a NaN, or a generation thread that dies on inf.
"""

from __future__ import annotations

import json
import os
import struct
from typing import NamedTuple

from ...errors import PrefixMemoryError
from .. import ADAPTER_SUBFOLDERS
from ..options import PMT_KEYS

CONFIG_NAME, WEIGHTS_NAMES = "adapter_config.json", ("adapter_model.safetensors", "adapter_model.bin")
ADAPTER_PEFT_TYPES = {"prefixmemory": "PREFIXMEMORY", "prefix": "PREFIX_TUNING"}


class AdapterFiles(NamedTuple):
    """A local adapter folder as read before loading: its config, its weights file and (safetensors) its header."""

    path: str
    config: dict
    weights: str
    header: dict | None


def read_adapter(path: str, key: str = "adapter_name_or_path") -> AdapterFiles:
    """The local adapter folder ``path``, after checking its weights file is whole; ``key`` names it in errors."""
    if not os.path.isdir(path):
        raise PrefixMemoryError(f"`{key}` {path} is not a folder.")
    config_file = os.path.join(path, CONFIG_NAME)
    weights = [os.path.join(path, name) for name in WEIGHTS_NAMES if os.path.isfile(os.path.join(path, name))]
    if not os.path.isfile(config_file) or not weights:
        missing = CONFIG_NAME if not os.path.isfile(config_file) else WEIGHTS_NAMES[0]
        raise PrefixMemoryError(f"`{key}` {path} has no {missing}: not a saved adapter (or one whose save failed).")
    header = _safetensors_header(weights[0], key) if weights[0].endswith(".safetensors") else None
    try:
        with open(config_file, encoding="utf-8") as file:
            return AdapterFiles(path, json.load(file), weights[0], header)
    except ValueError as err:
        raise PrefixMemoryError(f"`{key}` {config_file} is not valid JSON ({err}).") from None


def read_adapter_config(path: str, key: str = "adapter_name_or_path") -> dict:
    """adapter_config.json of the local adapter folder ``path``, after checking its weights file is whole."""
    return read_adapter(path, key).config


def _safetensors_header(file: str, key: str) -> dict:
    """The parsed header, once it parses and the file is as long as it says (a truncated copy is not)."""
    size = os.path.getsize(file)
    try:
        with open(file, "rb") as handle:
            (header_size,) = struct.unpack("<Q", handle.read(8))
            if header_size > size - 8:
                raise ValueError("header longer than the file")
            header = json.loads(handle.read(header_size))
        end = max((entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"), default=0)
    except (struct.error, ValueError, KeyError, TypeError, IndexError) as err:
        raise PrefixMemoryError(f"`{key}` {file} is not a readable safetensors file ({err}).") from None
    if 8 + header_size + end > size:
        raise PrefixMemoryError(
            f"`{key}` {file} is truncated: {size:,} bytes, its header describes {8 + header_size + end:,}."
        )
    return header


def check_adapter_type(adapter: AdapterFiles, method: str, key: str) -> None:
    """The folder holds an adapter of ``method`` (a LoRA one given for prefixmemory is named as such)."""
    peft_type = adapter.config.get("peft_type")
    if peft_type != ADAPTER_PEFT_TYPES[method]:
        raise PrefixMemoryError(f"`{key}` {adapter.path} holds a {peft_type} adapter, not a {method} one.")


def saved_config(adapter: AdapterFiles, key: str):
    """The adapter's PrefixMemoryConfig, read as PEFT reads it when loading; a bad value is named with the file."""
    from prefixmemory import PrefixMemoryConfig

    try:
        return PrefixMemoryConfig.from_pretrained(adapter.path)
    except (ValueError, TypeError) as err:
        raise PrefixMemoryError(f"`{key}` {os.path.join(adapter.path, CONFIG_NAME)}: {err}") from None


def check_finite(adapter: AdapterFiles, key: str) -> None:
    """Every tensor of a safetensors adapter is finite: a NaN trains to a loss of 0.0, an inf kills generation."""
    import torch
    from safetensors import safe_open

    if adapter.header is None:
        return  # a pickled adapter_model.bin is only read by PEFT's own loader
    with safe_open(adapter.weights, framework="pt") as tensors:
        for name in tensors.keys():
            tensor = tensors.get_tensor(name)
            if not tensor.is_floating_point():
                continue
            bad = (~torch.isfinite(tensor)).sum().item()
            if bad:
                kind = "NaN" if torch.isnan(tensor).any() else "inf"
                raise PrefixMemoryError(
                    f"`{key}` {adapter.weights} holds {kind} in `{name}` ({bad:,} of {tensor.numel():,} values "
                    "not finite): the adapter is damaged; use an earlier checkpoint or train it again."
                )


def export_adapter(model_name_or_path) -> tuple[str, str] | None:
    """(method, adapter folder) when ``model_name_or_path`` is a folder written by our export, else None."""
    for method, subfolder in ADAPTER_SUBFOLDERS.items():
        folder = os.path.join(str(model_name_or_path), subfolder)
        if os.path.isfile(os.path.join(folder, CONFIG_NAME)):
            return method, folder
    return None


def pmt_disagreements(peft_config, adapter_config: dict, keys) -> list[str]:
    """``key: ours vs theirs`` for each of ``keys`` (pmt_* names) where the two configs differ."""
    from prefixmemory import PrefixMemoryConfig
    from prefixmemory.config import options

    saved = PrefixMemoryConfig.check_kwargs(**adapter_config)  # read as loading reads it (no memory_bias: none)
    none_reads = {option.name: option.metadata.get("none") for option in options()}
    found = []
    for key in keys:
        name = PMT_KEYS[key]
        ours, theirs = getattr(peft_config, name), saved.get(name)
        if ours != theirs:
            found.append(f"`{key}` {_shown(ours, none_reads[name])} vs {_shown(theirs, none_reads[name])}")
    return found


def _shown(value, none_reads: str | None) -> str:
    """A config value as a user writes it: None reads as the option says (`all` layers, `head_dim`)."""
    if value is None:
        return str(none_reads)
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)

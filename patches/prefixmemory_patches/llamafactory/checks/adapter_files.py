"""Adapter folders read by a run (`adapter_name_or_path`, a checkpoint to resume): present, whole, consistent.

Checked from adapter_config.json and the safetensors header only, so a bad adapter is refused before the model
loads, with the file named, instead of surfacing as a hub lookup, a header parse error or an optimizer mismatch.
"""

from __future__ import annotations

import json
import os
import struct

from ...errors import PrefixMemoryError
from ..options import PMT_KEYS

CONFIG_NAME, WEIGHTS_NAMES = "adapter_config.json", ("adapter_model.safetensors", "adapter_model.bin")


def read_adapter_config(path: str, key: str = "adapter_name_or_path") -> dict:
    """adapter_config.json of the local adapter folder ``path``, after checking its weights file is whole."""
    if not os.path.isdir(path):
        raise PrefixMemoryError(f"`{key}` {path} is not a folder.")
    config_file = os.path.join(path, CONFIG_NAME)
    weights = [os.path.join(path, name) for name in WEIGHTS_NAMES if os.path.isfile(os.path.join(path, name))]
    if not os.path.isfile(config_file) or not weights:
        missing = CONFIG_NAME if not os.path.isfile(config_file) else WEIGHTS_NAMES[0]
        raise PrefixMemoryError(f"`{key}` {path} has no {missing}: not a saved adapter (or one whose save failed).")
    if weights[0].endswith(".safetensors"):
        _check_safetensors_whole(weights[0], key)
    try:
        with open(config_file, encoding="utf-8") as file:
            return json.load(file)
    except ValueError as err:
        raise PrefixMemoryError(f"`{key}` {config_file} is not valid JSON ({err}).") from None


def _check_safetensors_whole(file: str, key: str) -> None:
    """The header parses and the file is as long as the header says (a truncated copy is not)."""
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

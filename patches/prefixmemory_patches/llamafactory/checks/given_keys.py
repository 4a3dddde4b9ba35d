"""The arguments as the user wrote them (YAML keys or ``--key value``), before dataclasses fill in defaults.

Only here can a key set to its default value (``lora_rank: 8``) be told apart from one left out, and the
fine-tuning type be read case-insensitively before upstream's choices refuse ``PrefixMemory``.
"""

from __future__ import annotations

from dataclasses import fields

from ...errors import PrefixMemoryError
from .. import OUR_TYPES
from ..options import METHOD_ARGUMENTS

FINETUNING_TYPES = ("lora", "oft", "freeze", "full", *OUR_TYPES)


def given_values(args) -> dict:
    """The keys present in a parsed YAML dict or an argv list, with the values as written."""
    if isinstance(args, dict):
        return dict(args)
    given = {}
    for index, item in enumerate(args):
        if isinstance(item, str) and item.startswith("--"):
            key, equals, value = item[2:].partition("=")
            following = args[index + 1] if index + 1 < len(args) else True
            given[key] = value if equals else (True if str(following).startswith("--") else following)
    return given


def normalize_finetuning_type(args):
    """``args`` with `finetuning_type` lower-cased; a value outside the known types is refused with the list."""
    if isinstance(args, dict):
        if "finetuning_type" in args:
            args = {**args, "finetuning_type": _checked_type(args["finetuning_type"])}
        return args
    args = list(args)
    for index, item in enumerate(args):
        if item == "--finetuning_type" and index + 1 < len(args):
            args[index + 1] = _checked_type(args[index + 1])
        elif isinstance(item, str) and item.startswith("--finetuning_type="):
            args[index] = "--finetuning_type=" + _checked_type(item.split("=", 1)[1])
    return args


def _checked_type(value) -> str:
    name = str(value).strip().lower()
    if name not in FINETUNING_TYPES:
        raise PrefixMemoryError(f"`finetuning_type` {value!r} is unknown; choose one of {', '.join(FINETUNING_TYPES)}")
    return name


def check_method_keys(given: dict) -> None:
    """Refuse a key of another method that is present at all, whatever its value (`lora_rank: 8` included)."""
    from llamafactory.hparams.finetuning_args import FreezeArguments, LoraArguments, OFTArguments

    finetuning_type = given.get("finetuning_type", "lora")
    for method, cls in METHOD_ARGUMENTS.items():
        present = [f.name for f in fields(cls) if f.name in given]
        if present and method != finetuning_type:
            raise PrefixMemoryError(f"`{present[0]}` is only valid with finetuning_type: {method}.")
    if finetuning_type not in OUR_TYPES:
        return
    for cls in (LoraArguments, OFTArguments, FreezeArguments):
        present = [f.name for f in fields(cls) if f.name in given]
        if present:
            raise PrefixMemoryError(
                f"`{present[0]}` does not apply to finetuning_type: {finetuning_type} (got {given[present[0]]!r})."
            )

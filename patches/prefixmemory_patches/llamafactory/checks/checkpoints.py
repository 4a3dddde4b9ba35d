"""Checkpoint folders: which are complete, and which one a resume may use.

The HF Trainer writes a checkpoint in this order: adapter (adapter_config.json, adapter_model.safetensors),
optimizer, scheduler, RNG state, and trainer_state.json last. A folder is complete when the adapter files and a
parseable trainer_state.json are there; a run killed mid-write leaves one that is not, and resuming from it fails
after the model has loaded. Automatic resume (any fine-tuning type) skips folders without a parseable
trainer_state.json; an explicit resume from an incomplete one is refused.
"""

from __future__ import annotations

import json
import os
import re

from ...errors import PrefixMemoryError

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
ADAPTER_CHECKPOINT_FILES = ("adapter_config.json", "adapter_model.safetensors", "trainer_state.json")
WRITTEN_LAST = ("trainer_state.json",)


def missing_files(folder: str, required=ADAPTER_CHECKPOINT_FILES) -> list[str]:
    """The ``required`` files ``folder`` lacks; a trainer_state.json that does not parse counts as missing."""
    missing = [name for name in required if not os.path.isfile(os.path.join(folder, name))]
    if "trainer_state.json" in required and "trainer_state.json" not in missing:
        try:
            with open(os.path.join(folder, "trainer_state.json"), encoding="utf-8") as file:
                json.load(file)
        except (OSError, ValueError):
            missing.append("trainer_state.json (truncated)")
    return missing


def last_complete_checkpoint(output_dir: str, required=ADAPTER_CHECKPOINT_FILES) -> str | None:
    """The ``checkpoint-N`` folder of ``output_dir`` with the highest N that has the ``required`` files, or None."""
    if not os.path.isdir(output_dir):
        return None
    steps = sorted(
        (int(match.group(1)), name)
        for name in os.listdir(output_dir)
        if (match := _CHECKPOINT.match(name)) and os.path.isdir(os.path.join(output_dir, name))
    )
    for _, name in reversed(steps):
        if not missing_files(os.path.join(output_dir, name), required):
            return os.path.join(output_dir, name)
    return None


def check_resumable(checkpoint: str) -> None:
    """Refuse an explicit `resume_from_checkpoint` that is not a complete checkpoint, naming what to use instead."""
    if not os.path.isdir(checkpoint):
        raise PrefixMemoryError(f"`resume_from_checkpoint` {checkpoint} is not a folder.")
    missing = missing_files(checkpoint)
    if not missing:
        return
    complete = last_complete_checkpoint(os.path.dirname(os.path.abspath(checkpoint)))
    advice = f"the last complete one is {complete}" if complete else "no complete checkpoint sits next to it"
    raise PrefixMemoryError(
        f"`resume_from_checkpoint` {checkpoint} is incomplete (a run stopped while writing it): missing "
        f"{', '.join(missing)}; {advice}."
    )

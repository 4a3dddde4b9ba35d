"""Checkpoint folders: which are complete, and which one a resume may use.

The HF Trainer writes a checkpoint in this order: adapter (adapter_config.json, adapter_model.safetensors),
optimizer, scheduler, RNG state, and trainer_state.json last. A folder is complete when the adapter files and a
parseable trainer_state.json are there; a run killed mid-write leaves one that is not, and resuming from it fails
after the model has loaded. Automatic resume (any fine-tuning type) skips folders without a parseable
trainer_state.json, and for our adapters also those without the adapter files; `resume_from_checkpoint: true`
means the same automatic choice, then checked as an explicit path; an explicit resume from an incomplete one is
refused. The optimizer, scheduler and RNG files a resume loads are checked to be whole archives first: a damaged
one fails inside the Trainer with an OSError that names no file.
"""

from __future__ import annotations

import json
import os
import re
import zipfile

from ...errors import PrefixMemoryError
from .. import OUR_TYPES

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
ADAPTER_CHECKPOINT_FILES = ("adapter_config.json", "adapter_model.safetensors", "trainer_state.json")
WRITTEN_LAST = ("trainer_state.json",)
_PICKLE_PROTOCOL_2 = b"\x80\x02"  # how torch.save's legacy (non-zip) format begins


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


def choose_checkpoint(training_args, finetuning_args, logger) -> None:
    """Resolve `resume_from_checkpoint: true` (or "True", "true") to the last complete checkpoint in `output_dir`, as
    an explicit path; for our adapters, replace an automatic choice that lacks the adapter files."""
    value, output_dir = training_args.resume_from_checkpoint, training_args.output_dir
    ours = finetuning_args.finetuning_type in OUR_TYPES
    required = ADAPTER_CHECKPOINT_FILES if ours else WRITTEN_LAST
    if str(value).lower() in ("true", "false") and not os.path.isdir(str(value)):
        if str(value).lower() == "false":
            training_args.resume_from_checkpoint = None
            return
        chosen = _last_complete_or_refuse(
            output_dir,
            required,
            f"`resume_from_checkpoint` {value}: `output_dir` {output_dir} holds no complete checkpoint "
            f"(one with {', '.join(required)}); give a checkpoint folder, or drop the key to start anew.",
        )
        logger.info_rank0(f"`resume_from_checkpoint: {value}`: the last complete checkpoint is {chosen}.")
        training_args.resume_from_checkpoint = chosen
    elif ours and value is not None and "resume_from_checkpoint" not in getattr(finetuning_args, "given_keys", ()):
        missing = missing_files(value)
        if missing:
            chosen = _last_complete_or_refuse(
                output_dir,
                ADAPTER_CHECKPOINT_FILES,
                f"`output_dir` {output_dir} holds no complete checkpoint to resume from ({value} lacks "
                f"{', '.join(missing)}); set `overwrite_output_dir: true` or a new `output_dir`.",
            )
            logger.info_rank0(f"{value} lacks {', '.join(missing)}: resuming from {chosen} instead.")
            training_args.resume_from_checkpoint = chosen


def _last_complete_or_refuse(output_dir: str, required, refusal: str) -> str:
    chosen = last_complete_checkpoint(output_dir, required)
    if chosen is None:
        raise PrefixMemoryError(refusal)
    return chosen


def check_state_files(checkpoint: str, key: str) -> None:
    """The optimizer, scheduler, scaler and RNG files of ``checkpoint`` are whole torch.save archives."""
    for name in sorted(os.listdir(checkpoint)):
        file = os.path.join(checkpoint, name)
        if not name.endswith((".pt", ".pth")) or not os.path.isfile(file):
            continue
        try:
            with zipfile.ZipFile(file) as archive:
                damaged = archive.testzip()  # reads every member: CRC-32 of each
            reason = f"member {damaged} fails its checksum" if damaged else None
        except zipfile.BadZipFile as err:
            with open(file, "rb") as handle:
                legacy = handle.read(2) == _PICKLE_PROTOCOL_2
            reason = None if legacy else f"not a torch.save archive: {err}"
        except OSError as err:
            reason = str(err)
        if reason:
            raise PrefixMemoryError(
                f"`{key}` {file} is damaged ({reason}); resume from another checkpoint, or start anew with a new "
                "`output_dir`."
            )

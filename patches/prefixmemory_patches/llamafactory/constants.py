"""Web UI constants.

| LLaMA-Factory name              | change              | why                                              |
|---------------------------------|---------------------|--------------------------------------------------|
| extras.constants.METHODS        | + prefixmemory      | the Finetuning method dropdown                   |
| extras.constants.PEFT_METHODS   | + prefixmemory      | checkpoints are adapters (train, chat, export)   |
"""

from . import PMT, mark_patched


def patch_constants(constants) -> None:
    """Add prefixmemory in place: the web UI binds these containers by reference at import time."""
    if not mark_patched(constants, "methods"):
        return
    if PMT not in constants.METHODS:
        constants.METHODS.append(PMT)
    constants.PEFT_METHODS.add(PMT)

"""Bends ``llamafactory.extras.constants``: the web UI's method lists.

| LLaMA-Factory name              | change              | why                                              |
|---------------------------------|---------------------|--------------------------------------------------|
| extras.constants.METHODS        | + prefixmemory, prefix | the Finetuning method dropdown                |
| extras.constants.PEFT_METHODS   | + prefixmemory, prefix | checkpoints are adapters (train, chat, export) |
"""

from ...seams import Seam, bends
from .. import OUR_TYPES, mark_patched


@bends(Seam("METHODS", container=list), Seam("PEFT_METHODS", container=set))
def patch_constants(constants) -> None:
    """Add our methods in place: the web UI binds these containers by reference at import time."""
    if not mark_patched(constants, "methods"):
        return
    for method in OUR_TYPES:
        if method not in constants.METHODS:
            constants.METHODS.append(method)
        constants.PEFT_METHODS.add(method)

"""A reference model for DPO/KTO that continue from a PrefixMemory adapter, without a second model copy.

Preference losses compare the policy with a reference. Starting from an SFT adapter the reference must be the
SFT model, yet ``disable_adapter()`` gives the bare base (a mistake LLaMA-Factory users have run into).
PMT cannot be merged into the base weights, so each layer keeps a frozen copy of the starting memories (the
adapter's size, a few MB) and the reference forward switches to them.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager

from peft import PeftModel

from .layer import PrefixMemoryLayer


def attach_reference(model: PeftModel) -> PeftModel:
    """Freeze a copy of the current memories as the reference; ``model.disable_adapter()`` then selects it."""
    layers = [module for module in model.modules() if isinstance(module, PrefixMemoryLayer)]
    for layer in layers:
        layer.snapshot_reference()
    model.disable_adapter = functools.partial(_reference_memories, layers)  # what DPO/KTO trainers call
    return model


@contextmanager
def _reference_memories(layers: list[PrefixMemoryLayer]):
    for layer in layers:
        layer.use_reference = True
    try:
        yield
    finally:
        for layer in layers:
            layer.use_reference = False

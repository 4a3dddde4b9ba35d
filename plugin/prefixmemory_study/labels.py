"""One map from a method's name (LLaMA-Factory finetuning_type or PEFT peft_type) to its label in tables and plots."""

from __future__ import annotations

METHOD_LABELS = {
    "prefixmemory": "PMT",
    "lora": "LoRA",
    "full": "Full",
    "freeze": "Freeze",
    "prefix": "Prefix",
    "prefix_tuning": "Prefix",  # PEFT's PREFIX_TUNING
}


def method_label(name: str) -> str:
    """``prefixmemory`` / ``PREFIXMEMORY`` -> ``PMT``, ``lora`` / ``LORA`` -> ``LoRA``, ...; an unknown name as is."""
    return METHOD_LABELS.get(str(name).lower(), name)

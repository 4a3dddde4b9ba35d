"""Entry point of the ``vllm.general_plugins`` group: vLLM calls ``register`` in every process it starts."""

from . import ARCHITECTURES


def register() -> None:
    """Register the PrefixMemory architectures lazily: their model code is imported only when one is served."""
    from vllm import ModelRegistry

    for architecture in ARCHITECTURES.values():
        if architecture not in ModelRegistry.get_supported_archs():
            ModelRegistry.register_model(architecture, f"prefixmemory_vllm.models:{architecture}")

"""Serving PrefixMemory-Tuning models with vLLM: a ``vllm.general_plugins`` entry point and the folder format.

This module and ``convert`` import no vLLM: the LLaMA-Factory export writes the format through ``convert`` in an
environment without vLLM. ``families`` says which vLLM classes each family extends and ``seams`` checks them against
vLLM's source; ``plugin`` registers the architectures with vLLM; ``models`` and ``memory`` run inside it.
"""

from .families import SERVED

# base architecture of config.json -> the PrefixMemory variant this plugin registers with vLLM
ARCHITECTURES = {family.architecture: family.memory_architecture for family in SERVED.values()}
CONFIG_KEY = "prefix_memory"  # the config.json entry that describes the memories
WEIGHTS_FILE = "prefixmemory.safetensors"  # the memories, beside the base weights

"""Serving PrefixMemory-Tuning models with vLLM: a ``vllm.general_plugins`` entry point and the folder format.

This module and ``convert`` import no vLLM: the LLaMA-Factory export writes the format through ``convert`` in an
environment without vLLM. ``plugin`` registers the architectures with vLLM; ``models`` and ``memory`` run inside it.
"""

# base architecture of config.json -> the PrefixMemory variant this plugin registers with vLLM
ARCHITECTURES = {
    "Qwen2ForCausalLM": "PrefixMemoryQwen2ForCausalLM",
    "Qwen3ForCausalLM": "PrefixMemoryQwen3ForCausalLM",
    "LlamaForCausalLM": "PrefixMemoryLlamaForCausalLM",
    "MistralForCausalLM": "PrefixMemoryMistralForCausalLM",
}
CONFIG_KEY = "prefix_memory"  # the config.json entry that describes the memories
WEIGHTS_FILE = "prefixmemory.safetensors"  # the memories, beside the base weights
# The attention forwards in ``models`` are copies of these vLLM releases' own: 0.11 is the newest LLaMA-Factory's
# `infer_backend: vllm` accepts (it asks for vllm<=0.11.0), 0.32 the newest release.
SUPPORTED_VLLM = ("==0.11.*", "==0.32.*")

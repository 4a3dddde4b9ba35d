"""A tiny Qwen2 folder and a saved PrefixMemory adapter with random (nonzero) memories, for loaders we do not own."""

import pytest
import torch


@pytest.fixture(scope="session")
def pmt_adapter(tiny_qwen2, tmp_path_factory):
    """The folder of a saved mlp-kernel adapter on ``tiny_qwen2``; it changes the logits (memories are nonzero)."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from prefixmemory import PrefixMemoryConfig

    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_qwen2), PrefixMemoryConfig(feature_map="mlp", feature_dim=16)
    )
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    path = tmp_path_factory.mktemp("adapters") / "pmt"
    model.save_pretrained(path)
    return path

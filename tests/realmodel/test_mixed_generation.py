"""Mixed-adapter generation on real weights: one left-padded batch whose rows use different PMT adapters (or none)
generates, token for token, what each row generates alone with its own adapter active."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import prefixmemory

QUESTIONS = ["What is the capital of Peru?", "Name a large animal.", "Which city is the capital of Japan?"]
ROW_ADAPTERS = ["elu", "gelu", "__base__"]


@pytest.fixture(scope="module")
def model_and_batch(smollm2_dir):
    from peft import get_peft_model

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir, padding_side="left")
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(smollm2_dir), prefixmemory.PrefixMemoryConfig(), "elu")
    model.add_adapter("gelu", prefixmemory.PrefixMemoryConfig(feature_map="gelu"))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "prefixmemory_" in name:  # memories of a trained adapter's scale, different per adapter
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.02)
    prompts = [[{"role": "user", "content": q}] for q in QUESTIONS]
    texts = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
    return model.eval(), tokenizer, tokenizer(texts, return_tensors="pt", padding=True)


def _generate(model, tokenizer, batch, **kwargs):
    out = model.generate(**batch, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id, **kwargs)
    return out[:, batch["input_ids"].shape[1] :]


def test_each_row_generates_what_it_generates_alone(model_and_batch):
    model, tokenizer, batch = model_and_batch
    mixed = _generate(model, tokenizer, batch, adapter_names=ROW_ADAPTERS)
    for row, name in enumerate(ROW_ADAPTERS):
        single = {key: value[row : row + 1] for key, value in batch.items()}
        if name == "__base__":
            with model.disable_adapter():
                alone = _generate(model, tokenizer, single)
        else:
            model.set_adapter(name)
            alone = _generate(model, tokenizer, single)
        assert mixed[row].tolist() == alone[0].tolist(), [name, tokenizer.decode(alone[0])]


def test_the_memories_change_the_output(model_and_batch):
    """Else the equality above would hold for adapters that do nothing."""
    model, _, batch = model_and_batch
    with torch.no_grad():
        model.set_adapter("elu")
        adapted = model(**batch).logits[:, -1]
        with model.disable_adapter():
            base = model(**batch).logits[:, -1]
    assert (adapted - base).abs().max() > 1e-2

"""Mixed-adapter batches: ``adapter_names=[...]`` gives each row the memory of the adapter named for it.

Every row of the batch must equal that row run alone with its adapter active ("__base__": adapters disabled).
"""

from __future__ import annotations

import pytest
import torch
from transformers import GenerationConfig

import prefixmemory

from .testing_common import build_peft, load_adapter_values, logits, random_adapter

# name -> config; c has a memory in layer 1 only, so layer 0 sees it as "no memory here"
ADAPTERS = {
    "a": dict(feature_map="elu"),
    "b": dict(feature_map="mlp", feature_dim=16),
    "c": dict(feature_map="relu", layers=[1]),
}
ROW_ADAPTERS = ["a", "b", "__base__", "a", "c"]


@pytest.fixture
def mixed(tiny_model, tokenizer, sample_pair):
    """(model with adapters a, b, c holding different random memories, left-padded 5-row batch, unpadded rows)."""

    def make(architecture: str):
        model, reference = build_peft(tiny_model(architecture), ADAPTERS["a"], adapter_name="a")
        for name, config in ADAPTERS.items():
            if name != "a":
                model.add_adapter(name, prefixmemory.PrefixMemoryConfig(**config))
        for seed, (name, config) in enumerate(ADAPTERS.items(), start=1):
            values = random_adapter(
                reference, config["feature_map"], config.get("feature_dim"), config.get("layers"), seed=seed
            )
            load_adapter_values(model, values, adapter_name=name)
        model.set_adapter("a")
        rows = [*sample_pair, sample_pair[0].flip(-1), sample_pair[1].flip(-1), sample_pair[0][:, :5]]
        length = max(row.shape[1] for row in rows)
        input_ids = torch.full((len(rows), length), tokenizer.pad_token_id)
        attention_mask = torch.zeros(len(rows), length, dtype=torch.long)
        for index, row in enumerate(rows):
            input_ids[index, length - row.shape[1] :] = row[0]
            attention_mask[index, length - row.shape[1] :] = 1
        return model.eval(), input_ids, attention_mask, rows

    return make


def _alone(model, name: str, function, *args, **kwargs):
    """``function(*args, **kwargs)`` with only adapter ``name`` active; with the adapters disabled for "__base__"."""
    if name == "__base__":
        with model.disable_adapter():
            return function(*args, **kwargs)
    model.set_adapter(name)
    try:
        return function(*args, **kwargs)
    finally:
        model.set_adapter("a")


@pytest.mark.parametrize("architecture", ["qwen2", "qwen3", "llama-gqa"])
def test_each_row_gets_its_adapter(mixed, architecture):
    model, input_ids, attention_mask, rows = mixed(architecture)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    batch = logits(
        model, input_ids, attention_mask=attention_mask, position_ids=position_ids, adapter_names=ROW_ADAPTERS
    )

    length = input_ids.shape[1]
    for index, (row, name) in enumerate(zip(rows, ROW_ADAPTERS, strict=True)):
        alone = _alone(model, name, logits, model, row)
        torch.testing.assert_close(batch[index, length - row.shape[1] :], alone[0], atol=1e-5, rtol=1e-5)
    # the rows differ by adapter: the same row under another adapter gives other logits
    other = _alone(model, "b", logits, model, rows[0])
    assert (batch[0, length - rows[0].shape[1] :] - other[0]).abs().max() > 1e-2
    # no hook is left behind: the next call without adapter_names uses the active adapter for every row
    plain = logits(model, input_ids, attention_mask=attention_mask, position_ids=position_ids)
    assert (plain[1] - batch[1]).abs().max() > 1e-2


@pytest.mark.parametrize("num_beams", [1, 2])
@pytest.mark.parametrize("architecture", ["qwen2", "qwen3"])
def test_generate_with_cache(mixed, architecture, num_beams):
    """Greedy and beam search with the KV cache: each row's tokens are those of the row generated alone."""
    model, input_ids, attention_mask, rows = mixed(architecture)
    kwargs = dict(max_new_tokens=6, min_new_tokens=6, do_sample=False, num_beams=num_beams, pad_token_id=0)
    batch = model.generate(input_ids=input_ids, attention_mask=attention_mask, adapter_names=ROW_ADAPTERS, **kwargs)

    new_tokens = batch[:, input_ids.shape[1] :]
    for index, (row, name) in enumerate(zip(rows, ROW_ADAPTERS, strict=True)):
        alone = _alone(model, name, model.generate, input_ids=row, attention_mask=torch.ones_like(row), **kwargs)
        assert torch.equal(new_tokens[index], alone[0, row.shape[1] :]), f"row {index} ({name})"
    assert len({tuple(tokens.tolist()) for tokens in new_tokens}) > 1


def test_errors(mixed):
    model, input_ids, attention_mask, _ = mixed("qwen2")
    with pytest.raises(ValueError, match="non-existing adapter\\(s\\): typo"):
        model(input_ids, adapter_names=["a", "typo", "__base__", "a", "c"])
    with pytest.raises(ValueError, match="Length of `adapter_names` should be the same as the number of inputs"):
        model(input_ids, adapter_names=["a", "b"])
    with pytest.raises(TypeError, match="expected a list of str"):
        model(input_ids, adapter_names="a")
    model.train()
    with pytest.raises(ValueError, match="Cannot pass `adapter_names` when the model is in training mode"):
        model(input_ids, adapter_names=ROW_ADAPTERS)


# Every way of asking generate for several rows per input: (call kwargs, model.generation_config settings, sequences
# returned per input). Beam search runs num_beams rows per input and returns one.
WAYS_OF_EXPANDING = {
    "num_beams-keyword": (dict(num_beams=2), {}, 1),
    "generation_config-argument": (dict(generation_config=GenerationConfig(num_beams=2)), {}, 1),
    "model-generation_config": ({}, dict(num_beams=2), 1),
    "num_return_sequences-sampling": (dict(do_sample=True, top_k=1, num_return_sequences=2), {}, 2),
    "num_return_sequences-generation_config": (
        dict(generation_config=GenerationConfig(do_sample=True, top_k=1, num_return_sequences=2)),
        {},
        2,
    ),
}


@pytest.mark.parametrize("way", WAYS_OF_EXPANDING)
def test_generate_expands_adapter_names(mixed, way):
    """Rows repeated for beams or samples keep their adapter, however the repeat was asked for.

    top_k=1 makes sampling pick the greedy token, so each row's samples must equal the row sampled alone.
    """
    model, input_ids, attention_mask, rows = mixed("qwen2")
    call_kwargs, model_settings, per_input = WAYS_OF_EXPANDING[way]
    for key, value in model_settings.items():
        setattr(model.generation_config, key, value)
    kwargs = dict(max_new_tokens=6, min_new_tokens=6, pad_token_id=0, **call_kwargs)
    batch = model.generate(input_ids=input_ids, attention_mask=attention_mask, adapter_names=ROW_ADAPTERS, **kwargs)

    assert batch.shape[0] == len(rows) * per_input
    new_tokens = batch[:, input_ids.shape[1] :].reshape(len(rows), per_input, -1)
    for index, (row, name) in enumerate(zip(rows, ROW_ADAPTERS, strict=True)):
        alone = _alone(model, name, model.generate, input_ids=row, attention_mask=torch.ones_like(row), **kwargs)
        assert torch.equal(new_tokens[index], alone[:, row.shape[1] :]), f"row {index} ({name})"
    assert len({tuple(tokens.flatten().tolist()) for tokens in new_tokens}) > 1

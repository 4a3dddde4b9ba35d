"""Shared checks run over every (architecture x feature map) case of TEST_CASES, PEFT testing_common style."""

from __future__ import annotations

import os

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file

from .testing_common import (
    TEST_CASES,
    adapter_param_names,
    adapter_params,
    build_adapted,
    build_peft,
    eq7_hooks,
    geometry,
    layer_tensors,
    logits,
    with_leaves,
)


@pytest.mark.parametrize("architecture, config_kwargs", TEST_CASES)
def test_identity_at_init(tiny_model, sample_ids, architecture, config_kwargs):
    model, reference = build_peft(tiny_model(architecture), config_kwargs)
    assert adapter_param_names(model), "no adapter parameters were created"
    for name, param in model.named_parameters():
        if "prefixmemory_memory" in name:
            assert torch.count_nonzero(param) == 0, f"{name} is not zero at init"
    assert torch.equal(logits(model, sample_ids), logits(reference, sample_ids))


@pytest.mark.parametrize("architecture, config_kwargs", TEST_CASES)
def test_gradients_only_on_adapter(tiny_model, sample_ids, architecture, config_kwargs):
    """Base frozen (requires_grad False, grad None); adapter grads equal those of eq. 7 computed independently."""
    model, reference, values = build_adapted(tiny_model(architecture), config_kwargs)
    model(sample_ids, labels=sample_ids).loss.backward()

    params = adapter_params(model)
    adapter_ids = {id(param) for param in params.values()}
    for name, param in model.named_parameters():
        if id(param) in adapter_ids:
            assert param.requires_grad and param.grad is not None, name
        else:
            assert not param.requires_grad and param.grad is None, name

    leaves = with_leaves(values)
    with eq7_hooks(reference, [leaves]):
        reference_loss = reference(sample_ids, labels=sample_ids).loss
    leaf_tensors = layer_tensors(leaves)
    expected = dict(zip(leaf_tensors, torch.autograd.grad(reference_loss, list(leaf_tensors.values())), strict=True))
    for key, param in params.items():
        assert torch.count_nonzero(param.grad) > 0, key
        torch.testing.assert_close(param.grad, expected[key], atol=1e-6, rtol=1e-4, msg=lambda m, k=key: f"{k}: {m}")


@pytest.mark.parametrize("architecture, config_kwargs", TEST_CASES)
def test_zero_memory_gets_gradient(tiny_model, sample_ids, architecture, config_kwargs):
    """At init (M = 0) the memory must still receive a nonzero gradient, or training could never start."""
    model, _ = build_peft(tiny_model(architecture), config_kwargs)
    model(sample_ids, labels=sample_ids).loss.backward()
    for (layer, kind, _), param in adapter_params(model).items():
        if kind == "memory":
            assert torch.count_nonzero(param.grad) > 0, f"layer {layer}: zero memory gradient at init"


@pytest.mark.filterwarnings("ignore:Could not find a config file")  # the tiny base has no hub name
@pytest.mark.parametrize("architecture, config_kwargs", TEST_CASES)
def test_save_load_roundtrip(tiny_model, sample_ids, tmp_path, architecture, config_kwargs):
    model, _, values = build_adapted(tiny_model(architecture), config_kwargs)
    expected = logits(model, sample_ids)
    model.save_pretrained(tmp_path)

    files = set(os.listdir(tmp_path))
    assert {"adapter_config.json", "adapter_model.safetensors"} <= files
    assert not [name for name in files if name.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle"))]

    num_layers, heads, head_dim = geometry(model)
    state = load_file(tmp_path / "adapter_model.safetensors")
    memories = {key: tensor for key, tensor in state.items() if "prefixmemory_memory" in key}
    assert len(memories) == 2 * num_layers  # M and its bias
    feature_dim = config_kwargs.get("feature_dim") or head_dim
    for index in range(num_layers):
        (weight,) = [key for key in memories if f".layers.{index}." in key and key.endswith("memory.weight")]
        (bias,) = [key for key in memories if f".layers.{index}." in key and key.endswith("memory.bias")]
        assert tuple(memories[weight].shape) == (heads, feature_dim, head_dim)
        assert tuple(memories[bias].shape) == (heads, 1, head_dim)
        assert torch.equal(memories[weight], values[index].memory)
        assert torch.equal(memories[bias], values[index].memory_bias)
    assert len(state) == len(layer_tensors(values)), "the saved file holds more or less than the adapter"

    loaded = PeftModel.from_pretrained(tiny_model(architecture), tmp_path).eval()
    assert torch.equal(logits(loaded, sample_ids), expected)


@pytest.mark.parametrize("architecture, config_kwargs", TEST_CASES)
def test_disable_adapter(tiny_model, sample_ids, architecture, config_kwargs):
    model, reference, _ = build_adapted(tiny_model(architecture), config_kwargs)
    base, adapted = logits(reference, sample_ids), logits(model, sample_ids)
    assert not torch.allclose(base, adapted, atol=1e-3), "the random memory does not change the output"
    with model.disable_adapter():
        assert torch.equal(logits(model, sample_ids), base)
    assert torch.equal(logits(model, sample_ids), adapted)


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
@pytest.mark.parametrize("architecture, config_kwargs", TEST_CASES)
def test_left_padded_batch(tiny_model, tokenizer, sample_pair, architecture, config_kwargs, attn_implementation):
    """Each row of a left-padded batch gives, on its real tokens, the logits of that sequence run alone."""
    base = tiny_model(architecture)
    base.set_attn_implementation(attn_implementation)
    model, _, _ = build_adapted(base, config_kwargs)

    length = max(ids.shape[1] for ids in sample_pair)
    input_ids = torch.full((2, length), tokenizer.pad_token_id)
    attention_mask = torch.zeros(2, length, dtype=torch.long)
    for row, ids in enumerate(sample_pair):
        input_ids[row, length - ids.shape[1] :] = ids[0]
        attention_mask[row, length - ids.shape[1] :] = 1
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    batch = logits(model, input_ids, attention_mask=attention_mask, position_ids=position_ids)

    for row, ids in enumerate(sample_pair):
        alone = logits(model, ids)
        torch.testing.assert_close(batch[row, length - ids.shape[1] :], alone[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("architecture, config_kwargs", TEST_CASES)
def test_generate_with_cache(tiny_model, sample_ids, architecture, config_kwargs):
    """Greedy decoding: KV cache or not, and the independent eq. 7 reference, give the same tokens."""
    model, reference, values = build_adapted(tiny_model(architecture), config_kwargs)
    kwargs = dict(max_new_tokens=8, min_new_tokens=8, do_sample=False, pad_token_id=0)
    attention_mask = torch.ones_like(sample_ids)
    cached = model.generate(input_ids=sample_ids, attention_mask=attention_mask, use_cache=True, **kwargs)
    uncached = model.generate(input_ids=sample_ids, attention_mask=attention_mask, use_cache=False, **kwargs)
    with eq7_hooks(reference, [values]):
        expected = reference.generate(input_ids=sample_ids, attention_mask=attention_mask, use_cache=True, **kwargs)
    with model.disable_adapter():
        base = model.generate(input_ids=sample_ids, attention_mask=attention_mask, use_cache=True, **kwargs)

    assert cached.shape == (1, sample_ids.shape[1] + 8)
    assert torch.equal(cached, uncached)
    assert torch.equal(cached, expected)
    assert not torch.equal(cached, base), "the random memory does not change the generated tokens"


@pytest.mark.parametrize("use_reentrant", [True, False])
@pytest.mark.parametrize("architecture, config_kwargs", TEST_CASES)
def test_gradient_checkpointing(tiny_model, sample_ids, architecture, config_kwargs, use_reentrant):
    def gradients(checkpointing: bool):
        base = tiny_model(architecture)
        calls = []
        base.model.layers[0].self_attn.k_proj.register_forward_hook(lambda *_: calls.append(1))
        model, _, _ = build_adapted(base, config_kwargs)
        model.train()
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": use_reentrant})
            if use_reentrant:
                model.enable_input_require_grads()
        loss = model(sample_ids, labels=sample_ids).loss
        loss.backward()
        # With checkpointing the decoder layer runs again in backward: twice the k_proj calls.
        assert len(calls) == (2 if checkpointing else 1), f"k_proj ran {len(calls)} times"
        return loss.detach(), {key: param.grad for key, param in adapter_params(model).items()}

    plain_loss, plain = gradients(checkpointing=False)
    checkpointed_loss, checkpointed = gradients(checkpointing=True)
    torch.testing.assert_close(checkpointed_loss, plain_loss, atol=1e-6, rtol=0)
    assert sorted(checkpointed) == sorted(plain)
    for key, grad in plain.items():
        assert checkpointed[key] is not None, f"{key}: no gradient under checkpointing"
        torch.testing.assert_close(checkpointed[key], grad, atol=1e-6, rtol=0, msg=lambda m, key=key: f"{key}: {m}")


@pytest.mark.parametrize("architecture, config_kwargs", TEST_CASES)
def test_autocast_bf16(tiny_model, sample_ids, architecture, config_kwargs):
    """Under CPU bf16 autocast the memories stay fp32, train in fp32 and the memory term still applies."""
    model, reference, _ = build_adapted(tiny_model(architecture), config_kwargs)
    fp32 = logits(model, sample_ids)
    delta_fp32 = fp32 - logits(reference, sample_ids)

    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = model(sample_ids, labels=sample_ids)
        with torch.no_grad(), model.disable_adapter():
            base_bf16 = model(sample_ids).logits
    output.loss.backward()

    for key, param in adapter_params(model).items():
        assert param.dtype == torch.float32, key
        assert param.grad is not None and param.grad.dtype == torch.float32, key
        assert torch.isfinite(param.grad).all(), key
    bf16 = output.logits.detach().float()
    assert torch.isfinite(bf16).all()
    scale = fp32.abs().max()
    torch.testing.assert_close(bf16, fp32, atol=0.05 * scale, rtol=0)
    # The adapter's effect survives autocast: adapted - base agrees with fp32 far better than its own size.
    delta_bf16 = bf16 - base_bf16.float()
    assert (delta_bf16 - delta_fp32).abs().max() < 0.25 * delta_fp32.abs().max()

"""Every family of the architecture table on its tiny model, each check against an independent computation.

One test per family shares its built model across the checks (CI time): zero memories give the base model exactly;
random nonzero memories and biases give eq. 7 computed by hooks on a plain copy; their gradients equal eq. 7's;
the parameter count follows the per-layer geometry read from the config; save/load is exact; a mixed-adapter
batch gives each row its own adapter's logits.
"""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel

from prefixmemory.architectures import ATTENTION_LAYOUTS, attention_geometry
from prefixmemory.loading import config_geometry

from .testing_common import (
    FAMILY_CASES,
    TINY_MODELS,
    adapter_params,
    attention_layers,
    build_peft,
    eq7_hooks,
    eq7_logits,
    layer_geometry,
    layer_tensors,
    load_adapter_values,
    logits,
    random_adapter,
    with_leaves,
)


def test_every_family_has_a_tiny_model():
    """The table and the tiny builder name the same model types (a variant such as llama-gqa reuses one)."""
    assert {config["model_type"] for config in TINY_MODELS.values()} == set(ATTENTION_LAYOUTS)


def expected_parameters(model, config_kwargs: dict) -> int:
    """Per attention layer: M (heads x F x Dv), its bias (heads x Dv), the mlp kernel (heads x (D x F + F))."""
    total = 0
    for index in attention_layers(model.config):
        heads, head_dim, value_dim = layer_geometry(model.config, index)
        features = config_kwargs.get("feature_dim") or head_dim
        kernel = heads * (head_dim * features + features) if config_kwargs["feature_map"] == "mlp" else 0
        total += heads * features * value_dim + heads * value_dim + kernel
    return total


@pytest.mark.filterwarnings("ignore:Could not find a config file")  # the tiny base has no hub name
@pytest.mark.parametrize("architecture, config_kwargs", FAMILY_CASES)
def test_family(tiny_model, batch_ids, tmp_path, architecture, config_kwargs):
    model, reference = build_peft(tiny_model(architecture), config_kwargs)
    base = logits(reference, batch_ids)
    assert torch.equal(logits(model, batch_ids), base), "zero memories changed the base model"
    assert model.get_nb_trainable_parameters()[0] == expected_parameters(reference, config_kwargs)
    _check_config_geometry(model, reference.config)

    values = random_adapter(reference, config_kwargs["feature_map"], config_kwargs.get("feature_dim"))
    load_adapter_values(model, values)
    expected = eq7_logits(reference, [values], batch_ids)
    assert (expected - base).abs().max() > 1e-2, "memory term too small to test"
    adapted = logits(model, batch_ids)
    torch.testing.assert_close(adapted, expected, atol=1e-5, rtol=1e-5)

    _check_gradients(model, reference, values, batch_ids)
    mixed = logits(model, batch_ids, adapter_names=["default", "__base__"])
    torch.testing.assert_close(mixed, torch.stack([adapted[0], base[1]]), atol=1e-5, rtol=1e-5)

    model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(tiny_model(architecture), tmp_path).eval()
    assert torch.equal(logits(loaded, batch_ids), adapted)


def _check_config_geometry(model, config) -> None:
    """What the LLaMA-Factory checks read from config.json alone (before weights load) is what the modules give: the
    per-layer sizes, and the base model the adapter records."""
    as_json = config.to_dict()
    expected = {index: layer_geometry(config, index) for index in attention_layers(config)}
    assert attention_geometry(as_json) == attention_geometry(config) == expected
    recorded = {name: getattr(model.peft_config["default"], name) for name in config_geometry(as_json)}
    assert config_geometry(as_json) == recorded


def _check_gradients(model, reference, values, input_ids) -> None:
    model.zero_grad()
    model(input_ids, labels=input_ids).loss.backward()
    leaves = with_leaves(values)
    with eq7_hooks(reference, [leaves]):
        reference_loss = reference(input_ids, labels=input_ids).loss
    tensors = layer_tensors(leaves)
    expected = dict(zip(tensors, torch.autograd.grad(reference_loss, list(tensors.values())), strict=True))
    params = adapter_params(model)
    assert sorted(params) == sorted(expected)
    for key, param in params.items():
        assert torch.count_nonzero(param.grad) > 0, key
        torch.testing.assert_close(param.grad, expected[key], atol=1e-6, rtol=1e-4, msg=lambda m, k=key: f"{k}: {m}")

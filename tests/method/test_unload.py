"""No merge (phi is non-linear in q): unload gives back the original model, every merge entry point refuses."""

from __future__ import annotations

import pytest
import torch

from .testing_common import ARCHITECTURES, build_adapted, logits


@pytest.mark.parametrize("feature_map", ["elu", "mlp"])
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_unload_restores_original_modules(tiny_model, sample_ids, architecture, feature_map):
    base = tiny_model(architecture)
    original_modules = {name: module for name, module in base.named_modules()}
    original_params = {name: param.detach().clone() for name, param in base.named_parameters()}
    model, reference, _ = build_adapted(base, dict(feature_map=feature_map))
    assert not torch.allclose(logits(model, sample_ids), logits(reference, sample_ids), atol=1e-3)

    unloaded = model.unload()
    modules = dict(unloaded.named_modules())
    assert modules.keys() == original_modules.keys()
    for name, module in modules.items():
        assert module is original_modules[name], f"{name} is {type(module).__name__}, not the original module"
    state = unloaded.state_dict()
    assert state.keys() == original_params.keys()
    for name, tensor in original_params.items():
        assert torch.equal(state[name], tensor), name
    assert torch.equal(logits(unloaded, sample_ids), logits(reference, sample_ids))


@pytest.mark.parametrize("architecture", ["qwen2", "qwen3"])
def test_merge_raises(tiny_model, sample_ids, architecture):
    model, _, _ = build_adapted(tiny_model(architecture), dict(feature_map="gelu"))
    before = logits(model, sample_ids)

    with pytest.raises(ValueError, match="merge"):
        model.merge_and_unload()
    with pytest.raises(ValueError, match="merge"):
        model.merge_adapter()
    # A refused merge leaves the adapter fully in place.
    assert torch.equal(logits(model, sample_ids), before)


def test_unmerge_is_a_noop_with_a_warning(tiny_model, sample_ids):
    """Nothing is ever merged, so unmerging has nothing to do: like LoRA, it warns and leaves the adapter."""
    model, _, _ = build_adapted(tiny_model("qwen2"), dict(feature_map="elu"))
    before = logits(model, sample_ids)
    with pytest.warns(UserWarning, match="Already unmerged. Nothing to do."):
        model.unmerge_adapter()
    with pytest.warns(UserWarning, match="Already unmerged. Nothing to do."):
        model.base_model.model.model.layers[0].self_attn.q_proj.unmerge()
    assert torch.equal(logits(model, sample_ids), before)

"""attach_reference: DPO/KTO's reference forward (``disable_adapter``) uses the adapter as it was when attached."""

from __future__ import annotations

import pytest
import torch
from peft import get_peft_model_state_dict

from prefixmemory import attach_reference

from .testing_common import adapter_params, build_adapted, eq7_logits, load_adapter_values, logits, random_adapter


@pytest.mark.filterwarnings("ignore:Could not find a config file")  # get_peft_model_state_dict on a tiny base
@pytest.mark.parametrize(
    "architecture, config_kwargs",
    [("qwen2", dict(feature_map="elu")), ("qwen3", dict(feature_map="mlp", feature_dim=16))],
    ids=["qwen2-elu", "qwen3-mlp-f16"],
)
def test_reference_is_the_adapter_at_attach_time(tiny_model, sample_ids, architecture, config_kwargs):
    model, reference, start = build_adapted(tiny_model(architecture), config_kwargs)
    attach_reference(model)
    trained = random_adapter(reference, config_kwargs["feature_map"], config_kwargs.get("feature_dim"), seed=7)
    load_adapter_values(model, trained)  # stands in for training steps after the reference was taken

    torch.testing.assert_close(
        logits(model, sample_ids), eq7_logits(reference, [trained], sample_ids), atol=1e-5, rtol=1e-5
    )
    with model.disable_adapter():
        torch.testing.assert_close(
            logits(model, sample_ids), eq7_logits(reference, [start], sample_ids), atol=1e-5, rtol=1e-5
        )
    torch.testing.assert_close(
        logits(model, sample_ids), eq7_logits(reference, [trained], sample_ids), atol=1e-5, rtol=1e-5
    )

    # Only the adapter trains and only the adapter is saved; the frozen copies stay out of both.
    model(sample_ids, labels=sample_ids).loss.backward()
    trainable = {id(param) for param in adapter_params(model).values()}
    for name, param in model.named_parameters():
        assert param.requires_grad == (id(param) in trainable), name
    saved = get_peft_model_state_dict(model)
    assert len(saved) == len(adapter_params(model))
    assert not [key for key in saved if "reference" in key]

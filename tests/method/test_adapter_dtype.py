"""Memories (and the mlp kernel) stay fp32 whichever way an adapter reaches a bf16 or fp16 base model.

Every loading path PEFT and transformers offer is tried on a base loaded with ``dtype=``; the logits must be those of
eq. 7 with the term computed in fp32 (testing_common.eq7_logits), not those of memories rounded to the base dtype.
"""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel, get_peft_model
from transformers import AutoModelForCausalLM

import prefixmemory

from .testing_common import (
    adapter_params,
    build_adapted,
    eq7_logits,
    layer_tensors,
    load_adapter_values,
    logits,
    transformers_load_adapter,
)

CASES = {"qwen2-mlp": ("qwen2", dict(feature_map="mlp")), "qwen3-elu": ("qwen3", dict(feature_map="elu"))}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """{case: (base folder, adapter folder, the adapter's fp32 test values)}, saved from fp32 models."""
    from prefixmemory_study.tiny import build_model

    folders = {}
    for case, (architecture, config_kwargs) in CASES.items():
        root = tmp_path_factory.mktemp(case)
        model, reference, values = build_adapted(build_model(architecture, seed=0), config_kwargs)
        reference.save_pretrained(root / "base")
        model.save_pretrained(root / "adapter")
        folders[case] = root / "base", root / "adapter", values
    return folders


def _get_peft_model(base, adapter, values, config_kwargs):
    model = get_peft_model(base, prefixmemory.PrefixMemoryConfig(**config_kwargs))
    load_adapter_values(model, values)
    return model


def _get_peft_model_default_dtype(base, adapter, values, config_kwargs):
    """get_peft_model while torch's default dtype is the base's (as during a from_pretrained(dtype=...))."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(base.dtype)
    try:
        return _get_peft_model(base, adapter, values, config_kwargs)
    finally:
        torch.set_default_dtype(default)


def _peft_load_adapter(base, adapter, low_cpu_mem_usage):
    """PeftModel.load_adapter as a second adapter, the first one loaded the plain way."""
    model = PeftModel.from_pretrained(base, adapter, adapter_name="first")
    model.load_adapter(adapter, adapter_name="default", low_cpu_mem_usage=low_cpu_mem_usage)
    model.set_adapter("default")
    return model


LOADERS = {
    "get_peft_model": _get_peft_model,
    "get_peft_model-default-dtype": _get_peft_model_default_dtype,
    "from_pretrained": lambda base, adapter, *_: PeftModel.from_pretrained(base, adapter),
    "from_pretrained-low-cpu": lambda base, adapter, *_: PeftModel.from_pretrained(
        base, adapter, low_cpu_mem_usage=True
    ),
    "load_adapter": lambda base, adapter, *_: _peft_load_adapter(base, adapter, low_cpu_mem_usage=False),
    "load_adapter-low-cpu": lambda base, adapter, *_: _peft_load_adapter(base, adapter, low_cpu_mem_usage=True),
    "transformers-load_adapter": lambda base, adapter, *_: transformers_load_adapter(base, adapter),
}


@pytest.mark.filterwarnings("ignore:Could not find a config file")  # the tiny base has no hub name
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize("case", CASES)
def test_memories_stay_fp32(saved, sample_ids, case, loader, dtype):
    base_dir, adapter_dir, values = saved[case]
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype).eval()
    reference = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype).eval()
    model = LOADERS[loader](base, adapter_dir, values, CASES[case][1]).eval()

    assert sorted(adapter_params(model)) == sorted(layer_tensors(values)), "the adapter was not loaded whole"
    for name, param in model.named_parameters():
        if "prefixmemory_" in name:
            assert param.dtype == torch.float32, f"{name} is {param.dtype}"
    expected = eq7_logits(reference, [values], sample_ids)
    plain = logits(reference, sample_ids)
    assert (expected - plain).abs().max() > 0.1, "the adapter does not change the logits"
    torch.testing.assert_close(logits(model, sample_ids), expected, atol=1e-4, rtol=0)

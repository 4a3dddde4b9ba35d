"""An adapter whose weights hold NaN or inf is refused as it loads, in one line naming the adapter and the tensor.

Before, it loaded and every output of the adapted layers was NaN.
"""

from __future__ import annotations

import re

import pytest
from peft import PeftModel, get_peft_model
from safetensors.torch import load_file, save_file

from prefixmemory import PrefixMemoryConfig

from .testing_common import build_adapted, transformers_load_adapter

# (saved key's tail, value written into one of its elements)
POISONS = {
    "nan-memory": ("layers.1.self_attn.q_proj.prefixmemory_memory.weight", float("nan")),
    "inf-memory-bias": ("layers.0.self_attn.q_proj.prefixmemory_memory.bias", float("inf")),
    "nan-kernel": ("layers.1.self_attn.q_proj.prefixmemory_kernel.weight", float("nan")),
    "-inf-kernel-bias": ("layers.0.self_attn.q_proj.prefixmemory_kernel.bias", float("-inf")),
}


def _model():
    from prefixmemory_study.tiny import build_model

    return build_model("qwen2", seed=0).eval()


def _peft_load_adapter(folder, low_cpu_mem_usage=False):
    model = get_peft_model(_model(), PrefixMemoryConfig(feature_map="elu"))
    model.load_adapter(folder, adapter_name="other", low_cpu_mem_usage=low_cpu_mem_usage)


# loader -> (load the adapter in ``folder``, the adapter's name, the prefix of the loaded weights' names)
LOADERS = {
    "from_pretrained": (lambda folder: PeftModel.from_pretrained(_model(), folder), "default", "base_model.model."),
    "from_pretrained-low-cpu": (
        lambda folder: PeftModel.from_pretrained(_model(), folder, low_cpu_mem_usage=True),
        "default",
        "base_model.model.",
    ),
    "load_adapter": (_peft_load_adapter, "other", "base_model.model."),
    "load_adapter-low-cpu": (lambda folder: _peft_load_adapter(folder, True), "other", "base_model.model."),
    "transformers-load_adapter": (lambda folder: transformers_load_adapter(_model(), folder), "default", ""),
}


@pytest.mark.filterwarnings("ignore:Could not find a config file")  # the tiny base has no hub name
@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize("poison", POISONS)
def test_non_finite_adapter_is_refused(tmp_path, loader, poison):
    model, _, _ = build_adapted(_model(), dict(feature_map="mlp"))
    model.save_pretrained(tmp_path)
    weights = tmp_path / "adapter_model.safetensors"
    tensors = load_file(weights)
    tail, value = POISONS[poison]
    (key,) = [key for key in tensors if key.endswith(tail)]
    tensors[key].view(-1)[3] = value
    save_file(tensors, weights)

    load, adapter, prefix = LOADERS[loader]
    found = "NaN" if value != value else "inf"
    name = prefix + "model." + tail.replace("weight", f"{adapter}.weight").replace("bias", f"{adapter}.bias")
    with pytest.raises(ValueError, match=re.escape(f"adapter `{adapter}` holds {found} in `{name}`")) as raised:
        load(tmp_path)
    assert "\n" not in str(raised.value)

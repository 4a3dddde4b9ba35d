"""One `llamafactory-cli train` SFT step per family of the architecture table, with the family's chat template.

The unmodified CLI loads each tiny model folder (prefixmemory_study.tiny), applies the template, wraps the attention
layers and trains one step: the run must end with a finite loss and an adapter holding one memory per attention
layer at the place the family reads q. Vision-language models (a ``vision_config``), and text models whose
template carries a multimodal plugin (qwen3_5, gemma4), are left to the method's tests: LLaMA-Factory then needs
an image processor, which the tiny builder does not write. About 75-95 s per family on a loaded 2-core machine,
hence slow.
"""

from __future__ import annotations

import json
import math

import pytest
from lfcli import logged_losses, run_cli
from safetensors import safe_open

from prefixmemory.architectures import attention_layout
from prefixmemory_study.tiny import ARCHITECTURES, save_tiny
from prefixmemory_study.toydata import toy_train_config, write_toy_data


def _needs_processor(config: dict) -> bool:
    from llamafactory.data.template import TEMPLATES

    return "vision_config" in config or type(TEMPLATES[config["template"]].mm_plugin).__name__ != "BasePlugin"


# DeepSeek-V3's one step fails inside the train step (tensor sizes 4 vs 8), not yet diagnosed: the method's tests
# pass on the same tiny model.
_OPEN = {"deepseek_v3": "llamafactory-cli train: RuntimeError, tensor sizes 4 vs 8 at dim 1 (open)"}
TEXT_FAMILIES = [
    pytest.param(key, marks=[pytest.mark.xfail(reason=_OPEN[key], strict=True)] if key in _OPEN else [])
    for key, config in ARCHITECTURES.items()
    if not _needs_processor(config)
]


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    return write_toy_data(tmp_path_factory.mktemp("data"), rows=4)


@pytest.mark.slow
@pytest.mark.parametrize("architecture", TEXT_FAMILIES)
def test_one_sft_step(tmp_path, toy_data, architecture):
    model = save_tiny(tmp_path / "model", architecture)
    template = ARCHITECTURES[architecture]["template"]
    config = toy_train_config(
        model, toy_data, tmp_path / "run", template=template, max_steps=1, cutoff_len=32, per_device_train_batch_size=1
    )
    run_cli("train", config, tmp_path)

    (loss,) = logged_losses(tmp_path / "run")
    assert math.isfinite(loss) and loss > 0
    model_config = json.loads((model / "config.json").read_text())
    layout = attention_layout(model_config["model_type"])
    with safe_open(tmp_path / "run" / "adapter_model.safetensors", "pt") as adapter:
        memories = [name for name in adapter.keys() if name.endswith("prefixmemory_memory.weight")]
    read_at = {name.split(".prefixmemory_memory")[0].rsplit(".", 1)[1] for name in memories}
    assert read_at <= set(layout.query_modules) and len(read_at) == 1, read_at
    layer_types = model_config.get("layer_types")
    attention_layers = model_config["num_hidden_layers"] - (layer_types or []).count("linear_attention")
    assert len(memories) == attention_layers

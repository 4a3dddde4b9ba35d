"""Every text family of the architecture table trained by LLaMA-Factory, one SFT step with the family's template.

Two runs of the same YAML per family, each ending with a finite loss and an adapter that holds, for every softmax
attention layer, a memory (and bias) shaped by that layer's geometry as the config gives it, at the module where
the family reads q (tests/method/testing_common.py writes both down independently of the method):
- ``test_family_trains`` (CI): all families in one process (train_in_one_process.py): LLaMA-Factory's own train
  entry, ``run_exp``, reads each YAML as ``llamafactory-cli train`` does, with LLaMA-Factory imported once.
- ``test_one_sft_step`` (slow): the unmodified ``llamafactory-cli train`` per family, one process each (75-95 s
  each on a loaded 2-core machine).
Vision-language models (a ``vision_config``), and text models whose template carries a multimodal plugin (qwen3_5,
gemma4), are left to the method's tests: LLaMA-Factory then needs an image processor, which the tiny builder does
not write.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from family_table import needs_processor
from lfcli import logged_losses, run_cli, train_in_one_process
from method.testing_common import QUERY_MODULE, attention_layers, layer_geometry
from safetensors import safe_open
from transformers import AutoConfig

from prefixmemory_study.tiny import ARCHITECTURES, save_tiny
from prefixmemory_study.toydata import toy_train_config, write_toy_data

TEXT_FAMILIES = [key for key, config in ARCHITECTURES.items() if not needs_processor(config)]


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    return write_toy_data(tmp_path_factory.mktemp("data"), rows=4)


def _config(root: Path, toy_data: Path, architecture: str) -> dict:
    """The family's one-step SFT YAML as a dict (its tiny model written under ``root``)."""
    model = save_tiny(root / architecture / "model", architecture)
    template = ARCHITECTURES[architecture]["template"]
    return toy_train_config(
        model, toy_data, root / architecture / "run", template=template, max_steps=1, cutoff_len=32,
        per_device_train_batch_size=1,
    )  # fmt: skip


def check_trained(config: dict) -> None:
    """A finite loss was logged, and the adapter has a memory and a bias of the layer's shape at every softmax
    attention layer, all read at the family's query module."""
    run = Path(config["output_dir"])
    assert not (run / "error.txt").exists(), (run / "error.txt").read_text()
    (loss,) = logged_losses(run)
    assert math.isfinite(loss) and loss > 0
    model_config = AutoConfig.from_pretrained(config["model_name_or_path"])
    read_at = QUERY_MODULE.get(model_config.model_type, "q_proj")
    expected = {}
    for index in attention_layers(model_config):
        heads, head_dim, value_dim = layer_geometry(model_config, index)
        expected[f"layers.{index}.self_attn.{read_at}.prefixmemory_memory.weight"] = [heads, head_dim, value_dim]
        expected[f"layers.{index}.self_attn.{read_at}.prefixmemory_memory.bias"] = [heads, 1, value_dim]
    with safe_open(run / "adapter_model.safetensors", "pt") as adapter:
        shapes = {name[name.index(".layers.") + 1 :]: adapter.get_slice(name).get_shape() for name in adapter.keys()}
    assert shapes == expected


@pytest.fixture(scope="module")
def trained_in_one_process(tmp_path_factory, toy_data) -> dict[str, dict]:
    """Every text family's YAML, all trained by one ``python train_in_one_process.py a.yaml b.yaml ...``."""
    root = tmp_path_factory.mktemp("families")
    configs = {architecture: _config(root, toy_data, architecture) for architecture in TEXT_FAMILIES}
    train_in_one_process(configs, root)
    return configs


@pytest.mark.parametrize("architecture", TEXT_FAMILIES)
def test_family_trains(trained_in_one_process, architecture):
    check_trained(trained_in_one_process[architecture])


@pytest.mark.slow
@pytest.mark.parametrize("architecture", TEXT_FAMILIES)
def test_one_sft_step(tmp_path, toy_data, architecture):
    config = _config(tmp_path, toy_data, architecture)
    run_cli("train", config, tmp_path)
    check_trained(config)

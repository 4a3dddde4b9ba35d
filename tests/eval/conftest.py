"""Fixtures of the evaluation tests: a tiny model, one adapter of each kind, and the few-shot data built offline.

The adapters are made in-process with PEFT and given non-zero weights (a trained adapter is not needed to check
that a measurement reads what it should). The few-shot data is written by ``prefixmemory-fewshot build`` itself,
its hub download replaced by a handful of rows in each source's own schema.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from prefixmemory_study.demo import synthetic_rows
from prefixmemory_study.fewshot import cli as fewshot
from prefixmemory_study.fewshot import data as fewshot_data
from prefixmemory_study.tiny import save_tiny

PREFIX_LENGTH = 8
TEXTS = [
    {"instruction": "Classify the emotion.", "input": "I love it, thanks! The sea is wide, the sea is deep."},
    {"instruction": "Classify the emotion.", "input": "What is 12 plus 30? The answer is 42."},
    {"instruction": "Classify the emotion.", "input": "The quick brown fox jumps over the lazy dog."},
    {"instruction": "Classify the emotion.", "input": "Write a short poem about the sea."},
]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("models") / "tiny-qwen2", "qwen2")


def _save_adapter(model_dir: Path, config, path: Path, fill: str | None = None) -> Path:
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir), config)
    for name, parameter in model.named_parameters():
        if fill and fill in name:
            parameter.data.normal_(0, 0.3)  # M is zero at init: give the memory something to say
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def adapters(tiny_model, tmp_path_factory) -> dict[str, Path]:
    """name -> folder of a PrefixMemory, a LoRA and a prefix-tuning adapter of the tiny model."""
    from peft import LoraConfig, PrefixTuningConfig

    from prefixmemory import PrefixMemoryConfig

    folder = tmp_path_factory.mktemp("adapters")
    return {
        "pmt": _save_adapter(tiny_model, PrefixMemoryConfig(feature_map="elu"), folder / "pmt", "prefixmemory_memory"),
        "lora": _save_adapter(
            tiny_model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False), folder / "lora"
        ),
        "prefix": _save_adapter(
            tiny_model, PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=PREFIX_LENGTH), folder / "prefix"
        ),
    }


@pytest.fixture(scope="session")
def short_prefix_adapter(tiny_model, tmp_path_factory) -> Path:
    """A prefix-tuning adapter with half the prefix of ``adapters["prefix"]``: Table 10's prefix-length sweep."""
    from peft import PrefixTuningConfig

    config = PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=PREFIX_LENGTH // 2)
    return _save_adapter(tiny_model, config, tmp_path_factory.mktemp("adapters") / "prefix_short")


@pytest.fixture(scope="session")
def texts_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("texts") / "texts.json"
    path.write_text(json.dumps(TEXTS))
    return path


@pytest.fixture(scope="session")
def fewshot_data_dir(tmp_path_factory) -> Path:
    """data/ as ``prefixmemory-fewshot build`` writes it, from a few rows per class instead of the hub."""
    data_dir = tmp_path_factory.mktemp("data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fewshot_data, "fetch", synthetic_rows)  # 6 rows per class, no hub
        fewshot.main(["build", "--data-dir", str(data_dir)])
    return data_dir

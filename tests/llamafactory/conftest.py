"""Fixtures for end-to-end runs of the real llamafactory-cli on a tiny local model and toy data sets."""

import json
from pathlib import Path

import pytest

from prefixmemory.tiny import save_tiny


def _toy_sets() -> dict[str, tuple[dict, list]]:
    """name -> (dataset_info entry, rows). Repetitive on purpose, so 30 steps visibly lower every loss."""
    numbers = range(48)
    sft = [
        {"instruction": f"Count to {i % 5 + 1}.", "input": "", "output": " ".join(map(str, range(1, i % 5 + 2)))}
        for i in numbers
    ]
    pref = [
        {"instruction": f"Say yes {i}.", "input": "", "chosen": "yes yes yes", "rejected": f"no {i} no"}
        for i in numbers
    ]
    kto = [
        {
            "messages": [
                {"role": "user", "content": f"Say yes {i}."},
                {"role": "assistant", "content": "yes yes yes" if i % 2 else f"no {i} no"},
            ],
            "label": bool(i % 2),
        }
        for i in numbers
    ]
    pt = [{"text": "the sea is wide, the sea is deep. " * 4} for _ in numbers]
    sharegpt_tags = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
    return {
        "toy_sft": ({"file_name": "toy_sft.json"}, sft),
        "toy_pref": (
            {
                "file_name": "toy_pref.json",
                "ranking": True,
                "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"},
            },
            pref,
        ),
        "toy_kto": (
            {
                "file_name": "toy_kto.json",
                "formatting": "sharegpt",
                "columns": {"messages": "messages", "kto_tag": "label"},
                "tags": sharegpt_tags,
            },
            kto,
        ),
        "toy_pt": ({"file_name": "toy_pt.json", "columns": {"prompt": "text"}}, pt),
    }


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("models") / "tiny-qwen2", "qwen2")


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("models") / "tiny-llama", "llama-gqa")


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    info = {}
    for name, (entry, rows) in _toy_sets().items():
        (folder / entry["file_name"]).write_text(json.dumps(rows))
        info[name] = entry
    (folder / "dataset_info.json").write_text(json.dumps(info, indent=2))
    return folder


@pytest.fixture
def train_config(tiny_qwen2, toy_data, tmp_path):
    """A factory of PMT training configs on the toy data; keyword arguments override any key."""

    def make(**overrides) -> dict:
        config = {
            "model_name_or_path": str(tiny_qwen2),
            "stage": "sft",
            "do_train": True,
            "finetuning_type": "prefixmemory",
            "dataset": "toy_sft",
            "dataset_dir": str(toy_data),
            "template": "qwen",
            "cutoff_len": 64,
            "output_dir": str(tmp_path / "out"),
            "overwrite_output_dir": True,
            "per_device_train_batch_size": 2,
            "gradient_accumulation_steps": 1,
            "learning_rate": 2.0e-2,
            "lr_scheduler_type": "constant",
            "max_steps": 30,
            "logging_steps": 1,
            "save_steps": 1000,
            "report_to": "none",
            "seed": 7,
            "preprocessing_num_workers": 1,
            "dataloader_num_workers": 0,
        }
        config.update(overrides)
        return config

    return make

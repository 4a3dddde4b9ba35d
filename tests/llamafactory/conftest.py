"""Fixtures for end-to-end runs of the real llamafactory-cli on a tiny local model and toy data sets."""

import pytest


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

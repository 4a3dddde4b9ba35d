"""Fixtures for end-to-end runs of the real llamafactory-cli on a tiny local model and toy data sets."""

import pytest

from prefixmemory_study.toydata import toy_train_config


@pytest.fixture
def train_config(tiny_qwen2, toy_data, tmp_path):
    """A factory of PMT training configs on the toy data; keyword arguments override any key."""

    def make(**overrides) -> dict:
        output_dir = overrides.pop("output_dir", tmp_path / "out")
        return toy_train_config(tiny_qwen2, toy_data, output_dir, **overrides)

    return make

"""Fixtures of the recipe tests."""

from pathlib import Path

import pytest
from recipe_helpers import ARCHITECTURE


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """One tiny random-weight model per architecture family, with the local tokenizer."""
    from prefixmemory_study.tiny import save_tiny

    folder = tmp_path_factory.mktemp("tiny-models")
    return {family: save_tiny(folder / family, family) for family in sorted(set(ARCHITECTURE.values()))}

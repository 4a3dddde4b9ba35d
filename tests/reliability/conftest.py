"""Fixtures for the bad-input and fault suite: a trained run with checkpoints, configs, copies, the web UI.

Every test runs the real ``llamafactory-cli`` in a subprocess (or a web UI handler) and checks three things: the
exit status, the one ``error:`` line (no traceback), and that no file outside the run's new output folder changed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from lfcli import run_cli
from webui.conftest import ui  # noqa: F401  (the in-process web UI, whose handlers' refusals are tested too)

from prefixmemory_study.toydata import toy_train_config


@pytest.fixture(scope="session")
def trained_run(tiny_qwen2, toy_data, tmp_path_factory) -> Path:
    """A finished 2-step PMT run (elu, all layers) with checkpoint-1 and checkpoint-2; read-only for the tests."""
    workdir = tmp_path_factory.mktemp("trained")
    config = toy_train_config(tiny_qwen2, toy_data, workdir / "run", max_steps=2, save_steps=1)
    run_cli("train", config, workdir)
    return workdir / "run"


@pytest.fixture
def config(tiny_qwen2, toy_data, tmp_path):
    """A factory of PMT training configs writing to a fresh folder; keyword arguments override any key."""

    def make(**overrides) -> dict:
        return toy_train_config(tiny_qwen2, toy_data, overrides.pop("output_dir", tmp_path / "new"), **overrides)

    return make


@pytest.fixture
def copy_of(tmp_path):
    """Copy a folder into the test's own tmp_path (for faults that damage files)."""

    def copy(folder: Path, name: str) -> Path:
        return Path(shutil.copytree(folder, tmp_path / name, symlinks=True))

    return copy

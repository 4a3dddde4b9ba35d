"""Fixtures for the bad-input and fault suite: a trained adapter with checkpoints, folder fingerprints, refusals.

Every test runs the real ``llamafactory-cli`` in a subprocess and checks three things: the exit status, the one
``error:`` line (no traceback), and that no file outside the run's new output folder changed.
"""

from __future__ import annotations

import hashlib
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest
from lfcli import run_cli
from toydata import toy_train_config
from webui.conftest import ui  # noqa: F401  (the in-process web UI, whose handlers' refusals are tested too)


def fingerprint(*folders: Path) -> dict[str, str]:
    """sha256 of every file under ``folders`` (and of every symlink's target name), keyed by path."""
    prints = {}
    for folder in folders:
        for path in sorted(Path(folder).rglob("*")):
            if path.is_symlink():
                prints[str(path)] = "-> " + str(path.readlink())
            elif path.is_file():
                prints[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                prints[str(path)] = "folder"
    return prints


@contextmanager
def unchanged(*folders: Path):
    """Assert that nothing under ``folders`` is added, removed or modified by the block."""
    before = fingerprint(*folders)
    yield
    after = fingerprint(*folders)
    assert after == before, f"changed: {sorted(set(after.items()) ^ set(before.items()))[:6]}"


def refusal(result, before_load: bool = True) -> str:
    """The run failed with status 1 and one ``error:`` line, no traceback; returns that line."""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == 1, result.stderr[-3000:]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    if before_load:
        assert "trainable params" not in result.stdout + result.stderr
    return errors[0]


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

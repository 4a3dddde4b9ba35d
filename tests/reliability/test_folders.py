"""Folders a run writes are never folders it reads, however the path is spelled (symlink, ``..``, slash)."""

import os

import pytest
from lfcli import run_cli
from reliability_checks import refusal, unchanged

WRITES_INTO_INPUT = "the run would write into a folder it reads; choose a new folder."


def _export(tiny_qwen2, adapter, export_dir) -> dict:
    return {
        "model_name_or_path": str(tiny_qwen2), "adapter_name_or_path": str(adapter), "finetuning_type": "prefixmemory",
        "template": "qwen", "export_dir": str(export_dir),
    }  # fmt: skip


@pytest.mark.parametrize(
    "spelling, key",
    [
        ("symlink to the base model", "model_name_or_path"),
        ("base model with a trailing slash", "model_name_or_path"),
        ("subfolder of the base model via ..", "model_name_or_path"),
        ("symlink to the adapter", "adapter_name_or_path"),
    ],
)
def test_export_never_writes_into_an_input(spelling, key, tiny_qwen2, trained_run, tmp_path):
    link = tmp_path / "link"
    target = trained_run if "adapter" in spelling else tiny_qwen2
    export_dir = {
        "symlink to the base model": link,
        "base model with a trailing slash": f"{tiny_qwen2}{os.sep}",
        "subfolder of the base model via ..": f"{tmp_path}/../{os.path.relpath(tiny_qwen2, tmp_path.parent)}/sub",
        "symlink to the adapter": link,
    }[spelling]
    link.symlink_to(target)
    with unchanged(tiny_qwen2, trained_run):
        result = run_cli("export", _export(tiny_qwen2, trained_run, export_dir), tmp_path, check=False)
    line = refusal(result)
    assert line.startswith(f"error: `export_dir` {export_dir} resolves to ") and f"inside `{key}`" in line
    assert line.endswith(WRITES_INTO_INPUT)


@pytest.mark.parametrize("inside", ["model_name_or_path", "adapter_name_or_path"])
def test_training_never_writes_into_an_input(inside, config, tiny_qwen2, trained_run, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(tiny_qwen2 if inside == "model_name_or_path" else trained_run / "checkpoint-2")
    overrides = {"adapter_name_or_path": str(trained_run / "checkpoint-2")} if inside != "model_name_or_path" else {}
    with unchanged(tiny_qwen2, trained_run):
        result = run_cli("train", config(output_dir=f"{link}/", **overrides), tmp_path, check=False)
    line = refusal(result)
    assert line.startswith(f"error: `output_dir` {link}/ resolves to ") and f"inside `{inside}`" in line

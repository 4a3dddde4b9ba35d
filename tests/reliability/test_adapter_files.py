"""Damaged or mismatched inputs are refused with the file and the key named; the model's geometry is checked
from config.json before any weight loads."""

import json

import pytest
from lfcli import run_cli
from reliability_checks import refusal, unchanged

from prefixmemory.architectures import ATTENTION_LAYOUTS


@pytest.mark.parametrize(
    "command, damage", [("train", "truncated"), ("train", "missing"), ("train", "no folder"), ("export", "truncated")]
)
def test_damaged_adapter_is_named(damage, command, config, tiny_qwen2, trained_run, copy_of, tmp_path):
    adapter = copy_of(trained_run / "checkpoint-2", "adapter") if damage != "no folder" else tmp_path / "nowhere"
    weights = adapter / "adapter_model.safetensors"
    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "missing":
        weights.unlink()
    args = config(adapter_name_or_path=str(adapter))
    if command == "export":
        args = {
            key: args[key] for key in ("model_name_or_path", "adapter_name_or_path", "finetuning_type", "template")
        }
        args["export_dir"] = str(tmp_path / "export")
    with unchanged(tiny_qwen2, trained_run, *([adapter] if adapter.exists() else [])):
        line = refusal(run_cli(command, args, tmp_path, check=False))
    expected = {
        "truncated": f"error: `adapter_name_or_path` {weights} is truncated: ",
        "missing": f"error: `adapter_name_or_path` {adapter} has no adapter_model.safetensors",
        "no folder": f"error: `adapter_name_or_path` {adapter} is not a folder.",
    }[damage]
    assert line.startswith(expected)
    assert not (tmp_path / "export").exists()


def test_adapter_for_another_model_shape_is_named(config, trained_run, tmp_path):
    from prefixmemory_study.tiny import save_tiny

    wider = save_tiny(tmp_path / "eight-heads", "qwen2", num_attention_heads=8)  # head_dim 8 instead of 16
    with unchanged(wider, trained_run):
        result = run_cli(
            "train",
            config(model_name_or_path=str(wider), adapter_name_or_path=str(trained_run)),
            tmp_path,
            check=False,
        )
    # Before the model loads: from the base model adapter_config.json records (num_heads 4 vs 8) or, for an adapter
    # saved before it was recorded, from the safetensors header (tests/llamafactory/test_adapter_checks.py).
    line = refusal(result)
    assert line.startswith(f"error: `adapter_name_or_path` {trained_run} ") and f"`model_name_or_path` {wider}" in line
    assert line.endswith("; use it with the model it was trained on.") and "8" in line


def test_unsupported_architecture_is_refused_from_config_json(config, tiny_qwen2, copy_of, tmp_path, monkeypatch):
    model = copy_of(tiny_qwen2, "gpt-neox-like")
    (model / "config.json").write_text(
        json.dumps({**json.loads((model / "config.json").read_text()), "model_type": "gpt_neox"})
    )
    with unchanged(model):
        line = refusal(run_cli("train", config(model_name_or_path=str(model)), tmp_path, check=False))
    supported = ", ".join(sorted(ATTENTION_LAYOUTS))
    assert line == (
        f"error: `model_name_or_path` {model}: PrefixMemory does not support model_type `gpt_neox`; supported: "
        f"{supported}."
    )
    monkeypatch.setenv("PREFIXMEMORY_TRACEBACK", "1")
    result = run_cli("train", config(model_name_or_path=str(model)), tmp_path, check=False)
    assert result.returncode == 1 and "Traceback (most recent call last)" in result.stderr
    assert "PrefixMemoryError: `model_name_or_path`" in result.stderr

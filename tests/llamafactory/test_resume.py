"""resume_from_checkpoint continues exactly: interrupted-and-resumed ends where an uninterrupted run ends."""

import shutil
from pathlib import Path

import torch
from lfcli import run_cli
from safetensors.torch import load_file


def test_resume_equals_uninterrupted(train_config, tmp_path):
    # A decaying schedule and AdamW moments make the check sensitive to scheduler and optimizer state.
    schedule = dict(max_steps=10, save_steps=5, lr_scheduler_type="cosine", learning_rate=5e-2, weight_decay=0.1)
    full = train_config(**schedule, output_dir=str(tmp_path / "full"))
    run_cli("train", full, tmp_path)

    # The run that was interrupted after its step-5 checkpoint: only that checkpoint survives.
    interrupted = tmp_path / "interrupted"
    shutil.copytree(Path(full["output_dir"]) / "checkpoint-5", interrupted / "checkpoint-5")
    for name in ("optimizer.pt", "scheduler.pt", "adapter_model.safetensors"):
        assert (interrupted / "checkpoint-5" / name).is_file()
    resumed = train_config(
        **schedule, output_dir=str(interrupted), overwrite_output_dir=False,
        resume_from_checkpoint=str(interrupted / "checkpoint-5"),
    )  # fmt: skip
    run_cli("train", resumed, tmp_path)

    expected = load_file(Path(full["output_dir"]) / "adapter_model.safetensors")
    actual = load_file(interrupted / "adapter_model.safetensors")
    assert expected.keys() == actual.keys()
    halfway = load_file(interrupted / "checkpoint-5" / "adapter_model.safetensors")
    for key in expected:
        assert (expected[key] - halfway[key]).abs().max() > 1e-4  # the resumed run really trained
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=1e-6)

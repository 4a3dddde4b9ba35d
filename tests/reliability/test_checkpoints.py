"""A checkpoint half-written when the run was killed never blocks work: automatic resume and
`resume_from_checkpoint: true` skip it, and an explicit resume from it says which files are missing and which
complete checkpoint to use."""

import os
from pathlib import Path

import pytest
from lfcli import run_cli
from reliability_checks import refusal, unchanged

FAULTS = Path(__file__).parent / "faults"


@pytest.fixture
def killed_run(config, tmp_path, monkeypatch):
    """A run killed (SIGKILL) while writing checkpoint-2: checkpoint-1 complete, checkpoint-2 not."""
    run = config(output_dir=tmp_path / "run", max_steps=3, save_steps=1)
    with monkeypatch.context() as patch:
        patch.setenv("PYTHONPATH", os.pathsep.join([str(FAULTS), os.environ.get("PYTHONPATH", "")]))
        patch.setenv("PMT_KILL_IN_SAVE_AT_STEP", "2")
        result = run_cli("train", run, tmp_path, check=False)
    assert result.returncode == -9 and "fault injection: SIGKILL while writing" in result.stdout
    checkpoint = tmp_path / "run" / "checkpoint-2"
    assert (checkpoint / "adapter_model.safetensors").is_file() and not (checkpoint / "trainer_state.json").exists()
    (tmp_path / "run" / "checkpoint-9").mkdir()  # and an empty one, as a kill before the first file leaves
    return run


def test_explicit_resume_from_a_killed_checkpoint_is_refused_and_true_skips_it(killed_run, tiny_qwen2, tmp_path):
    run_dir = Path(killed_run["output_dir"])
    for name, missing in [("checkpoint-2", "trainer_state.json"), ("checkpoint-9", "adapter_config.json, ")]:
        with unchanged(tiny_qwen2, run_dir):
            result = run_cli(
                "train", {**killed_run, "resume_from_checkpoint": str(run_dir / name)}, tmp_path, check=False
            )
        line = refusal(result)
        assert line.startswith(f"error: `resume_from_checkpoint` {run_dir / name} is incomplete (a run stopped while")
        assert f"missing {missing}" in line and line.endswith(f"the last complete one is {run_dir / 'checkpoint-1'}.")
    # `true` is that last complete one (the Trainer's own choice is the newest folder, checkpoint-9)
    result = run_cli("train", {**killed_run, "resume_from_checkpoint": True}, tmp_path)
    assert f"`resume_from_checkpoint: True`: the last complete checkpoint is {run_dir / 'checkpoint-1'}." in (
        result.stdout + result.stderr
    )
    assert (run_dir / "checkpoint-3" / "trainer_state.json").is_file()


def test_automatic_resume_skips_a_killed_checkpoint(killed_run, tiny_qwen2, tmp_path):
    with unchanged(tiny_qwen2):
        result = run_cli("train", {**killed_run, "overwrite_output_dir": False}, tmp_path)
    log = result.stdout + result.stderr
    assert f"Resuming training from {Path(killed_run['output_dir']) / 'checkpoint-1'}." in log
    assert (Path(killed_run["output_dir"]) / "checkpoint-3" / "trainer_state.json").is_file()

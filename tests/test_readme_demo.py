"""README's demo commands, as written, in a fresh working directory.

The main job (the real SmolLM2 model, `prefixmemory-answers`) is checked for learning, not only for running: with
the adapter the held-out questions are answered in the taught form far more often than without it. The tiny-model
smoke run is checked for a falling loss. The recipe tests swap in models of their own; these run the recipes on the
folders README's commands name, so a path that the run's own checks refuse fails here.
"""

import os
import re
import subprocess
from pathlib import Path

from lfcli import OFFLINE_ENV, failure_report, logged_losses

REPO = Path(__file__).resolve().parents[1]
INSTALL = "pip install -e . && "


def readme_command(marker: str) -> str:
    """README's line that names ``marker``, without its leading ``pip install -e . &&`` (this environment has it)."""
    lines = [line for line in (REPO / "README.md").read_text().splitlines() if marker in line]
    return next(line for line in lines if line.startswith(INSTALL)).removeprefix(INSTALL)


def run_in(folder: Path, command: str, timeout: int = 900) -> subprocess.CompletedProcess:
    for name in ("recipes", "data"):  # what the commands and the recipes name, relative to the repository root
        (folder / name).symlink_to(REPO / name)
    result = subprocess.run(
        ["bash", "-c", command], cwd=folder, env={**os.environ, **OFFLINE_ENV}, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
    assert result.returncode == 0, failure_report(command, result)
    return result


def output_dir(recipe: str, folder: Path) -> Path:
    text = (REPO / "recipes" / recipe).read_text()
    return folder / re.search(r"^output_dir: (\S+)", text, re.MULTILINE).group(1)


def test_readme_main_job_teaches_the_real_model(tmp_path, smollm2_dir):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "smollm2-135m-instruct").symlink_to(smollm2_dir)  # converted once, as a user's would be
    result = run_in(tmp_path, readme_command("prefixmemory-smollm2"))
    run = output_dir("demo_smollm2_pmt.yaml", tmp_path)
    assert (run / "adapter_model.safetensors").is_file()
    losses = logged_losses(run)
    assert len(losses) == 6 and losses[-1] < losses[0] / 2
    score = re.search(r"base model (\d+)/40, with the prefixmemory adapter (\d+)/40", result.stdout)
    assert score, result.stdout[-2000:]
    base, adapted = map(int, score.groups())
    assert base <= 2 and adapted >= 8, result.stdout[-2000:]


def test_readme_tiny_smoke_run(tmp_path):
    run_in(tmp_path, readme_command("prefixmemory-tiny"))
    run = output_dir("demo_tiny_pmt.yaml", tmp_path)
    for name in ("adapter_model.safetensors", "adapter_config.json", "training_loss.png"):
        assert (run / name).is_file(), name
    losses = logged_losses(run)
    assert len(losses) == 8 and losses[-1] < losses[0]  # 40 steps, logged every 5: the loss goes down

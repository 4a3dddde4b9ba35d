"""README's first command, as written, in a fresh working directory: it builds the tiny model and trains the demo.

The recipe tests swap in models of their own; this one runs the demo recipe on the folder README's command builds,
so a path in the recipe that the run's own checks refuse (the run folder inside the model folder it reads) fails here.
"""

import os
import re
import subprocess
from pathlib import Path

from lfcli import OFFLINE_ENV, failure_report, logged_losses

REPO = Path(__file__).resolve().parents[1]


def readme_demo_command() -> str:
    """README's offline-demo line, without its leading ``pip install -e . &&`` (this environment has the project)."""
    lines = [line for line in (REPO / "README.md").read_text().splitlines() if "prefixmemory-tiny" in line]
    demo = next(line for line in lines if line.startswith("pip install -e . && "))
    return demo.removeprefix("pip install -e . && ")


def test_readme_demo_runs_as_written(tmp_path):
    for folder in ("recipes", "data"):  # what the command and the recipe name, relative to the repository root
        (tmp_path / folder).symlink_to(REPO / folder)
    command = readme_demo_command()
    result = subprocess.run(
        ["bash", "-c", command], cwd=tmp_path, env={**os.environ, **OFFLINE_ENV}, capture_output=True, text=True,
        timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, failure_report(command, result)
    recipe = (REPO / "recipes" / "demo_tiny_pmt.yaml").read_text()
    run = tmp_path / re.search(r"^output_dir: (\S+)", recipe, re.MULTILINE).group(1)
    for name in ("adapter_model.safetensors", "adapter_config.json", "training_loss.png"):
        assert (run / name).is_file(), name
    losses = logged_losses(run)
    assert len(losses) == 8 and losses[-1] < losses[0]  # 40 steps, logged every 5: the loss goes down

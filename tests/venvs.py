"""Venvs for tests that need other packages than the default environment, built once and cached.

``overlay_python``: a venv that sees every package of the running environment after its own and adds the given
requirements: the other dependency stacks (their own transformers, PEFT, TRL... in front, the environment's torch and
this checkout shared) and Ray (kept out of the default environment, since LLaMA-Factory imports ``ray`` on every
``llamafactory-cli train`` when it is installed). Every test venv, the vLLM ones of tests/serving too, lives under
``CACHE``: ``$PMT_STACK_CACHE``, default ``~/.cache/prefixmemory``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("PMT_STACK_CACHE") or Path.home() / ".cache" / "prefixmemory")


def _pip(python: Path, *args: str) -> None:
    result = subprocess.run(
        [python, "-m", "pip", "install", "-q", *args], capture_output=True, text=True, timeout=1800
    )
    assert result.returncode == 0, f"pip install {' '.join(args)} failed:\n{result.stderr[-4000:]}"


def _build(key_parts: list[str], fill) -> Path:
    """The python of the cached venv keyed by ``key_parts``; ``fill(python, venv)`` installs into a new one."""
    key = hashlib.sha256("\n".join([sys.version, *key_parts]).encode()).hexdigest()[:16]
    venv = CACHE / key
    python = venv / "bin" / "python"
    if not (venv / "complete").exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        fill(python, venv)
        (venv / "complete").touch()
    return python


def overlay_python(requirements: list[str]) -> Path:
    """The python of a venv holding ``requirements`` on top of the running environment (whose packages, this
    checkout's startup hook included, it sees after its own); pip adds only what the environment lacks."""
    parents = [path for path in site.getsitepackages() if Path(path).is_dir()]

    def fill(python: Path, venv: Path) -> None:
        own = subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        lines = "".join(f"import site; site.addsitedir({path!r})\n" for path in parents)
        (Path(own) / "_parent_environment.pth").write_text(lines)
        _pip(python, *requirements)

    return _build(["overlay", sys.prefix, *parents, *requirements], fill)


def versions(python: Path, packages) -> dict[str, str]:
    code = "import sys, importlib.metadata as m; print(*(m.version(p) for p in sys.argv[1:]))"
    result = subprocess.run([python, "-c", code, *packages], capture_output=True, text=True, check=True)
    return dict(zip(packages, result.stdout.split(), strict=True))

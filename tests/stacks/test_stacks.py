"""The other stacks our ranges allow: each in its own venv, running the method, seam, CLI stage, web-UI and v1 tests.

"oldest": the lowest versions pyproject.toml declares, next to LLaMA-Factory 0.9.5. "lfmain": LLaMA-Factory's
main branch (0.9.6.dev0) from the vendored snapshot, with the newest transformers it allows. The venvs are cached
under ``$PMT_STACK_CACHE`` (default ``~/.cache/prefixmemory-stacks``), keyed by their requirements; the project
itself is installed editable into them on every run.
"""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("PMT_STACK_CACHE", Path.home() / ".cache" / "prefixmemory-stacks"))
VENDOR = Path(os.environ.get("PMT_VENDOR_DIR", REPO.parent / "shared" / "vendor"))
# The torch build of the default environment; the stacks differ above it.
TORCH = ["torch==2.14.1", "torchvision==0.29.1", "torchaudio==2.11.1"]
TOOLS = ["pytest>=8", "pyyaml>=6", "hatchling>=1.25", "editables"]  # editables: hatchling's editable install
OLDEST = [
    "llamafactory==0.9.5",
    "transformers==4.56.0",
    "accelerate==1.10.1",
    "peft==0.18.0",
    "trl==0.18.0",
    "datasets==3.0.0",
]
LLAMAFACTORY_MAIN = sorted(VENDOR.glob("LLaMA-Factory-*.tar.gz"))
TESTS = [
    "tests/method",
    "tests/ecosystem/test_peft_loading.py",
    "tests/ecosystem/test_trl.py",
    "tests/llamafactory/test_seams.py",
    "tests/llamafactory/test_reference.py",
    *(
        f"tests/llamafactory/test_stages.py::test_stage_trains_and_saves_adapter_only[{s}]"
        for s in ("sft", "dpo", "kto")
    ),
    "tests/llamafactory/test_inference.py::test_chat_model_answers_with_adapter",
    "tests/llamafactory/test_inference.py::test_export_is_self_contained_and_reloads_identically",
    "tests/webui/test_webui_components.py",
]
# name -> (requirements, versions they must install, tests beyond TESTS)
STACKS = {
    "oldest": (OLDEST, {"llamafactory": "0.9.5", "transformers": "4.56.0", "peft": "0.18.0", "trl": "0.18.0"}, []),
    "lfmain": (
        [str(path) for path in LLAMAFACTORY_MAIN[-1:]],
        {"llamafactory": "0.9.6.dev0"},
        ["tests/llamafactory/test_v1.py"],
    ),
}


def _pip(python: Path, *args: str) -> None:
    result = subprocess.run(
        [python, "-m", "pip", "install", "-q", *args], capture_output=True, text=True, timeout=1800
    )
    assert result.returncode == 0, f"pip install {' '.join(args)} failed:\n{result.stderr[-4000:]}"


def stack_python(requirements: list[str]) -> Path:
    """The python of a venv with exactly these requirements (built once, then reused) and this checkout."""
    key = hashlib.sha256("\n".join([sys.version, *TORCH, *TOOLS, *requirements]).encode()).hexdigest()[:16]
    venv = CACHE / key
    python = venv / "bin" / "python"
    if not (venv / "complete").exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        _pip(python, *TORCH, *TOOLS, *requirements)
        (venv / "complete").touch()
    _pip(python, "--no-deps", "--no-build-isolation", "-e", str(REPO))
    return python


def _versions(python: Path, packages) -> dict[str, str]:
    code = "import sys, importlib.metadata as m; print(*(m.version(p) for p in sys.argv[1:]))"
    result = subprocess.run([python, "-c", code, *packages], capture_output=True, text=True, check=True)
    return dict(zip(packages, result.stdout.split(), strict=True))


@pytest.mark.parametrize("name", list(STACKS))
def test_stack_passes_the_method_and_cli_tests(name):
    requirements, expected, extra_tests = STACKS[name]
    if not requirements:
        pytest.skip(f"no LLaMA-Factory snapshot in {VENDOR} (set PMT_VENDOR_DIR)")
    python = stack_python(requirements)
    assert _versions(python, list(expected)) == expected

    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["PATH"] = f"{python.parent}{os.pathsep}{env['PATH']}"  # llamafactory-cli of the stack
    argv = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow", *TESTS, *extra_tests]
    result = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0 and " passed" in summary, result.stdout[-6000:] + result.stderr[-2000:]

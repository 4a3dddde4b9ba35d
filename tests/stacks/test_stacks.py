"""The other stacks our ranges allow: each in its own venv, running the method, seam, CLI stage, web-UI and v1 tests.

"oldest": the lowest versions pyproject.toml declares, next to LLaMA-Factory 0.9.5. "lfmain": LLaMA-Factory's
main branch (0.9.6.dev0) from the vendored snapshot, with the newest transformers it allows. "newest-peft": the
method's PEFT-facing tests (which never import LLaMA-Factory, whose range caps peft at 0.18.1) with the newest PEFT,
TRL, transformers and lm-evaluation-harness, as an evaluation or TRL environment has them.
Each stack is an overlay venv (``venvs.overlay_python``): its own versions of these packages in front of the
default environment, whose torch (several GB) and this checkout it shares, so a fresh machine builds each stack in
a minute or two instead of installing torch again.
"""

import os
import subprocess
from pathlib import Path

import pytest
from venvs import REPO, overlay_python, versions

VENDOR = Path(os.environ.get("PMT_VENDOR_DIR", REPO.parent / "shared" / "vendor"))
OLDEST = [
    "llamafactory==0.9.5",
    "transformers==4.56.0",
    "accelerate==1.10.1",
    "peft==0.18.0",
    "trl==0.18.0",
    "datasets==3.0.0",
]
LLAMAFACTORY_MAIN = sorted(VENDOR.glob("LLaMA-Factory-*.tar.gz"))
# transformers 5.25.0 needs kernels>=0.19.1, which the package index does not have: 5.24.0 is the newest installable
NEWEST_PEFT = ["peft==0.21.2", "trl==1.16.0", "transformers==5.24.0", "lm_eval==0.4.13"]
# Where the method meets PEFT's API (create, save, load, switch, unload, the tuner's hooks) and the loaders we do
# not own; the model-side tests (families, rotary, packing, counts) do not depend on PEFT's version.
PEFT_TESTS = [
    *(
        f"tests/method/test_{name}.py"
        for name in (
            "common", "config", "peft_type", "adapter_fit", "adapter_dtype", "adapter_nan", "legacy_adapters",
            "attach_reference", "multi_adapter", "mixed_batch", "unload",
        )
    ),
    "tests/ecosystem",
]  # fmt: skip
LLAMAFACTORY_TESTS = [
    *(path for path in PEFT_TESTS if path.startswith("tests/method/")),
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
# name -> (requirements, versions they must install, tests)
STACKS = {
    "oldest": (
        OLDEST,
        {"llamafactory": "0.9.5", "transformers": "4.56.0", "peft": "0.18.0", "trl": "0.18.0"},
        LLAMAFACTORY_TESTS,
    ),
    "lfmain": (
        [*(str(path) for path in LLAMAFACTORY_MAIN[-1:]), "transformers==5.8.0"],  # the newest it allows
        {"llamafactory": "0.9.6.dev0", "transformers": "5.8.0"},
        [*LLAMAFACTORY_TESTS, "tests/llamafactory/test_v1.py"],
    ),
    "newest-peft": (
        NEWEST_PEFT,
        {"peft": "0.21.2", "trl": "1.16.0", "transformers": "5.24.0", "lm_eval": "0.4.13"},
        PEFT_TESTS,
    ),
}


@pytest.mark.parametrize("name", list(STACKS))
def test_stack_passes_the_method_and_cli_tests(name):
    requirements, expected, tests = STACKS[name]
    if name == "lfmain" and not LLAMAFACTORY_MAIN:
        pytest.skip(f"no LLaMA-Factory snapshot in {VENDOR} (set PMT_VENDOR_DIR)")
    python = overlay_python(requirements)
    assert versions(python, list(expected)) == expected
    _console_script(python, "llamafactory-cli", "llamafactory.cli")

    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["PATH"] = f"{python.parent}{os.pathsep}{env['PATH']}"  # llamafactory-cli of the stack
    argv = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow", *tests]
    result = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0 and " passed" in summary, result.stdout[-6000:] + result.stderr[-2000:]


def _console_script(python: Path, name: str, module: str) -> None:
    """``name`` runs ``module``'s main with the stack's python: the default environment's own script would run the
    default environment's interpreter, and so its versions, where the stack took a package from it unchanged."""
    script = python.parent / name
    if not script.exists():
        script.write_text(f"#!{python}\nimport sys\nfrom {module} import main\n\nsys.exit(main())\n")
        script.chmod(0o755)

"""The startup hook: installed by the wheel, lazy, seam-checked, and active in the unmodified CLI."""

import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
from lfcli import OFFLINE_ENV

REPO = Path(__file__).resolve().parents[2]


def _python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env={**os.environ, **env}
    )


def test_hook_is_armed_at_startup_and_imports_nothing_heavy():
    result = _python("""
        import sys
        from prefixmemory_patches._hook import Patcher
        print(isinstance(sys.meta_path[0], Patcher))
        print(sorted(m for m in ("torch", "peft", "transformers", "prefixmemory", "llamafactory") if m in sys.modules))
    """)
    assert result.stdout.split("\n")[:2] == ["True", "[]"], result.stderr


@pytest.mark.parametrize(
    ("methods", "expected"),
    [
        ("['lora']", "['lora', 'prefixmemory', 'prefix'] set()"),
        ("('lora',)", "('lora',) {'llamafactory.extras.constants'}"),
    ],
)
def test_any_llamafactory_version_is_patched_where_its_seams_check_out(tmp_path, methods, expected):
    fake = tmp_path / "llamafactory"
    (fake / "extras").mkdir(parents=True)
    (fake / "__init__.py").write_text("__version__ = '0.0.1'\n")
    (fake / "extras" / "__init__.py").write_text("")
    (fake / "extras" / "constants.py").write_text(f"METHODS = {methods}\nPEFT_METHODS = {{'lora'}}\n")
    result = _python(
        """
        import llamafactory.extras.constants as constants
        from prefixmemory_patches.seams import problems
        print(constants.METHODS, set(problems()))
        """,
        PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    )
    assert result.stdout.strip() == expected, result.stderr
    assert result.stderr == ""


def test_patches_are_idempotent():
    result = _python("""
        import llamafactory.extras.constants as constants
        from prefixmemory_patches.llamafactory.bends.extras_constants import patch_constants
        patch_constants(constants)
        print(constants.METHODS.count("prefixmemory"))
    """)
    assert result.stdout.strip() == "1", result.stderr


def test_lmf_alias_lists_prefixmemory_and_pmt_keys():
    result = subprocess.run(["lmf", "train", "-h"], capture_output=True, text=True, env={**os.environ, **OFFLINE_ENV})
    assert "--finetuning_type {lora,oft,freeze,full,prefixmemory,prefix}" in result.stdout
    for key in ("--pmt_feature_map", "--pmt_layers", "--pmt_feature_dim", "--prefix_num_virtual_tokens"):
        assert key in result.stdout


def test_wheel_installs_the_startup_hook(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(REPO)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("llamafactory_prefixmemory-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "prefixmemory.pth" in names  # at the root: pip puts it in site-packages, where site runs it
    assert "prefixmemory/__init__.py" in names and "prefixmemory_patches/_hook.py" in names
    pth = zipfile.ZipFile(wheel).read("prefixmemory.pth").decode()
    assert pth.strip() == "import prefixmemory_patches._hook"

"""Seam checks: patches apply where LLaMA-Factory has the shape they bend; else our runs stop with one line."""

import os
import subprocess
import sys
import textwrap
import types

import pytest

from prefixmemory_patches import _hook, seams
from prefixmemory_patches.seams import Seam, bends, guarded_apply, problems


def _has_v1_registry() -> bool:
    """LLaMA-Factory main's v1 plugin registry (0.9.5 ships an older v1 without it)."""
    try:
        from llamafactory.v1.utils.plugin import BasePlugin
    except ImportError:
        return False
    return hasattr(BasePlugin, "parse_params")


V1_REGISTRY = _has_v1_registry()


def _module(name: str, **attributes) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    return module


def test_every_seam_checks_out_on_the_installed_llamafactory():
    from importlib import import_module

    for module_name, targets in _hook.PATCHES.items():
        if module_name == "peft" or module_name.startswith("llamafactory.v1.") and not V1_REGISTRY:
            continue
        module = import_module(module_name)
        for target in targets:
            submodule, function = target.split(":")
            patch = getattr(import_module(f"prefixmemory_patches.{submodule}"), function)
            assert patch.seams, target
            assert [seam.check(module) for seam in patch.seams] == [None] * len(patch.seams), target
    assert problems() == {}


@pytest.mark.parametrize(
    ("seam", "module", "problem"),
    [
        (Seam("f", params=("a", "b")), _module("m", f=lambda a, b, c=1: 0), None),
        (Seam("f", params=("a", "b")), _module("m"), "m.f is missing"),
        (Seam("f", params=("a", "b")), _module("m", f=lambda a, x, b: 0),
         "m.f has parameters (a, x, b), expected (a, b, ...)"),
        (Seam("f", params=("a",)), _module("m", f=lambda a, b: 0), "m.f has parameters (a, b), expected (a, ...)"),
        (Seam("C.g", params=("self",)), _module("m", C=type("C", (), {"g": lambda self: 0})), None),
        (Seam("L", container=list), _module("m", L={"lora"}), "m.L is a set, not a list"),
        (Seam("f", fields=("x",)), _module("m", f=len), "m.f is not a dataclass"),
    ],
)  # fmt: skip
def test_seam_check_names_what_differs(seam, module, problem):
    assert seam.check(module) == problem


def test_dataclass_fields_are_checked():
    from dataclasses import make_dataclass

    module = _module("m", Args=make_dataclass("Args", ["finetuning_type", "stage"]))
    assert Seam("Args", fields=("stage",)).check(module) is None
    assert Seam("Args", fields=("stage", "ref_model")).check(module) == "m.Args lacks the field(s) ref_model"


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=300,
    )


# create_ref_model as a future LLaMA-Factory might change it; every other seam is the installed one.
_BREAK_A_SEAM = textwrap.dedent("""
    import types, sys
    from prefixmemory_patches.seams import guarded_apply, problems
    from prefixmemory_patches.llamafactory.bends.train_trainer_utils import patch_trainer_utils
    changed = types.ModuleType("llamafactory.train.trainer_utils")
    changed.create_ref_model = lambda model_args, finetuning_args, training_args, add_valuehead=False: None
    print(guarded_apply(patch_trainer_utils, changed), hasattr(changed, "_prefixmemory_patched"))
    import llamafactory
    from llamafactory.hparams import FinetuningArguments
    print(FinetuningArguments(finetuning_type="lora").finetuning_type)
""")


def test_a_changed_seam_leaves_the_module_alone_and_other_methods_work():
    result = _run(_BREAK_A_SEAM)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False", "lora"]


@pytest.mark.parametrize("method", ["prefixmemory", "prefix"])
def test_a_changed_seam_stops_our_methods_with_one_line(method):
    result = _run(_BREAK_A_SEAM + f"FinetuningArguments(finetuning_type={method!r})\n")
    assert result.returncode != 0
    version = _run("import llamafactory; print(llamafactory.__version__)").stdout.strip()
    assert "Traceback" not in result.stderr  # a refusal of ours: one line (errors.py)
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: finetuning_type: {method} is not available with llamafactory "
        f"{version}: llamafactory.train.trainer_utils.create_ref_model has parameters "
        "(model_args, finetuning_args, training_args, add_valuehead=False), "
        "expected (model_args, finetuning_args, add_valuehead, ...)."
    )


def test_a_failing_patch_is_recorded_not_raised(monkeypatch):
    monkeypatch.setattr(seams, "_problems", {})  # this process's record stays clean for the tests after this one

    @bends(Seam("x"))
    def patch_broken(module):
        raise KeyError("y")

    module = _module("fake.failing", x=1)
    assert guarded_apply(patch_broken, module) is False
    assert problems()["fake.failing"] == "patching fake.failing failed: KeyError: 'y'"


def test_a_new_version_whose_seams_check_out_is_patched_with_one_info_line():
    result = _run("""
        import llamafactory
        llamafactory.__version__ = "0.9.99"
        from llamafactory.hparams import FinetuningArguments
        for _ in range(2):
            print(FinetuningArguments(finetuning_type="prefixmemory").peft_config.peft_type.value)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split().count("PREFIXMEMORY") == 2
    line = "llamafactory 0.9.99: every seam of the prefixmemory patches checks out (tested: 0.9.5)."
    assert (result.stdout + result.stderr).count(line) == 1


def test_each_bends_module_is_named_after_the_llamafactory_module_it_bends():
    for module_name, targets in _hook.PATCHES.items():
        if module_name == "peft":
            continue
        bent = module_name.removeprefix("llamafactory.").replace(".", "_")
        for target in targets:
            package, _, name = target.split(":")[0].rpartition(".")
            assert package == "llamafactory.bends", target
            assert bent.startswith(name), f"{target} bends {module_name}"

"""Startup hook, run from prefixmemory.pth in every interpreter: arm the patches, lazily.

Standard library only. It puts a finder at the front of sys.meta_path that reacts to a handful of module
names: when one of them has executed, its patches are applied, before any other module can bind names from it.
For ``peft`` that registers the PEFT method, so any program that imports peft can load a PrefixMemory adapter.
For ``llamafactory.*`` this covers the CLI, torchrun workers (which re-run llamafactory/launcher.py by path) and
the web UI's training subprocesses. Programs that import none of these pay one list entry.
"""

import sys
from importlib.machinery import PathFinder

# module name -> "module_in_prefixmemory_patches:function", ...; the functions take the just-executed module.
PATCHES = {
    "peft": ("peft_method:register",),
    "llamafactory.extras.constants": ("llamafactory.bends.extras_constants:patch_constants",),
    "llamafactory.hparams.finetuning_args": (
        "llamafactory.bends.hparams_finetuning_args:guard_finetuning_args",
        "llamafactory.bends.hparams_finetuning_args:patch_finetuning_args",
    ),
    "llamafactory.hparams.parser": ("llamafactory.bends.hparams_parser:patch_parser",),
    "llamafactory.model.adapter": ("llamafactory.bends.model_adapter:patch_adapter",),
    "llamafactory.train.trainer_utils": ("llamafactory.bends.train_trainer_utils:patch_trainer_utils",),
    "llamafactory.train.tuner": ("llamafactory.bends.train_tuner:patch_tuner",),
    "llamafactory.api.chat": ("llamafactory.bends.api_chat:patch_api_chat",),
    "llamafactory.webui.common": ("llamafactory.bends.webui:patch_common",),
    "llamafactory.webui.locales": ("llamafactory.bends.webui:patch_locales",),
    "llamafactory.webui.control": ("llamafactory.bends.webui:patch_control",),
    "llamafactory.webui.components.train": ("llamafactory.bends.webui:patch_train_tab",),
    "llamafactory.webui.components.export": ("llamafactory.bends.webui:patch_export_tab",),
    "llamafactory.webui.runner": ("llamafactory.bends.webui:patch_runner",),
    "llamafactory.v1.plugins.model_plugins.peft": ("llamafactory.bends.v1:register_peft_plugin",),
}


class Patcher:
    """A meta-path finder that wraps the loaders of the modules in PATCHES; finds nothing itself."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in PATCHES:
            return None
        spec = PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return None
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            for target in PATCHES[fullname]:
                _apply(target, module)

        spec.loader.exec_module = exec_and_patch  # this loader instance serves only this module
        return spec


def _apply(target, module):
    """Apply one patch once its seams check out (see seams.py); never raises into the importing program."""
    from importlib import import_module

    from prefixmemory_patches.seams import guarded_apply

    submodule, function = target.split(":")
    guarded_apply(getattr(import_module(f"prefixmemory_patches.{submodule}"), function), module)


def install():
    """Put the finder in front of sys.meta_path once; a no-op when it is there already."""
    if not any(isinstance(finder, Patcher) for finder in sys.meta_path):
        sys.meta_path.insert(0, Patcher())


install()

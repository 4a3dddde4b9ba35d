"""Startup hook, run from prefixmemory.pth in every interpreter: arm the LLaMA-Factory patches, lazily.

Standard library only. It puts a finder at the front of sys.meta_path that reacts to a handful of
``llamafactory.*`` module names: when one of them has executed, its patch is applied, before any other
module can bind names from it. This covers the CLI, torchrun workers (which re-run llamafactory/launcher.py
by path) and the web UI's training subprocesses. Programs that never import llamafactory pay one list entry.
"""

import sys
from importlib.machinery import PathFinder

# module name -> "module_in_prefixmemory_patches.llamafactory:function"; the functions take the module.
PATCHES = {
    "llamafactory": "version:check_version",
    "llamafactory.extras.constants": "constants:patch_constants",
    "llamafactory.hparams.finetuning_args": "hparams:patch_finetuning_args",
    "llamafactory.hparams.parser": "hparams:patch_parser",
    "llamafactory.model.adapter": "model:patch_adapter",
    "llamafactory.train.trainer_utils": "train:patch_trainer_utils",
    "llamafactory.train.tuner": "export:patch_tuner",
    "llamafactory.webui.common": "webui:patch_common",
    "llamafactory.webui.locales": "webui:patch_locales",
    "llamafactory.webui.control": "webui:patch_control",
    "llamafactory.webui.components.train": "webui:patch_train_tab",
    "llamafactory.webui.components.export": "webui:patch_export_tab",
    "llamafactory.webui.runner": "webui:patch_runner",
}


class LlamaFactoryPatcher:
    """A meta-path finder that wraps the loaders of the modules in PATCHES; finds nothing itself."""

    def __init__(self):
        self.enabled = True

    def find_spec(self, fullname, path=None, target=None):
        if not self.enabled or fullname not in PATCHES:
            return None
        spec = PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return None
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            if self.enabled:
                _apply(PATCHES[fullname], module)

        spec.loader.exec_module = exec_and_patch  # this loader instance serves only this module
        return spec


def _apply(target, module):
    from importlib import import_module

    submodule, function = target.split(":")
    getattr(import_module(f"prefixmemory_patches.llamafactory.{submodule}"), function)(module)


def install():
    """Put the finder in front of sys.meta_path once; a no-op when it is there already."""
    if not any(isinstance(finder, LlamaFactoryPatcher) for finder in sys.meta_path):
        sys.meta_path.insert(0, LlamaFactoryPatcher())


def disable():
    """Stop patching (used when the installed LLaMA-Factory is a version the patches do not know)."""
    for finder in sys.meta_path:
        if isinstance(finder, LlamaFactoryPatcher):
            finder.enabled = False


install()

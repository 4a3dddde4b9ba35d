"""Patches of LLaMA-Factory 0.9.x (``bends/``), our checks of a run (``checks/``) and our keys (``options.py``).

The bends are applied by ``prefixmemory_patches._hook``.

Each function is named ``patch_<what it bends>``, takes the just-executed LLaMA-Factory module, is idempotent,
and opens with a line of why. Standard library only here: every patch imports this package first.
"""

import functools
from contextlib import contextmanager

PMT = "prefixmemory"
OUR_TYPES = (PMT, "prefix")  # classic prefix-tuning rides on the same machinery
# where an export folder keeps its adapter, per method (written by bends/train_tuner.py, found by checks/)
ADAPTER_SUBFOLDERS = {"prefixmemory": "prefixmemory_adapter", "prefix": "prefix_adapter"}


def mark_patched(module, name: str) -> bool:
    """True the first time ``name`` is recorded on ``module``; makes every patch idempotent."""
    done = module.__dict__.setdefault("_prefixmemory_patched", set())
    if name in done:
        return False
    done.add(name)
    return True


def wraps_original(module, path: str):
    """Decorator: ``module.<path>`` becomes the decorated function, called as ``function(original, *args)``.

    The replacement carries the original's name, docstring and signature; a second application to the same
    module and path changes nothing.
    """

    def decorate(function):
        if not mark_patched(module, path):
            return function
        owner_path, _, name = path.rpartition(".")
        owner = functools.reduce(getattr, owner_path.split("."), module) if owner_path else module
        original = getattr(owner, name)

        @functools.wraps(original)
        def patched(*args, **kwargs):
            return function(original, *args, **kwargs)

        setattr(owner, name, patched)
        return patched

    return decorate


@contextmanager
def as_finetuning_type(finetuning_args, name: str):
    """Let an upstream check that knows only its own method names run unchanged."""
    real = finetuning_args.finetuning_type
    finetuning_args.finetuning_type = name
    try:
        yield
    finally:
        finetuning_args.finetuning_type = real


def needs_reference(finetuning_args) -> bool:
    """Whether the run's preference loss compares against a reference model (KTO, DPO with use_ref_model)."""
    return finetuning_args.stage == "kto" or (finetuning_args.stage == "dpo" and finetuning_args.use_ref_model)

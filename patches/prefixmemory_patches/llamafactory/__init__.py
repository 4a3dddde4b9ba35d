"""Patches of LLaMA-Factory 0.9.5, one module per subsystem; applied by ``prefixmemory_patches._hook``.

Each function is named ``patch_<what it bends>``, takes the just-executed LLaMA-Factory module, is idempotent,
and opens with a line of why.
"""

SUPPORTED_VERSION = "0.9.5"
PMT = "prefixmemory"
OUR_TYPES = (PMT, "prefix")  # classic prefix-tuning rides on the same machinery


def mark_patched(module, name: str) -> bool:
    """True the first time ``name`` is recorded on ``module``; makes every patch idempotent."""
    done = module.__dict__.setdefault("_prefixmemory_patched", set())
    if name in done:
        return False
    done.add(name)
    return True

"""Version guard: patch only the LLaMA-Factory release the patches were written against."""

import warnings

from prefixmemory_patches import _hook

from . import SUPPORTED_VERSION


def check_version(module) -> None:
    """Disarm the patches, with one warning, when llamafactory is not the supported release."""
    version = getattr(module, "__version__", None)
    if version != SUPPORTED_VERSION:
        _hook.disable()
        warnings.warn(
            f"llamafactory-prefixmemory supports llamafactory=={SUPPORTED_VERSION}, found {version}: "
            "finetuning_type prefixmemory is not available. Install llamafactory==0.9.5.",
            stacklevel=2,
        )

"""What llamafactory-prefixmemory bends in code it does not own.

Kept import-light on purpose: the startup hook (``_hook``) imports this package in every Python process,
so nothing here may import torch, peft or llamafactory at module level.
"""

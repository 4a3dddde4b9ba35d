"""Startup hook, run from prefixmemory.pth in every interpreter: arm the LLaMA-Factory patches, lazily.

Standard library only, and it imports nothing heavy: it puts a finder in front of sys.meta_path that waits for
``llamafactory`` to be imported (by the CLI, a torchrun worker, or a web-UI subprocess) and then applies the
patches. Programs that never import llamafactory pay one list insertion.
"""

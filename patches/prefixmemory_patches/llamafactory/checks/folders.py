"""Folders a run writes must not be folders it reads: compared after resolving symlinks, ``..`` and slashes."""

from __future__ import annotations

import os

from ...errors import PrefixMemoryError


def check_writes_apart(write_key: str, write_path: str | None, reads: dict[str, list[str]], replaces=False) -> None:
    """Refuse ``write_path`` when it is, or lies inside, a local folder named by one of ``reads`` (key -> paths);
    with ``replaces`` (a folder written whole and swapped in, an export) also when it holds one."""
    if not write_path:
        return
    target = os.path.realpath(write_path)
    for read_key, paths in reads.items():
        for path in paths:
            if not path or not os.path.exists(path):
                continue  # a hub id: nothing local to overwrite
            source = os.path.realpath(path)
            if target == source or target.startswith(source.rstrip(os.sep) + os.sep):
                raise PrefixMemoryError(
                    f"`{write_key}` {write_path} resolves to {target}, inside `{read_key}` {path}: the run would "
                    "write into a folder it reads; choose a new folder."
                )
            if replaces and source.startswith(target.rstrip(os.sep) + os.sep):
                raise PrefixMemoryError(
                    f"`{write_key}` {write_path} resolves to {target}, which holds `{read_key}` {path}: the run "
                    "would replace a folder it reads; choose a new folder."
                )

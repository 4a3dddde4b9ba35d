"""What a run writes, checked before any weight loads.

- ``output_dir`` / ``export_dir`` spelled with ``~`` or ``$VAR``: expanded in the arguments themselves (upstream used
  the text as a relative path: a literal ``./~`` folder); an unset variable is refused.
- ``export_dir``: written whole into a hidden sibling and moved into place last, so a failure (a full disk) leaves
  no half folder and no old export touched; an existing folder is replaced only when it is an earlier export of
  ours (its marker lists every file) and ``PREFIXMEMORY_OVERWRITE_EXPORT=1`` asks for it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager

from ...errors import PrefixMemoryError
from .. import OUR_TYPES
from .given_keys import given_values

OUTPUT_KEYS = ("output_dir", "export_dir")
EXPORT_MARKER = "prefixmemory_export.json"
OVERWRITE_EXPORT = "PREFIXMEMORY_OVERWRITE_EXPORT"


def expand_output_paths(args):
    """``args`` (a YAML dict or an argv list) with `~` and `$VAR` expanded in `output_dir` and `export_dir`."""
    if given_values(args).get("finetuning_type") not in OUR_TYPES:
        return args
    if isinstance(args, dict):
        return {key: _expanded(key, value) if key in OUTPUT_KEYS else value for key, value in args.items()}
    args = list(args)
    for index, item in enumerate(args):
        key, equals, value = str(item)[2:].partition("=") if str(item).startswith("--") else ("", "", "")
        if key in OUTPUT_KEYS and equals:
            args[index] = f"--{key}={_expanded(key, value)}"
        elif key in OUTPUT_KEYS and index + 1 < len(args):
            args[index + 1] = _expanded(key, args[index + 1])
    return args


def _expanded(key: str, value):
    if not isinstance(value, str):
        return value
    path = os.path.expandvars(os.path.expanduser(value))
    unset = re.search(r"\$\{?(\w+)", path)
    if unset:
        raise PrefixMemoryError(
            f"`{key}` {value} names the environment variable ${unset[1]}, which is not set; set it or write the "
            "path out."
        )
    return path


@contextmanager
def staged_export(export_dir: str, method: str):
    """Yield a hidden sibling folder to write the export into; move it to ``export_dir`` only once complete.

    Any failure removes the sibling and leaves ``export_dir`` as it was; an OSError (a full disk) becomes one line.
    """
    target = os.path.realpath(export_dir)
    replacing = _replaceable(export_dir, target)
    parent, name = os.path.split(target)
    try:
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=f".{name}.partial-", dir=parent)
    except OSError as error:
        raise PrefixMemoryError(
            f"`export_dir` {export_dir} cannot be written ({error.strerror}); choose a folder you can write."
        ) from None
    try:
        yield staging
        _write_marker(staging, method)
        _move_into_place(staging, target, replacing)
    except OSError as error:
        kept = "the earlier export is unchanged" if replacing else "nothing was left behind"
        raise PrefixMemoryError(
            f"`export_dir` {export_dir}: writing the export failed ({error.strerror or error}); {kept}."
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _replaceable(export_dir: str, target: str) -> bool:
    """False for a new or empty folder; True for an earlier export of ours the user asked to replace; else refused."""
    if not os.path.exists(target):
        return False
    if not os.path.isdir(target):
        raise PrefixMemoryError(f"`export_dir` {export_dir} is a file, not a folder; choose a new folder.")
    found = sorted(_files_under(target))
    if not found:
        return False
    listed = _marker_files(target)
    foreign = found if listed is None else [path for path in found if path != EXPORT_MARKER and path not in listed]
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise PrefixMemoryError(
            f"`export_dir` {export_dir} holds files that no export of ours wrote ({shown}); they are never "
            "replaced: choose a new or empty folder."
        )
    if os.environ.get(OVERWRITE_EXPORT, "0") in ("", "0"):
        raise PrefixMemoryError(
            f"`export_dir` {export_dir} holds an earlier export; set {OVERWRITE_EXPORT}=1 to replace it, or choose "
            "a new folder."
        )
    return True


def _files_under(folder: str) -> list[str]:
    return [os.path.relpath(os.path.join(root, name), folder) for root, _, names in os.walk(folder) for name in names]


def _marker_files(folder: str) -> set[str] | None:
    """The files the marker of an export of ours lists, or None when there is no readable marker."""
    try:
        with open(os.path.join(folder, EXPORT_MARKER), encoding="utf-8") as file:
            files = json.load(file).get("files")
    except (OSError, ValueError, AttributeError):
        return None
    return set(files) if isinstance(files, list) else None


def _write_marker(staging: str, method: str) -> None:
    """The last file of a complete export: what it is, and every file it holds (the files a replacement may remove)."""
    files = sorted(_files_under(staging))
    record = {"written_by": "llamafactory-cli export", "finetuning_type": method, "files": files}
    with open(os.path.join(staging, EXPORT_MARKER), "w", encoding="utf-8") as file:
        json.dump(record, file, indent=2)


def _move_into_place(staging: str, target: str, replacing: bool) -> None:
    """Rename the complete export to ``target`` (new or empty: one rename); an earlier export is set aside first and
    put back if the rename fails, then removed."""
    if not replacing:
        os.rename(staging, target)
        return
    old = f"{staging}-replaced"
    os.rename(target, old)
    try:
        os.rename(staging, target)
    except OSError:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)

"""What a run writes and what a server generates, checked before any weight loads or any token is generated.

- ``output_dir`` / ``export_dir`` spelled with ``~`` or ``$VAR``: expanded in the arguments themselves (upstream used
  the text as a relative path: a literal ``./~`` folder); an unset variable is refused.
- ``output_dir`` that is a file, lies in ``dataset_dir``, is someone else's project, or is in use by another run (an
  exclusive ``flock`` on ``.prefixmemory.lock``, held by the training process: the OS drops it when the process dies,
  so a killed run never blocks the next). Read-only shows when that lock file cannot be created, before training.
- ``export_dir``: written whole into a hidden sibling and moved into place last, so a failure (a full disk) leaves
  no half folder and no old export touched; an existing folder is replaced only when it is an earlier export of
  ours (its marker lists every file) and ``PREFIXMEMORY_OVERWRITE_EXPORT=1`` asks for it.
- ``llamafactory-cli api`` requests: sampling fields in range, ``max_tokens`` within the model's context.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import tempfile
from contextlib import contextmanager

from ...errors import PrefixMemoryError
from .. import OUR_TYPES
from .folders import check_writes_apart
from .given_keys import given_values

OUTPUT_KEYS = ("output_dir", "export_dir")
LOCK_FILE = ".prefixmemory.lock"
EXPORT_MARKER = "prefixmemory_export.json"
OVERWRITE_EXPORT = "PREFIXMEMORY_OVERWRITE_EXPORT"
# Files only a training or predict run writes: a folder holding one is an earlier run's, reusable (resume, overwrite).
RUN_TRACES = frozenset(
    ("trainer_state.json", "trainer_log.jsonl", "training_args.bin", "adapter_config.json", "all_results.json",
     "train_results.json", "predict_results.json", "generated_predictions.jsonl", "llamaboard_config.yaml",
     "running_log.txt")
)  # fmt: skip
CHECKPOINT = re.compile(r"checkpoint-\d+")
# Without a run trace, these mark a folder as another project's: a run would write beside them, or over them.
PROJECT_FILES = frozenset((".git", "pyproject.toml", "setup.py", "setup.cfg", "package.json"))
WRITTEN_BY_A_RUN = frozenset(
    ("README.md", "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
     "special_tokens_map.json", "chat_template.jinja", "model.safetensors", "adapter_model.safetensors")
)  # fmt: skip
_held: dict[str, int] = {}  # output folder -> the open, flock-ed lock file of this process
_claiming: list[bool] = []


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


def check_output_dir(data_args, training_args) -> None:
    """`output_dir` is a folder, apart from `dataset_dir`, not another project's; held while this process trains."""
    output_dir = training_args.output_dir
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise PrefixMemoryError(f"`output_dir` {output_dir} is a file, not a folder; choose a folder.")
    if data_args.dataset_dir != "ONLINE":
        check_writes_apart("output_dir", output_dir, {"dataset_dir": [data_args.dataset_dir]})
    _check_not_a_project(output_dir)
    if _claiming and training_args.should_save:  # the main process (or each node's, with save_on_each_node)
        _claim(output_dir)


def _check_not_a_project(output_dir: str) -> None:
    """An existing folder with no earlier run in it must not hold a project's files or files a run writes over."""
    names = set(os.listdir(output_dir)) if os.path.isdir(output_dir) else set()
    if names & RUN_TRACES or any(CHECKPOINT.fullmatch(name) for name in names):
        return
    found = sorted(names & (PROJECT_FILES | WRITTEN_BY_A_RUN))
    if found:
        folder = os.path.realpath(output_dir)
        shown = output_dir if folder == output_dir.rstrip(os.sep) else f"{output_dir} ({folder})"
        raise PrefixMemoryError(
            f"`output_dir` {shown} holds {', '.join(found)} and no earlier run: the run would write among another "
            "project's files; choose a new folder."
        )


@contextmanager
def claiming():
    """Within this block (LLaMA-Factory's training function), a run that passes its checks holds its `output_dir`.

    Parsing arguments elsewhere (the web UI, recipe checks) takes no lock and creates nothing.
    """
    _claiming.append(True)
    try:
        yield
    finally:
        _claiming.pop()
        if not _claiming:
            for fd in _held.values():
                os.close(fd)  # also closes the lock
            _held.clear()


def _claim(output_dir: str) -> None:
    folder = os.path.realpath(output_dir)
    if folder in _held:
        return
    try:
        os.makedirs(folder, exist_ok=True)
        fd = os.open(os.path.join(folder, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise PrefixMemoryError(
            f"`output_dir` {output_dir} cannot be written ({error.strerror}); choose a folder you can write."
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise PrefixMemoryError(
            f"`output_dir` {output_dir} is in use by another training run (pid {pid}); wait for it to end or "
            "choose another folder."
        ) from None
    except OSError as error:  # a filesystem without locks: train unguarded rather than not at all
        os.close(fd)
        logging.getLogger("llamafactory.prefixmemory").warning(f"`output_dir` {output_dir} cannot be locked: {error}")
        return
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[folder] = fd


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


# field: (allowed, what is allowed); a value outside made generate() raise (HTTP 500) or hang the server.
REQUEST_LIMITS = {
    "max_tokens": (lambda value: value >= 1, "1 or more"),
    "temperature": (lambda value: value >= 0, "0 (greedy) or more"),
    "top_p": (lambda value: 0 <= value <= 1, "from 0 to 1"),
    "presence_penalty": (lambda value: value > 0, "above 0 (LLaMA-Factory uses it as the repetition penalty)"),
}


def check_generation_request(request, context: int | None) -> None:
    """Sampling fields in range and `max_tokens` within ``context`` (the model's positions), as one line."""
    for field, (allowed, what) in REQUEST_LIMITS.items():
        value = getattr(request, field, None)
        if value is not None and not allowed(value):
            raise PrefixMemoryError(f"`{field}` {value} is out of range: it must be {what}.")
    if context and request.max_tokens and request.max_tokens > context:
        raise PrefixMemoryError(
            f"`max_tokens` {request.max_tokens} exceeds the model's context of {context} tokens "
            f"(max_position_embeddings); ask for at most {context}."
        )

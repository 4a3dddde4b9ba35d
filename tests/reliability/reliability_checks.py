"""What every bad-input test checks: one refusal line and exit status 1, and input folders left as they were."""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from pathlib import Path


def fingerprint(*folders: Path) -> dict[str, str]:
    """sha256 of every file under ``folders`` (and of every symlink's target name), keyed by path."""
    prints = {}
    for folder in folders:
        for path in sorted(Path(folder).rglob("*")):
            if path.is_symlink():
                prints[str(path)] = "-> " + str(path.readlink())
            elif path.is_file():
                prints[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                prints[str(path)] = "folder"
    return prints


@contextmanager
def unchanged(*folders: Path):
    """Assert that nothing under ``folders`` is added, removed or modified by the block."""
    before = fingerprint(*folders)
    yield
    after = fingerprint(*folders)
    assert after == before, f"changed: {sorted(set(after.items()) ^ set(before.items()))[:6]}"


def refusal(result, before_load: bool = True) -> str:
    """The run failed with status 1 and one ``error:`` line, no traceback; returns that line."""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == 1, result.stderr[-3000:]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    if before_load:
        assert "trainable params" not in result.stdout + result.stderr
    return errors[0]

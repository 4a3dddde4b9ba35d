"""Refusals: one exception type for our own checks, printed as one line instead of a traceback.

A refusal says what is wrong and what to do; the stack above it only hides that line. ``PREFIXMEMORY_TRACEBACK=1``
brings the full traceback back. Standard library only: installed from the patches, in every LLaMA-Factory process.
"""

import os
import sys

TRACEBACK_VARIABLE = "PREFIXMEMORY_TRACEBACK"


class PrefixMemoryError(ValueError):
    """Bad input or a fault found by our checks; the message names the key or file and what is allowed."""


def report_refusals_in_one_line() -> None:
    """Let uncaught PrefixMemoryErrors print ``error: <message>`` on stderr (exit status 1); others are untouched."""
    if getattr(sys.excepthook, "reports_refusals", False):
        return
    previous = sys.excepthook

    def excepthook(kind, error, traceback):
        if issubclass(kind, PrefixMemoryError) and os.environ.get(TRACEBACK_VARIABLE, "0") in ("", "0"):
            print(f"error: {error}", file=sys.stderr)
        else:
            previous(kind, error, traceback)

    excepthook.reports_refusals = True
    sys.excepthook = excepthook

"""The marker file of a folder a study command wrote: a second run may reuse that folder, never write over another.

The marker is written last, so its presence means the folder is complete. A command names what identifies its
output (the source it converted, the settings it built with); a folder whose marker records the same entries is
left as it is, and a folder holding anything else is refused untouched.
"""

from __future__ import annotations

import json
from pathlib import Path

MARKER = "prefixmemory_source.json"


def written_before(folder: Path, identity: dict, what: str) -> bool:
    """True when ``folder``'s marker records ``identity``; False when ``folder`` is new or empty; else ValueError."""
    marker = folder / MARKER
    if marker.is_file():
        try:
            recorded = json.loads(marker.read_text())
        except ValueError:
            recorded = {}
        if isinstance(recorded, dict) and all(recorded.get(key) == value for key, value in identity.items()):
            return True
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ValueError(f"{folder} exists and is not {what}; name an empty or new folder.")
    return False


def mark(folder: Path, record: dict) -> None:
    """Write the marker: the last file of a complete folder."""
    (folder / MARKER).write_text(json.dumps(record, indent=2) + "\n")

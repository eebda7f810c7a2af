"""Durable small files: written whole or not at all.

A copy of edge_agent/files.py's approach (each deployable ships alone, so the
job service imports nothing from the agent or the central service).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

TEMP_PREFIX = "."


def write_atomic(path: Path, data: bytes) -> None:
    """Temp file in the same folder, fsync, rename, fsync the folder: a crash
    leaves either the old file or the new one, never half of one. The file is
    readable by the service's user only (mkstemp creates it with mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TEMP_PREFIX}{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Makes renames and unlinks in ``folder`` durable (POSIX: the entry lives in
    the folder, whose own fsync persists it)."""
    if os.name == "nt":
        # Windows cannot open a folder as a file; NTFS journals the rename itself.
        return
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)

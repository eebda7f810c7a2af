"""Reading a message the PBX recorded on this host (a job's ``recordingPath``).

The routing script names a file; the service must read only inside the one
folder the PBX records into, whatever the path says: ``..``, symlinks out of
the folder and symlinked subfolders are all refused.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from swyx_jobservice.errors import BadRequest, PayloadTooLarge

FIELD = "recordingPath"
# Not on Windows; there, symlinks need admin rights and resolve() already follows them.
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_BINARY = getattr(os, "O_BINARY", 0)
# A FIFO planted in the folder would block open() until a writer comes.
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


def resolve_inside(folder: Path | None, path: str) -> Path:
    """The real path of ``path`` if it is a file inside ``folder``."""
    if folder is None:
        raise BadRequest("recordingPath is not accepted here: no recordings folder is set", FIELD)
    given = Path(path)
    if not given.is_absolute():
        raise BadRequest("recordingPath must be an absolute path", FIELD)
    try:
        # strict: every symlink is followed to its end, so the check below sees
        # where the bytes really are, not where the name says they are.
        real = given.resolve(strict=True)
        root = folder.resolve(strict=True)
    except FileNotFoundError:
        raise BadRequest("recordingPath does not exist", FIELD) from None
    except (OSError, RuntimeError, ValueError):
        raise BadRequest("recordingPath cannot be resolved", FIELD) from None
    if not real.is_relative_to(root) or real == root:
        raise BadRequest("recordingPath is outside the recordings folder", FIELD)
    return real


def read_recording(folder: Path | None, path: str, max_bytes: int) -> bytes:
    """The file's bytes, read once so that the copy and the checks see the same data."""
    real = resolve_inside(folder, path)
    try:
        # O_NOFOLLOW: a file swapped for a symlink after resolve() is refused,
        # not followed out of the folder.
        fd = os.open(real, os.O_RDONLY | _NOFOLLOW | _BINARY | _NONBLOCK)
    except OSError:
        raise BadRequest("recordingPath cannot be opened", FIELD) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise BadRequest("recordingPath is not a regular file", FIELD)
        if info.st_size > max_bytes:
            raise PayloadTooLarge(f"recording larger than {max_bytes} bytes", FIELD)
        with os.fdopen(fd, "rb", closefd=False) as f:
            # One byte more than allowed tells a file that grew since fstat.
            data = f.read(max_bytes + 1)
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"recording larger than {max_bytes} bytes", FIELD)
    return data

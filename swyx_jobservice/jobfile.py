"""Reading the service's own small files at start so that no one file can stop it.

After a disk fault or a person's hand, ``jobs/<id>.json`` (or a tombstone or a
notice) may be anything: a huge or sparse file, a symlink to ``/dev/zero``, a FIFO
(whose open waits for a writer forever), a folder. So the kind and size are judged
by ``lstat`` first, nothing is followed, a FIFO or device is never opened, and a
regular file is read for at most ``limit + 1`` bytes: more than any job has is
damage, not a job.

A file the service may not read right now (a virus scanner holding it on Windows, a
sharing violation, rights an operator changed) is not damaged: it is asked again a
few times with short pauses (as ``edge_agent.files`` retries a rename), then held
back and tried again later, never quarantined for that.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

from edge_agent import platforms
from swyx_jobservice.errors import JobFileBusy, JobFileDamaged

# Enough for any job file (the recording lies beside it); a bigger file is no job.
READ_LIMIT = 64 * 1024
# Windows: a file a scanner holds is usually free within a fraction of a second.
READ_ATTEMPTS = 5
READ_PAUSE_S = 0.05
# Retries are paid at start, while the port is closed: bounded for all files together.
RETRY_BUDGET_S = 2.0

_KINDS = {
    stat.S_IFDIR: "folder",
    stat.S_IFLNK: "symbolic link",
    stat.S_IFIFO: "FIFO",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
    stat.S_IFSOCK: "socket",
}


def kind_of(mode: int) -> str:
    """What an entry is, in words: "file" for a regular file."""
    if stat.S_ISREG(mode):
        return "file"
    return _KINDS.get(stat.S_IFMT(mode), "special file")


def open_flags() -> int:
    """Read-only, never following a symlink, never waiting on a FIFO. Windows has
    neither flag (nor FIFOs; symlinks need admin rights): the lstat check stands alone
    there, and O_BINARY keeps the bytes as they are."""
    if platforms.on_windows():
        return os.O_RDONLY | getattr(os, "O_BINARY", 0)
    return os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)


class Reader:
    """Reads files at start, sharing one retry budget among them."""

    def __init__(self, budget_s: float = RETRY_BUDGET_S) -> None:
        self.budget_s = budget_s

    def read(self, path: Path, limit: int = READ_LIMIT) -> bytes:
        """The file's bytes. JobFileDamaged when it is no regular file or is bigger
        than `limit`, or cannot be read at all (EIO); JobFileBusy when it may not be
        read now; FileNotFoundError when it is gone."""
        info = path.lstat()
        kind = kind_of(info.st_mode)
        if kind != "file":
            raise JobFileDamaged(f"not a regular file but a {kind}")
        if info.st_size > limit:
            raise JobFileDamaged(f"{info.st_size} bytes, more than the {limit} a job file has")
        attempt = 1
        while True:
            try:
                return _read(path, limit)
            except PermissionError as exc:
                # POSIX: a file mode does not change by waiting; Windows: a sharing
                # violation (a scanner) usually ends within a fraction of a second.
                if not platforms.on_windows() or attempt >= READ_ATTEMPTS:
                    raise JobFileBusy(f"may not be read now: {exc.strerror or exc}") from None
                if self.budget_s < READ_PAUSE_S:
                    raise JobFileBusy(f"may not be read now: {exc.strerror or exc}") from None
                self.budget_s -= READ_PAUSE_S
                attempt += 1
                time.sleep(READ_PAUSE_S)
            except FileNotFoundError:
                raise
            except OSError as exc:
                # EIO, ELOOP (swapped for a symlink after lstat), ENXIO: never a job.
                raise JobFileDamaged(f"cannot be read: {exc.strerror or exc}") from None


def _read(path: Path, limit: int) -> bytes:
    fd = os.open(path, open_flags())
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise JobFileDamaged(f"not a regular file but a {kind_of(info.st_mode)}")
        chunks: list[bytes] = []
        size = 0
        # One byte more than allowed tells a file that grew (or lied in lstat).
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > limit:
        raise JobFileDamaged(f"more than the {limit} bytes a job file has")
    return b"".join(chunks)


def read_head(path: Path, limit: int = READ_LIMIT) -> bytes:
    """Up to `limit` bytes of a regular file, for what a damaged one still shows; b""
    for anything else or on any error (never follows, never waits, never raises)."""
    try:
        if not stat.S_ISREG(path.lstat().st_mode):
            return b""
        fd = os.open(path, open_flags())
    except OSError:
        return b""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b""
        chunks: list[bytes] = []
        size = 0
        while size < limit:
            chunk = os.read(fd, limit - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    except OSError:
        return b""
    finally:
        os.close(fd)

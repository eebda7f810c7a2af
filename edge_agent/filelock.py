"""An exclusive lock on a sidecar file, between threads and processes alike.

The simulator's files are replaced whole on every write, so the lock lives in a
file of its own (``<name>.lock``) that is never replaced. Each holder opens its
own descriptor: POSIX ``flock`` and Windows ``LockFileEx`` (``msvcrt.locking``)
both exclude another descriptor of the same process as they exclude another
process. Closing the descriptor releases the lock, also after a crash.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edge_agent import platforms

# msvcrt's blocking mode gives up after ten one-second tries; a short poll instead,
# up to a bound that no simulator update comes near.
WINDOWS_POLL_S = 0.005
WINDOWS_WAIT_S = 60.0


@contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """Holds the lock on `lock_path` (created if need be) for the `with` block."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if platforms.on_windows():
            _lock_windows(fd, lock_path)
            try:
                yield
            finally:
                _msvcrt().locking(fd, _msvcrt().LK_UNLCK, 1)
        else:
            _flock_posix(fd)
            yield
    finally:
        os.close(fd)  # closing releases a POSIX lock


def _flock_posix(fd: int) -> None:
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_EX)


def _lock_windows(fd: int, lock_path: Path) -> None:
    """Locks the file's first byte (a lock past the end of a file is allowed)."""
    msvcrt = _msvcrt()
    deadline = time.monotonic() + WINDOWS_WAIT_S
    while True:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # from the position: 0, just opened
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{lock_path} stayed locked for {WINDOWS_WAIT_S:.0f} s"
                ) from None
            time.sleep(WINDOWS_POLL_S)


def _msvcrt() -> Any:
    return importlib.import_module("msvcrt")

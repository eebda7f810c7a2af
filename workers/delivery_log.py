"""The delivery log: Message-IDs the SMTP server accepted, on disk before the database hears of it.

A worker that crashes after the server's 250 but before its ``sent`` update
leaves the row in ``sending``; whoever reclaims it looks here first and marks it
sent instead of sending it again. One line per accepted message, appended with
O_APPEND (whole lines from any number of processes) and fsynced.

The log is local to the host (or to whatever volume ``RUNDRUF_WORKER_STATE_DIR``
is on): see docs/decisions/workers.md for the window that remains.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

FILE_NAME = "mail-delivery.log"


class DeliveryLog:
    def __init__(self, directory: Path) -> None:
        self.path = directory / FILE_NAME
        self._fd: int | None = None
        self._lock = threading.Lock()

    def record(self, message_id: str) -> None:
        """Appends the Message-ID and waits until it is on disk."""
        line = (message_id + "\n").encode("ascii")
        with self._lock:
            fd = self._open()
            os.write(fd, line)
            os.fsync(fd)

    def contains(self, message_id: str) -> bool:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return False
        # Whole lines only: a line torn by a crash never matches.
        return (message_id + "\n").encode("ascii") in data.splitlines(keepends=True)

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            # A file just created must keep its folder entry through a power cut too.
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        return self._fd

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

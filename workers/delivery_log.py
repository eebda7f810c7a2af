"""The delivery log: Message-IDs the SMTP server accepted, on disk before the database hears of it.

A worker that crashes after the server's 250 but before its ``sent`` update
leaves the row in ``sending``; whoever reclaims it looks here first and marks it
sent instead of sending it again. One line per accepted message, appended with
O_APPEND (whole lines from any number of processes) and fsynced.

One file per UTC day; files older than ``KEEP_DAYS`` are deleted (a reclaim
comes one lease, minutes, after the crash, not days). Nothing is ever rewritten,
so processes appending at the same time need no lock.

The log is local to the host (or to whatever volume ``RUNDRUF_WORKER_STATE_DIR``
is on): see docs/decisions/workers.md for the window that remains.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

PREFIX = "mail-delivery-"
SUFFIX = ".log"
KEEP_DAYS = 7


def _today() -> date:
    return datetime.now(UTC).date()


class DeliveryLog:
    def __init__(self, directory: Path, today: Callable[[], date] = _today) -> None:
        self.directory = directory
        self._today = today
        self._open_day: date | None = None
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
        wanted = (message_id + "\n").encode("ascii")
        for path in self.files():
            try:
                data = path.read_bytes()
            except FileNotFoundError:  # pruned meanwhile
                continue
            # Whole lines only: a line torn by a crash never matches.
            if wanted in data.splitlines(keepends=True):
                return True
        return False

    def files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob(f"{PREFIX}*{SUFFIX}"), reverse=True)

    def prune(self) -> int:
        """Deletes the files of days older than KEEP_DAYS; returns how many."""
        oldest = (self._today() - timedelta(days=KEEP_DAYS)).isoformat()
        removed = 0
        for path in self.files():
            if path.name.removeprefix(PREFIX).removesuffix(SUFFIX) < oldest:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed += 1
        return removed

    def _open(self) -> int:
        day = self._today()
        if self._fd is not None and self._open_day == day:
            return self._fd
        self._close()
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{PREFIX}{day.isoformat()}{SUFFIX}"
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._open_day = day
        # A file just created must keep its folder entry through a power cut too.
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return self._fd

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        with self._lock:
            self._close()

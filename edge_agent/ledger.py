"""Commands this installation completed, on disk: each is executed at most once.

A command seen again (a replay after a reconnect or crash) is answered with the
stored outcome instead of touching the PBX a second time.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge_agent.files import private_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    ok: bool
    result: dict[str, Any]
    error: str | None


class Ledger:
    def __init__(self, path: Path) -> None:
        private_dir(path.parent)
        self.path = path
        self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        """The ledger file; on a disk that refuses it, a stand-in, never a failed start.

        A full disk cannot take the `-shm` file WAL needs: exclusive locking keeps the
        WAL index in memory (https://sqlite.org/wal.html#noshm). A file that does not
        open at all leaves an in-memory ledger: replays are answered for this process.
        """
        try:
            # FULL: the row is on disk before we tell the server the command is done.
            return self._connect("PRAGMA synchronous=FULL", "PRAGMA journal_mode=WAL")
        except (sqlite3.Error, OSError) as exc:
            log.error("the command ledger %s does not open normally: %s", self.path, exc)
        try:
            return self._connect("PRAGMA locking_mode=EXCLUSIVE", "PRAGMA synchronous=FULL")
        except (sqlite3.Error, OSError) as exc:
            log.error("the command ledger cannot be opened (%s); it is kept in memory", exc)
        db = sqlite3.connect(":memory:", isolation_level=None)
        self._create(db)
        return db

    def _connect(self, *pragmas: str) -> sqlite3.Connection:
        """The ledger file with these pragmas and its table; closed again when any fails."""
        db = sqlite3.connect(self.path, isolation_level=None)
        try:
            for pragma in pragmas:
                db.execute(pragma)
            self._create(db)
        except BaseException:
            db.close()
            raise
        return db

    @staticmethod
    def _create(db: sqlite3.Connection) -> None:
        present = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'done'").fetchone()
        if present is None:  # a write: not tried on a file that has the table already
            db.execute(
                "CREATE TABLE IF NOT EXISTS done (id TEXT PRIMARY KEY, ok INTEGER NOT NULL, "
                "result TEXT NOT NULL, error TEXT, at TEXT NOT NULL)"
            )

    def get(self, command_id: str) -> Outcome | None:
        """The stored outcome; None when there is none or the disk cannot say (the
        command then runs, which `record` documents as safe)."""
        try:
            row = self._db.execute(
                "SELECT ok, result, error FROM done WHERE id = ?", (command_id,)
            ).fetchone()
        except (sqlite3.Error, OSError) as exc:
            log.error("the outcome of command %s cannot be read: %s", command_id, exc)
            return None
        if row is None:
            return None
        try:
            return Outcome(ok=bool(row[0]), result=json.loads(row[1]), error=row[2])
        except ValueError as exc:
            log.error("the stored outcome of command %s is unreadable: %s", command_id, exc)
            return None

    def record(self, command_id: str, outcome: Outcome) -> bool:
        """Stores the outcome; False when the disk refuses it (full, read-only, failing).

        The outcome is answered to the server all the same: a command must not stay
        open on the website for want of disk space (issue 14, point 10). A replay after
        a reconnect then runs it again; `triggerBroadcast` finds its broadcast in the
        journal, the PBX commands set what they set before.
        """
        try:
            self._db.execute(
                "INSERT OR IGNORE INTO done (id, ok, result, error, at) VALUES (?, ?, ?, ?, ?)",
                (
                    command_id,
                    int(outcome.ok),
                    json.dumps(outcome.result),
                    outcome.error,
                    datetime.now(UTC).isoformat(),
                ),
            )
        except (sqlite3.Error, OSError, ValueError, TypeError) as exc:
            # Any failure (a full disk, a damaged file, a result JSON cannot take):
            # the outcome is answered all the same.
            log.error("the outcome of command %s cannot be stored: %s", command_id, exc)
            return False
        return True

    def close(self) -> None:
        self._db.close()

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
        self._db = sqlite3.connect(path, isolation_level=None)
        # FULL: the row is on disk before we tell the server the command is done.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS done (id TEXT PRIMARY KEY, ok INTEGER NOT NULL, "
            "result TEXT NOT NULL, error TEXT, at TEXT NOT NULL)"
        )

    def get(self, command_id: str) -> Outcome | None:
        row = self._db.execute(
            "SELECT ok, result, error FROM done WHERE id = ?", (command_id,)
        ).fetchone()
        if row is None:
            return None
        return Outcome(ok=bool(row[0]), result=json.loads(row[1]), error=row[2])

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
        except (sqlite3.OperationalError, OSError) as exc:
            log.error("the outcome of command %s cannot be stored: %s", command_id, exc)
            return False
        return True

    def close(self) -> None:
        self._db.close()

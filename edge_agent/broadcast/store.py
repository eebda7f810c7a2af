"""The journal's SQLite file, and its stand-in in memory while the file cannot be written.

A full disk (or a read-only, failing or forbidden one) must never touch a call
(issue 14, point 10). The first write the file refuses makes the store fall
behind: the file's content is copied into an in-memory database, that write and
every later one go there, and they are kept in order as the backlog. Reads go to
memory meanwhile, so the broadcast, the reporter and a repeated trigger all see
the current state. `catch_up` writes the backlog to the file in one transaction;
once that succeeds the file holds everything again and memory is let go.

Every method runs on the journal's one thread: the file, the memory copy and the
backlog never change under each other.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# SQL with one row of parameters, or with many (run as executemany).
Statement = tuple[str, Sequence[Any]] | tuple[str, Sequence[Sequence[Any]], bool]


def is_disk_error(exc: BaseException) -> bool:
    """Whether the error is the file's (full, read-only, I/O, no permission), not the SQL's."""
    if isinstance(exc, OSError):
        return True
    refused = (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.DataError)
    return isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, refused)


def transaction(db: sqlite3.Connection, statements: Sequence[Statement]) -> None:
    db.execute("BEGIN IMMEDIATE")
    try:
        for statement in statements:
            if len(statement) == 3:
                db.executemany(statement[0], statement[1])
            else:
                db.execute(statement[0], statement[1])
        db.execute("COMMIT")
    except BaseException:
        # SQLite may have rolled back already after a full disk or an I/O error
        # (https://sqlite.org/lang_transaction.html): a second ROLLBACK must not
        # hide the error that matters.
        if db.in_transaction:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                log.warning("rolling back a failed journal write failed too")
        raise


class Store:
    def __init__(self, path: Path, schema: str) -> None:
        self.path = path
        self.schema = schema
        self.disk = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.disk.execute("PRAGMA journal_mode=WAL")
        # FULL: an event the journal confirmed survives a power cut, not only a crash.
        self.disk.execute("PRAGMA synchronous=FULL")
        self.disk.executescript(schema)
        self.memory: sqlite3.Connection | None = None  # set while behind
        self.backlog: list[Statement] = []
        self.failure: str | None = None  # why the file refused the first write

    @property
    def behind(self) -> bool:
        return self.memory is not None

    def write(self, statements: Sequence[Statement]) -> bool:
        """Writes one transaction: to the file, or to memory while behind.

        Returns True when it went to memory (the file refused it or is behind).
        Raises only for the SQL's own errors (a duplicate, say), never for the disk.
        """
        if self.memory is None:
            try:
                transaction(self.disk, statements)
                return False
            except (sqlite3.Error, OSError) as exc:
                if not is_disk_error(exc):
                    raise
                self._fall_behind(exc)
        assert self.memory is not None
        transaction(self.memory, statements)  # raises the SQL's errors as the file would
        self.backlog.extend(statements)
        return True

    def rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        db = self.memory if self.memory is not None else self.disk
        return db.execute(sql, params).fetchall()

    def _fall_behind(self, exc: BaseException) -> None:
        log.error(
            "the broadcast journal %s cannot be written (%s); broadcasts go on from memory "
            "and the journal catches up when it can write again",
            self.path,
            exc,
        )
        memory = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        try:
            # Reading still works on a full or read-only disk: memory starts where the file is.
            self.disk.backup(memory)
        except sqlite3.Error as read_error:
            log.error("the journal cannot be read either (%s); memory starts empty", read_error)
            memory.close()
            memory = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            memory.executescript(self.schema)
        self.memory = memory
        self.backlog = []
        self.failure = str(exc) or type(exc).__name__

    def catch_up(self) -> bool:
        """Writes what the file misses; True once it holds everything (or was never behind)."""
        if self.memory is None:
            return True
        try:
            transaction(self.disk, self.backlog)
        except (sqlite3.Error, OSError) as exc:
            if is_disk_error(exc):
                log.warning("the broadcast journal still cannot be written: %s", exc)
                return False
            # The file and memory disagree (it should not happen): memory is the truth,
            # so the file gets memory's full content instead.
            log.error("replaying the journal backlog failed (%s); writing a full copy", exc)
            try:
                self.memory.backup(self.disk)
            except sqlite3.Error as copy_error:
                log.warning("the broadcast journal still cannot be written: %s", copy_error)
                return False
        log.warning(
            "the broadcast journal is written again (%d statements caught up)", len(self.backlog)
        )
        self.memory.close()
        self.memory = None
        self.backlog = []
        self.failure = None
        return True

    def close(self) -> None:
        if self.memory is not None:
            self.catch_up()  # a last try: what is still missing then is lost with the process
        if self.memory is not None:
            log.error(
                "the agent stops while the broadcast journal is behind: %d statements lost",
                len(self.backlog),
            )
            self.memory.close()
        self.disk.close()

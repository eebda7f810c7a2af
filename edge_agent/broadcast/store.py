"""The journal's SQLite file, and its stand-in in memory while the file cannot be written.

A full disk (or a read-only, failing or forbidden one) must never touch a call
(issue 14, point 10). The first write the file refuses makes the store fall
behind: the file's open rows (the `seed` queries: running or unreported
broadcasts) are copied into an in-memory database, that write and every later
one go there, and they are kept in order as the backlog. Reads go to memory
meanwhile; a read that may concern a settled broadcast (`rows(..., settled=True)`)
also asks the file, which still reads on a full disk. `catch_up` replays the
backlog a chunk at a time, each chunk one transaction, merging by key
(INSERT OR IGNORE) where the file already holds a row: the file is never
overwritten with a copy of memory. Once the backlog is empty, memory is let go.

Opening never fails for the disk: a file SQLite cannot open normally (a full disk
refuses the `-shm` file) is opened with `locking_mode=EXCLUSIVE` (no `-shm`),
and a file that does not open at all starts the store behind, with memory empty
and the file untouched (`complete` false).

Every method runs on the journal's one thread: the file, the memory copy and the
backlog never change under each other.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# SQL with one row of parameters, or with many (run as executemany).
Statement = tuple[str, Sequence[Any]] | tuple[str, Sequence[Sequence[Any]], bool]
# Statements replayed per transaction: a long backlog neither grows the WAL without
# bound nor holds the journal's thread (and so the calls' events) for long.
CATCH_UP_CHUNK = 500
# Statements kept for the file at most. Beyond it the backlog is dropped and the file is
# caught up from memory's rows instead (merged by key): memory then must hold everything.
MAX_BACKLOG = 200_000
# The WAL is cut back to this after a checkpoint (a big catch-up must not leave it huge).
JOURNAL_SIZE_LIMIT = 4 * 1024 * 1024


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


def merging(statement: Statement) -> Statement:
    """The statement as a merge: an INSERT of a row the file has already is ignored."""
    sql = statement[0]
    if sql.lstrip().upper().startswith("INSERT INTO"):
        sql = "INSERT OR IGNORE INTO" + sql.lstrip()[len("INSERT INTO") :]
    return (sql, *statement[1:])


def _count(statements: Sequence[Statement]) -> int:
    return sum(len(s[1]) if len(s) == 3 else 1 for s in statements)


class Store:
    def __init__(
        self,
        path: Path,
        schema: str,
        migrate: Callable[[sqlite3.Connection], None] = lambda _: None,
        seed: Sequence[tuple[str, str]] = (),
    ) -> None:
        """`migrate` brings an older file up to `schema` (at open and before a catch-up);
        `seed` names the rows memory starts with when falling behind: (table, WHERE ...)."""
        self.path = path
        self.schema = schema
        self.migrate = migrate
        self.seed = seed
        self.memory: sqlite3.Connection | None = None  # set while behind
        self.backlog: list[list[Statement]] = []  # the writes the file misses, in order
        self.backlog_size = 0  # statements (rows of an executemany count each)
        self.overflowed = False  # the backlog was dropped: the file catches up from memory
        self.failure: str | None = None  # why the file refused the first write
        # False while memory did not start from the file's open rows (the file could
        # not be read): reads of the file fill in, catch-up only merges.
        self.complete = True
        self.exclusive = False  # opened without a -shm file (a full disk at start)
        self.disk: sqlite3.Connection | None = None
        try:
            self.disk = self._open()
        except (sqlite3.Error, OSError) as exc:
            if not is_disk_error(exc):
                raise
            self.disk = self._open_exclusive(exc)
        if self.disk is not None:
            try:
                self._prepare(self.disk)
            except (sqlite3.Error, OSError) as exc:
                if not is_disk_error(exc):
                    raise
                self._fall_behind(exc)
            if self.exclusive and self.memory is None:
                # The disk refused even the -shm file: writes would fail too. Memory
                # takes them from the start, and the health report says so.
                self._fall_behind(OSError("the journal's -shm file cannot be created"))

    # ------------------------------------------------------------------ opening

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: an event the journal confirmed survives a power cut, not only a crash.
            db.execute("PRAGMA synchronous=FULL")
            db.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
        except BaseException:
            db.close()
            raise
        return db

    def _open_exclusive(self, first: BaseException) -> sqlite3.Connection | None:
        """The file without a -shm (a full disk cannot take one); None when it does not open.

        SQLite keeps the WAL index in the process's memory in exclusive locking mode
        (https://sqlite.org/wal.html#noshm), so the file still reads; it is opened
        normally again once it caught up.
        """
        log.error(
            "the broadcast journal %s does not open normally (%s); opened for this process only",
            self.path,
            first,
        )
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except (sqlite3.Error, OSError) as exc:
            self._start_behind(exc)
            return None
        try:
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("SELECT COUNT(*) FROM sqlite_master").fetchall()
        except (sqlite3.Error, OSError) as exc:
            db.close()
            self._start_behind(exc)
            return None
        self.exclusive = True
        return db

    def _prepare(self, db: sqlite3.Connection) -> None:
        """Creates what an empty file lacks and migrates an older one (both write)."""
        present = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        wanted = {
            line.split()[5]
            for line in self.schema.splitlines()
            if line.upper().startswith("CREATE TABLE IF NOT EXISTS")
        }
        if not wanted <= present:
            db.executescript(self.schema)
        self.migrate(db)

    def _start_behind(self, exc: BaseException) -> None:
        log.error(
            "the broadcast journal %s cannot be opened (%s); broadcasts run from memory and "
            "the file is left as it is until it opens again",
            self.path,
            exc,
        )
        self.memory = self._new_memory()
        self.complete = False
        self.failure = str(exc) or type(exc).__name__

    # ------------------------------------------------------------------ writing

    @property
    def behind(self) -> bool:
        return self.memory is not None

    def write(self, statements: Sequence[Statement]) -> bool:
        """Writes one transaction: to the file, or to memory while behind.

        Returns True when it went to memory (the file refused it or is behind).
        Raises only for the SQL's own errors (a duplicate, say), never for the disk.
        """
        if self.memory is None:
            assert self.disk is not None
            try:
                transaction(self.disk, statements)
                return False
            except (sqlite3.Error, OSError) as exc:
                if not is_disk_error(exc):
                    raise
                self._fall_behind(exc)
        assert self.memory is not None
        transaction(self.memory, statements)  # raises the SQL's errors as the file would
        self._keep(list(statements))
        return True

    def _keep(self, statements: list[Statement]) -> None:
        if self.overflowed:
            return
        self.backlog.append(statements)
        self.backlog_size += _count(statements)
        if self.backlog_size > MAX_BACKLOG:
            # Memory holds every row those statements wrote (it started from the file's
            # open rows): the file can be caught up from it, by key, instead.
            log.error(
                "the journal backlog passed %d statements; the file will be caught up from "
                "memory's rows instead",
                MAX_BACKLOG,
            )
            self.overflowed = True
            self.backlog = []
            self.backlog_size = 0

    def rows(self, sql: str, params: Sequence[Any], settled: bool = False) -> list[tuple[Any, ...]]:
        """Reads memory while behind; with `settled`, the file too when memory has nothing
        (memory holds only the open broadcasts)."""
        if self.memory is None:
            assert self.disk is not None
            return self.disk.execute(sql, params).fetchall()
        found = self.memory.execute(sql, params).fetchall()
        if found or not settled or self.disk is None:
            return found
        try:
            return self.disk.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            log.warning("the journal file cannot be read either: %s", exc)
            return found

    def _new_memory(self) -> sqlite3.Connection:
        memory = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        memory.executescript(self.schema)
        return memory

    def _fall_behind(self, exc: BaseException) -> None:
        log.error(
            "the broadcast journal %s cannot be written (%s); broadcasts go on from memory "
            "and the journal catches up when it can write again",
            self.path,
            exc,
        )
        memory = self._new_memory()
        assert self.disk is not None
        try:
            # Only the open broadcasts: the settled ones are read from the file when asked
            # for (a repeated trigger); copying them all would stall the calls' events.
            for table, where in self.seed:
                cursor = self.disk.execute(f"SELECT * FROM {table} {where}")  # noqa: S608
                columns = [c[0] for c in cursor.description]
                names = ", ".join(columns)
                marks = ", ".join("?" * len(columns))
                memory.executemany(
                    f"INSERT INTO {table} ({names}) VALUES ({marks})",  # noqa: S608
                    cursor.fetchall(),
                )
        except sqlite3.Error as read_error:
            log.error(
                "the journal cannot be read either (%s); memory starts empty and the file "
                "is only merged into, never replaced",
                read_error,
            )
            memory.close()
            memory = self._new_memory()
            self.complete = False
        self.memory = memory
        self.backlog = []
        self.backlog_size = 0
        self.overflowed = False
        self.failure = str(exc) or type(exc).__name__

    # ------------------------------------------------------------------ catching up

    def catch_up(self) -> bool:
        """Writes (a chunk of) what the file misses; True once it holds everything.

        Call again while it returns False and `behind` is still true: after a chunk
        the next one follows; after a refusal the disk is still full.
        """
        if self.memory is None:
            return True
        try:
            if self.disk is None:
                self.disk = self._open()
            self._prepare(self.disk)
            if self.overflowed:
                self._merge_memory()
                self.overflowed = False
            else:
                self._replay_chunk()
        except (sqlite3.Error, OSError) as exc:
            if not is_disk_error(exc):
                raise
            log.warning("the broadcast journal still cannot be written: %s", exc)
            return False
        if self.backlog:
            return False
        self._caught_up()
        return True

    def _replay_chunk(self) -> None:
        assert self.disk is not None
        taken = 0
        size = 0
        while taken < len(self.backlog) and (size == 0 or size < CATCH_UP_CHUNK):
            size += len(self.backlog[taken])
            taken += 1
        chunk = [s for write in self.backlog[:taken] for s in write]
        try:
            transaction(self.disk, chunk)
        except sqlite3.IntegrityError as exc:
            # The file holds a row memory did not know (it could not be read, or another
            # process wrote): merge by key, never replace the file.
            log.error("the journal file and memory disagree (%s); merging by key", exc)
            transaction(self.disk, [merging(s) for s in chunk])
        del self.backlog[:taken]
        self.backlog_size -= _count(chunk)

    def _merge_memory(self) -> None:
        """After an overflow: every row of memory into the file, by key, in chunks."""
        assert self.disk is not None and self.memory is not None
        tables = [
            r[0] for r in self.memory.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        for table in tables:
            cursor = self.memory.execute(f"SELECT * FROM {table}")  # noqa: S608
            columns = [c[0] for c in cursor.description]
            sql = (
                f"INSERT OR REPLACE INTO {table} ({', '.join(columns)}) "  # noqa: S608
                f"VALUES ({', '.join('?' * len(columns))})"
            )
            while rows := cursor.fetchmany(CATCH_UP_CHUNK):
                try:
                    transaction(self.disk, [(sql, rows, True)])
                except sqlite3.IntegrityError:
                    # A unique key other than the row's own (a trigger the file knows under
                    # another broadcast): that row stays as the file has it.
                    transaction(self.disk, [(sql.replace("OR REPLACE", "OR IGNORE"), rows, True)])

    def _caught_up(self) -> None:
        assert self.memory is not None and self.disk is not None
        log.warning("the broadcast journal is written again")
        try:  # a long catch-up must not leave a WAL as big as itself
            self.disk.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            log.warning("checkpointing the caught-up journal failed: %s", exc)
        self.memory.close()
        self.memory = None
        self.backlog = []
        self.backlog_size = 0
        self.failure = None
        self.complete = True
        if self.exclusive:
            # Opened without -shm on a full disk: back to normal, so others may read it
            # (the exclusive lock goes with the connection).
            self.disk.close()
            try:
                self.disk = self._open()
                self.exclusive = False
            except (sqlite3.Error, OSError) as exc:
                log.warning("the journal stays opened for this process only: %s", exc)
                self.disk = self._open_exclusive(exc)

    def close(self) -> None:
        # A last try, chunk after chunk while the file takes them: what is still
        # missing then is lost with the process.
        size = -1
        while self.memory is not None and size != self.backlog_size:
            size = self.backlog_size
            try:
                self.catch_up()
            except sqlite3.Error:
                log.exception("the last catch-up of the broadcast journal failed")
                break
        if self.memory is not None:
            log.error(
                "the agent stops while the broadcast journal is behind: %d statements lost",
                self.backlog_size,
            )
            self.memory.close()
        if self.disk is not None:
            self.disk.close()

"""The broadcast journal on the agent's disk: what each broadcast is, and every call event.

SQLite with `synchronous=FULL`, one connection used from one thread. Writes
are group-committed: every write waits until its transaction is on disk, and
writes that arrive while a commit runs share the next one, so a thousand calls
starting at once cost a few fsyncs, not a thousand.

The events double as the report queue: the reporter sends those above
`acked_seq` and moves it up when the server has stored them.

A disk that refuses writes never fails a write here: memory holds the journal
until the file can be written again (store.py), the journal is not `writable`
meanwhile (the health report says so), and each broadcast whose progress only
memory held gets one note in its history.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import shutil
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from edge_agent.broadcast.model import (
    JOURNAL_NOT_WRITABLE,
    RUNNING,
    Broadcast,
    Event,
    Late,
    Member,
    Stop,
)
from edge_agent.broadcast.store import Statement, Store
from edge_agent.files import private_dir

log = logging.getLogger(__name__)
T = TypeVar("T")
# A journal that cannot write tries again after 1 s, doubling up to 30 s.
CATCH_UP_FIRST_S = 1.0
CATCH_UP_MAX_S = 30.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS broadcast (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    source_id TEXT NOT NULL UNIQUE,
    group_pbx_id TEXT NOT NULL,
    mode INTEGER NOT NULL,
    caller_number TEXT,
    caller_name TEXT,
    announcement TEXT,
    quorum INTEGER,
    started_at TEXT NOT NULL,
    deadline_at TEXT NOT NULL,
    status TEXT NOT NULL,
    quorum_reached_at TEXT,
    finished_at TEXT,
    note TEXT,
    acked_seq INTEGER NOT NULL DEFAULT 0,
    final_acked INTEGER NOT NULL DEFAULT 0,
    source_done INTEGER NOT NULL DEFAULT 0,
    stop TEXT
);
CREATE TABLE IF NOT EXISTS member (
    broadcast_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    pbx_id TEXT NOT NULL,
    name TEXT NOT NULL,
    extension TEXT,
    skip TEXT,
    PRIMARY KEY (broadcast_id, pbx_id)
);
CREATE TABLE IF NOT EXISTS event (
    broadcast_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    pbx_id TEXT NOT NULL,
    attempt_no INTEGER NOT NULL,
    kind TEXT NOT NULL,
    at TEXT NOT NULL,
    outcome TEXT,
    detail TEXT,
    late_reason TEXT,
    late_since TEXT,
    late_until TEXT,
    PRIMARY KEY (broadcast_id, seq)
);
-- One row, written now and then: an idle journal learns that its disk refuses writes.
CREATE TABLE IF NOT EXISTS probe (id INTEGER PRIMARY KEY, at TEXT NOT NULL);
"""
# Columns added after the first release: a journal written by an older agent gets them.
ADDED_EVENT_COLUMNS = ("late_reason", "late_since", "late_until")
ADDED_BROADCAST_COLUMNS = ("stop",)  # JSON {"by", "via", "at"} (issue 17: a stop)

# A broadcast still needed in memory while the file is behind: running, unreported, or
# its job not yet deleted. Settled ones are read from the file when asked for.
OPEN = "status = 'running' OR final_acked = 0 OR source_done = 0"
SEED = (
    ("broadcast", f"WHERE {OPEN}"),
    ("member", f"WHERE broadcast_id IN (SELECT id FROM broadcast WHERE {OPEN})"),  # noqa: S608
    ("event", f"WHERE broadcast_id IN (SELECT id FROM broadcast WHERE {OPEN})"),  # noqa: S608
)
# Settled broadcasts are kept this long (a repeated trigger is recognised meanwhile;
# the central service holds the history for good).
RETENTION = timedelta(days=30)
# Below this much free space on the journal's disk the health report names the problem.
NEARLY_FULL_BYTES = 16 * 1024 * 1024
# How often an idle journal looks at its disk and prunes.
WATCH_INTERVAL_S = 60.0
# Event numbers a resumed broadcast skips when the server cannot say what it stored: a
# crash while the journal was behind lost events only memory held, and the server ignores
# numbers it has already (it may have stored up to this many more than the file holds).
RESUME_GAP = 100_000

BROADCAST_COLUMNS = (
    "id, source, source_id, group_pbx_id, mode, caller_number, caller_name, announcement, "
    "quorum, started_at, deadline_at, status, quorum_reached_at, finished_at, note, "
    "acked_seq, final_acked, source_done, stop"
)


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _late(reason: str | None, since: str | None, until: str | None) -> Late | None:
    return None if reason is None else Late(reason, _time(since), _time(until))


def _add_columns(db: sqlite3.Connection) -> None:
    present = {row[1] for row in db.execute("PRAGMA table_info(event)")}
    for column in ADDED_EVENT_COLUMNS:
        if column not in present:
            db.execute(f"ALTER TABLE event ADD COLUMN {column} TEXT")
    present = {row[1] for row in db.execute("PRAGMA table_info(broadcast)")}
    for column in ADDED_BROADCAST_COLUMNS:
        if column not in present:
            db.execute(f"ALTER TABLE broadcast ADD COLUMN {column} TEXT")


def _stop(raw: str | None) -> Stop | None:
    if not raw:
        return None
    data = json.loads(raw)
    at = datetime.fromisoformat(data["at"])
    return Stop(data.get("by"), str(data["via"]), at, data.get("reason"))


def _broadcast(row: Sequence[Any]) -> Broadcast:
    return Broadcast(
        id=row[0],
        source=row[1],
        source_id=row[2],
        group_pbx_id=row[3],
        mode=row[4],
        caller_number=row[5],
        caller_name=row[6],
        announcement=row[7],
        quorum=row[8],
        started_at=datetime.fromisoformat(row[9]),
        deadline_at=datetime.fromisoformat(row[10]),
        status=row[11],
        quorum_reached_at=_time(row[12]),
        finished_at=_time(row[13]),
        note=row[14],
        acked_seq=row[15],
        final_acked=bool(row[16]),
        source_done=bool(row[17]),
        stop=_stop(row[18]),
    )


@dataclass
class _Write:
    statements: list[Statement]
    done: asyncio.Future[None]
    broadcast_id: str | None = None
    # A call's or the broadcast's own progress: when only memory holds it, the
    # broadcast's history says so. Reporting marks (acked, source_done) do not count.
    progress: bool = False


def _note_statement(broadcast_id: str) -> Statement:
    """Adds the journal's note to the broadcast's, once (writing it again changes nothing)."""
    text = JOURNAL_NOT_WRITABLE  # a code: the website words it (German, English)
    return (
        "UPDATE broadcast SET note = CASE WHEN note IS NULL OR note = '' THEN ? "
        "WHEN instr(note, ?) > 0 THEN note ELSE note || '; ' || ? END WHERE id = ?",
        (text, text, text, broadcast_id),
    )


class Journal:
    def __init__(self, path: Path) -> None:
        private_dir(path.parent)
        # _add_columns: a journal an older agent wrote (on a full disk: later).
        self._store = Store(path, SCHEMA, migrate=_add_columns, seed=SEED)
        # One thread owns the connections: reads and commits never interleave.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self._queue: list[_Write] = []
        self._flusher: asyncio.Task[None] | None = None
        self._catching_up: asyncio.Task[None] | None = None
        self._next_seq: dict[str, int] = {}
        self._seq_lookup = asyncio.Lock()
        # Broadcasts whose progress only memory held at some point (their history says so).
        self._troubled: set[str] = set()
        self.changed = asyncio.Event()  # set after each commit: the reporter wakes up
        # Called when `writable` changes: the agent reports its health at once.
        self.on_health_change: Callable[[], None] = lambda: None
        self.nearly_full = False  # below NEARLY_FULL_BYTES free (logged once)
        self._was_behind = self._store.behind

    # ------------------------------------------------------------------ plumbing

    @property
    def writable(self) -> bool:
        """False while the file refuses writes and memory holds what it misses (health)."""
        return not self._store.behind

    @property
    def complete(self) -> bool:
        """False while memory did not start from the file (it could not be read)."""
        return self._store.complete

    @property
    def failure(self) -> str | None:
        """Why the file refused the first write it missed; None while it is written."""
        return self._store.failure

    async def _in_thread(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn)

    async def _write(
        self, statements: list[Statement], broadcast_id: str | None = None, progress: bool = False
    ) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Write(statements, done, broadcast_id, progress))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="journal-flush")
        await done

    async def _flush(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                errors = await self._in_thread(functools.partial(self._commit, batch))
            except Exception as exc:  # the thread itself failed: every waiter learns of it
                errors = [exc] * len(batch)
            for write, error in zip(batch, errors, strict=True):
                if write.done.done():
                    continue
                if error is None:
                    write.done.set_result(None)
                else:
                    write.done.set_exception(error)
            self.changed.set()
            self._health()
            self._ensure_catching_up()

    def _health(self) -> None:
        if self._store.behind != self._was_behind:
            self._was_behind = self._store.behind
            self.on_health_change()

    def _ensure_catching_up(self) -> None:
        if self._store.behind and (self._catching_up is None or self._catching_up.done()):
            self._catching_up = asyncio.create_task(self._catch_up(), name="journal-catch-up")

    async def _catch_up(self) -> None:
        """Tries the file again after 1 s, doubling up to 30 s, until it holds everything.

        A chunk at a time (each its own turn on the journal's thread: the calls' events
        go in between); an unexpected error waits like a full disk, never ends the loop.
        """
        pause = CATCH_UP_FIRST_S
        while True:
            await asyncio.sleep(pause)
            try:
                while self._store.behind:
                    before = self._store.backlog_size
                    if await self._in_thread(self._store.catch_up):
                        break
                    if self._store.backlog_size >= before:
                        break  # nothing written: the disk still refuses
            except Exception:
                log.exception("catching up the broadcast journal failed; trying again")
            if not self._store.behind:
                self.changed.set()  # the reporter may finish jobs again
                self._health()
                return
            pause = min(pause * 2, CATCH_UP_MAX_S)

    def _commit(self, batch: list[_Write]) -> list[Exception | None]:
        """Commits the batch as one transaction; if that fails, each write on its own.

        One faulty write (a duplicate, say) must not take the other writers' events
        down with it. A disk that refuses writes raises nothing here: the store
        keeps them in memory (store.py).
        """
        if len(batch) > 1:
            try:
                in_memory = self._store.write([s for write in batch for s in write.statements])
                for write in batch:
                    self._committed(write, in_memory)
                return [None] * len(batch)
            except sqlite3.Error:
                pass  # each on its own below
        errors: list[Exception | None] = []
        for write in batch:
            try:
                self._committed(write, self._store.write(write.statements))
                errors.append(None)
            except sqlite3.Error as exc:
                errors.append(exc)
        return errors

    def _committed(self, write: _Write, in_memory: bool) -> None:
        """After a write that only memory holds: the broadcast's history learns it, once."""
        b = write.broadcast_id
        if in_memory and write.progress and b is not None and b not in self._troubled:
            self._troubled.add(b)
            try:
                self._store.write([_note_statement(b)])
            except sqlite3.Error:
                log.exception("the journal note of broadcast %s was not written", b)

    async def _rows(
        self, sql: str, params: Sequence[Any] = (), settled: bool = False
    ) -> list[tuple[Any, ...]]:
        self._ensure_catching_up()  # a journal that started behind catches up, too
        return await self._in_thread(functools.partial(self._store.rows, sql, params, settled))

    # ------------------------------------------------------------------ broadcasts

    async def create(self, broadcast: Broadcast, members: Sequence[Member]) -> None:
        """Stores a new broadcast with its members; raises sqlite3.IntegrityError on a repeat."""
        b = broadcast
        statements: list[Statement] = [
            (
                f"INSERT INTO broadcast ({BROADCAST_COLUMNS}) "  # noqa: S608 - constant columns
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, 0, NULL)",
                (
                    b.id,
                    b.source,
                    b.source_id,
                    b.group_pbx_id,
                    b.mode,
                    b.caller_number,
                    b.caller_name,
                    b.announcement,
                    b.quorum,
                    b.started_at.isoformat(),
                    b.deadline_at.isoformat(),
                    b.status,
                    None,
                    None,
                    b.note,
                ),
            )
        ]
        if members:  # one executemany: a thousand members cost one statement, not a thousand
            statements.append(
                (
                    "INSERT INTO member (broadcast_id, position, pbx_id, name, extension, skip) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [(b.id, m.position, m.pbx_id, m.name, m.extension, m.skip) for m in members],
                    True,
                )
            )
        await self._write(statements, b.id, progress=True)
        # Only after it is stored: a repeat refused must not number the first one's events anew.
        self._next_seq[b.id] = 1

    async def by_source(self, source_id: str) -> Broadcast | None:
        rows = await self._rows(
            f"SELECT {BROADCAST_COLUMNS} FROM broadcast WHERE source_id = ?",  # noqa: S608
            (source_id,),
            settled=True,
        )
        return _broadcast(rows[0]) if rows else None

    async def get(self, broadcast_id: str) -> Broadcast:
        rows = await self._rows(
            f"SELECT {BROADCAST_COLUMNS} FROM broadcast WHERE id = ?",  # noqa: S608
            (broadcast_id,),
            settled=True,
        )
        return _broadcast(rows[0])

    async def unsettled(self) -> list[Broadcast]:
        """Broadcasts still running, not fully reported, or whose job is not yet deleted."""
        rows = await self._rows(
            f"SELECT {BROADCAST_COLUMNS} FROM broadcast "  # noqa: S608 - constant columns
            f"WHERE {OPEN} ORDER BY started_at"
        )
        return [_broadcast(r) for r in rows]

    async def members(self, broadcast_id: str) -> list[Member]:
        rows = await self._rows(
            "SELECT position, pbx_id, name, extension, skip FROM member "
            "WHERE broadcast_id = ? ORDER BY position",
            (broadcast_id,),
        )
        return [Member(*row) for row in rows]

    async def events(self, broadcast_id: str, after_seq: int = 0, limit: int = -1) -> list[Event]:
        rows = await self._rows(
            "SELECT seq, pbx_id, attempt_no, kind, at, outcome, detail, late_reason, "
            "late_since, late_until FROM event "
            "WHERE broadcast_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (broadcast_id, after_seq, limit),
        )
        return [
            Event(r[0], r[1], r[2], r[3], datetime.fromisoformat(r[4]), r[5], r[6], _late(*r[7:10]))
            for r in rows
        ]

    async def last_seq(self, broadcast_id: str) -> int:
        rows = await self._rows(
            "SELECT COALESCE(MAX(seq), 0) FROM event WHERE broadcast_id = ?", (broadcast_id,)
        )
        return int(rows[0][0])

    async def number_above(self, broadcast_id: str, seq: int) -> None:
        """New events of the broadcast get numbers above `seq` (and above the journal's)."""
        async with self._seq_lookup:
            last = max(
                seq, await self.last_seq(broadcast_id), self._next_seq.get(broadcast_id, 1) - 1
            )
            self._next_seq[broadcast_id] = last + 1

    async def record(
        self,
        broadcast_id: str,
        pbx_id: str,
        attempt_no: int,
        kind: str,
        at: datetime,
        outcome: str | None = None,
        detail: str | None = None,
        late: Late | None = None,
    ) -> int:
        """Appends a call event; returns its number once it is on disk."""
        return (
            await self.record_many(
                broadcast_id, [(pbx_id, attempt_no, kind, at, outcome, detail)], late
            )
        )[0]

    async def record_many(
        self,
        broadcast_id: str,
        events: Sequence[tuple[str, int, str, datetime, str | None, str | None]],
        late: Late | None = None,
    ) -> list[int]:
        """Appends several events in one write; returns their numbers once on disk.

        `late`, when given, applies to each of them.
        """
        if broadcast_id not in self._next_seq:
            # Many calls may ask at once after a restart: one lookup, one numbering.
            async with self._seq_lookup:
                if broadcast_id not in self._next_seq:
                    self._next_seq[broadcast_id] = await self.last_seq(broadcast_id) + 1
        first = self._next_seq[broadcast_id]
        self._next_seq[broadcast_id] = first + len(events)
        late_columns = (
            (None, None, None)
            if late is None
            else (
                late.reason,
                late.since.isoformat() if late.since else None,
                late.until.isoformat() if late.until else None,
            )
        )
        statements: list[Statement] = [
            (
                "INSERT INTO event (broadcast_id, seq, pbx_id, attempt_no, kind, at, outcome, "
                "detail, late_reason, late_since, late_until) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    broadcast_id,
                    first + i,
                    pbx_id,
                    attempt_no,
                    kind,
                    at.isoformat(),
                    outcome,
                    detail,
                    *late_columns,
                ),
            )
            for i, (pbx_id, attempt_no, kind, at, outcome, detail) in enumerate(events)
        ]
        await self._write(statements, broadcast_id, progress=True)
        return list(range(first, first + len(events)))

    async def quorum_reached(self, broadcast_id: str, at: datetime) -> None:
        await self._write(
            [
                (
                    "UPDATE broadcast SET quorum_reached_at = ? WHERE id = ? "
                    "AND quorum_reached_at IS NULL",
                    (at.isoformat(), broadcast_id),
                )
            ],
            broadcast_id,
            progress=True,
        )

    async def stopped(self, broadcast_id: str, stop: Stop) -> bool:
        """Marks a running broadcast as stopped (the first stop counts); False when it was
        not running or was stopped before. On disk before the calls end: a restart
        meanwhile ends the broadcast instead of calling on."""
        b = await self.get(broadcast_id)
        if b.status != RUNNING or b.stop is not None:
            return False
        value = json.dumps(
            {"by": stop.by, "via": stop.via, "at": stop.at.isoformat(), "reason": stop.reason}
        )
        await self._write(
            [("UPDATE broadcast SET stop = ? WHERE id = ? AND stop IS NULL", (value, b.id))],
            broadcast_id,
            progress=True,
        )
        return True

    async def finish(self, broadcast_id: str, status: str, at: datetime, note: str) -> None:
        statements: list[Statement] = [
            (
                "UPDATE broadcast SET status = ?, finished_at = ?, note = ? WHERE id = ?",
                (status, at.isoformat(), note, broadcast_id),
            )
        ]
        if broadcast_id in self._troubled:  # the final note keeps the journal's
            statements.append(_note_statement(broadcast_id))
        await self._write(statements, broadcast_id, progress=True)

    async def acked(self, broadcast_id: str, seq: int, final: bool) -> None:
        await self._write(
            [
                (
                    "UPDATE broadcast SET acked_seq = MAX(acked_seq, ?), "
                    "final_acked = MAX(final_acked, ?) WHERE id = ?",
                    (seq, int(final), broadcast_id),
                )
            ]
        )

    async def source_done(self, broadcast_id: str) -> None:
        await self._write([("UPDATE broadcast SET source_done = 1 WHERE id = ?", (broadcast_id,))])

    async def watch(self) -> None:
        """One probe of the disk and one pruning (the agent does it every WATCH_INTERVAL_S).

        An idle journal writes nothing, so a full disk would go unnoticed until the next
        alarm: one small committed write finds out (the health report says so at once),
        and the free space warns in the log before.
        """
        try:
            free = (await asyncio.to_thread(shutil.disk_usage, self._store.path.parent)).free
        except OSError as exc:
            log.warning("the journal's free space is unknown: %s", exc)
            free = None
        nearly_full = free is not None and free < NEARLY_FULL_BYTES
        if nearly_full != self.nearly_full:
            self.nearly_full = nearly_full
            log.warning("the journal's disk has %s bytes free", free)
        if self.writable:
            now = datetime.now(UTC)
            await self._write(
                [("INSERT OR REPLACE INTO probe (id, at) VALUES (1, ?)", (now.isoformat(),))]
            )
        if self.writable:
            await self.prune(now - RETENTION)

    async def watch_forever(self) -> None:
        while True:
            try:
                await self.watch()
            except Exception:  # the watch must outlive any one failure
                log.exception("watching the broadcast journal failed")
            await asyncio.sleep(WATCH_INTERVAL_S)

    async def prune(self, before: datetime) -> int:
        """Removes settled broadcasts started before `before`; returns how many."""
        rows = await self._rows(
            f"SELECT id FROM broadcast WHERE NOT ({OPEN}) AND started_at < ?",  # noqa: S608
            (before.isoformat(),),
        )
        ids = [(r[0],) for r in rows]
        if ids:
            await self._write(
                [
                    ("DELETE FROM event WHERE broadcast_id = ?", ids, True),
                    ("DELETE FROM member WHERE broadcast_id = ?", ids, True),
                    ("DELETE FROM broadcast WHERE id = ?", ids, True),
                ]
            )
        return len(ids)

    async def usable(self) -> bool:
        """Whether the journal answers (for the health report); never raises."""
        try:
            await self._rows("SELECT COUNT(*) FROM broadcast WHERE status = 'running'")
        except (sqlite3.Error, RuntimeError):
            return False
        return True

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        if self._catching_up is not None:
            self._catching_up.cancel()
            await asyncio.gather(self._catching_up, return_exceptions=True)
        await self._in_thread(self._store.close)
        self._thread.shutdown(wait=True)

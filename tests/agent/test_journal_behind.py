"""How the journal stands in for a file it cannot write (issue 14, point 10, review).

Memory holds only the open broadcasts, the file is merged into and never replaced,
the backlog is bounded and replayed in chunks, the catch-up outlives its errors, an
idle journal notices a full disk, and old settled broadcasts are pruned.
"""

from __future__ import annotations

import asyncio
import errno
import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edge_agent.broadcast import journal as journal_module
from edge_agent.broadcast import store
from edge_agent.broadcast.journal import Journal
from edge_agent.broadcast.model import Broadcast, Member
from edge_agent.ledger import Ledger, Outcome

NOW = datetime.now(UTC)


class Fault:
    """Every write to the journal file fails with ENOSPC while `on`; with `unreadable`,
    reading the file whole (to start memory from it) fails too."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, journal: Journal) -> None:
        self.on = False
        self.unreadable = False
        self.transactions = 0
        self.disk = journal._store.disk
        real = store.transaction

        def transaction(db: sqlite3.Connection, statements: Sequence[store.Statement]) -> None:
            if db is self.disk:
                if self.on:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                self.transactions += 1
            real(db, statements)

        monkeypatch.setattr(store, "transaction", transaction)
        fault = self

        class Reading(sqlite3.Connection):
            def backup(self, *args: Any, **kwargs: Any) -> None:
                if fault.unreadable:
                    raise sqlite3.OperationalError("disk I/O error")
                super().backup(*args, **kwargs)

            def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
                if fault.unreadable and sql.startswith("SELECT *"):
                    raise sqlite3.OperationalError("disk I/O error")
                return super().execute(sql, *args)

        if self.disk is not None:  # reads of the whole file go through a connection that fails
            path = journal._store.path
            self.disk.close()
            db = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, factory=Reading
            )
            journal._store.disk = db
            self.disk = db


def _b(n: int, source: str | None = None, status: str = "running", at: datetime = NOW) -> Broadcast:
    return Broadcast(f"b-{n}", "job", source or f"j-{n}", "g", 2, at, at, status)


MEMBER = [Member(0, "m-1", "A", "11")]


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_module, "CATCH_UP_FIRST_S", 0.02)
    monkeypatch.setattr(journal_module, "CATCH_UP_MAX_S", 0.05)


@pytest.fixture
def path(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "journal" / "broadcasts.db"


def _file(path: Path, sql: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


async def _writable(journal: Journal) -> None:
    async with asyncio.timeout(10):
        while not journal.writable:  # noqa: ASYNC110 - a property, no event to wait on
            await asyncio.sleep(0.02)


async def _settled(journal: Journal, n: int, at: datetime = NOW) -> None:
    await journal.create(_b(n, status="running", at=at), MEMBER)
    await journal.finish(f"b-{n}", "completed", at, "done")
    await journal.acked(f"b-{n}", 0, True)
    await journal.source_done(f"b-{n}")


async def test_an_unreadable_file_is_merged_into_never_replaced(
    path: Path, monkeypatch: pytest.MonkeyPatch, fast: None
) -> None:
    journal = Journal(path)
    try:
        await _settled(journal, 0)
        await journal.create(_b(1, "c-1"), MEMBER)
        for kind in ("started", "ringing", "answered"):
            await journal.record("b-1", "m-1", 1, kind, NOW)
        fault = Fault(monkeypatch, journal)
        fault.on = fault.unreadable = True
        await journal.record("b-1", "m-1", 1, "ended", NOW, "confirmed")
        assert not journal.writable
        # Memory started empty: a second broadcast for the same trigger slips in.
        await journal.create(replace(_b(2, "c-1")), MEMBER)
        fault.on = fault.unreadable = False
        await _writable(journal)
    finally:
        await journal.close()
    # Everything the file held is still there; the newcomer's conflicting row is not.
    broadcasts = _file(path, "SELECT id, source_id FROM broadcast ORDER BY id")
    assert broadcasts == [("b-0", "j-0"), ("b-1", "c-1")]
    events = _file(path, "SELECT broadcast_id, seq, kind FROM event WHERE broadcast_id = 'b-1'")
    assert [e[2] for e in events] == ["started", "ringing", "answered", "ended"]


async def test_memory_holds_only_open_broadcasts_and_a_repeat_still_finds_a_settled_one(
    path: Path, monkeypatch: pytest.MonkeyPatch, fast: None
) -> None:
    journal = Journal(path)
    try:
        for n in range(5):
            await _settled(journal, n)
        await journal.create(_b(9), MEMBER)
        fault = Fault(monkeypatch, journal)
        fault.on = True
        await journal.record("b-9", "m-1", 1, "started", NOW)
        memory = journal._store.memory
        assert memory is not None
        assert memory.execute("SELECT id FROM broadcast").fetchall() == [("b-9",)]
        # A repeated trigger of a settled broadcast is still known (read from the file).
        known = await journal.by_source("j-3")
        assert known is not None and known.id == "b-3"
        assert [b.id for b in await journal.unsettled()] == ["b-9"]
        fault.on = False
        await _writable(journal)
    finally:
        await journal.close()
    assert len(_file(path, "SELECT id FROM broadcast")) == 6
    assert _file(path, "SELECT seq, kind FROM event WHERE broadcast_id = 'b-9'") == [(1, "started")]


async def _thirty_attempts_while_failing(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> Fault:
    """Broadcast b-1 created, then thirty attempts recorded while every write fails."""
    await journal.create(_b(1), MEMBER)
    fault = Fault(monkeypatch, journal)
    fault.on = True
    for attempt in range(1, 31):
        await journal.record("b-1", "m-1", attempt, "started", NOW)
    return fault


async def test_a_long_backlog_is_replayed_in_chunks_and_the_wal_is_cut_back(
    path: Path, monkeypatch: pytest.MonkeyPatch, fast: None
) -> None:
    monkeypatch.setattr(store, "CATCH_UP_CHUNK", 5)
    journal = Journal(path)
    try:
        fault = await _thirty_attempts_while_failing(journal, monkeypatch)
        fault.on = False
        before = fault.transactions
        await _writable(journal)
        assert fault.transactions - before >= 6  # 30 statements, at most 5 per transaction
        wal = path.with_name(path.name + "-wal")
        assert not wal.exists() or wal.stat().st_size == 0
    finally:
        await journal.close()
    assert len(_file(path, "SELECT seq FROM event")) == 30


async def test_a_backlog_over_its_limit_is_dropped_and_the_file_caught_up_from_memory(
    path: Path, monkeypatch: pytest.MonkeyPatch, fast: None
) -> None:
    monkeypatch.setattr(store, "MAX_BACKLOG", 10)
    journal = Journal(path)
    try:
        fault = await _thirty_attempts_while_failing(journal, monkeypatch)
        await journal.finish("b-1", "completed", NOW, "done")
        assert journal._store.backlog_size <= 10
        fault.on = False
        await _writable(journal)
    finally:
        await journal.close()
    assert len(_file(path, "SELECT seq FROM event")) == 30
    assert _file(path, "SELECT status FROM broadcast") == [("completed",)]


async def test_a_catch_up_that_raises_keeps_trying(
    path: Path, monkeypatch: pytest.MonkeyPatch, fast: None
) -> None:
    journal = Journal(path)
    try:
        await journal.create(_b(1), MEMBER)
        fault = Fault(monkeypatch, journal)
        fault.on = True
        await journal.record("b-1", "m-1", 1, "started", NOW)
        real = store.Store.catch_up
        failures = [RuntimeError("a bug"), sqlite3.IntegrityError("a disagreement")]

        def catch_up(self: store.Store) -> bool:
            if failures:
                raise failures.pop(0)
            return real(self)

        monkeypatch.setattr(store.Store, "catch_up", catch_up)
        fault.on = False
        await _writable(journal)
    finally:
        await journal.close()
    assert _file(path, "SELECT seq FROM event") == [(1,)]


async def test_an_idle_journal_notices_a_full_disk_and_says_so_at_once(
    path: Path, monkeypatch: pytest.MonkeyPatch, fast: None
) -> None:
    journal = Journal(path)
    changes: list[bool] = []
    journal.on_health_change = lambda: changes.append(journal.writable)
    try:
        await journal.watch()
        assert journal.writable and changes == []
        fault = Fault(monkeypatch, journal)
        fault.on = True
        await journal.watch()  # nothing else was written: the probe finds it out
        assert not journal.writable
        assert changes == [False]
        fault.on = False
        await _writable(journal)
        assert changes == [False, True]
    finally:
        await journal.close()


async def test_settled_broadcasts_older_than_the_retention_are_pruned(path: Path) -> None:
    journal = Journal(path)
    old = NOW - journal_module.RETENTION - timedelta(days=1)
    try:
        await _settled(journal, 1, at=old)
        await _settled(journal, 2)
        await journal.create(_b(3, at=old), MEMBER)  # still running: kept
        await journal.record("b-1", "m-1", 1, "started", old)
        await journal.watch()
    finally:
        await journal.close()
    assert _file(path, "SELECT id FROM broadcast ORDER BY id") == [("b-2",), ("b-3",)]
    assert _file(path, "SELECT DISTINCT broadcast_id FROM member ORDER BY 1") == [
        ("b-2",),
        ("b-3",),
    ]
    assert _file(path, "SELECT broadcast_id FROM event") == []


class Failing:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def execute(self, *_: Any) -> None:
        raise self.error

    def close(self) -> None:
        return None


def test_the_ledger_neither_reads_nor_records_with_an_exception(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    ledger._db.close()
    ledger._db = Failing(sqlite3.OperationalError("disk I/O error"))  # type: ignore[assignment]
    assert ledger.get("cmd-1") is None
    ledger._db = Failing(sqlite3.DatabaseError("database disk image is malformed"))  # type: ignore[assignment]
    assert ledger.get("cmd-1") is None
    assert ledger.record("cmd-1", Outcome(True, {}, None)) is False

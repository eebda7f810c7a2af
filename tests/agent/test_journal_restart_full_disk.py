"""An agent restarted on a full disk starts, runs from memory and catches up (issue 14, point 10).

After a graceful stop SQLite has removed the journal's `-shm` and `-wal` files; on a
full disk it cannot create them again. The start must not fail for it: the journal
and the command ledger open without a `-shm` file (or in memory), the health report
says the journal is not writable, and the file catches up once there is space.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from edge_agent.broadcast.journal import Journal
from edge_agent.broadcast.model import Broadcast, Late, Member
from edge_agent.config import Enrolment
from edge_agent.ledger import Ledger, Outcome
from edge_agent.pbx.sim import SimControl, SimPbx
from edge_agent.service import AgentService
from edge_agent.settings import AgentSettings
from tests.agent.test_journal_full_disk import fill, small_disk

__all__ = ["small_disk"]  # the fixture


def _broadcast(n: int, status: str = "running") -> Broadcast:
    now = datetime.now(UTC)
    return Broadcast(f"b-{n}", "job", f"j-{n}", "g", 2, now, now, status)


async def _until_writable(journal: Journal) -> None:
    async with asyncio.timeout(10):
        while not journal.writable:  # noqa: ASYNC110 - a property, no event to wait on
            await asyncio.sleep(0.05)


def _file_events(path: Path) -> list[tuple[str, int, str]]:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT broadcast_id, seq, kind FROM event ORDER BY seq").fetchall()
    finally:
        db.close()


async def test_an_agent_stopped_gracefully_starts_again_on_a_full_disk(
    tmp_path: Path, small_disk: Path
) -> None:
    control = SimControl(tmp_path / "swyx.json")
    control.create()
    settings = AgentSettings(
        pbx="sim", dialer="sim", state_dir=small_disk / "data", sim_state=control.state_path
    )
    enrolment = Enrolment("http://127.0.0.1:9", "installation", "token")
    first = AgentService(settings, enrolment, SimPbx(control.state_path))
    await first.broadcasts.journal.create(_broadcast(1), [Member(0, "m-1", "A", "11")])
    first.ledger.record("cmd-1", Outcome(True, {"broadcastId": "b-1"}, None))
    # The graceful end of AgentService.run: SQLite removes the -shm and -wal files.
    await first.broadcasts.close()
    await first.dialer.close()
    await first.server.aclose()
    first.ledger.close()
    assert not (small_disk / "data" / "broadcasts.db-shm").exists()
    ballast = fill(small_disk)

    service = AgentService(settings, enrolment, SimPbx(control.state_path))
    journal = service.broadcasts.journal
    try:
        assert (await service.health())["journalWritable"] is False
        # What the file held is there: the running broadcast resumes, a replay is known.
        assert [b.id for b in await journal.unsettled()] == ["b-1"]
        assert service.ledger.get("cmd-1") == Outcome(True, {"broadcastId": "b-1"}, None)
        assert await journal.record("b-1", "m-1", 1, "started", datetime.now(UTC)) == 1
        ballast.unlink()
        await _until_writable(journal)
        assert (await service.health())["journalWritable"] is True
    finally:
        await service.broadcasts.close()
        await service.dialer.close()
        await service.server.aclose()
        service.ledger.close()
    assert _file_events(small_disk / "data" / "broadcasts.db") == [("b-1", 1, "started")]


def test_the_command_ledger_opens_on_a_full_disk_and_answers_replays(small_disk: Path) -> None:
    ledger = Ledger(small_disk / "ledger.db")
    ledger.record("cmd-1", Outcome(True, {"broadcastId": "b-1"}, None))
    ledger.close()
    ballast = fill(small_disk)
    ledger = Ledger(small_disk / "ledger.db")
    try:
        assert ledger.get("cmd-1") == Outcome(True, {"broadcastId": "b-1"}, None)
        assert ledger.record("cmd-2", Outcome(True, {}, None)) is False
        ballast.unlink()
        assert ledger.record("cmd-2", Outcome(True, {}, None)) is True
    finally:
        ledger.close()


async def test_a_journal_an_older_agent_wrote_opens_on_a_full_disk_and_migrates_later(
    small_disk: Path,
) -> None:
    path = small_disk / "broadcasts.db"
    journal = Journal(path)
    await journal.create(_broadcast(1), [])
    await journal.close()
    db = sqlite3.connect(path)  # as an agent before the late columns wrote it
    for column in ("late_reason", "late_since", "late_until"):
        db.execute(f"ALTER TABLE event DROP COLUMN {column}")
    db.close()
    ballast = fill(small_disk)
    journal = Journal(path)
    try:
        assert not journal.writable
        now = datetime.now(UTC)
        late = Late("deadline_passed", now, None)
        assert await journal.record("b-1", "m-1", 1, "started", now, late=late) == 1
        ballast.unlink()
        await _until_writable(journal)
    finally:
        await journal.close()
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT seq, late_reason FROM event").fetchall()
    finally:
        db.close()
    assert rows == [(1, "deadline_passed")]

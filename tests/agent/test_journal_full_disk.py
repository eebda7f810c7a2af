"""A journal that cannot write never touches a call (issue 14, point 10).

The broadcast goes on from memory, the history gets every outcome and one note,
the job leaves the job service once the server holds the finished broadcast,
and the journal file catches up once it can be written. Once with an injected
OSError, once on a real small filesystem that runs full.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from edge_agent.broadcast import store
from edge_agent.broadcast.journal import Journal
from edge_agent.broadcast.model import JOURNAL_NOT_WRITABLE, Broadcast
from edge_agent.broadcast.reporter import Reporter
from edge_agent.config import Enrolment
from edge_agent.dialer.sim import SimDialer
from edge_agent.jobservice import JobServiceClient
from edge_agent.ledger import Ledger, Outcome
from edge_agent.pbx.port import UserState
from edge_agent.pbx.sim import SimPbx
from edge_agent.server import Server
from edge_agent.service import AgentService
from edge_agent.settings import AgentSettings
from tests.agent.sipp_bed import dial_through_sipp
from tests.agent.test_broadcast_executor import (
    Bed,
    alarm,
    assert_each_attempt_ends_once,
    beds,
    make_bed,
)
from tests.jobservice.support import AGENT, Service, job_body, make_settings
from tests.sip.bed import SippUas, need_sipp

__all__ = ["beds"]  # the fixture, shared with test_broadcast_executor

NOTE = JOURNAL_NOT_WRITABLE  # a code: the website words it
MEMBERS = 10


class History:
    """The central service's side of `reportBroadcast` as the agent sees it: each event
    stored once by its number (a repeat is ignored), the broadcast's note and status."""

    def __init__(self) -> None:
        self.events: dict[str, dict[int, dict[str, Any]]] = {}
        self.conflicts: list[tuple[int, dict[str, Any], dict[str, Any]]] = []
        self.note: dict[str, str | None] = {}
        self.status: dict[str, str] = {}

    async def report_broadcast(self, report: dict[str, Any]) -> int:
        stored = self.events.setdefault(report["broadcastId"], {})
        for event in report["events"]:
            seq = event["seq"]
            if seq in stored and stored[seq] != event:  # the same number, other content
                self.conflicts.append((seq, stored[seq], event))
            stored.setdefault(seq, event)
        self.note[report["broadcastId"]] = report["note"]
        self.status[report["broadcastId"]] = report["status"]
        return max(stored, default=0)

    async def aclose(self) -> None:
        return None


class DiskFault:
    """Makes every write to the journal file fail with an OSError while `on`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, journal: Journal) -> None:
        self.on = False
        self.failed = 0
        self.arm_on: Callable[[Sequence[store.Statement]], bool] = lambda _: False
        real = store.transaction
        disk = journal._store.disk

        def transaction(db: sqlite3.Connection, statements: Sequence[store.Statement]) -> None:
            if db is disk and not self.on and self.arm_on(statements):
                self.on = True
            if db is disk and self.on:
                self.failed += 1
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real(db, statements)

        monkeypatch.setattr(store, "transaction", transaction)


def answered(statements: Sequence[store.Statement]) -> bool:
    return any("answered" in statement[1] for statement in statements if len(statement) == 2)


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    (tmp_path / "jobs").mkdir()
    service = Service.start(make_settings(tmp_path / "jobs"))
    yield service
    await service.close()


async def ten_member_bed(state_dir: Path, beds: list[Bed]) -> Bed:
    """Ten members who answer within 0.05-0.15 s and listen to a 0.25 s message."""
    names = {f"Mitglied {i}": UserState.LOGGED_ON for i in range(MEMBERS)}
    bed = await make_bed(state_dir, names, channels=MEMBERS, timeout_s=30)
    await bed.dialer.close()
    bed.dialer = SimDialer(bed.control.state_path, time_scale=0.05, max_parallel=MEMBERS)
    bed.broadcasts.dialer = bed.dialer
    beds.append(bed)
    return bed


class Agent:
    """The broadcast side of an agent: the bed, its reporter, the job service client."""

    def __init__(self, bed: Bed, service: Service, history: History) -> None:
        self.bed = bed
        self.journal = bed.broadcasts.journal
        self.jobservice = JobServiceClient(
            "http://jobs", AGENT, transport=httpx.ASGITransport(app=service.app)
        )
        self.reporter = Reporter(self.journal, cast(Server, history), self.jobservice, 60)
        self.task = asyncio.create_task(self.reporter.run_forever())

    async def until(self, condition: Callable[[], bool], seconds: float, what: str) -> None:
        try:
            async with asyncio.timeout(seconds):
                # Polled: the conditions span the journal, the reporter and the history.
                while not condition():  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
        except TimeoutError:
            raise AssertionError(f"waited {seconds} s for {what}") from None

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.jobservice.aclose()


def on_disk(path: Path, broadcast_id: str) -> tuple[list[tuple[Any, ...]], tuple[Any, ...]]:
    """What the journal file holds of the broadcast, read by a connection of its own."""
    db = sqlite3.connect(path)
    try:
        events = db.execute(
            "SELECT seq, pbx_id, attempt_no, kind, outcome FROM event WHERE broadcast_id = ? "
            "ORDER BY seq",
            (broadcast_id,),
        ).fetchall()
        row = db.execute(
            "SELECT status, note, final_acked, source_done FROM broadcast WHERE id = ?",
            (broadcast_id,),
        ).fetchone()
    finally:
        db.close()
    return events, row


async def run_through_a_full_disk(
    agent: Agent,
    service: Service,
    history: History,
    job_id: str,
    fault_on: Callable[[], bool],
    clear_fault: Callable[[], None],
    journal_file: Path,
) -> None:
    """The checks both tests share, from the alarm to the caught-up journal."""
    bed, journal = agent.bed, agent.journal
    broadcast_id = await bed.broadcasts.accept(alarm(job_id))
    run = bed.broadcasts.running[broadcast_id]
    await asyncio.wait_for(asyncio.shield(run), 30)
    assert fault_on(), "the disk fault never came during the calls"

    # Every call ran to its end: nobody was cut off, everyone confirmed.
    assert run.exception() is None
    assert bed.broadcasts.last_failure is None
    assert not journal.writable
    events = await journal.events(broadcast_id)
    assert_each_attempt_ends_once(events)
    ended = {e.pbx_id: e.outcome for e in events if e.kind == "ended"}
    assert len(ended) == MEMBERS and set(ended.values()) == {"confirmed"}
    assert not any(e.attempt_no > 1 for e in events)

    # The history has every event once, and the journal's note once, while the disk is full.
    await agent.until(
        lambda: (
            len(history.events.get(broadcast_id, {})) == len(events)
            and history.status.get(broadcast_id) == "COMPLETED"
        ),
        10,
        "the finished broadcast in the history",
    )
    assert sorted(history.events[broadcast_id]) == [e.seq for e in events]
    assert not history.conflicts
    note = history.note[broadcast_id]
    assert note is not None and note.count(NOTE) == 1, note
    assert f"{MEMBERS} of {MEMBERS} called members confirmed" in note
    # The server holds the finished broadcast for good: the job goes, though only memory
    # holds it here (a crash now must not run the whole alarm again; review point 3).
    await agent.until(lambda: agent.reporter.settled.is_set(), 10, "the reporter to settle")
    assert await service.poll() == []

    clear_fault()
    await agent.until(lambda: journal.writable, 10, "the journal to catch up")
    await agent.until(lambda: agent.reporter.settled.is_set(), 10, "the reporter to settle")
    disk_events, row = on_disk(journal_file, broadcast_id)
    assert [e[0] for e in disk_events] == [e.seq for e in events]
    assert [(e[1], e[2], e[3], e[4]) for e in disk_events] == [
        (e.pbx_id, e.attempt_no, e.kind, e.outcome) for e in events
    ]
    status, disk_note, final_acked, source_done = row
    assert (status, final_acked, source_done) == ("completed", 1, 1)
    assert disk_note == note
    # Nothing reached the history twice or differently after the catch-up.
    assert not history.conflicts
    assert sorted(history.events[broadcast_id]) == [e.seq for e in events]


async def run_through_a_failing_write(
    tmp_path: Path, bed: Bed, service: Service, monkeypatch: pytest.MonkeyPatch
) -> DiskFault:
    """One job through the bed while the journal's writes fail from the first answered
    call's on until the disk is cleared: run_through_a_full_disk's checks."""
    fault = DiskFault(monkeypatch, bed.broadcasts.journal)
    fault.arm_on = answered  # the first answered call's write finds the disk full
    history = History()
    job_id = await service.accepted(job_body())
    agent = Agent(bed, service, history)

    def clear() -> None:
        fault.on = False
        fault.arm_on = lambda _: False

    try:
        await run_through_a_full_disk(
            agent,
            service,
            history,
            job_id,
            lambda: fault.on,
            clear,
            tmp_path / "agent" / "broadcasts.db",
        )
    finally:
        await agent.close()
    return fault


async def test_a_journal_write_failing_mid_call_cuts_off_no_call_and_catches_up(
    tmp_path: Path, service: Service, beds: list[Bed], monkeypatch: pytest.MonkeyPatch
) -> None:
    bed = await ten_member_bed(tmp_path, beds)
    fault = await run_through_a_failing_write(tmp_path, bed, service, monkeypatch)
    assert fault.failed >= 1


# --------------------------------------------------------------------- a real full disk


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs of its own; skipped where this process may not mount."""
    mount = shutil.which("mount")
    if mount is None or os.geteuid() != 0:
        pytest.skip("a small full filesystem needs root and mount (tmpfs) on Linux")
    folder = tmp_path / "small"
    folder.mkdir()
    made = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {made.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path) -> Path:
    """Writes a file until the filesystem is full; returns it (deleting it frees the space)."""
    ballast = folder / f"ballast-{uuid.uuid4().hex}"
    with ballast.open("wb", buffering=0) as out:  # unbuffered: closing writes nothing more
        try:
            while True:
                out.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return ballast


async def test_a_full_filesystem_cuts_off_no_call_and_the_journal_catches_up_after(
    tmp_path: Path, small_disk: Path, service: Service, beds: list[Bed]
) -> None:
    # The simulator and the cache elsewhere: only the journal lives on the small disk.
    bed = await ten_member_bed(tmp_path, beds)
    journal_file = small_disk / "broadcasts.db"
    await bed.broadcasts.journal.close()
    journal = Journal(journal_file)
    bed.broadcasts.journal = journal
    history = History()
    job_id = await service.accepted(job_body())
    agent = Agent(bed, service, history)
    ballast: list[Path] = []

    async def fill_when_answered() -> None:
        # The disk runs full just as the first member answers: the next write finds it so.
        while True:
            running = list(bed.broadcasts.running)
            if running and any(e.kind == "answered" for e in await journal.events(running[0])):
                break
            await asyncio.sleep(0.005)
        ballast.append(await asyncio.to_thread(fill, small_disk))

    filler = asyncio.create_task(fill_when_answered())
    try:
        await run_through_a_full_disk(
            agent,
            service,
            history,
            job_id,
            lambda: bool(ballast),
            lambda: ballast[0].unlink(),
            journal_file,
        )
    finally:
        filler.cancel()
        await agent.close()


# --------------------------------------------------------------------- the health report


async def test_the_health_report_says_the_journal_is_not_writable_until_it_caught_up(
    tmp_path: Path, beds: list[Bed], monkeypatch: pytest.MonkeyPatch
) -> None:
    bed = await ten_member_bed(tmp_path, beds)
    await bed.broadcasts.journal.close()  # the service below owns the journal
    settings = AgentSettings(
        pbx="sim", dialer="sim", state_dir=tmp_path / "agent", sim_state=bed.control.state_path
    )
    enrolment = Enrolment("http://127.0.0.1:9", "installation", "token")
    service = AgentService(settings, enrolment, SimPbx(bed.control.state_path), bed.dialer)
    bed.broadcasts = service.broadcasts
    journal = service.broadcasts.journal
    try:
        assert (await service.health())["journalWritable"] is True
        fault = DiskFault(monkeypatch, journal)
        fault.on = True
        now = datetime.now(UTC)
        await journal.create(Broadcast("b-1", "job", "j-1", "g", 2, now, now, "running"), [])
        report = await service.health()
        assert report["journalWritable"] is False
        assert report["alarmServiceOk"] is True  # the alarms themselves still run
        fault.on = False
        await asyncio.wait_for(_writable(journal), 10)
        assert (await service.health())["journalWritable"] is True
    finally:
        await service.server.aclose()
        service.ledger.close()


async def _writable(journal: Journal) -> None:
    while not journal.writable:  # noqa: ASYNC110 - a property, no event to wait on
        await asyncio.sleep(0.05)


# --------------------------------------------------------------------- the SIP dialer


async def test_with_the_sip_dialer_ten_sipp_members_all_confirm_through_a_failing_journal(
    tmp_path: Path, service: Service, beds: list[Bed], monkeypatch: pytest.MonkeyPatch
) -> None:
    need_sipp()
    bed = await ten_member_bed(tmp_path, beds)
    # SIPp stands for the PBX and its ten members: each answers and presses 1 by INFO.
    with SippUas("uas_dtmf_info.xml", tmp_path, calls=MEMBERS) as pbx:
        await dial_through_sipp(bed, pbx.port)
        await run_through_a_failing_write(tmp_path, bed, service, monkeypatch)
        assert await asyncio.to_thread(pbx.wait, 10) == 0, pbx.log()
        assert pbx.flow().count("< INVITE") == MEMBERS


def test_a_command_outcome_the_full_disk_refuses_is_still_answered(small_disk: Path) -> None:
    ledger = Ledger(small_disk / "ledger.db")
    try:
        assert ledger.record("cmd-1", Outcome(True, {"broadcastId": "b-1"}, None))
        ballast = fill(small_disk)
        # Refused by the disk, not raised: the agent answers the server all the same.
        assert ledger.record("cmd-2", Outcome(True, {"broadcastId": "b-2"}, None)) is False
        assert ledger.get("cmd-2") is None
        ballast.unlink()
        assert ledger.record("cmd-2", Outcome(True, {"broadcastId": "b-2"}, None))
        assert ledger.get("cmd-2") == Outcome(True, {"broadcastId": "b-2"}, None)
    finally:
        ledger.close()


async def test_the_note_stays_when_the_broadcast_ends_after_the_catch_up_and_repeats_still_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(tmp_path / "journal" / "broadcasts.db")
    fault = DiskFault(monkeypatch, journal)
    try:
        now = datetime.now(UTC)
        b = Broadcast("b-1", "job", "j-1", "g", 2, now, now, "running")
        await journal.create(b, [])
        fault.on = True
        assert await journal.record(b.id, "m-1", 1, "started", now) == 1
        # A trigger seen before is refused in memory as on disk (the manager relies on it).
        with pytest.raises(sqlite3.IntegrityError):
            await journal.create(b, [])
        assert (await journal.by_source("j-1")) is not None
        fault.on = False
        await asyncio.wait_for(_writable(journal), 10)
        await journal.record(b.id, "m-1", 1, "ended", now, "confirmed")
        await journal.finish(b.id, "completed", now, "1 of 1 called members confirmed")
        note = (await journal.get(b.id)).note
        assert note == f"1 of 1 called members confirmed; {NOTE}"
    finally:
        await journal.close()
    _, row = on_disk(tmp_path / "journal" / "broadcasts.db", "b-1")
    assert row[:2] == ("completed", note)

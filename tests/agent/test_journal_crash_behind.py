"""A crash while the journal is behind (issue 14, point 10, review points 2 and 3).

The process dies with events only memory held. A broadcast the server has already
stored in full does not run again from its job; one resumed from the file numbers
its new events above what the server may hold, so the repeat calls reach the history.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import pytest

from edge_agent.broadcast.manager import Broadcasts
from edge_agent.broadcast.reporter import Reporter
from edge_agent.broadcast.runner import CallSettings
from edge_agent.errors import ServerUnreachable
from edge_agent.server import Server
from tests.agent.test_broadcast_executor import Bed, alarm
from tests.agent.test_journal_full_disk import (
    Agent,
    DiskFault,
    History,
    answered,
    beds,
    service,
    ten_member_bed,
)
from tests.jobservice.support import Service, job_body

__all__ = ["beds", "service"]  # the fixtures


def _restarted(bed: Bed, state_dir: Path, server: object | None = None) -> Broadcasts:
    """A new agent process on the same journal file (the old one was killed); with
    `server`, resumed broadcasts ask it for its last event number as the agent does."""
    old = bed.broadcasts.journal
    if old._catching_up is not None:
        old._catching_up.cancel()  # kill -9: nothing more reaches the file
    calls = CallSettings(ring_timeout_s=30, retry_pause_s=0.05, max_attempts=20)
    bed.broadcasts = Broadcasts(state_dir, bed.cache, bed.broadcasts.pbx, bed.dialer, 10, calls)
    if server is not None:
        reporter = Reporter(bed.broadcasts.journal, cast(Server, server), None, 60)
        bed.broadcasts.last_stored = reporter.last_stored
    return bed.broadcasts


class Unreachable:
    async def report_broadcast(self, report: dict[str, Any]) -> int:
        raise ServerUnreachable("connection refused")


async def test_a_broadcast_the_server_holds_is_not_run_again_after_a_crash_while_behind(
    tmp_path: Path, service: Service, beds: list[Bed], monkeypatch: pytest.MonkeyPatch
) -> None:
    bed = await ten_member_bed(tmp_path, beds)
    fault = DiskFault(monkeypatch, bed.broadcasts.journal)
    fault.on = True  # the broadcast is created in memory only
    history = History()
    job_id = await service.accepted(job_body())
    agent = Agent(bed, service, history)
    broadcast_id = await bed.broadcasts.accept(alarm(job_id))
    await asyncio.wait_for(asyncio.shield(bed.broadcasts.running[broadcast_id]), 30)
    await agent.until(lambda: history.status.get(broadcast_id) == "COMPLETED", 10, "history")
    # The server holds the finished broadcast: the job goes, though the disk is full.
    await agent.until(lambda: agent.reporter.settled.is_set(), 10, "the reporter to settle")
    assert await service.poll() == []
    await agent.close()
    monkeypatch.undo()
    _restarted(bed, tmp_path / "agent")
    await bed.broadcasts.resume()
    assert bed.broadcasts.running == {}
    assert await service.poll() == []  # nothing to run the alarm a second time from


@pytest.mark.parametrize("reachable", [True, False], ids=["server-asked", "server-away"])
async def test_a_broadcast_resumed_after_a_crash_while_behind_reports_its_new_calls(
    tmp_path: Path,
    service: Service,
    beds: list[Bed],
    monkeypatch: pytest.MonkeyPatch,
    reachable: bool,
) -> None:
    bed = await ten_member_bed(tmp_path, beds)
    fault = DiskFault(monkeypatch, bed.broadcasts.journal)
    fault.arm_on = answered  # on disk: the broadcast and its first events
    history = History()
    job_id = await service.accepted(job_body())
    agent = Agent(bed, service, history)
    broadcast_id = await bed.broadcasts.accept(alarm(job_id))
    await asyncio.wait_for(asyncio.shield(bed.broadcasts.running[broadcast_id]), 30)
    await agent.until(lambda: history.status.get(broadcast_id) == "COMPLETED", 10, "history")
    before = set(history.events[broadcast_id])
    await agent.close()
    monkeypatch.undo()
    broadcasts = _restarted(bed, tmp_path / "agent", history if reachable else Unreachable())
    await broadcasts.resume()  # the file says running: it resumes
    for task in list(broadcasts.running.values()):
        await asyncio.wait_for(asyncio.shield(task), 30)
    agent = Agent(bed, service, history)
    try:
        await agent.until(lambda: agent.reporter.settled.is_set(), 20, "the reporter to settle")
    finally:
        await agent.close()
    journaled = {e.seq for e in await broadcasts.journal.events(broadcast_id)}
    resumed = {seq for seq in journaled if seq > max(before)}
    assert resumed, "the resumed broadcast journaled nothing new"
    # Every event journaled after the restart is in the history, none lost as a "repeat".
    assert resumed <= set(history.events[broadcast_id])
    assert not history.conflicts
    if reachable:  # numbered right above what the server had: no gap
        assert min(resumed) == max(before) + 1

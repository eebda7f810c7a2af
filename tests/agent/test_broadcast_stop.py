"""Stopping a running broadcast (issue 17, point 2) with the simulated dialer.

Ringing calls are cancelled, answered calls hear the stop notice and are hung up, no
retry follows, members not yet called end `not_called` "broadcastStopped", and the
broadcast ends CANCELLED with who stopped it, how and when. The dialer runs in real
time here (scale 1): the calls must still be under way when the stop comes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge_agent.broadcast.manager import Broadcasts
from edge_agent.broadcast.model import Event, Stop
from edge_agent.dialer.port import CallEvent, CallEventKind, CallRequest, EventSink
from edge_agent.dialer.sim import Behaviour, SimDialer
from edge_agent.ivr import definition
from edge_agent.pbx.port import UserState
from tests.agent.test_broadcast_executor import Bed, alarm, beds, final_outcomes, make_bed
from tests.agent.test_journal_full_disk import small_disk

__all__ = ["beds", "small_disk"]  # the fixtures, used by name

WAIT_S = 20.0  # a bound on waiting for a state, never a measured time


class Recording(SimDialer):
    """The simulated dialer, keeping every call's events (PLAYING included)."""

    def __init__(self, state_path: Path) -> None:
        super().__init__(state_path, time_scale=1.0, max_parallel=2)
        self.events: dict[str, list[CallEvent]] = {}
        self.requests: dict[str, CallRequest] = {}

    async def call(self, request: CallRequest, on_event: EventSink) -> object:  # type: ignore[override]
        self.requests[request.target] = request

        async def keep(event: CallEvent) -> None:
            self.events.setdefault(request.target, []).append(event)
            await on_event(event)

        return await super().call(request, keep)


@pytest.fixture
async def bed(tmp_path: Path, beds: list[Bed]) -> AsyncIterator[tuple[Bed, Recording]]:
    made = await make_bed(
        tmp_path,
        {"Anna": UserState.LOGGED_ON, "Bernd": UserState.LOGGED_ON, "Carla": UserState.LOGGED_ON},
        channels=2,
        timeout_s=120,
    )
    beds.append(made)
    dialer = Recording(made.control.state_path)
    made.broadcasts.dialer = dialer
    # Anna answers and listens without a key; Bernd's phone rings and rings.
    made.script.script(made.members["Anna"], Behaviour.VOICEMAIL, after_s=0.1)
    made.script.script(made.members["Bernd"], Behaviour.NO_ANSWER)
    yield made, dialer
    await dialer.close()


async def wait_for(broadcasts: Broadcasts, broadcast_id: str, kinds: set[tuple[str, str]]) -> None:
    """Until the journal holds an event of each (pbx id, kind)."""
    async with asyncio.timeout(WAIT_S):
        while True:
            events = await broadcasts.journal.events(broadcast_id)
            if kinds <= {(e.pbx_id, e.kind) for e in events}:
                return
            await asyncio.sleep(0.02)


def ids(bed: Bed) -> dict[str, str]:
    return {u["name"]: u["id"] for u in bed.cache.data["directory"]["users"]}


async def test_a_stop_cancels_ringing_calls_tells_answered_ones_and_calls_nobody_else(
    bed: tuple[Bed, Recording],
) -> None:
    b, dialer = bed
    who = ids(b)
    broadcast_id = await b.broadcasts.accept(alarm())
    await wait_for(
        b.broadcasts, broadcast_id, {(who["Anna"], "answered"), (who["Bernd"], "ringing")}
    )
    stop = Stop("Petra Admin <petra@example.com>", "website", datetime.now(UTC))
    assert await b.broadcasts.stop(stop, broadcast_id=broadcast_id) == [broadcast_id]
    async with asyncio.timeout(WAIT_S):
        await b.broadcasts.running[broadcast_id]

    events: list[Event] = await b.broadcasts.journal.events(broadcast_id)
    outcomes = final_outcomes(events)
    ended = {e.pbx_id: e for e in events if e.kind == "ended"}
    # Answered: the stop notice, then the hang-up.
    assert outcomes[who["Anna"]] == "answered"
    assert ended[who["Anna"]].detail == "broadcastStopped"
    anna = dialer.events[b.members["Anna"]]
    assert [e.kind for e in anna[-2:]] == [CallEventKind.PLAYING, CallEventKind.ENDED]
    assert anna[-2].detail == "stop notice"
    notice = dialer.requests[b.members["Anna"]].stop_notice
    assert notice is not None and notice.name == definition.PROMPTS["stopped"]
    assert notice.is_file()
    # Ringing: cancelled, and not called again.
    assert outcomes[who["Bernd"]] == "no_answer"
    assert ended[who["Bernd"]].detail == "broadcastStopped"
    # Every attempt was the first: retries stop.
    assert {e.attempt_no for e in events} == {1}
    # Waiting for a channel: never called, with a row that says why.
    assert outcomes[who["Carla"]] == "not_called"
    assert ended[who["Carla"]].detail == "broadcastStopped"
    assert not any(e.pbx_id == who["Carla"] and e.kind == "started" for e in events)
    assert b.members["Carla"] not in dialer.requests

    done = await b.broadcasts.journal.get(broadcast_id)
    assert done.status == "cancelled"
    assert done.stop == stop
    # A second stop changes nothing.
    assert await b.broadcasts.stop(stop, broadcast_id=broadcast_id) == []


async def test_a_stop_by_phone_stops_the_groups_broadcast_and_a_restart_calls_nobody(
    bed: tuple[Bed, Recording], tmp_path: Path
) -> None:
    b, _ = bed
    who = ids(b)
    broadcast_id = await b.broadcasts.accept(alarm())
    await wait_for(b.broadcasts, broadcast_id, {(who["Bernd"], "ringing")})
    stop = Stop("+49301234", "phone", datetime.now(UTC))
    # The agent stops before the runs learn of it: the journal holds the stop.
    task = b.broadcasts.running[broadcast_id]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert await b.broadcasts.stop(stop, group_pbx_id=b.group_id) == [broadcast_id]
    await b.broadcasts.close()

    again = Broadcasts(
        tmp_path / "agent", b.cache, b.broadcasts.pbx, b.broadcasts.dialer, 2, b.broadcasts.calls
    )
    b.broadcasts = again  # the fixture closes it
    await again.resume()
    async with asyncio.timeout(WAIT_S):
        await again.running[broadcast_id]
    done = await again.journal.get(broadcast_id)
    events = await again.journal.events(broadcast_id)
    assert done.status == "cancelled" and done.stop == stop
    # After the restart nobody was called: only the first attempts are there.
    assert {e.attempt_no for e in events} == {1}
    assert final_outcomes(events)[who["Carla"]] == "not_called"


async def _older_journal(path: Path) -> None:
    """A journal at `path` with broadcast b-1, as an agent before the stop (issue 17)
    wrote it: no stop column."""
    import sqlite3

    from edge_agent.broadcast.journal import Journal
    from tests.agent.test_journal_restart_full_disk import _broadcast

    journal = Journal(path)
    await journal.create(_broadcast(1), [])
    await journal.close()
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE broadcast DROP COLUMN stop")
    db.commit()
    db.close()


async def test_a_journal_an_older_agent_wrote_gets_the_stop_column(tmp_path: Path) -> None:
    from edge_agent.broadcast.journal import Journal

    path = tmp_path / "broadcasts.db"
    await _older_journal(path)
    journal = Journal(path)
    try:
        assert (await journal.get("b-1")).stop is None
        stop = Stop("+4930", "phone", datetime.now(UTC))
        assert await journal.stopped("b-1", stop) is True
        assert (await journal.get("b-1")).stop == stop
    finally:
        await journal.close()


async def test_an_older_journal_on_a_full_disk_still_takes_a_stop(small_disk: Path) -> None:
    from edge_agent.broadcast.journal import Journal
    from tests.agent.test_journal_full_disk import fill
    from tests.agent.test_journal_restart_full_disk import _until_writable

    path = small_disk / "broadcasts.db"
    await _older_journal(path)
    ballast = fill(small_disk)
    journal = Journal(path)
    try:
        assert not journal.writable
        stop = Stop("+4930", "phone", datetime.now(UTC))
        assert await journal.stopped("b-1", stop) is True
        assert (await journal.get("b-1")).stop == stop
        ballast.unlink()
        await _until_writable(journal)
    finally:
        await journal.close()
    journal = Journal(path)
    try:
        assert (await journal.get("b-1")).stop == stop
    finally:
        await journal.close()

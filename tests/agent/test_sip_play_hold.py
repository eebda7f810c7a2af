"""The announcement's rounds around a hold (issue 15, point 7, the outside review): a hold
begun after the broadcast's timeout still gets its grace, that grace is the call's once,
a repeat pressed on hold starts no round nobody hears, and a call on hold ends when the
broadcast's quorum is reached.

A real pacer plays the message; the call is a stand-in with the queues the dialer reads
(`Call.digits`, `Call.holds`, `Call.remote_bye`): the SIP side of hold has its own tests
(tests/sip_unit/test_hold*.py, tests/agent/test_dialer_sip_hold.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from edge_agent.dialer import sip_play
from edge_agent.dialer.common import Emitter
from edge_agent.dialer.port import CallEventKind, CallOutcome, CallRequest
from edge_agent.dialer.sip_play import ENDED_ON_HOLD, ENDED_ON_HOLD_QUORUM, Announcement
from edge_agent.sip.call import Call
from edge_agent.sip.pacer import Pacer
from tests.agent.dialer_contract import Recorder, assert_well_formed

K = CallEventKind
MESSAGE = b"\xff" * 160 * 10  # 0.2 s of PCMU


class Member:
    """What the announcement reads of a call: digits, hold changes, the member's BYE."""

    def __init__(self) -> None:
        self.digits: asyncio.Queue[str] = asyncio.Queue()
        self.holds: asyncio.Queue[bool] = asyncio.Queue()
        self.remote_bye = asyncio.Event()
        self.ssrc = 1
        self.on_hold = False
        self.heard = 0

    def send_rtp(self, packet: bytes) -> None:
        if not self.on_hold:
            self.heard += 1

    def hold(self, held: bool) -> None:
        self.on_hold = held
        self.holds.put_nowait(held)


@pytest.fixture
async def pacer() -> AsyncIterator[Pacer]:
    pacer = Pacer()
    task = asyncio.create_task(pacer.run())
    yield pacer
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


Play = Callable[..., Awaitable[Recorder]]


@pytest.fixture
def play(pacer: Pacer) -> Play:
    async def play(
        member: Member, script: Callable[[Recorder], Coroutine[Any, Any, None]], **fields: Any
    ) -> Recorder:
        """Runs the announcement to its end while `script` plays the member; the events."""
        fields.setdefault("dtmf_timeout_s", 1.0)
        request = CallRequest("c1", "200", "Rundruf", Path("message.wav"), **fields)
        recorder = Recorder()
        emit = Emitter(request.call_id, recorder)
        await emit.emit(K.STARTED)
        await emit.emit(K.ANSWERED)
        call = cast(Call, member)
        announcement = Announcement(pacer, call, request, MESSAGE, 0, emit)
        acting = asyncio.create_task(script(recorder))
        try:
            outcome = await asyncio.wait_for(announcement.run(), 20)
        finally:
            acting.cancel()
            await asyncio.gather(acting, return_exceptions=True)
        assert_well_formed(recorder.events, outcome, request)
        return recorder

    return play


def ago(seconds: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


def ended(recorder: Recorder) -> tuple[CallOutcome | None, str | None]:
    end = recorder.events[-1]
    return end.outcome, end.detail


async def test_a_hold_begun_after_the_broadcasts_timeout_lasts_its_grace(play: Play) -> None:
    """a5_late_hold.py: a member who answered after the timeout holds for half a second
    and presses 1 on coming back. Before, the hold ended the call at once (endedOnHold)."""
    member = Member()

    async def script(recorder: Recorder) -> None:
        await recorder.wait_for(K.PLAYING)
        member.hold(True)
        await asyncio.sleep(0.5)
        member.hold(False)
        await recorder.wait_for(K.RESUMED)
        member.digits.put_nowait("1")

    recorder = await play(member, script, hold_until=ago(5))
    assert ended(recorder)[0] is CallOutcome.CONFIRMED, recorder.events
    assert recorder.kinds.count(K.HELD) == recorder.kinds.count(K.RESUMED) == 1


async def test_the_grace_past_the_timeout_is_the_calls_once(
    play: Play, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Holding again and again does not keep the call: the grace (here 0.6 s) is shared
    by every hold past the timeout, so the second hold ends after what is left of it."""
    monkeypatch.setattr(sip_play, "HOLD_GRACE_S", 0.6)
    member = Member()
    loop = asyncio.get_running_loop()
    second_hold = 0.0

    async def script(recorder: Recorder) -> None:
        nonlocal second_hold
        await recorder.wait_for(K.PLAYING)
        member.hold(True)
        await asyncio.sleep(0.4)
        member.hold(False)
        await recorder.wait_for(K.RESUMED)
        second_hold = loop.time()
        member.hold(True)

    recorder = await play(member, script, hold_until=ago(5))
    assert ended(recorder) == (CallOutcome.ANSWERED, ENDED_ON_HOLD)
    assert 0.1 < loop.time() - second_hold < 0.5  # 0.2 s left of the grace


async def test_a_hold_begun_before_the_timeout_lasts_to_it_or_its_grace(
    play: Play, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The later of `hold_until` and the grace from the hold's start."""
    monkeypatch.setattr(sip_play, "HOLD_GRACE_S", 0.3)
    member = Member()
    loop = asyncio.get_running_loop()
    held_at = 0.0

    async def script(recorder: Recorder) -> None:
        nonlocal held_at
        await recorder.wait_for(K.PLAYING)
        held_at = loop.time()
        member.hold(True)

    until = datetime.now(UTC) + timedelta(seconds=0.8)
    recorder = await play(member, script, hold_until=until)
    assert ended(recorder) == (CallOutcome.ANSWERED, ENDED_ON_HOLD)
    assert 0.7 < loop.time() - held_at < 1.1


async def test_a_repeat_pressed_on_hold_starts_no_round(play: Play) -> None:
    """a3_variants.py case D: 9 three times on hold used up both repeats and started
    rounds nobody heard. Now they are ignored: after the return the member still has
    both repeats (three rounds after it, one of them the round the return starts)."""
    member = Member()

    async def script(recorder: Recorder) -> None:
        await recorder.wait_for(K.PLAYING)
        member.hold(True)
        await recorder.wait_for(K.HELD)
        for _ in range(3):
            member.digits.put_nowait("9")
            await asyncio.sleep(0.05)
        member.hold(False)
        await recorder.wait_for(K.RESUMED)
        for _ in range(2):
            await asyncio.sleep(0.3)  # the message (0.2 s) has played: a repeat
            member.digits.put_nowait("9")
        await asyncio.sleep(0.3)
        member.digits.put_nowait("1")

    recorder = await play(member, script, max_repeats=2, dtmf_timeout_s=2.0)
    assert ended(recorder)[0] is CallOutcome.CONFIRMED, recorder.events
    kinds = recorder.kinds
    held, resumed = kinds.index(K.HELD), kinds.index(K.RESUMED)
    assert kinds[held + 1 : resumed] == [K.DTMF] * 3  # no PLAYING on hold
    on_hold = recorder.events[held + 1 : resumed]
    assert all(e.detail == "on hold: ignored" and e.digit == "9" for e in on_hold)
    assert kinds[resumed:].count(K.PLAYING) == 3
    playing = [e.detail for e in recorder.events if e.kind is K.PLAYING]
    assert playing[-1] == "round 3, 1x", playing


async def test_a_call_on_hold_ends_when_the_quorum_is_reached(play: Play) -> None:
    """a4_quorum_hold.py: before, the call waited for its member until the timeout."""
    member = Member()
    quorum = asyncio.Event()
    loop = asyncio.get_running_loop()
    reached = 0.0

    async def script(recorder: Recorder) -> None:
        nonlocal reached
        await recorder.wait_for(K.PLAYING)
        member.hold(True)
        await recorder.wait_for(K.HELD)
        await asyncio.sleep(0.2)
        reached = loop.time()
        quorum.set()

    until = datetime.now(UTC) + timedelta(seconds=30)
    recorder = await play(member, script, hold_until=until, quorum_reached=quorum)
    assert ended(recorder) == (CallOutcome.ANSWERED, ENDED_ON_HOLD_QUORUM)
    assert loop.time() - reached < 0.2


async def test_a_hold_after_the_quorum_ends_the_call_and_a_call_not_on_hold_plays_on(
    play: Play,
) -> None:
    """Reached already: the member hears the message out (and confirms) as long as the
    call is not on hold; a hold then ends it at once."""
    quorum = asyncio.Event()
    quorum.set()
    until = datetime.now(UTC) + timedelta(seconds=30)
    listening = Member()

    async def confirm(recorder: Recorder) -> None:
        await recorder.wait_for(K.PLAYING)
        await asyncio.sleep(0.1)
        listening.digits.put_nowait("1")

    recorder = await play(listening, confirm, hold_until=until, quorum_reached=quorum)
    assert ended(recorder)[0] is CallOutcome.CONFIRMED
    holding = Member()

    async def hold(recorder: Recorder) -> None:
        await recorder.wait_for(K.PLAYING)
        holding.hold(True)

    recorder = await play(holding, hold, hold_until=until, quorum_reached=quorum)
    assert ended(recorder) == (CallOutcome.ANSWERED, ENDED_ON_HOLD_QUORUM)

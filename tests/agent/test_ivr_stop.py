"""Stopping a running broadcast by phone at the agent's own IVR (issue 17, point 2): a real
SIPp caller over loopback enters the PIN and presses 0; the group's running broadcast
stops in the agent itself (no central service here at all), recorded as stopped by the
caller's number over SIP. A 0 with nothing running stops nothing and says so."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edge_agent.dialer.sim import Behaviour
from edge_agent.ivr.answering import IvrAnswering
from edge_agent.ivr.flow import Outcome
from edge_agent.ivr.port import CallerLine
from edge_agent.ivr.sip_router import SipRouter
from edge_agent.pbx.port import UserState
from tests.agent.sip_incoming_bed import answering_ua, dial_agent
from tests.agent.test_broadcast_executor import AGENT_NUMBER, Bed, alarm, make_bed
from tests.sip.bed import need_sipp
from tests.sip.caller_rtp import Keys, Step, Wait
from tests.sip.trigger_caller import TriggerCaller

PIN = "123456"  # make_bed's
WAIT_S = 30.0  # a bound on waiting for a state, never a measured time


@pytest.fixture
async def bed(tmp_path: Path) -> AsyncIterator[Bed]:
    # A long timeout: Anna's phone rings and rings until the stop.
    made = await make_bed(tmp_path, {"Anna": UserState.LOGGED_ON}, timeout_s=600)
    made.script.script(made.members["Anna"], Behaviour.NO_ANSWER)
    yield made
    await made.broadcasts.close()
    await made.dialer.close()


async def _call_and_press_0(bed: Bed, tmp_path: Path) -> tuple[list[Outcome], str]:
    outcomes: list[Outcome] = []

    class Recorded(IvrAnswering):
        async def answer(
            self, line: CallerLine, *, group_id: str, number: str, pin: str
        ) -> Outcome:
            outcome = await super().answer(line, group_id=group_id, number=number, pin=pin)
            outcomes.append(outcome)
            return outcome

    ivr = Recorded(tmp_path / "agent", bed.cache, bed.broadcasts)
    await ivr.prepare()

    steps: list[Step] = [Wait(1.0), Keys(PIN + "#"), Wait(1.5), Keys("0"), Wait(4)]
    caller = TriggerCaller(steps, dtmf="info")  # SIP INFO: no pcap player needed
    async with answering_ua(SipRouter(ivr)) as ua:  # type: ignore[arg-type] # any Router
        port = ua.transport.local[1]
        with dial_agent(caller, tmp_path, port, number=AGENT_NUMBER, timeout=40) as sipp:
            code = await asyncio.to_thread(sipp.wait, 60)
    assert code == 0, sipp.log()
    return outcomes, caller.caller


async def test_pin_then_0_stops_the_groups_running_broadcast(bed: Bed, tmp_path: Path) -> None:
    need_sipp()
    broadcast_id = await bed.broadcasts.accept(alarm())
    outcomes, caller = await _call_and_press_0(bed, tmp_path)
    assert outcomes == [Outcome.STOPPED]
    task = bed.broadcasts.running.get(broadcast_id)  # None: it has ended already
    if task is not None:
        async with asyncio.timeout(WAIT_S):
            await task
    b = await bed.broadcasts.journal.get(broadcast_id)
    assert b.status == "cancelled"
    assert b.stop is not None and (b.stop.via, b.stop.by) == ("sip", caller)
    events = await bed.broadcasts.journal.events(broadcast_id)
    # A start written as the stop came ends at once; each call begun has ended.
    late = {(e.pbx_id, e.attempt_no) for e in events if e.kind == "started" and e.at > b.stop.at}
    ends = {(e.pbx_id, e.attempt_no): e.detail for e in events if e.kind == "ended"}
    assert all(ends[key] == "broadcastStopped" for key in late)
    started = {(e.pbx_id, e.attempt_no) for e in events if e.kind == "started"}
    assert started == {(e.pbx_id, e.attempt_no) for e in events if e.kind == "ended"}


async def test_0_with_nothing_running_stops_nothing(bed: Bed, tmp_path: Path) -> None:
    need_sipp()
    outcomes, _ = await _call_and_press_0(bed, tmp_path)
    assert outcomes == [Outcome.NOTHING_TO_STOP]

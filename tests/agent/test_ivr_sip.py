"""The IVR as the SIP user agent's router (edge_agent/ivr/sip_router.py): the SIP side's
refusals, and a real SIPp caller over loopback whose PIN, mode and confirmation start
a broadcast in a real journal (the broadcast bed of test_broadcast_executor)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edge_agent.config import Enrolment
from edge_agent.dialer.sip import SipDialer
from edge_agent.ivr.answering import IvrAnswering, source_id
from edge_agent.ivr.port import CallerLine
from edge_agent.ivr.sip_router import PIN_STAGE_S, SipRouter
from edge_agent.pbx.port import UserState
from edge_agent.pbx.sim import SimPbx
from edge_agent.service import AgentService
from edge_agent.settings import AgentSettings
from edge_agent.sip.incoming import Accept, IncomingCalls, IncomingInvite, Refuse
from tests.agent.sip_incoming_bed import HOST, answering_ua, dial_agent
from tests.agent.test_broadcast_executor import AGENT_NUMBER, Bed, make_bed
from tests.sip.bed import need_pcap_play, need_sipp
from tests.sip.caller_rtp import Keys, Step, Wait
from tests.sip.trigger_caller import Dtmf, TriggerCaller

PIN = "123456"  # make_bed's


@pytest.fixture
async def bed(tmp_path: Path) -> AsyncIterator[Bed]:
    made = await make_bed(tmp_path, {"Anna": UserState.LOGGED_ON})
    yield made
    await made.broadcasts.close()
    await made.dialer.close()


def invite(*called: str) -> IncomingInvite:
    return IncomingInvite("c1@pbx", called, "100", "Pforte", (HOST, 5060), "UDP")


async def test_refusals_and_acceptance(bed: Bed, tmp_path: Path) -> None:
    router = SipRouter(IvrAnswering(tmp_path / "agent", bed.cache, bed.broadcasts))
    assert router.route(invite("4711", "Rundruf")) == Refuse(404, "Not Found")
    accepted = router.route(invite(AGENT_NUMBER, "Rundruf"))
    assert isinstance(accepted, Accept)
    assert accepted.ring_s == 0
    # A caller who never enters the right PIN is ended by the line after this long.
    assert accepted.pin_stage_s == PIN_STAGE_S
    bed.cache.broadcast_groups.clear()
    refused = router.route(invite(AGENT_NUMBER))
    assert isinstance(refused, Refuse)
    assert (refused.status, refused.retry_after) == (480, 60)


@pytest.mark.parametrize("dtmf", ["rfc4733", "info"])
async def test_a_sip_caller_triggers_a_broadcast(bed: Bed, tmp_path: Path, dtmf: Dtmf) -> None:
    need_sipp()
    if dtmf == "rfc4733":
        need_pcap_play()
    ivr = IvrAnswering(tmp_path / "agent", bed.cache, bed.broadcasts)
    await ivr.prepare()
    ended: list[tuple[str, str]] = []

    class Recorded(SipRouter):
        def route(self, invite: IncomingInvite) -> Refuse | Accept:
            decided = super().route(invite)
            if isinstance(decided, Accept):
                inner = decided.handler

                async def handler(line: CallerLine) -> None:
                    ended.append((line.call_id, line.from_tag))
                    await inner(line)

                return Accept(handler, decided.ring_s)
            return decided

    # Each key barges into its prompt; the waits leave the IVR time to ask the next question.
    steps: list[Step] = [
        Wait(1.0),
        Keys(PIN + "#"),
        Wait(1.5),
        Keys("2"),
        Wait(1.5),
        Keys("1"),
        Wait(4),
    ]
    caller = TriggerCaller(steps, dtmf=dtmf)
    async with answering_ua(Recorded(ivr)) as ua:  # type: ignore[arg-type] # any Router
        port = ua.transport.local[1]
        with dial_agent(caller, tmp_path, port, number=AGENT_NUMBER, timeout=40) as sipp:
            code = await asyncio.to_thread(sipp.wait, 60)
    assert code == 0, sipp.log()
    assert len(ended) == 1
    b = await bed.broadcasts.journal.by_source(source_id(*ended[0], AGENT_NUMBER))
    assert b is not None, sipp.flow()
    assert (b.source, b.mode, b.caller_number) == ("sip", 2, caller.caller)


@pytest.mark.parametrize(("setting", "answers"), [(None, True), (False, False)])
async def test_the_service_hands_incoming_calls_to_the_ivr(
    bed: Bed, tmp_path: Path, setting: bool | None, answers: bool
) -> None:
    settings = AgentSettings(
        pbx="sim",
        dialer="sip",
        state_dir=tmp_path / "service",
        sim_state=bed.control.state_path,
        sip_register=False,
        sip_answer_calls=setting,
    )
    enrolment = Enrolment("http://127.0.0.1:9", "installation", "token")
    service = AgentService(settings, enrolment, SimPbx(bed.control.state_path))
    service.cache.broadcast_groups.update(bed.cache.broadcast_groups)
    try:
        await service.start_dialer()
        assert isinstance(service.dialer, SipDialer) and service.dialer.ua is not None
        incoming = service.dialer.ua.incoming
        if not answers:
            assert incoming is None  # declined with 603, as before issue 16
            return
        assert isinstance(incoming, IncomingCalls)
        assert isinstance(incoming.router.route(invite(AGENT_NUMBER)), Accept)
        assert incoming.router.route(invite("4711")) == Refuse(404, "Not Found")
    finally:
        await service.dialer.close()
        await service.broadcasts.close()
        await service.server.aclose()
        service.ledger.close()

"""The PIN stage's limit counts the caller's time, not the IVR's own waits (review 2 of
issue 16, finding 1: the throttle made a caller wait, and the 180 s limit ended the call
before the PIN was asked for). Scaled down: a 0.6 s stage, a 0.5 s wait of the IVR."""

from __future__ import annotations

import asyncio

from edge_agent.ivr.port import CallerLine
from edge_agent.sip.incoming import Accept, IncomingCalls, IncomingInvite, Refuse
from edge_agent.sip.incoming_media import SipCallerLine
from tests.sip_unit.loopback_ua import loopback_ua
from tests.sip_unit.test_incoming_dialog import final, in_dialog, invite
from tests.sip_unit.udp_peers import Peer


class Waiting:
    """The IVR makes the caller wait `extend` s (and says so to the line), then the PIN
    comes `after` s from the start."""

    def __init__(self, stage_s: float, extend: float, after: float) -> None:
        self.stage_s, self.extend, self.after = stage_s, extend, after
        self.passed = asyncio.Event()
        self.cut = asyncio.Event()

    def route(self, invite: IncomingInvite) -> Refuse | Accept:
        return Accept(self.handler, pin_stage_s=self.stage_s)

    async def handler(self, line: CallerLine) -> None:
        assert isinstance(line, SipCallerLine)
        try:
            line.pin_stage_extend(self.extend)
            await asyncio.sleep(self.after)
            line.authenticated()
            self.passed.set()
        except asyncio.CancelledError:
            self.cut.set()
            raise


async def outcome(router: Waiting) -> str:
    caller = Peer(phone=True)
    try:
        ua, transport = await loopback_ua(caller.address)
        ua.incoming = IncomingCalls(ua, router)
        caller.agent = transport.local
        caller.send(invite(caller))
        ok = await final(caller)
        caller.send(in_dialog(caller, "ACK", ok.to_tag or "", 1))
        done = [asyncio.ensure_future(e.wait()) for e in (router.passed, router.cut)]
        await asyncio.wait(done, timeout=5, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.cancel()
        await ua.close()
        return "passed" if router.passed.is_set() else "cut" if router.cut.is_set() else "?"
    finally:
        caller.close()


async def test_the_ivrs_own_wait_does_not_count_against_the_pin_stage() -> None:
    # 0.8 s from the start, 0.3 s of it the caller's own: within the 0.6 s stage.
    assert await outcome(Waiting(stage_s=0.6, extend=0.5, after=0.8)) == "passed"


async def test_the_stage_still_ends_after_the_wait_and_the_callers_own_time() -> None:
    assert await outcome(Waiting(stage_s=0.3, extend=0.2, after=1.5)) == "cut"

"""What an incoming call holds, and for how long (review of issue 16, finding 2): a
place among the MAX_INCOMING ends with the call, not with our BYE's transaction; an
unacknowledged 200 waits CALL_ACK_WAIT_S, not 64 x T1; the stage before the PIN has its
own limit; one caller number has at most `per_caller` calls before its PIN (a new one
ends the oldest); calls not yet acknowledged have a cap of their own; a TCP
INVITE whose connection closed is not kept."""

from __future__ import annotations

import asyncio
import socket

import pytest

from edge_agent.ivr.port import CallerGone, CallerLine
from edge_agent.sip import incoming_call
from edge_agent.sip.incoming import Accept, IncomingCalls, IncomingInvite, Refuse
from edge_agent.sip.incoming_media import SipCallerLine
from tests.agent.sip_incoming_bed import Numbers, answering_ua
from tests.sip_unit.loopback_ua import loopback_ua
from tests.sip_unit.test_incoming_dialog import final, in_dialog, invite, request
from tests.sip_unit.udp_peers import HOST, Peer


class Quick:
    """Accepts every call; its handler returns at once, or waits for keys (`wait`)."""

    def __init__(self, *, wait: bool = False, pin_stage_s: float | None = None) -> None:
        self.wait = wait
        self.pin_stage_s = pin_stage_s
        self.ended = asyncio.Event()
        self.passed = False

    def route(self, invite: IncomingInvite) -> Refuse | Accept:
        if self.pin_stage_s is None:
            return Accept(self.handler)
        return Accept(self.handler, pin_stage_s=self.pin_stage_s)

    async def handler(self, line: CallerLine) -> None:
        try:
            if self.wait:
                await line.read_digits(1, 60.0, None)
        except CallerGone:
            pass
        finally:
            self.ended.set()


async def gone_within(incoming: IncomingCalls, call_id: str, seconds: float) -> bool:
    for _ in range(int(seconds / 0.05)):
        if call_id not in incoming.calls:
            return True
        await asyncio.sleep(0.05)
    return False


async def test_the_place_is_free_once_the_call_ended_not_after_the_bye() -> None:
    """A caller that never answers our BYE: before, the call kept its place for the
    BYE's 64 x T1 (32 s); now it is free at once."""
    caller = Peer()  # acknowledges nothing, answers no BYE
    try:
        ua, transport = await loopback_ua(caller.address)
        ua.incoming = incoming = IncomingCalls(ua, Quick())
        caller.agent = transport.local
        caller.send(invite(caller))
        ok = await final(caller)
        assert ok.status == 200
        caller.send(in_dialog(caller, "ACK", ok.to_tag or "", 1))
        await request(caller, "BYE")  # the handler returned: our BYE, unanswered
        assert await gone_within(incoming, "in-1", 2.0)
        await ua.close(grace_s=0.1)
    finally:
        caller.close()


async def test_an_unacknowledged_200_ends_after_the_short_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No ACK: the call ends after CALL_ACK_WAIT_S (8 s; shortened here), without a BYE
    (second review, finding 2: before, a forged INVITE's Contact got 11 BYEs)."""
    assert incoming_call.CALL_ACK_WAIT_S <= 10.0  # not 64 x T1 = 32 s
    monkeypatch.setattr(incoming_call, "CALL_ACK_WAIT_S", 0.3)
    caller = Peer()
    try:
        ua, transport = await loopback_ua(caller.address)
        ua.incoming = incoming = IncomingCalls(ua, Quick())
        caller.agent = transport.local
        caller.send(invite(caller))
        assert (await final(caller)).status == 200
        assert await gone_within(incoming, "in-1", 2.0)
        await asyncio.sleep(1.0)  # a BYE (and its first resend) would be here by now
        assert not [r for r in caller.requests if r.method == "BYE"]
        await ua.close(grace_s=0.1)
    finally:
        caller.close()


async def test_the_stage_before_the_pin_is_limited() -> None:
    """A caller who presses nothing is ended after `pin_stage_s`, with a BYE."""
    caller = Peer(phone=True)
    try:
        router = Quick(wait=True, pin_stage_s=0.5)
        ua, transport = await loopback_ua(caller.address)
        ua.incoming = incoming = IncomingCalls(ua, router)
        caller.agent = transport.local
        caller.send(invite(caller))
        ok = await final(caller)
        caller.send(in_dialog(caller, "ACK", ok.to_tag or "", 1))
        await asyncio.wait_for(router.ended.wait(), 5)
        await request(caller, "BYE")
        assert await gone_within(incoming, "in-1", 2.0)
        await ua.close()
    finally:
        caller.close()


async def test_after_the_pin_the_stage_limit_no_longer_applies() -> None:
    caller = Peer(phone=True)
    passed = asyncio.Event()

    class Passing(Quick):
        async def handler(self, line: CallerLine) -> None:
            assert isinstance(line, SipCallerLine)
            line.authenticated()
            await asyncio.sleep(0.8)  # beyond pin_stage_s
            passed.set()

    try:
        ua, transport = await loopback_ua(caller.address)
        ua.incoming = IncomingCalls(ua, Passing(pin_stage_s=0.3))
        caller.agent = transport.local
        caller.send(invite(caller))
        ok = await final(caller)
        caller.send(in_dialog(caller, "ACK", ok.to_tag or "", 1))
        await asyncio.wait_for(passed.wait(), 5)
        await ua.close()
    finally:
        caller.close()


def anonymous(data: bytes) -> bytes:
    """The INVITE with the caller's number withheld."""
    data = data.replace(b'"Pforte" <sip:100@', b'"Anonymous" <sip:anonymous@')
    return data.replace(b"Content-Type:", b"Privacy: id\r\nContent-Type:", 1)


async def call_in(caller: Peer, n: int, *, withheld: bool = False) -> int:
    """Places call in-n (acknowledged when answered); its final status."""
    data = invite(caller, call_id=f"in-{n}", branch=f"z9hG4bKin{n}")
    caller.send(anonymous(data) if withheld else data)
    answer = await final(caller, count=n)
    if answer.status == 200:
        caller.send(in_dialog(caller, "ACK", answer.to_tag or "", 1, call_id=f"in-{n}"))
    return answer.status


async def test_a_fourth_call_of_one_number_before_the_pin_ends_the_oldest() -> None:
    """Second review, finding 3: the 4th call of one number before its PIN got 486, so
    three calls forging a number locked its owner out; now the oldest ends (BYE) and the
    newest is taken."""
    caller = Peer(phone=True)
    try:
        ua, transport = await loopback_ua(caller.address)
        ua.incoming = incoming = IncomingCalls(ua, Quick(wait=True))
        caller.agent = transport.local
        assert [await call_in(caller, n) for n in range(1, 5)] == [200, 200, 200, 200]
        bye = await request(caller, "BYE")
        assert bye.call_id == "in-1"
        assert await gone_within(incoming, "in-1", 2.0)
        assert set(incoming.calls) == {"in-2", "in-3", "in-4"}
        await ua.close()
    finally:
        caller.close()


async def test_withheld_numbers_are_not_one_caller() -> None:
    """Second review, finding 3: every caller with a withheld number shared one cap of 3,
    so three of them made the next get 486; "" is no one's number now."""
    caller = Peer(phone=True)
    try:
        ua, transport = await loopback_ua(caller.address)
        ua.incoming = incoming = IncomingCalls(ua, Quick(wait=True))
        caller.agent = transport.local
        statuses = [await call_in(caller, n, withheld=True) for n in range(1, 6)]
        assert statuses == [200] * 5
        await asyncio.sleep(0.3)
        assert not [r for r in caller.requests if r.method == "BYE"]
        assert len(incoming.calls) == 5
        await ua.close()
    finally:
        caller.close()


async def test_a_tcp_invite_whose_connection_closed_is_not_kept() -> None:
    """INVITE over TCP, then the connection closes: before, the call kept its place for
    64 x T1 waiting for an ACK that cannot come; now it ends within a second."""
    async with answering_ua(Numbers(Quick().handler), "tcp") as ua:
        port = ua.transport.local[1]
        incoming = ua.incoming
        assert isinstance(incoming, IncomingCalls)
        sock = socket.create_connection((HOST, port))
        local = sock.getsockname()
        body = (
            f"v=0\r\no=- 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
            "m=audio 40010 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
        ).encode()
        head = (
            f"INVITE sip:299@{HOST}:{port};transport=tcp SIP/2.0\r\n"
            f"Via: SIP/2.0/TCP {HOST}:{local[1]};branch=z9hG4bKtcp1\r\n"
            f"From: <sip:100@{HOST}>;tag=c\r\nTo: <sip:299@{HOST}>\r\n"
            "Call-ID: tcp-1\r\nCSeq: 1 INVITE\r\n"
            f"Contact: <sip:100@{HOST}:{local[1]};transport=tcp>\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        sock.sendall(head.encode() + body)
        for _ in range(100):
            if "tcp-1" in incoming.calls:
                break
            await asyncio.sleep(0.02)
        sock.close()
        assert await gone_within(incoming, "tcp-1", 3.0)


async def test_a_bye_before_the_ack_stops_the_200() -> None:
    """Finding 9: the caller's BYE came before its ACK; our 200 is not sent again (before,
    it was repeated until 64 x T1)."""
    caller = Peer()
    try:
        ua, transport = await loopback_ua(caller.address)
        ua.incoming = IncomingCalls(ua, Quick(wait=True))
        caller.agent = transport.local
        caller.send(invite(caller))
        ok = await final(caller)
        caller.send(in_dialog(caller, "BYE", ok.to_tag or "", 2))
        for _ in range(100):
            if any(r.cseq[1] == "BYE" for r in caller.responses):
                break
            await asyncio.sleep(0.02)
        sent = sum(1 for r in caller.responses if r.status == 200 and r.cseq[1] == "INVITE")
        await asyncio.sleep(2.0)  # T1 = 0.5 s: it would have been repeated twice
        again = sum(1 for r in caller.responses if r.status == 200 and r.cseq[1] == "INVITE")
        assert again == sent
        await ua.close(grace_s=0.1)
    finally:
        caller.close()


async def test_our_bye_does_not_make_the_caller_a_known_peer() -> None:
    """Finding 10: before, the BYE of an incoming call made its destination a known peer
    for an hour (spared by the intake's rate limit)."""
    caller = Peer(phone=True)  # answers the BYE
    try:
        ua, transport = await loopback_ua(caller.address)
        ua.incoming = IncomingCalls(ua, Quick())
        caller.agent = transport.local
        caller.send(invite(caller))
        ok = await final(caller)
        caller.send(in_dialog(caller, "ACK", ok.to_tag or "", 1))
        await request(caller, "BYE")
        assert transport.intake.known == 0
        assert not transport.intake.is_known(caller.address)
        await ua.close()
    finally:
        caller.close()


async def test_hanging_up_does_not_wait_for_the_byes_answer() -> None:
    """The handler hangs up (the IVR's goodbye) and the caller never answers the BYE:
    before, `hang_up()` waited 64 x T1 for that answer, holding the place (the
    reviewer's silent callers: 84 s); now it returns at once."""
    caller = Peer()  # answers no BYE
    hung_up = asyncio.Event()

    class HangingUp(Quick):
        async def handler(self, line: CallerLine) -> None:
            await line.hang_up()
            hung_up.set()

    try:
        ua, transport = await loopback_ua(caller.address)
        ua.incoming = incoming = IncomingCalls(ua, HangingUp())
        caller.agent = transport.local
        caller.send(invite(caller))
        ok = await final(caller)
        caller.send(in_dialog(caller, "ACK", ok.to_tag or "", 1))
        await request(caller, "BYE")
        await asyncio.wait_for(hung_up.wait(), 2)
        assert await gone_within(incoming, "in-1", 2.0)
        await ua.close(grace_s=0.1)
    finally:
        caller.close()


async def test_unacknowledged_calls_do_not_take_every_place() -> None:
    """Second review, finding 2: INVITEs never acknowledged (a blind spoofer's) held all
    MAX_INCOMING places, and the next call got 486; now the oldest of them is dropped
    silently (its 200 is not repeated, no BYE) and every new call is answered."""
    caller = Peer()  # acknowledges nothing
    try:
        ua, transport = await loopback_ua(caller.address)
        ua.incoming = incoming = IncomingCalls(ua, Quick(), per_caller=99)
        caller.agent = transport.local
        for n in range(1, incoming.limit + 3):
            caller.send(invite(caller, call_id=f"in-{n}", branch=f"z9hG4bKin{n}"))
            await final(caller, count=n)
        finals = [r for r in caller.responses if r.status >= 200 and r.cseq[1] == "INVITE"]
        assert 486 not in [r.status for r in finals]
        assert len(incoming.calls) <= 5
        sent = {r.call_id for r in caller.responses if r.status == 200}
        await asyncio.sleep(1.0)  # T1 = 0.5 s: a dropped call's 200 would come again
        again = [r for r in caller.responses if r.status == 200 and r.call_id == "in-1"]
        assert len(again) == 1 and "in-1" in sent
        assert not [r for r in caller.requests if r.method == "BYE"]
        await ua.close(grace_s=0.1)
    finally:
        caller.close()

"""The dialog of an incoming call (sip/incoming_call.py, issue 16) against a scripted
caller on loopback UDP: the route set and remote target (RFC 3261 12.1.1), the 2xx
repeated until its ACK and the BYE when none comes, re-INVITEs (hold, a new address),
refusals of what cannot be taken, SRTP answered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from edge_agent.ivr.port import CallerGone, CallerLine
from edge_agent.sip import incoming_call, sdp
from edge_agent.sip.incoming import Accept, IncomingCalls, IncomingInvite, Refuse
from edge_agent.sip.message import Request, Response, parse_name_addr
from edge_agent.sip.sdp_crypto import format_line
from edge_agent.sip.srtp import Mode, new_key
from edge_agent.sip.ua import UserAgent
from tests.sip_unit.loopback_ua import loopback_ua
from tests.sip_unit.udp_peers import HOST, Peer

__all__ = ["caller"]


class Router:
    def __init__(self) -> None:
        self.ran: list[str] = []
        self.gone = asyncio.Event()
        self.fail = False

    def route(self, invite: IncomingInvite) -> Refuse | Accept:
        if self.fail:
            raise RuntimeError("a bug in the router")
        return Accept(self.handler)

    async def handler(self, line: CallerLine) -> None:
        self.ran.append(line.call_id)
        try:
            await line.read_digits(1, 30.0, None)
        except CallerGone:
            self.gone.set()
            raise


@pytest.fixture
async def caller() -> AsyncIterator[Peer]:
    peer = Peer(phone=True)  # answers our BYE
    yield peer
    peer.close()


async def agent(peer: Peer, router: Router, srtp: Mode = "off") -> UserAgent:
    ua, transport = await loopback_ua(peer.address)
    ua.incoming = IncomingCalls(ua, router, srtp=srtp)
    peer.agent = transport.local
    return ua


def offer_sdp(port: int, *, g729: bool = False, extra: str = "") -> bytes:
    body = sdp.offer(HOST, port, 77, payloads=(0, 101))
    if g729:
        body = body.replace(b"RTP/AVP 0", b"RTP/AVP 18").replace(b"0 PCMU", b"18 G729")
    return body + extra.encode()


def invite(
    peer: Peer,
    *,
    call_id: str = "in-1",
    cseq: int = 1,
    to_tag: str | None = None,
    body: bytes | None = None,
    headers: tuple[str, ...] = (),
    contact: str | None = "sip",
    branch: str = "z9hG4bKin1",
) -> bytes:
    host, port = peer.address
    assert peer.agent is not None
    to = f"<sip:299@{HOST}:{peer.agent[1]}>" + (f";tag={to_tag}" if to_tag else "")
    body = offer_sdp(40010) if body is None else body
    lines = [
        f"INVITE sip:299@{HOST}:{peer.agent[1]} SIP/2.0",
        f"Via: SIP/2.0/UDP {host}:{port};branch={branch}",
        f'From: "Pforte" <sip:100@{HOST}>;tag=caller',
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} INVITE",
        *([f"Contact: <{contact}:100@{host}:{port}>"] if contact else []),
        *headers,
        "Content-Type: application/sdp",
        f"Content-Length: {len(body)}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def in_dialog(peer: Peer, method: str, to_tag: str, cseq: int, call_id: str = "in-1") -> bytes:
    host, port = peer.address
    assert peer.agent is not None
    lines = [
        f"{method} sip:Rundruf@{HOST}:{peer.agent[1]} SIP/2.0",
        f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{method}{cseq}",
        f'From: "Pforte" <sip:100@{HOST}>;tag=caller',
        f"To: <sip:299@{HOST}>;tag={to_tag}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def final(peer: Peer, *, count: int = 1, within: float = 3.0) -> Response:
    for _ in range(int(within / 0.02)):
        finals = [r for r in peer.responses if r.status >= 200 and r.cseq[1] == "INVITE"]
        if len(finals) >= count:
            return finals[-1]
        await asyncio.sleep(0.02)
    raise AssertionError(f"no final answer: {[r.status for r in peer.responses]}")


async def request(peer: Peer, method: str, within: float = 3.0) -> Request:
    for _ in range(int(within / 0.02)):
        found = [r for r in peer.requests if r.method == method]
        if found:
            return found[-1]
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {method}: {[r.method for r in peer.requests]}")


async def test_route_set_and_remote_target(caller: Peer) -> None:
    """The 200 carries the Record-Route as it came; our BYE goes to the route set's first
    hop with both routes, to the Contact as Request-URI, From our tag, To the caller's."""
    proxy = Peer(phone=True)  # answers the BYE
    try:
        router = Router()
        ua = await agent(caller, router)
        routes = f"<sip:{HOST}:{proxy.address[1]};lr>, <sip:10.9.9.9;lr>"
        caller.send(invite(caller, headers=(f"Record-Route: {routes}",)))
        ok = await final(caller)
        assert ok.status == 200
        assert ok.headers.get_all("Record-Route") == [
            f"<sip:{HOST}:{proxy.address[1]};lr>",
            "<sip:10.9.9.9;lr>",
        ]
        tag = ok.to_tag
        assert tag
        caller.send(in_dialog(caller, "ACK", tag, 1))
        call = ua.incoming.calls["in-1"]  # type: ignore[union-attr]
        await asyncio.wait_for(call.acked.wait(), 3)
        await call.hang_up()
        bye = await request(proxy, "BYE")
        assert bye.uri == f"sip:100@{caller.address[0]}:{caller.address[1]}"
        assert bye.headers.get_all("Route") == ok.headers.get_all("Record-Route")
        assert parse_name_addr(bye.headers.get("From") or "").tag == tag
        assert parse_name_addr(bye.headers.get("From") or "").uri.user == "299"
        assert bye.to_tag == "caller"
        await ua.close()
    finally:
        proxy.close()


async def test_no_ack_ends_the_call(caller: Peer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 200 without its ACK is sent again (UDP) and after CALL_ACK_WAIT_S the call ends,
    without a BYE (second review of issue 16, finding 2); the handler never ran."""
    monkeypatch.setattr(incoming_call, "CALL_ACK_WAIT_S", 1.2)
    router = Router()
    ua = await agent(caller, router)
    caller.send(invite(caller))
    await final(caller, count=2, within=3)  # the 200 again after T1
    for _ in range(100):
        if "in-1" not in ua.dialogs:
            break
        await asyncio.sleep(0.05)
    assert "in-1" not in ua.dialogs
    assert router.ran == []
    await asyncio.sleep(0.6)  # a BYE would have come with the call's end
    assert caller.count("BYE") == 0
    await ua.close()


async def test_reinvite_moves_media_and_holds(caller: Peer) -> None:
    router = Router()
    ua = await agent(caller, router)
    caller.send(invite(caller))
    ok = await final(caller)
    tag = ok.to_tag or ""
    caller.send(in_dialog(caller, "ACK", tag, 1))
    call = ua.incoming.calls["in-1"]  # type: ignore[union-attr]
    await asyncio.wait_for(call.acked.wait(), 3)
    assert call.rtp_source.expected == (HOST, 40010)
    body = offer_sdp(40020).replace(b"a=sendrecv", b"a=sendonly")
    caller.send(invite(caller, to_tag=tag, cseq=2, branch="z9hG4bKre", body=body))
    answer = await final(caller, count=2)
    assert answer.status == 200, answer.reason
    assert answer.cseq == (2, "INVITE") and answer.status == 200
    assert b"a=recvonly" in answer.body and b"PCMU" in answer.body
    assert call.rtp_source.expected == (HOST, 40020)
    assert call.on_hold
    caller.send(in_dialog(caller, "ACK", tag, 2))
    caller.send(in_dialog(caller, "BYE", tag, 3))
    await asyncio.wait_for(router.gone.wait(), 3)
    await ua.close()


async def test_an_offer_without_g711_gets_488(caller: Peer) -> None:
    router = Router()
    ua = await agent(caller, router)
    caller.send(invite(caller, body=offer_sdp(40010, g729=True)))
    refused = await final(caller)
    assert refused.status == 488
    caller.send(in_dialog(caller, "ACK", refused.to_tag or "", 1))
    await asyncio.sleep(0.2)
    assert router.ran == [] and not ua.dialogs
    assert not ua.incoming.calls  # type: ignore[union-attr]
    await ua.close()


@pytest.mark.parametrize(
    ("how", "status"),
    [("no contact", 400), ("tel contact", 400), ("to tag", 481), ("router fails", 500)],
)
async def test_refused_invites(caller: Peer, how: str, status: int) -> None:
    router = Router()
    router.fail = how == "router fails"
    ua = await agent(caller, router)
    contact = {"no contact": None, "tel contact": "tel"}.get(how, "sip")
    caller.send(invite(caller, contact=contact, to_tag="x" if how == "to tag" else None))
    assert (await final(caller)).status == status
    assert not ua.dialogs
    await ua.close()


async def test_srtp_offer_answered_with_our_key(caller: Peer) -> None:
    router = Router()
    ua = await agent(caller, router, srtp="optional")
    key = format_line(4, new_key())
    caller.send(invite(caller, body=offer_sdp(40010, extra=f"a=crypto:{key}\r\n")))
    ok = await final(caller)
    assert ok.status == 200
    answer = sdp.parse(ok.body)
    assert len(answer.crypto) == 1 and answer.crypto[0].startswith("4 AES_CM_128_HMAC_SHA1_80")
    assert answer.crypto[0] != key
    call = ua.incoming.calls["in-1"]  # type: ignore[union-attr]
    assert call.crypto.secure
    await ua.close()


async def test_srtp_required_and_a_plain_offer_gets_488(caller: Peer) -> None:
    ua = await agent(caller, Router(), srtp="required")
    caller.send(invite(caller))
    assert (await final(caller)).status == 488
    await ua.close()


async def test_only_the_caller_may_end_the_call(caller: Peer) -> None:
    """A BYE with the dialog's tags from another host gets 403 and ends nothing; the
    caller's own ends it."""
    stranger = Peer("127.0.0.2")
    try:
        router = Router()
        ua = await agent(caller, router)
        stranger.agent = caller.agent
        caller.send(invite(caller))
        tag = (await final(caller)).to_tag or ""
        caller.send(in_dialog(caller, "ACK", tag, 1))
        call = ua.incoming.calls["in-1"]  # type: ignore[union-attr]
        await asyncio.wait_for(call.acked.wait(), 3)
        stranger.send(in_dialog(caller, "BYE", tag, 2))
        for _ in range(100):
            if stranger.responses:
                break
            await asyncio.sleep(0.02)
        assert [r.status for r in stranger.responses] == [403]
        assert not router.gone.is_set()
        caller.send(in_dialog(caller, "BYE", tag, 3))
        await asyncio.wait_for(router.gone.wait(), 3)
        await ua.close()
    finally:
        stranger.close()


async def test_calls_beyond_the_limit_are_busy(caller: Peer) -> None:
    router = Router()
    ua, transport = await loopback_ua(caller.address)
    ua.incoming = IncomingCalls(ua, router, limit=1)
    caller.agent = transport.local
    caller.send(invite(caller))
    assert (await final(caller)).status == 200
    caller.send(invite(caller, call_id="in-2", branch="z9hG4bKin2"))
    busy = await final(caller, count=2)
    assert (busy.status, busy.call_id) == (486, "in-2")
    assert busy.headers.get("Retry-After") == "30"
    await ua.close()


def ack_with(peer: Peer, tag: str, body: bytes) -> bytes:
    head = in_dialog(peer, "ACK", tag, 1).removesuffix(b"Content-Length: 0\r\n\r\n")
    kind = b"Content-Type: application/sdp\r\n" if body else b""
    return head + kind + f"Content-Length: {len(body)}\r\n\r\n".encode() + body


async def test_a_late_offer_is_answered_in_the_ack(caller: Peer) -> None:
    """An INVITE without SDP gets our offer (PCMA, PCMU, telephone-event) in the 200;
    the ACK's answer sets the media, and only then the handler runs."""
    router = Router()
    ua = await agent(caller, router)
    caller.send(invite(caller, body=b""))
    ok = await final(caller)
    offer = sdp.parse(ok.body)
    assert list(offer.payloads.values()) == ["PCMA/8000", "PCMU/8000", "telephone-event/8000"]
    call = ua.incoming.calls["in-1"]  # type: ignore[union-attr]
    answer = sdp.answer(offer, HOST, 40030, 5)
    caller.send(ack_with(caller, ok.to_tag or "", answer))
    await asyncio.wait_for(call.acked.wait(), 3)
    assert call.negotiated is not None and call.negotiated.port == 40030
    for _ in range(50):
        if router.ran:
            break
        await asyncio.sleep(0.02)
    assert router.ran == ["in-1"]
    await ua.close()


async def test_a_late_offer_without_answer_ends_the_call(caller: Peer) -> None:
    router = Router()
    ua = await agent(caller, router)
    caller.send(invite(caller, body=b""))
    ok = await final(caller)
    caller.send(ack_with(caller, ok.to_tag or "", b""))
    bye = await request(caller, "BYE")
    assert bye.call_id == "in-1" and router.ran == []
    await ua.close()


async def test_closing_ends_every_call_with_a_bye(caller: Peer) -> None:
    """The agent stops: each call under way gets its BYE at once, together, and the
    close waits at most CLOSE_GRACE_S for their answers (callers that never answer
    here: one after the other, that took 2 s per call)."""
    silent = [Peer(), Peer(), Peer()]  # they do not answer our BYE
    try:
        router = Router()
        ua = await agent(caller, router)
        for n, peer in enumerate(silent):
            peer.agent = caller.agent
            call_id = f"in-{n}"
            peer.send(invite(peer, call_id=call_id, branch=f"z9hG4bK{call_id}"))
            ok = await final(peer)
            peer.send(in_dialog(peer, "ACK", ok.to_tag or "", 1, call_id=call_id))
        for _ in range(100):
            if len(router.ran) == 3:
                break
            await asyncio.sleep(0.02)
        assert sorted(router.ran) == ["in-0", "in-1", "in-2"]
        await asyncio.wait_for(ua.close(), 4)
        for n, peer in enumerate(silent):
            assert (await request(peer, "BYE")).call_id == f"in-{n}"
        assert not ua.dialogs
    finally:
        for peer in silent:
            peer.close()

"""Hold by re-INVITE (issue 15, point 7): `a=sendonly`, `a=inactive` or the RFC 2543 way,
`c=0.0.0.0`; `sendrecv` or `recvonly` takes the call back. Nothing is sent on hold."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from edge_agent.sip import sdp
from edge_agent.sip.call import Call
from edge_agent.sip.message import Request, parse
from edge_agent.sip.pacer import RtpStream
from edge_agent.sip.reoffer import REINVITE_BURST, REINVITE_EVERY_S
from tests.sip_unit.test_reinvite import call, reinvite

__all__ = ["call"]  # the fixture, shared with test_reinvite

HOST = "127.0.0.1"
PACKET = b"\x80\x00" + bytes(10) + b"\xff" * 160


@pytest.fixture
def phone() -> Iterator[socket.socket]:
    """The phone's RTP port: what our call sends lands here."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    sock.settimeout(0.2)
    yield sock
    sock.close()


def offer(port: int, direction: str = "sendrecv", address: str = HOST, version: int = 2) -> bytes:
    body = sdp.offer(address, port, 99, payloads=(0, 101), session_version=version)
    return body.replace(b"a=sendrecv", f"a={direction}".encode())


def answered(call: Call, body: bytes, cseq: int) -> sdp.SessionDescription:
    request = reinvite(body).replace(b"CSeq: 2 INVITE", f"CSeq: {cseq} INVITE".encode())
    request = request.replace(b"z9hG4bK-re-1", f"z9hG4bK-re-{cseq}".encode())
    message = parse(request)
    assert isinstance(message, Request)
    response = call.handle(message, (HOST, 5090))
    assert response is not None and response.status == 200, response
    return sdp.parse(response.body)


def heard(phone: socket.socket) -> bool:
    try:
        phone.recv(2048)
    except TimeoutError:
        return False
    return True


def holds(call: Call) -> list[bool]:
    seen = []
    while not call.holds.empty():
        seen.append(call.holds.get_nowait())
    return seen


@pytest.mark.parametrize(
    ("direction", "address", "answer"),
    [
        ("inactive", HOST, "inactive"),
        ("sendonly", HOST, "recvonly"),
        ("sendrecv", "0.0.0.0", "recvonly"),  # RFC 2543: nowhere to send
        ("recvonly", "0.0.0.0", "inactive"),  # we would send, but nowhere
    ],
    ids=["inactive", "sendonly", "c=0.0.0.0", "c=0.0.0.0+recvonly"],
)
@pytest.mark.parametrize("back", ["sendrecv", "recvonly"])
async def test_a_call_on_hold_sends_nothing_until_the_phone_takes_it_back(
    call: Call, phone: socket.socket, direction: str, address: str, answer: str, back: str
) -> None:
    port = phone.getsockname()[1]
    assert answered(call, offer(port), 2).direction == "sendrecv"
    call.send_rtp(PACKET)
    assert heard(phone)

    assert answered(call, offer(port, direction, address, 3), 3).direction == answer
    call.send_rtp(PACKET)
    assert not heard(phone), "RTP sent to a phone that put the call on hold"
    assert call.on_hold and holds(call) == [True]  # once, for the dialer

    # The same hold offered again (a session refresh) changes nothing.
    answered(call, offer(port, direction, address, 4), 4)
    assert call.on_hold and holds(call) == []

    mirrored = {"sendrecv": "sendrecv", "recvonly": "sendonly"}[back]
    assert answered(call, offer(port, back, HOST, 5), 5).direction == mirrored
    assert not call.on_hold and holds(call) == [False]
    call.send_rtp(PACKET)
    assert heard(phone)


def test_which_descriptions_are_on_hold() -> None:
    def described(direction: str, address: str = HOST) -> sdp.SessionDescription:
        return sdp.parse(offer(4000, direction, address))

    assert [sdp.on_hold(described(d)) for d in sdp.DIRECTIONS] == [False, True, False, True]
    assert sdp.on_hold(described("sendrecv", "0.0.0.0"))
    assert sdp.on_hold(described("sendrecv", "::"))
    assert not sdp.on_hold(described("sendrecv", "pbx.example"))


def test_a_paused_stream_sends_nothing_its_clock_runs_on_and_a_restart_plays_from_the_start() -> (
    None
):
    sent: list[bytes] = []
    audio = bytes(range(160)) + bytes(range(1, 161)) + bytes(range(2, 162))
    stream = RtpStream(audio, 0, 1, sent.append, sequence=10, timestamp=1000)
    stream.tick()
    stream.tick()
    stream.pause()
    for _ in range(50):
        stream.tick()
    assert len(sent) == 2
    assert stream.timestamp == 1000 + 52 * 160 and stream.sequence == 12
    stream.restart()
    stream.tick()
    again = sent[-1]
    assert again[1] & 0x80 and again[12:] == sent[0][12:]  # marker, the first frame
    assert int.from_bytes(again[2:4]) == 12  # the sequence goes on: nothing was lost


async def test_an_update_with_an_offer_is_refused_with_405_and_our_allow(
    call: Call, phone: socket.socket
) -> None:
    """UPDATE (RFC 3311) is not in our Allow. Before, it got a 200 without SDP: the
    member's phone believed the call on hold (no answer refused it) while we sent on."""
    port = phone.getsockname()[1]
    update = reinvite(offer(port, "sendonly", HOST, 3)).replace(b"INVITE", b"UPDATE")
    message = parse(update)
    assert isinstance(message, Request)
    response = call.handle(message, (HOST, 5090))
    assert response is not None and response.status == 405, response
    allow = [m.strip() for m in (response.headers.get("Allow") or "").split(",")]
    assert "INVITE" in allow and "UPDATE" not in allow
    assert not call.on_hold and holds(call) == []


async def test_a_reinvite_loop_is_refused_beyond_its_budget_and_changes_nothing(
    call: Call, phone: socket.socket
) -> None:
    """A phone holding and resuming in a loop (a6_toggle_runner.py: 2,000 in 4 s) made a
    log line, a journal entry and a restart of the message each time. REINVITE_BURST
    re-INVITEs are taken at once, then one each REINVITE_EVERY_S; the rest get 500 with
    Retry-After (RFC 3261 14.2) and leave the call as it was."""
    port = phone.getsockname()[1]
    for cseq in range(2, 2 + REINVITE_BURST):
        direction = "sendonly" if cseq % 2 else "sendrecv"
        answered(call, offer(port, direction, HOST, cseq), cseq)
    assert call.on_hold and len(holds(call)) == REINVITE_BURST - 1  # from CSeq 3 on
    late = REINVITE_BURST + 2
    request = reinvite(offer(port, "sendrecv", HOST, late)).replace(
        b"CSeq: 2 INVITE", f"CSeq: {late} INVITE".encode()
    )
    message = parse(request.replace(b"z9hG4bK-re-1", b"z9hG4bK-re-late"))
    assert isinstance(message, Request)
    refused = call.handle(message, (HOST, 5090))
    assert refused is not None and refused.status == 500, refused
    assert refused.headers.get("Retry-After") == "1"
    assert call.on_hold and holds(call) == []
    await asyncio.sleep(REINVITE_EVERY_S * 1.05)
    answered(call, offer(port, "sendrecv", HOST, late + 1), late + 1)  # a second later: taken
    assert not call.on_hold and holds(call) == [False]

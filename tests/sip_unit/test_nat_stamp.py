"""Every answer's top Via says where the request came from (RFC 3581 4), also a refusal
of bytes that do not parse, and a remembered answer for each source anew (issue 15,
review 7 point 9).

Before: the 400 and 505 of `refusal.py` went out without `received`/`rport`, and a
retransmission from another port (a NAT's new mapping) got the remembered answer with
the first port in its `rport`.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from edge_agent.sip import nat
from edge_agent.sip.message import Response, parse, parse_via
from edge_agent.sip.ua import UserAgent
from tests.sip_unit.test_nat import HOST, answer_over_tcp, request, user_agent


@pytest.fixture
async def ua() -> AsyncIterator[UserAgent]:
    agent = await user_agent((HOST, 9))
    yield agent
    await agent.close()


def phone() -> socket.socket:
    """A member's phone (or a PBX) on loopback: one port, a NAT's mapping."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    sock.settimeout(2.0)
    return sock


async def exchange(sock: socket.socket, data: bytes, to: tuple[str, int]) -> Response:
    sock.sendto(data, to)
    answer, _ = await asyncio.to_thread(sock.recvfrom, 65536)
    parsed = parse(answer)
    assert isinstance(parsed, Response)
    return parsed


def top_via(response: Response) -> dict[str, str | None]:
    return parse_via(response.headers.get("Via") or "").params


MALFORMED = {
    # Two spaces after the method: no request line our parser reads (RFC 4475 lwsstart).
    "400": b"OPTIONS  sip:Rundruf@127.0.0.1 SIP/2.0\r\n",
    "505": b"OPTIONS sip:Rundruf@127.0.0.1 SIP/7.0\r\n",
}


@pytest.mark.parametrize("status", ["400", "505"])
async def test_a_refusal_of_what_does_not_parse_carries_received_and_rport(
    ua: UserAgent, status: str
) -> None:
    sock = phone()
    try:
        head = MALFORMED[status] + (
            b"Via: SIP/2.0/UDP 10.0.0.7:5062;branch=z9hG4bKbad1;rport\r\n"
            b"From: <sip:pbx@example.net>;tag=p1\r\nTo: <sip:Rundruf@example.net>\r\n"
            b"Call-ID: bad@example.net\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
        answer = await exchange(sock, head, ua.transport.local)
        port = sock.getsockname()[1]
    finally:
        sock.close()
    assert str(answer.status) == status
    assert top_via(answer)["rport"] == str(port)
    assert top_via(answer)["received"] == HOST


async def test_over_tcp_the_refusal_is_stamped_too() -> None:
    answer, port = await answer_over_tcp(
        MALFORMED["400"] + b"Via: SIP/2.0/TCP 10.0.0.7:5062;branch=z9hG4bKbadtcp;rport\r\n"
        b"From: <sip:pbx@example.net>;tag=p1\r\nTo: <sip:Rundruf@example.net>\r\n"
        b"Call-ID: badtcp@example.net\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    assert answer.status == 400
    assert top_via(answer)["rport"] == str(port)
    assert top_via(answer)["received"] == HOST


async def test_a_retransmission_from_another_port_gets_that_port_in_its_rport(
    ua: UserAgent,
) -> None:
    options = bytes(request("SIP/2.0/UDP 10.0.0.7:5062;branch=z9hG4bKmoved1;rport"))
    first, moved = phone(), phone()
    try:
        answers = [
            (await exchange(first, options, ua.transport.local), first),
            (await exchange(moved, options, ua.transport.local), moved),  # a new mapping
            (await exchange(first, options, ua.transport.local), first),
        ]
        ports = [sock.getsockname()[1] for _, sock in answers]
    finally:
        first.close()
        moved.close()
    tags = {answer.to_tag for answer, _ in answers}
    assert len(tags) == 1  # one answer, remembered and repeated
    assert [top_via(answer)["rport"] for answer, _ in answers] == [str(p) for p in ports]
    assert all(top_via(answer)["received"] == HOST for answer, _ in answers)


def test_stamped_leaves_the_remembered_answer_as_it_was() -> None:
    answer = Response(
        200, "OK", request("SIP/2.0/UDP 10.0.0.7:5062;branch=z9hG4bKc1;rport").headers.copy()
    )
    before = bytes(answer)
    one = nat.stamped(answer, ("198.51.100.9", 4000))
    two = nat.stamped(answer, ("198.51.100.9", 5000))
    assert bytes(answer) == before
    assert top_via(one)["rport"] == "4000" and top_via(two)["rport"] == "5000"

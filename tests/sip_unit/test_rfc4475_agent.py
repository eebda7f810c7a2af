"""RFC 4475's torture messages through a real UDP transport and user agent on loopback
(issue 15, point 8): each valid one answered as the RFC says an endpoint answers it,
each invalid one refused (400, 505) or dropped, as `test_rfc4475.VALID` and `INVALID`
list. The messages and the parser's side are in `test_rfc4475.py`.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from edge_agent.sip.message import Response, parse
from edge_agent.sip.transport import UdpTransport
from tests.sip_unit.loopback_ua import loopback_ua
from tests.sip_unit.test_rfc4475 import INVALID, VALID, invalid, valid

HOST = "127.0.0.1"


@pytest.fixture
async def agent() -> AsyncIterator[UdpTransport]:
    ua, transport = await loopback_ua((HOST, 9))
    yield transport
    await ua.close(grace_s=1.0)


PROBE = (
    b"OPTIONS sip:rundruf@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKprobe4475\r\n"
    b"From: <sip:probe@127.0.0.1>;tag=p1\r\nTo: <sip:rundruf@127.0.0.1>\r\n"
    b"Call-ID: probe4475@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)


async def answers_to(transport: UdpTransport, data: bytes) -> list[bytes]:
    """What the agent sends back for `data`, sent from a socket of its own. An OPTIONS
    follows it: the agent handles datagrams in order, so once the OPTIONS' 200 is in,
    everything it had to say about `data` is in too."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.bind((HOST, 0))
        sock.sendto(data, transport.local)
        sock.sendto(PROBE, transport.local)
        got: list[bytes] = []
        while True:
            reply = await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)
            if b"branch=z9hG4bKprobe4475" in reply.split(b"\r\n\r\n")[0]:
                return got
            got.append(reply)


@pytest.mark.parametrize("name", sorted(VALID))
async def test_the_agent_answers_a_valid_message_as_the_rfc_says(
    agent: UdpTransport, name: str
) -> None:
    status = VALID[name][1]
    replies = await answers_to(agent, valid(name))
    parsed = [parse(r) for r in replies]
    assert [r.status if isinstance(r, Response) else r for r in parsed] == (
        [] if status is None else [status]
    )
    if status is not None:
        answer = parse(replies[0])
        assert isinstance(answer, Response)
        extra = {501: "Allow", 405: "Allow", 415: "Accept", 420: "Unsupported"}.get(status)
        if extra is not None:
            assert answer.headers.get(extra), (name, answer.headers)
        if status == 420:
            assert answer.headers.get_all("Unsupported") == [
                "nothingSupportsThis",
                "nothingSupportsThisEither",
            ]
        sent = parse(valid(name))
        # The Vias come back in order (the top one told where we saw it, RFC 3581).
        vias = zip(answer.headers.get_all("Via"), sent.headers.get_all("Via"), strict=True)
        assert all(back.startswith(there) for back, there in vias)
        assert answer.call_id == sent.call_id and answer.to_tag


@pytest.mark.parametrize("name", sorted(INVALID))
async def test_the_agent_refuses_an_invalid_message(agent: UdpTransport, name: str) -> None:
    status = INVALID[name][2]
    replies = await answers_to(agent, invalid(name))
    assert [r.split(b" ", 2)[1] for r in replies] == ([] if status is None else [b"%d" % status])


async def test_a_bare_magic_cookie_names_no_transaction(agent: UdpTransport) -> None:
    # RFC 4475 3.2.1: "branch=z9hG4bK" alone; every request of such a peer has it, so
    # it is matched RFC 2543's way, and the next OPTIONS is not the first one again.
    first = valid("badbranch")
    second = first.replace(b"CSeq: 8 OPTIONS", b"CSeq: 9 OPTIONS")
    answers = [parse((await answers_to(agent, data))[0]) for data in (first, second)]
    assert [a.cseq for a in answers] == [(8, "OPTIONS"), (9, "OPTIONS")]


async def test_one_branch_from_two_senders_is_two_transactions(agent: UdpTransport) -> None:
    # bext01 and lwsdisp both say "branch=z9hG4bKkdjuw" for an OPTIONS, from other hosts
    # (RFC 3261 17.2.3 matches branch, sent-by and method): each gets its own answer.
    answers = [parse((await answers_to(agent, valid(n)))[0]) for n in ("bext01", "lwsdisp")]
    assert [(a.status, a.call_id[:7]) for a in answers if isinstance(a, Response)] == [
        (420, "bext01."),
        (200, "lwsdisp"),
    ]

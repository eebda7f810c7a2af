"""The SIP dialer against SIPp members while a forger floods it with 200 OKs, and with
an RFC 2543 phone whose INFOs carry no branch (issue 15, points 3 and 6)."""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.dialer.port import CallEventKind, CallOutcome
from edge_agent.dialer.sip import SipDialer
from edge_agent.sip.call import Call
from edge_agent.sip.transport import UdpTransport
from tests.agent.dialer_contract import Recorder, assert_well_formed
from tests.agent.test_dialer_sip import announcement, call_request, dialer
from tests.sip.bed import SippUas

__all__ = ["announcement", "dialer"]  # the fixtures, shared with test_dialer_sip

K = CallEventKind
HOST = "127.0.0.1"


@pytest.fixture
def forgers() -> Iterator[list[socket.socket]]:
    """A forger on 127.0.0.1 and one on another address, 127.0.0.2."""
    made = []
    for host in (HOST, "127.0.0.2"):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((host, 0))
        sock.setblocking(False)
        made.append(sock)
    yield made
    for sock in made:
        sock.close()


def forged_ok(call_id: str, from_tag: str, cseq: int, to_tag: str, forger: socket.socket) -> bytes:
    host, port = forger.getsockname()
    return (
        "SIP/2.0 200 OK\r\n"
        f"Via: SIP/2.0/UDP {HOST}:5060;branch=z9hG4bK{secrets.token_hex(6)};rport\r\n"
        f"From: <sip:Rundruf@{HOST}>;tag={from_tag}\r\n"
        f"To: <sip:member@{HOST}>;tag={to_tag}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} INVITE\r\n"
        f"Contact: <sip:forger@{host}:{port}>\r\n"
        "Content-Type: application/sdp\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


async def test_three_thousand_forged_answers_leave_the_call_alone(
    dialer: SipDialer, announcement: Path, tmp_path: Path, forgers: list[socket.socket]
) -> None:
    near, far = forgers
    with SippUas("uas_dtmf_info.xml", tmp_path) as member:
        request = call_request(member.uri, announcement, ring_timeout_s=10.0, dtmf_timeout_s=3.0)
        recorder = Recorder()
        task = asyncio.create_task(dialer.call(request, recorder))
        await recorder.wait_for(K.ANSWERED)
        assert dialer.ua is not None
        agent = dialer.ua.transport.local
        [call] = dialer.ua.dialogs.values()
        assert isinstance(call, Call)
        ours, call_id = call.local_tag, call.call_id
        datagrams = [  # calls that never were, our Call-ID with other tags or CSeqs
            *(forged_ok(secrets.token_hex(8), "x", 1, str(n), near) for n in range(1000)),
            *(forged_ok(call_id, f"not-{n}", 1, "t", far) for n in range(1000)),
            *(forged_ok(call_id, ours, n + 2, "t", far) for n in range(1000)),
        ]
        for n, data in enumerate(datagrams):
            (near if n < 1000 else far).sendto(data, agent)
            if n % 100 == 99:
                await asyncio.sleep(0.005)
        outcome = await asyncio.wait_for(task, 30)
        assert await asyncio.to_thread(member.wait, 10) == 0, member.log()
        flow = member.flow()
    assert_well_formed(recorder.events, outcome, request)
    assert outcome is CallOutcome.CONFIRMED
    assert flow.count("< ACK") == 1 and flow.count("< BYE") == 1, flow
    for forger in forgers:  # nothing ever answered to a forger
        with pytest.raises(BlockingIOError):
            forger.recv(65536)
    # Each one dropped and counted: most by the transport's intake, at a stranger's rate
    # (issue 15, point 4), the rest by the user agent.
    assert isinstance(dialer.ua.transport, UdpTransport)
    refused = sum(dialer.ua.transport.intake.dropped.values())
    assert refused > 0
    assert sum(dialer.ua.stray_answers.values()) + refused == 3000


async def test_an_rfc_2543_phones_second_info_is_heard(
    dialer: SipDialer, announcement: Path, tmp_path: Path
) -> None:
    with SippUas("uas_dtmf_info_2543.xml", tmp_path) as member:
        request = call_request(member.uri, announcement, ring_timeout_s=10.0, dtmf_timeout_s=3.0)
        recorder = Recorder()
        outcome = await asyncio.wait_for(dialer.call(request, recorder), 30)
        assert member.wait(10) == 0, member.log()
    assert_well_formed(recorder.events, outcome, request)
    assert [e.digit for e in recorder.events if e.kind is K.DTMF] == ["9", "1"]
    assert outcome is CallOutcome.CONFIRMED

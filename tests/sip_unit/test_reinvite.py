"""A re-INVITE during a call: the codec the audio is encoded in stays, the SDP version counts up."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest

from edge_agent.sip import sdp
from edge_agent.sip.call import Call
from edge_agent.sip.message import parse
from edge_agent.sip.transport import UdpTransport
from edge_agent.sip.ua import Account, UserAgent

HOST = "127.0.0.1"


@pytest.fixture
async def call() -> AsyncIterator[Call]:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # the PBX: takes the INVITE
    sink.bind((HOST, 0))
    transport = await UdpTransport.listen(HOST, 0, lambda *_: None)
    ua = UserAgent(Account("Rundruf", "pw", HOST, sink.getsockname(), register=False), transport)
    call = Call(ua, f"sip:member@{HOST}:{sink.getsockname()[1]}", {})
    call.begin()
    answer = sdp.parse(sdp.offer(HOST, 40000, 7, payloads=(0, 101)))  # the phone took PCMU
    call.negotiated = sdp.negotiate(answer)
    try:
        yield call
    finally:
        assert call._transaction is not None
        call._transaction.final.cancel()
        call.close()
        transport.close()
        sink.close()


def reinvite(body: bytes) -> bytes:
    head = (
        f"INVITE sip:Rundruf@{HOST} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {HOST}:5090;branch=z9hG4bK-re-1\r\n"
        "From: <sip:member@pbx>;tag=them\r\nTo: <sip:Rundruf@pbx>;tag=us\r\n"
        "Call-ID: re-1\r\nCSeq: 2 INVITE\r\nContact: <sip:member@127.0.0.1:5090>\r\n"
        "Content-Type: application/sdp\r\n"
    )
    return head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body


def test_a_reoffer_with_the_running_codec_moves_the_media_and_counts_the_version_up(call: Call):
    first = sdp.parse(call.invite.body)  # type: ignore[union-attr]
    offer = sdp.offer("127.0.0.2", 41000, 99, payloads=(8, 0, 101))  # PCMA first now
    response = call.handle(parse(reinvite(offer)), (HOST, 5090))
    assert response is not None and response.status == 200
    answer = sdp.parse(response.body)
    assert next(iter(answer.payloads)) == 0  # PCMU, what the audio is encoded in
    assert (answer.session_id, answer.session_version) == (
        first.session_id,
        first.session_version + 1,
    )
    assert call.negotiated is not None
    assert (call.negotiated.address, call.negotiated.port, call.negotiated.codec) == (
        "127.0.0.2",
        41000,
        "PCMU",
    )


def test_a_reoffer_without_the_running_codec_is_refused_and_the_call_goes_on(call: Call):
    before = call.negotiated
    offer = sdp.offer("127.0.0.2", 41000, 99, payloads=(8, 101))  # PCMA only
    response = call.handle(parse(reinvite(offer)), (HOST, 5090))
    assert response is not None and response.status == 488
    assert "PCMU is not offered" in response.reason
    assert call.negotiated == before


def test_a_reinvite_without_sdp_gets_an_offer_of_the_running_codec(call: Call):
    response = call.handle(parse(reinvite(b"")), (HOST, 5090))
    assert response is not None and response.status == 200
    offer = sdp.parse(response.body)
    assert list(offer.payloads) == [0, 101]

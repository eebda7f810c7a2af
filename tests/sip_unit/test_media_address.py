"""A c= address no RTP of ours can reach (review of issue 15, point 8): one of the other
family than its line says (`c=IN IP4 ::1`) or than the call's socket has, a multicast
or the broadcast address. Before, the call was answered and no RTP flowed; now an
offer gets 488 and an answer ends the call "no usable media"."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest

from edge_agent.sip import sdp
from edge_agent.sip.call import Ended
from edge_agent.sip.errors import SdpError
from edge_agent.sip.message import Request, parse
from tests.sip_unit.raw_pbx_call import RawPbxCall, answer_with, begin_and_answer, raw_pbx_call

HOST = "127.0.0.1"


def body(kind: str, address: str, port: int = 40000) -> bytes:
    return sdp.offer(HOST, port, 7, payloads=(0, 101)).replace(
        f"c=IN IP4 {HOST}".encode(), f"c=IN {kind} {address}".encode()
    )


@pytest.mark.parametrize(
    ("kind", "address"), [("IP4", "::1"), ("IP6", "127.0.0.1"), ("IP4", "fe80::1%lo")]
)
def test_a_c_line_naming_an_address_of_the_other_family_is_refused(kind: str, address: str) -> None:
    with pytest.raises(SdpError, match=f"not {kind}"):
        sdp.parse(body(kind, address))


def test_a_c_line_of_its_own_family_is_taken() -> None:
    assert sdp.parse(body("IP6", "::ffff:127.0.0.1")).address == "::ffff:127.0.0.1"
    assert sdp.parse(body("IP6", "::1")).address == "::1"
    assert sdp.parse(body("IP4", "media.pbx.example")).address == "media.pbx.example"


@pytest.fixture
async def bed() -> AsyncIterator[RawPbxCall]:
    async with raw_pbx_call() as made:
        yield made


@pytest.mark.parametrize(
    ("kind", "address"),
    [("IP4", "::1"), ("IP6", "::1"), ("IP4", "255.255.255.255"), ("IP4", "224.0.0.1")],
)
async def test_an_answer_no_rtp_can_reach_ends_the_call_as_no_usable_media(
    bed: RawPbxCall, kind: str, address: str
) -> None:
    result, seen = await answer_with(bed, body(kind, address))
    assert isinstance(result, Ended), result
    assert result.status == 488 and result.reason.startswith("no usable media")
    assert seen[-2:] == ["ACK", "BYE"]


async def test_an_answer_naming_an_ipv4_mapped_address_is_taken_as_its_ipv4(
    bed: RawPbxCall,
) -> None:
    phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    phone.bind((HOST, 0))
    try:
        port = phone.getsockname()[1]
        ok = begin_and_answer(bed, body("IP6", "::ffff:127.0.0.1", port))
        bed.pbx.sendto(bytes(ok), bed.transport.local)

        async def ringing() -> None:
            pass

        result = await bed.call.start(5, ringing)
        assert not isinstance(result, Ended), result
        assert bed.call.rtp_source.destination == (HOST, port)
    finally:
        phone.close()


@pytest.mark.parametrize(("kind", "address"), [("IP4", "::1"), ("IP6", "::1")])
async def test_a_reoffer_no_rtp_can_reach_gets_488_and_the_call_goes_on(
    bed: RawPbxCall, kind: str, address: str
) -> None:
    bed.call.begin()
    bed.pbx.recvfrom(65536)  # the INVITE
    bed.call.negotiated = sdp.negotiate(sdp.parse(body("IP4", HOST)))
    before = bed.call.negotiated
    offer = body(kind, address, 41000)
    head = (
        f"INVITE sip:Rundruf@{HOST} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {HOST}:5090;branch=z9hG4bK-fam-1\r\n"
        "From: <sip:member@pbx>;tag=them\r\nTo: <sip:Rundruf@pbx>;tag=us\r\n"
        f"Call-ID: {bed.call.call_id}\r\nCSeq: 2 INVITE\r\n"
        "Contact: <sip:member@127.0.0.1:5090>\r\nContent-Type: application/sdp\r\n"
        f"Content-Length: {len(offer)}\r\n\r\n"
    )
    request = parse(head.encode() + offer)
    assert isinstance(request, Request)
    response = bed.call.handle(request, (HOST, 5090))
    assert response is not None and response.status == 488
    assert bed.call.negotiated == before
    assert bed.call._transaction is not None
    bed.call._transaction.final.cancel()

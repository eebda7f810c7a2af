"""A host name in an SDP c= line (issue 15, point 2): looked up once per offer, off the
loop, at most the resolver's timeout; the re-INVITE gets 100 at once and 488 when the
name gives no address, while the loop goes on. The lookup here asks a DNS server of the
test's own on loopback that never answers (tests/sip_unit/dns_server.py); the same
with glibc's resolver and the pacing of other calls: test_media_host_pacing.py."""

from __future__ import annotations

import asyncio
import functools
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from edge_agent.sip import sdp
from edge_agent.sip.call import Call, Ended
from edge_agent.sip.dialog_match import DialogPeer
from edge_agent.sip.media_host import MediaHostResolver
from edge_agent.sip.message import Response, parse
from edge_agent.sip.rtp import RtpPacket
from tests.sip_unit.dns_server import SilentDnsServer, query
from tests.sip_unit.raw_pbx_call import answer_with, raw_pbx_call

HOST = "127.0.0.1"
NAME = "media.pbx.example"


@dataclass
class Bed:
    call: Call
    pbx: socket.socket  # where the PBX sends the re-INVITE from and gets the answers
    sip_port: int
    dns: SilentDnsServer


@pytest.fixture
def dns() -> Iterator[SilentDnsServer]:
    server = SilentDnsServer()
    yield server
    server.close()


@pytest.fixture
async def bed(dns: SilentDnsServer) -> AsyncIterator[Bed]:
    async with raw_pbx_call() as made:
        call, pbx = made.call, made.pbx
        resolver = MediaHostResolver(functools.partial(_ask, dns.address), timeout_s=0.5)
        call._resolver = resolver  # as Call(..., resolver=) would; also where there was none
        call.begin()
        pbx.recvfrom(65536)  # the INVITE
        # The dialog the re-INVITEs below name (tags "us", "them"), the PBX its peer.
        call.peer = DialogPeer("us", remote_tag="them", hosts={HOST})
        call.negotiated = sdp.negotiate(sdp.parse(sdp.offer(HOST, 40000, 7, payloads=(0, 101))))
        try:
            yield Bed(call, pbx, made.transport.local[1], dns)
        finally:
            assert call._transaction is not None
            call._transaction.final.cancel()


def _ask(server: tuple[str, int], host: str, port: int, family: int) -> str:
    return query(server, host)


def reinvite(address: str, branch: str = "z9hG4bK-dns-1") -> bytes:
    body = sdp.offer(HOST, 41000, 99, payloads=(0, 101)).replace(
        f"c=IN IP4 {HOST}".encode(), f"c=IN IP4 {address}".encode()
    )
    head = (
        f"INVITE sip:Rundruf@{HOST} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {HOST}:5090;branch={branch}\r\n"
        "From: <sip:member@pbx>;tag=them\r\nTo: <sip:Rundruf@pbx>;tag=us\r\n"
        "Call-ID: {call_id}\r\nCSeq: 2 INVITE\r\nContact: <sip:member@127.0.0.1:5090>\r\n"
        "Content-Type: application/sdp\r\n"
    )
    return head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body


async def answers(pbx: socket.socket, count: int) -> list[tuple[float, Response]]:
    """The next `count` answers to the PBX with the times they came, read off the loop."""
    got: list[tuple[float, Response]] = []
    while len(got) < count:
        data, _ = await asyncio.to_thread(pbx.recvfrom, 65536)
        message = parse(data)
        if isinstance(message, Response):  # not the call's INVITE, retransmitted
            got.append((time.monotonic(), message))
    return got


async def lag_while(work: asyncio.Future[Any]) -> float:
    """The longest the loop was late for a 5 ms sleep until `work` is done."""
    worst = 0.0
    while not work.done():
        before = time.monotonic()
        await asyncio.sleep(0.005)
        worst = max(worst, time.monotonic() - before - 0.005)
    return worst


async def test_a_reinvite_naming_a_host_nobody_resolves_gets_488_and_the_loop_goes_on(
    bed: Bed,
) -> None:
    before = bed.call.negotiated
    request = reinvite(NAME).replace(b"{call_id}", bed.call.call_id.encode())
    sent = time.monotonic()
    bed.pbx.sendto(request, (HOST, bed.sip_port))
    waiting = asyncio.ensure_future(answers(bed.pbx, 2))
    worst = await lag_while(waiting)
    (first_at, first), (final_at, final) = waiting.result()
    assert first.status == 100 and first_at - sent < 0.2
    assert final.status == 488 and 0.4 < final_at - sent < 1.5
    assert worst < 0.1  # the loop never waited for the resolver
    assert bed.call.negotiated == before  # the call goes on as it was
    assert bed.dns.names == [NAME]  # one lookup for the offer
    bed.pbx.sendto(request, (HOST, bed.sip_port))  # a retransmission: the same answer
    (_, again), *_ = await answers(bed.pbx, 1)
    assert again.status == 488
    assert bed.dns.names == [NAME]


async def test_a_reinvite_naming_a_host_that_resolves_sends_rtp_to_its_address(
    bed: Bed, monkeypatch: pytest.MonkeyPatch
) -> None:
    phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    phone.bind(("127.0.0.3", 0))
    phone.settimeout(2)
    port = phone.getsockname()[1]
    looked_up: list[str] = []

    def lookup(host: str, _port: int, _family: int) -> str:
        looked_up.append(host)
        return "127.0.0.3"

    monkeypatch.setattr(bed.call, "_resolver", MediaHostResolver(lookup))
    request = reinvite(NAME).replace(b"41000", str(port).encode())
    request = request.replace(b"{call_id}", bed.call.call_id.encode())
    bed.pbx.sendto(request, (HOST, bed.sip_port))
    (_, first), (_, final) = await answers(bed.pbx, 2)
    assert (first.status, final.status) == (100, 200)
    assert bed.call.negotiated is not None and bed.call.negotiated.address == "127.0.0.3"
    bed.call.send_rtp(bytes(RtpPacket(0, 1, 160, 0x77, b"\xff" * 160)))
    data, _ = await asyncio.to_thread(phone.recvfrom, 2048)
    assert RtpPacket.parse(data).ssrc == 0x77
    assert looked_up == [NAME]
    phone.close()


async def test_a_second_offer_while_one_is_looked_up_gets_500_with_retry_after(bed: Bed) -> None:
    first = reinvite(NAME).replace(b"{call_id}", bed.call.call_id.encode())
    second = reinvite("127.0.0.1", "z9hG4bK-dns-2").replace(b"CSeq: 2", b"CSeq: 3")
    bed.pbx.sendto(first, (HOST, bed.sip_port))
    (_, trying), *_ = await answers(bed.pbx, 1)
    assert trying.status == 100
    bed.pbx.sendto(second.replace(b"{call_id}", bed.call.call_id.encode()), (HOST, bed.sip_port))
    (_, busy), (_, refused) = await answers(bed.pbx, 2)
    assert busy.status == 500 and busy.headers.get("Retry-After")
    while refused.cseq[0] == 3:  # the 500 again: repeated until an ACK, which never comes
        assert refused == busy
        (_, refused), *_ = await answers(bed.pbx, 1)
    assert refused.status == 488


async def test_an_answer_naming_a_host_nobody_resolves_is_hung_up_as_no_usable_media(
    dns: SilentDnsServer,
) -> None:
    async with raw_pbx_call() as made:
        made.call._resolver = MediaHostResolver(functools.partial(_ask, dns.address), timeout_s=0.5)
        answer = sdp.offer(HOST, 40000, 5).replace(
            f"c=IN IP4 {HOST}".encode(), f"c=IN IP4 {NAME}".encode()
        )
        result, seen = await answer_with(made, answer)
    assert isinstance(result, Ended) and result.status == 488
    assert f"no address for {NAME}" in result.reason
    assert seen[-2:] == ["ACK", "BYE"]
    assert dns.names == [NAME]

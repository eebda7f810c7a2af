"""A member's re-INVITE gets its final answer until it acknowledges it, and can be
cancelled while the answer is still to come (RFC 3261 9.2, 13.3.1.4, 17.2.1).

The outside review of issue 15 lost the one final answer of a re-INVITE answered
"100 now, final later" (its c= names a host): the phone had stopped retransmitting at
the 100 and its re-INVITE hung. A CANCEL of that re-INVITE got 481.
"""

from __future__ import annotations

import asyncio
import time

from edge_agent.sip import sdp
from edge_agent.sip.media_host import MediaHostResolver
from edge_agent.sip.message import Request, Response
from edge_agent.sip.ua import UserAgent
from tests.sip_unit.udp_peers import HOST, Peer, answered_call, dialog_headers, pbx, peers, ua

__all__ = ["pbx", "peers", "ua"]  # the fixtures

NAME = "media.pbx.example"


def in_dialog(phone: Peer, method: str, *, cseq: int, branch: str, body: bytes = b"") -> bytes:
    """A request of the member in the call's dialog (tags as the 2xx made them)."""
    headers = dialog_headers(phone, method, cseq, branch)
    headers.add("Contact", f"<sip:member@{HOST}:{phone.address[1]}>")
    if body:
        headers.add("Content-Type", "application/sdp")
    return bytes(Request(method, f"sip:Rundruf@{HOST}", headers, body))


def offer(address: str) -> bytes:
    body = sdp.offer(HOST, 41000, 99)
    return body.replace(f"c=IN IP4 {HOST}".encode(), f"c=IN IP4 {address}".encode())


def answers(phone: Peer, cseq: int, method: str = "INVITE") -> list[Response]:
    return [r for r in phone.responses if r.cseq == (cseq, method)]


async def until(condition: object, within: float) -> None:
    async with asyncio.timeout(within):
        while not condition():  # type: ignore[operator]  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def slow_lookup(seconds: float, address: str = HOST) -> MediaHostResolver:
    def lookup(_host: str, _port: int, _family: int) -> str:
        time.sleep(seconds)  # a resolver taking its time (in its thread, off the loop)
        return address

    return MediaHostResolver(lookup)


async def test_the_final_answer_after_100_is_repeated_until_the_ack(
    ua: UserAgent, peers: list[Peer]
) -> None:
    phone = Peer(phone=True)
    peers.append(phone)
    call = await answered_call(ua, phone)
    call._resolver = slow_lookup(0.3)
    phone.send(in_dialog(phone, "INVITE", cseq=2, branch="z9hG4bKre2", body=offer(NAME)))
    # As an INVITE client over UDP (RFC 3261 17.1.1.2): the 100 ends its retransmissions;
    # the first 200 is lost here (not looked at), only what comes after it counts.
    await until(lambda: len(answers(phone, 2)) >= 3, 3.0)  # 100, 200, the 200 again
    first, ok, again = answers(phone, 2)[:3]
    assert (first.status, ok.status) == (100, 200) and again == ok
    assert call.negotiated is not None and call.negotiated.port == 41000
    phone.send(in_dialog(phone, "ACK", cseq=2, branch="z9hG4bKack2"))
    await asyncio.sleep(0.1)
    sent = len(answers(phone, 2))
    await asyncio.sleep(2.5)  # the next repetition was due 2 s after the last one
    assert len(answers(phone, 2)) == sent, "the 200 went on after its ACK"
    await call.hang_up()


async def test_a_final_answer_at_once_is_repeated_too_and_a_retransmission_gets_it(
    ua: UserAgent, peers: list[Peer]
) -> None:
    phone = Peer(phone=True)
    peers.append(phone)
    call = await answered_call(ua, phone)
    request = in_dialog(phone, "INVITE", cseq=2, branch="z9hG4bKre3", body=offer(HOST))
    phone.send(request)
    await until(lambda: len(answers(phone, 2)) >= 2, 1.5)  # at once, and after T1
    phone.send(request)  # the phone's own retransmission: the same answer
    await until(lambda: len(answers(phone, 2)) >= 3, 1.0)
    statuses = [r.status for r in answers(phone, 2)]
    assert statuses[:3] == [200, 200, 200] and len({bytes(r) for r in answers(phone, 2)}) == 1
    phone.send(in_dialog(phone, "ACK", cseq=2, branch="z9hG4bKack3"))
    await asyncio.sleep(0.1)
    sent = len(answers(phone, 2))
    await asyncio.sleep(2.2)
    assert len(answers(phone, 2)) == sent
    await call.hang_up()


async def test_a_cancel_while_the_answer_is_looked_up_ends_the_reinvite_with_487(
    ua: UserAgent, peers: list[Peer]
) -> None:
    phone = Peer(phone=True)
    peers.append(phone)
    call = await answered_call(ua, phone)
    before = call.negotiated
    call._resolver = slow_lookup(0.5, "127.0.0.9")
    phone.send(in_dialog(phone, "INVITE", cseq=2, branch="z9hG4bKre4", body=offer(NAME)))
    await until(lambda: answers(phone, 2), 1.0)
    assert answers(phone, 2)[0].status == 100
    phone.send(in_dialog(phone, "CANCEL", cseq=2, branch="z9hG4bKre4"))
    await until(lambda: answers(phone, 2, "CANCEL") and len(answers(phone, 2)) >= 2, 1.0)
    assert [r.status for r in answers(phone, 2, "CANCEL")] == [200]
    assert [r.status for r in answers(phone, 2)] == [100, 487]
    await asyncio.sleep(1.0)  # the lookup ends meanwhile: its 200 is never sent
    assert {r.status for r in answers(phone, 2)} == {100, 487}  # the 487 repeated
    assert call.negotiated == before, "a cancelled offer changed the call"
    phone.send(in_dialog(phone, "ACK", cseq=2, branch="z9hG4bKre4"))  # a non-2xx's ACK
    await asyncio.sleep(0.1)
    sent = len(answers(phone, 2))
    await asyncio.sleep(2.2)
    assert len(answers(phone, 2)) == sent
    # A CANCEL once the answer is out changes nothing (200); of no INVITE at all, 481.
    phone.send(in_dialog(phone, "CANCEL", cseq=2, branch="z9hG4bKre4"))
    phone.send(in_dialog(phone, "CANCEL", cseq=9, branch="z9hG4bKnone"))
    await until(lambda: len(answers(phone, 2, "CANCEL")) == 2 and answers(phone, 9, "CANCEL"), 1)
    assert answers(phone, 2, "CANCEL")[1].status == 200
    assert answers(phone, 9, "CANCEL")[0].status == 481
    await call.hang_up()

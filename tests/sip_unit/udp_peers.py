"""Loopback UDP peers of a user agent under test: a scripted phone, a forger, the PBX.

Shared by the tests of forged answers, dialog matching, re-INVITE answers and the
answer cache. A test module takes the fixtures by importing them (`peers`, `pbx`, `ua`)
and naming them in its `__all__`.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator

import pytest

from edge_agent.sip import sdp
from edge_agent.sip.call import Call
from edge_agent.sip.message import Headers, Request, Response, parse, response_to
from edge_agent.sip.transport import UdpTransport
from edge_agent.sip.ua import UserAgent
from tests.sip_unit.loopback_ua import loopback_ua

HOST = "127.0.0.1"


class Peer:
    """A UDP socket that keeps every request it gets; as the phone it also answers."""

    def __init__(self, host: str = HOST, *, phone: bool = False, answer: bool = True) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setblocking(False)
        self.address: tuple[str, int] = self.sock.getsockname()
        self.phone = phone
        self.answer = answer
        self.requests: list[Request] = []
        self.responses: list[Response] = []
        self.invite: Request | None = None
        self.ok: Response | None = None
        self.agent: tuple[str, int] | None = None
        self.acked = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.sock.fileno(), self._readable)

    def count(self, method: str) -> int:
        return sum(1 for r in self.requests if r.method == method)

    def send(self, data: bytes) -> None:
        assert self.agent is not None
        self.sock.sendto(data, self.agent)

    def _readable(self) -> None:
        while True:
            try:
                data, source = self.sock.recvfrom(65536)
            except BlockingIOError:
                return
            message = parse(data)
            if isinstance(message, Response):
                self.responses.append(message)
                continue
            self.requests.append(message)
            if self.phone:
                self._as_phone(message, source)

    def _as_phone(self, request: Request, source: tuple[str, int]) -> None:
        self.agent = source
        if request.method == "INVITE" and self.invite is None:
            self.invite = request
            self.sock.sendto(bytes(response_to(request, 180, "Ringing", "phone")), source)
            if self.answer:
                self.ok = answer_to(request, "phone", self.address)
                self.sock.sendto(bytes(self.ok), source)
        elif request.method == "ACK":
            self.acked.set()
        elif request.method in ("BYE", "CANCEL"):
            self.sock.sendto(bytes(response_to(request, 200, "OK")), source)
            if request.method == "CANCEL" and self.invite is not None:
                ended = response_to(self.invite, 487, "Request Terminated", "phone")
                self.sock.sendto(bytes(ended), source)

    def close(self) -> None:
        self._loop.remove_reader(self.sock.fileno())
        self.sock.close()


def answer_to(invite: Request, to_tag: str, contact: tuple[str, int]) -> Response:
    ok = response_to(invite, 200, "OK", to_tag)
    ok.headers.add("Contact", f"<sip:member@{contact[0]}:{contact[1]}>")
    ok.headers.add("Content-Type", "application/sdp")
    ok.body = sdp.offer(HOST, 40000, 5)
    return ok


@pytest.fixture
def peers() -> Iterator[list[Peer]]:
    made: list[Peer] = []
    yield made
    for peer in made:
        peer.close()


@pytest.fixture
async def pbx(peers: list[Peer]) -> Peer:
    """The account's server: the old code sent its ACKs and BYEs for strays there."""
    peer = Peer()
    peers.append(peer)
    return peer


@pytest.fixture
async def ua(pbx: Peer) -> AsyncIterator[UserAgent]:
    agent, _ = await loopback_ua(pbx.address)
    yield agent
    await agent.close(grace_s=2.0)


def let_through(ua: UserAgent, *forgers: Peer) -> None:
    """Every forged answer reaches the user agent: the transport's intake would drop most
    of a stranger's flood by rate before (issue 15, point 4; tests/sip_unit/test_intake.py),
    and what the user agent does with those that get through is what is tested here."""
    assert isinstance(ua.transport, UdpTransport)
    for forger in forgers:
        ua.transport.intake.trust(forger.address)


async def answered_call(ua: UserAgent, phone: Peer) -> Call:
    call = Call(ua, f"sip:member@{HOST}:{phone.address[1]}", {})

    async def nothing() -> None:
        return None

    result = await asyncio.wait_for(call.start(10, nothing), 5)
    assert isinstance(result, Response) and result.status == 200
    await asyncio.wait_for(phone.acked.wait(), 2)
    return call


def dialog_headers(phone: Peer, method: str, cseq: int, branch: str | None) -> Headers:
    """A request's headers as the member writes them in the call's dialog (tags as its
    2xx made them); no branch is a top Via as an RFC 2543 phone writes it."""
    invite, ok = phone.invite, phone.ok
    assert invite is not None and ok is not None
    via = f"SIP/2.0/UDP {HOST}:{phone.address[1]}" + (f";branch={branch}" if branch else "")
    return Headers(
        [
            ("Via", via),
            ("From", ok.headers.get("To") or ""),
            ("To", invite.headers.get("From") or ""),
            ("Call-ID", invite.call_id),
            ("CSeq", f"{cseq} {method}"),
        ]
    )


def dtmf_info(phone: Peer, cseq: int, digit: str, branch: str | None = None) -> Request:
    """The member's in-dialog INFO with a key (application/dtmf-relay, as SwyxWare sends it)."""
    headers = dialog_headers(phone, "INFO", cseq, branch)
    headers.add("Content-Type", "application/dtmf-relay")
    body = f"Signal={digit}\r\nDuration=160\r\n".encode()
    return Request("INFO", f"sip:Rundruf@{HOST}", headers, body)

"""One call against a scripted phone on a loopback socket: the answer is acknowledged
however slow the event sink, and a call stopped while ringing is always cancelled."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Coroutine

import pytest

from edge_agent.sip import sdp
from edge_agent.sip.call import Call
from edge_agent.sip.errors import SipError
from edge_agent.sip.message import Request, parse, response_to
from edge_agent.sip.ua import UserAgent
from tests.sip_unit.loopback_ua import loopback_ua

HOST = "127.0.0.1"


class Phone:
    """Answers as told: 180 at once (or after `ring_after`), 200 (retransmitted until the
    ACK, RFC 3261 13.3.1.4) unless `answer` is False; 200 to CANCEL and then 487."""

    def __init__(self, *, answer: bool = True, ring_after: float = 0.0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.setblocking(False)
        self.address = self.sock.getsockname()
        self.answer = answer
        self.ring_after = ring_after
        self.seen: list[str] = []
        self.acked = asyncio.Event()
        self.cancelled = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop.add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        while True:
            try:
                data, source = self.sock.recvfrom(65536)
            except BlockingIOError:
                return
            message = parse(data)
            assert isinstance(message, Request)
            self.seen.append(message.method)
            if message.method == "INVITE" and self.seen.count("INVITE") == 1:
                self._spawn(self._ring_and_answer(message, source))
            elif message.method == "ACK":
                self.acked.set()
            elif message.method == "BYE":
                self.sock.sendto(bytes(response_to(message, 200, "OK")), source)
            elif message.method == "CANCEL":
                self.cancelled.set()
                self.sock.sendto(bytes(response_to(message, 200, "OK")), source)

    def _spawn(self, work: Coroutine[object, object, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ring_and_answer(self, invite: Request, source: tuple[str, int]) -> None:
        await asyncio.sleep(self.ring_after)
        self.sock.sendto(bytes(response_to(invite, 180, "Ringing", "phone")), source)
        if not self.answer:
            await self.cancelled.wait()
            self.sock.sendto(bytes(response_to(invite, 487, "Request Terminated", "phone")), source)
            return
        ok = response_to(invite, 200, "OK", "phone")
        ok.headers.add("Contact", f"<sip:member@{HOST}:{self.address[1]}>")
        ok.headers.add("Content-Type", "application/sdp")
        ok.body = sdp.offer(HOST, 40000, 5)
        await asyncio.sleep(0.05)
        interval = 0.5
        while not self.acked.is_set():
            self.sock.sendto(bytes(ok), source)
            try:
                await asyncio.wait_for(self.acked.wait(), interval)
            except TimeoutError:
                interval = min(2 * interval, 4.0)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._loop.remove_reader(self.sock.fileno())
        self.sock.close()


@pytest.fixture
async def ua() -> AsyncIterator[UserAgent]:
    agent, _ = await loopback_ua((HOST, 9))
    yield agent
    await agent.close(grace_s=2.0)


async def test_a_slow_ringing_event_does_not_delay_the_ack(ua: UserAgent) -> None:
    phone = Phone()
    call = Call(ua, f"sip:member@{HOST}:{phone.address[1]}", {})
    ringing_done = asyncio.Event()

    async def slow_sink() -> None:  # the journal writing RINGING under load
        await asyncio.sleep(1.2)
        ringing_done.set()

    try:
        result = await asyncio.wait_for(call.start(30, slow_sink), 10)
        assert getattr(result, "status", None) == 200
        assert ringing_done.is_set()  # start() returned only after the RINGING event
        assert phone.acked.is_set()
        assert "BYE" not in phone.seen  # the phone's repeated 200 was not taken as stray
        await call.hang_up()
        assert phone.seen.count("BYE") == 1
    finally:
        call.close()
        phone.close()


async def test_a_call_hung_up_while_ringing_is_cancelled(ua: UserAgent) -> None:
    phone = Phone(answer=False)
    call = Call(ua, f"sip:member@{HOST}:{phone.address[1]}", {})
    try:
        call.begin()
        await asyncio.sleep(0.2)  # 180 is in
        await call.hang_up()  # what the dialer does when the STARTED event is cancelled
        await asyncio.wait_for(phone.cancelled.wait(), 5)
        await asyncio.wait_for(phone.acked.wait(), 5)  # the 487 acknowledged
    finally:
        call.close()
        phone.close()


async def test_a_provisional_after_the_decision_to_cancel_still_gets_its_cancel(
    ua: UserAgent,
) -> None:
    phone = Phone(answer=False, ring_after=0.3)
    call = Call(ua, f"sip:member@{HOST}:{phone.address[1]}", {})
    try:
        call.begin()
        await call.hang_up()  # before any 1xx: the CANCEL must wait for it (RFC 3261 9.1)
        await asyncio.wait_for(phone.cancelled.wait(), 5)
        assert phone.seen[:2] == ["INVITE", "CANCEL"]
    finally:
        call.close()
        phone.close()


async def test_an_invite_that_cannot_be_written_keeps_no_transaction(ua: UserAgent) -> None:
    call = Call(ua, f"sip:member@{HOST}:5060", {"X-Bad": "a\r\nInjected: b"})
    with pytest.raises(SipError, match="line break"):
        call.begin()
    call.close()
    assert ua._pending == {}

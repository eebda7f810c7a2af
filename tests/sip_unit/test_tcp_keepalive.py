"""Our own TCP connection to a PBX that went away (issue 15, the outside review of point
5): a PBX that rebooted resets it at our next bytes, and the requests on it go out again
at once on a new one (before, 20 requests failed after 32 s); one that answered our RFC
5626 pings and stops is dropped; TCP's own keep-alive is on (its Windows branch:
test_tcp_options.py); a connection that cannot be made fails its requests at once.
Nothing here needs what the fix brought, so each test runs (and fails) before it too.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from typing import Any

import pytest

from edge_agent import platforms
from edge_agent.sip import stream as sip_stream
from edge_agent.sip.message import Request, parse_stream, response_to
from edge_agent.sip.transport import Address, TcpTransport
from edge_agent.sip.ua import Account, UserAgent

HOST = "127.0.0.1"


class Pbx:
    """A PBX over TCP: answers requests 200 and pings with a CRLF. After `reboot()` the
    connections it had are reset at the first bytes that come on them (what a rebooted
    host's kernel does: it has no state for them); `deaf()` leaves them open but silent
    (a cut cable)."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.connections = 0
        self.pings = 0
        self._generation = 0
        self._deaf = False
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> Address:
        self.server = await asyncio.start_server(self._serve, HOST, 0)
        return HOST, int(self.server.sockets[0].getsockname()[1])

    def reboot(self) -> None:
        self._generation += 1

    def deaf(self) -> None:
        self._deaf = True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        born, self._deaf = self._generation, False
        buffer = b""
        while data := await reader.read(65536):
            if born != self._generation:
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.close()  # a reset
                return
            if self._deaf:
                continue
            buffer += data
            if buffer.startswith(b"\r\n\r\n"):
                self.pings += 1
                writer.write(b"\r\n")
            message, buffer = parse_stream(buffer)
            while message is not None:
                if isinstance(message, Request):
                    writer.write(bytes(response_to(message, 200, "OK", "p1")))
                message, buffer = parse_stream(buffer)

    def close(self) -> None:
        for writer in self._writers:
            writer.close()
        if self.server is not None:
            self.server.close()


async def agent(pbx: Address) -> tuple[TcpTransport, UserAgent]:
    ua: UserAgent | None = None

    def receive(message: Any, source: Address, via: Any) -> None:
        assert ua is not None
        ua.receive(message, source, via)

    transport = await TcpTransport.listen(HOST, 0, receive)
    ua = UserAgent(Account("Rundruf", "pw", HOST, pbx, register=False), transport)
    return transport, ua


async def ask(ua: UserAgent, pbx: Address) -> int:
    uri = f"sip:pbx@{pbx[0]}:{pbx[1]}"
    return (await ua.send_request(ua.new_request("OPTIONS", uri, f"<{uri}>"))).status


async def test_requests_on_a_connection_the_rebooted_pbx_resets_go_out_again_at_once() -> None:
    pbx = Pbx()
    address = await pbx.start()
    _transport, ua = await agent(address)
    try:
        assert await ask(ua, address) == 200
        pbx.reboot()  # nothing reaches us: the old connection looks fine
        started = time.monotonic()
        statuses = await asyncio.wait_for(
            asyncio.gather(*(ask(ua, address) for _ in range(20))), 5
        )  # before: all 20 failed after 32 s
        assert statuses == [200] * 20
        assert time.monotonic() - started < 2.0
        assert pbx.connections == 2
    finally:
        await ua.close(0)
        pbx.close()


async def test_a_pbx_that_answered_pings_and_falls_silent_is_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sip_stream, "PONG_TIMEOUT_S", 0.3, raising=False)
    pbx = Pbx()
    address = await pbx.start()
    transport, ua = await agent(address)
    try:
        assert await ask(ua, address) == 200
        transport.keep_alive(address)  # RFC 5626's ping; the PBX answers
        await asyncio.sleep(0.2)
        assert pbx.pings == 1
        pbx.deaf()
        transport.keep_alive(address)
        await asyncio.sleep(0.6)  # no pong within 0.3 s: the connection is given up
        assert address not in transport.streams
        assert await asyncio.wait_for(ask(ua, address), 2) == 200  # on a new one
        assert pbx.connections == 2
        assert transport.table.dropped["no-pong"] == 1
    finally:
        await ua.close(0)
        pbx.close()


async def test_a_pbx_that_never_answers_pings_keeps_its_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sip_stream, "PONG_TIMEOUT_S", 0.2, raising=False)
    pbx = Pbx()
    address = await pbx.start()
    transport, ua = await agent(address)
    try:
        assert await ask(ua, address) == 200
        pbx.deaf()  # never answers a ping (many PBXs do not): TCP's keep-alive watches it
        transport.keep_alive(address)
        await asyncio.sleep(0.5)
        assert address in transport.streams
    finally:
        await ua.close(0)
        pbx.close()


@pytest.mark.skipif(not platforms.on_linux(), reason="Linux's socket options")
async def test_our_connections_have_tcp_keep_alive() -> None:
    pbx = Pbx()
    address = await pbx.start()
    transport, ua = await agent(address)
    try:
        assert await ask(ua, address) == 200
        writer = transport.streams[address].writer
        assert writer is not None
        sock = writer.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 15
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 5
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 30_000
    finally:
        await ua.close(0)
        pbx.close()


async def test_a_connection_that_cannot_be_made_fails_its_requests_at_once() -> None:
    closed = socket.socket()
    closed.bind((HOST, 0))
    address = (HOST, int(closed.getsockname()[1]))
    closed.close()  # nobody listens there
    _transport, ua = await agent(address)
    try:
        started = time.monotonic()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.wait_for(ask(ua, address), 5)  # before: SipTimeout after 32 s
        assert time.monotonic() - started < 1.0
    finally:
        await ua.close(0)

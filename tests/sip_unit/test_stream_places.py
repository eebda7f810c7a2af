"""Connections others open to the agent's SIP over TCP, and our own, through the public
transport API only (`TcpTransport.listen(host, port, receiver)` with its default
limits): the PBX's own places when strangers fill theirs, our own connection never
timed out, a peer's keep-alives keep its connection and a stranger's do not, and a
connection that never reads its answers closed. Nothing here imports what the limits
brought, so each test also runs against the transport before them (f705b0d^) and
fails there on what it does.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
from collections.abc import AsyncIterator

import pytest

from edge_agent.sip.message import Request, Response, parse, parse_stream, response_to
from edge_agent.sip.transport import Address, TcpTransport, Transport
from tests.sip_unit.test_tcp_limits import MESSAGE_S, Answering, closed_within, connect, options

HOST = "127.0.0.1"


def ask() -> Request:
    """An OPTIONS from the agent to the PBX (we connect out for it)."""
    request = parse(options(20))
    assert isinstance(request, Request)
    return request


class Pbx:
    """A TCP server playing the PBX: answers requests 200, and can open connections to
    the agent itself from 127.0.0.1."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.inbound: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.received: list[Request | Response] = []

    async def start(self) -> Address:
        self.server = await asyncio.start_server(self._serve, HOST, 0)
        host, port = self.server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.inbound.append((reader, writer))
        buffer = b""
        while data := await reader.read(65536):
            buffer += data
            while True:
                message, buffer = parse_stream(buffer)
                if message is None:
                    break
                self.received.append(message)
                if isinstance(message, Request):
                    writer.write(bytes(response_to(message, 200, "OK")))

    def close(self) -> None:
        for _, writer in self.inbound:
            writer.close()
        if self.server is not None:
            self.server.close()


@pytest.fixture
async def pbx() -> AsyncIterator[Pbx]:
    pbx = Pbx()
    yield pbx
    pbx.close()
    await asyncio.sleep(0.05)  # the closed connections' sockets are closed in the next pass


def stranger_places() -> int:
    """What strangers may hold in all here: 256, or a quarter of the soft descriptor
    limit when that is smaller (stream_limits.StreamLimits.fitted)."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return min(256, max(16, soft // 4)) if soft != resource.RLIM_INFINITY else 256


@pytest.mark.skipif(sys.platform != "linux", reason="reads RLIMIT_NOFILE; 520 sockets")
async def test_a_peer_we_connected_to_has_its_own_places_when_strangers_fill_theirs(
    pbx: Pbx,
) -> None:
    pbx_address = await pbx.start()
    transport = await TcpTransport.listen(HOST, 0, Answering())
    port = transport.local[1]
    places = stranger_places()
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        transport.send(ask(), pbx_address)  # we connect out
        await asyncio.sleep(0.2)
        # Strangers from many addresses, 8 each (what one may hold), two more than all.
        for n in range(places + 2):
            held.append(await connect(port, f"127.0.{20 + n // 8 // 200}.{1 + n // 8 % 200}"))
        closed = await asyncio.gather(*(closed_within(r, 0.5) for r, _ in held))
        assert closed == [False] * places + [True] * 2  # the newest refused
        # The PBX opens its own connection to us (a BYE, an INFO): it gets in.
        reader, writer = await connect(port, HOST)
        held.append((reader, writer))
        writer.write(options(21))
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
        assert answer.startswith(b"SIP/2.0 200 ")
    finally:
        for _, writer in held:
            writer.close()
        transport.close()


def with_body(n: int, size: int) -> bytes:
    """An OPTIONS with a body of `size` bytes."""
    head = options(n).replace(b"Content-Length: 0\r\n", b"Content-Type: text/plain\r\n")
    return head[:-2] + f"Content-Length: {size}\r\n\r\n".encode() + b"x" * size


async def test_our_own_connection_is_never_timed_out_and_may_carry_large_messages(
    pbx: Pbx,
) -> None:
    pbx_address = await pbx.start()
    received: list[Request | Response] = []

    def keep(message: Request | Response, source: Address, via: Transport) -> None:
        received.append(message)

    transport = await TcpTransport.listen(HOST, 0, keep)
    try:
        transport.send(ask(), pbx_address)
        await asyncio.sleep(MESSAGE_S + 0.5)  # idle for longer than a stranger may be
        assert len(received) == 1 and isinstance(received[0], Response)
        # A 40 KiB request from the PBX over our connection, sent in two parts a
        # while apart: more than a stranger may leave unfinished, less than a message.
        _, writer = pbx.inbound[0]
        big = with_body(22, 40 * 1024)
        writer.write(big[:30_000])
        await asyncio.sleep(0.2)
        writer.write(big[30_000:])
        await asyncio.sleep(0.2)
        assert [m.call_id for m in received[1:]] == ["limits-22@test"]
        assert len(received[1].body) == 40 * 1024
    finally:
        transport.close()


async def test_a_peers_connection_lives_on_keep_alives_and_a_strangers_does_not(
    pbx: Pbx,
) -> None:
    pbx_address = await pbx.start()
    transport = await TcpTransport.listen(HOST, 0, Answering())
    port = transport.local[1]
    writers: list[asyncio.StreamWriter] = []
    try:
        transport.send(ask(), pbx_address)
        await asyncio.sleep(0.1)
        peer_reader, peer = await connect(port, HOST)
        stranger_reader, stranger = await connect(port, "127.0.0.40")
        writers += [peer, stranger]
        opened = time.monotonic()
        stranger_closed: float | None = None
        pongs = 0
        while time.monotonic() - opened < MESSAGE_S + 1.5:  # a keep-alive a second
            for writer in (peer, stranger):
                if not writer.is_closing():
                    writer.write(b"\r\n\r\n")
            if stranger_closed is None and await closed_within(stranger_reader, 1.0):
                stranger_closed = time.monotonic() - opened
            with contextlib.suppress(TimeoutError):
                pongs += await asyncio.wait_for(peer_reader.readexactly(2), 1) == b"\r\n"
            await asyncio.sleep(0 if stranger_closed is None else 1.0)
        assert stranger_closed is not None, "a stranger stayed on keep-alives alone"
        assert MESSAGE_S - 0.5 < stranger_closed < MESSAGE_S + 1.5, stranger_closed
        assert not await closed_within(peer_reader, 0.01)
        assert pongs >= MESSAGE_S
    finally:
        for writer in writers:
            writer.close()
        transport.close()


class AnsweringLarge:
    """The receiver: answers every request 200 with 32 KiB of body."""

    def __call__(self, message: Request | Response, source: Address, via: Transport) -> None:
        if isinstance(message, Request):
            answer = response_to(message, 200, "OK")
            answer.body = b"x" * 32 * 1024
            via.send(answer, source)


async def test_a_connection_that_never_reads_its_answers_is_closed(pbx: Pbx) -> None:
    # The PBX's own connection (peers are not limited by rate) sends 400 requests and
    # reads none of the 13 MB of answers: more than the kernel's buffers (4 MiB each
    # way at most on Linux) and the agent's 256 KiB for what is unread.
    pbx_address = await pbx.start()
    transport = await TcpTransport.listen(HOST, 0, AnsweringLarge())
    client = socket.socket()
    try:
        transport.send(ask(), pbx_address)
        await asyncio.sleep(0.1)
        client.bind((HOST, 0))
        client.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(client, transport.local)
        with contextlib.suppress(OSError):
            async with asyncio.timeout(5):
                await loop.sock_sendall(client, b"".join(options(1000 + n) for n in range(400)))
        await asyncio.sleep(0.5)
        received = 0
        with pytest.raises(ConnectionResetError):  # aborted
            while True:
                data = client.recv(1 << 20)  # what the kernel holds, then the reset
                if not data:
                    raise ConnectionResetError("closed")
                received += len(data)
        assert received < 9 * 1024 * 1024  # the rest was never sent
    finally:
        client.close()
        transport.close()

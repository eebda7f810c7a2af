"""The stream limits' own parts: whose connection it is, the caps sized to the
descriptors (the Windows branch too), the places of peers we connected to, and our own
connections, which no limit ever closes."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator

import pytest

from edge_agent import platforms
from edge_agent.sip.message import Request, Response, parse, parse_stream, response_to
from edge_agent.sip.stream_limits import (
    WINDOWS_SELECT_MAX,
    StreamLimits,
    descriptor_limit,
    source_key,
)
from edge_agent.sip.transport import Address, TcpTransport, Transport
from tests.sip_unit.test_tcp_limits import Answering, closed_within, connect, options

HOST = "127.0.0.1"


def ask() -> Request:
    """An OPTIONS from the agent to the PBX (we connect out for it)."""
    request = parse(options(20))
    assert isinstance(request, Request)
    return request


def test_source_key_groups_what_one_host_holds() -> None:
    assert source_key("192.0.2.7") == "192.0.2.7"
    assert source_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert source_key("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert source_key("2001:db8:1:2:ffff::9%eth0") == "2001:db8:1:2::/64"
    assert source_key("2001:db8:1:3::1") == "2001:db8:1:3::/64"
    assert source_key("not an address") == "not an address"


def test_caps_take_a_quarter_of_the_descriptors_at_most() -> None:
    limits = StreamLimits()
    assert limits.fitted(None) == limits
    assert limits.fitted(20_000) == limits
    assert limits.fitted(1024).max_inbound == 256
    small = limits.fitted(256)  # macOS's default soft limit
    assert (small.max_inbound, small.max_per_source, small.max_per_peer) == (64, 8, 32)
    tiny = limits.fitted(20)
    assert (tiny.max_inbound, tiny.max_per_source, tiny.max_per_peer) == (16, 8, 16)


@pytest.mark.skipif(not platforms.on_linux(), reason="RLIMIT_NOFILE is read on POSIX")
async def test_the_descriptor_limit_is_the_soft_rlimit_on_posix() -> None:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert descriptor_limit(asyncio.get_running_loop()) == soft


async def test_on_windows_the_limit_is_selects_or_none_and_resource_is_never_loaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(platforms, "on_windows", lambda: True)
    monkeypatch.setitem(sys.modules, "resource", None)  # importing it would raise
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(platforms, "loop_has_readers", lambda loop: True)
    assert descriptor_limit(loop) == WINDOWS_SELECT_MAX  # a selector loop: select()
    monkeypatch.setattr(platforms, "loop_has_readers", lambda loop: False)
    assert descriptor_limit(loop) is None  # the proactor loop: handles, no table
    # Listening there keeps the configured caps.
    transport = await TcpTransport.listen(HOST, 0, Answering())
    try:
        assert transport.table.limits == StreamLimits()
    finally:
        transport.close()


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


async def test_a_peer_we_connected_to_has_its_own_places_when_strangers_fill_theirs(
    pbx: Pbx,
) -> None:
    pbx_address = await pbx.start()
    receiver = Answering()
    limits = StreamLimits(max_inbound=4, max_per_source=2)
    transport = await TcpTransport.listen(HOST, 0, receiver, limits)
    port = transport.local[1]
    held = []
    try:
        transport.send(ask(), pbx_address)  # we connect out
        await asyncio.sleep(0.2)
        for source in ("127.0.0.30", "127.0.0.31", "127.0.0.32"):
            for _ in range(2):
                held.append(await connect(port, source))
        closed = await asyncio.gather(*(closed_within(r, 0.5) for r, _ in held))
        assert closed == [False] * 4 + [True] * 2  # strangers: four in all
        assert transport.table.dropped["all-full"] == 2
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


async def test_our_own_connection_is_never_timed_out_and_may_carry_large_messages(
    pbx: Pbx,
) -> None:
    pbx_address = await pbx.start()
    received: list[Request | Response] = []

    def keep(message: Request | Response, source: Address, via: Transport) -> None:
        received.append(message)

    limits = StreamLimits(message_s=0.3, peer_idle_s=0.3)
    transport = await TcpTransport.listen(HOST, 0, keep, limits)
    try:
        transport.send(ask(), pbx_address)
        await asyncio.sleep(1.0)  # idle for three times the limits
        assert len(received) == 1 and isinstance(received[0], Response)
        # A 40 KiB request from the PBX over our connection, sent in two parts a
        # while apart: more than a stranger may leave unfinished, less than a message.
        _, writer = pbx.inbound[0]
        big = options(22, pad=40 * 1024)
        writer.write(big[:30_000])
        await asyncio.sleep(0.2)
        writer.write(big[30_000:])
        await asyncio.sleep(0.2)
        assert [m.call_id for m in received[1:]] == ["limits-22@test"]
        assert transport.table.dropped == {}
    finally:
        transport.close()


async def test_a_peers_connection_lives_on_keep_alives_and_a_strangers_does_not(
    pbx: Pbx,
) -> None:
    pbx_address = await pbx.start()
    limits = StreamLimits(message_s=0.5, peer_idle_s=1.0)
    transport = await TcpTransport.listen(HOST, 0, Answering(), limits)
    port = transport.local[1]
    writers: list[asyncio.StreamWriter] = []
    try:
        transport.send(ask(), pbx_address)
        await asyncio.sleep(0.1)
        peer_reader, peer = await connect(port, HOST)
        stranger_reader, stranger = await connect(port, "127.0.0.40")
        writers += [peer, stranger]
        for _ in range(6):  # 1.8 s of keep-alives every 0.3 s
            for writer in (peer, stranger):
                if not writer.is_closing():
                    writer.write(b"\r\n\r\n")
            await asyncio.sleep(0.3)
        assert not await closed_within(peer_reader, 0.01)
        assert await closed_within(stranger_reader, 0.01)  # after 0.5 s, pongs or not
        assert await closed_within(peer_reader, 1.5)  # silent: closed after its 1 s
        assert transport.table.dropped["idle"] == 2
    finally:
        for writer in writers:
            writer.close()
        transport.close()


async def test_a_stranger_that_never_reads_its_answers_is_closed() -> None:
    limits = StreamLimits(max_unread=8 * 1024)
    transport = await TcpTransport.listen(HOST, 0, Answering(), limits)
    client = socket.socket()
    try:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.bind(("127.0.0.41", 0))
        client.setblocking(False)
        await asyncio.get_running_loop().sock_connect(client, transport.local)
        await asyncio.sleep(0.05)
        (stream,) = transport.streams.values()
        assert stream.writer is not None
        stream.writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        for n in range(400):  # answers about 120 KB: far more than both buffers
            try:
                await asyncio.get_running_loop().sock_sendall(client, options(1000 + n))
            except OSError:
                break
            await asyncio.sleep(0)
        await asyncio.sleep(0.2)
        assert transport.table.dropped["unread"] == 1
        assert transport.streams == {}
    finally:
        client.close()
        transport.close()

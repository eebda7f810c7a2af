"""What one TCP peer can make the agent's loop do (issue 15, the outside review of point
5): a stranger's messages pay the UDP intake's tokens, every head passes its bounds on
shape, a head whose body trickles in is parsed once, and one read of many pipelined
messages is handled in slices of about 2 ms, other work between them.

Through `TcpTransport.listen(host, port, receiver)` with its defaults, so that each test
also runs against the transport before (and fails there on what it does).
"""

from __future__ import annotations

import asyncio
import gc
import socket

import pytest

from edge_agent.sip import message as sip_message
from edge_agent.sip.message import Request
from edge_agent.sip.transport import TcpTransport
from tests.sip_unit.test_stream_places import Pbx, ask
from tests.sip_unit.test_tcp_limits import Answering, closed_within, connect, options

HOST = "127.0.0.1"
STRANGER_BURST = 128  # intake.STRANGER_BURST: small messages a stranger may send at once
STRANGER_RATE = 32  # intake.STRANGER_RATE: and then a second


async def answers_within(
    reader: asyncio.StreamReader, seconds: float, expected: int | None = None
) -> int:
    """The 200s read from `reader` within `seconds` (or until `expected` came)."""
    count = 0
    loop = asyncio.get_running_loop()
    until = loop.time() + seconds
    while (left := until - loop.time()) > 0 and count != expected:
        try:
            data = await asyncio.wait_for(reader.read(65536), left)
        except TimeoutError:
            break
        if not data:
            break
        count += data.count(b"SIP/2.0 200 ")
    return count


async def test_a_strangers_pipeline_is_held_to_its_rate_the_pbxs_is_not() -> None:
    pbx = Pbx()
    pbx_address = await pbx.start()
    receiver = Answering()
    transport = await TcpTransport.listen(HOST, 0, receiver)
    port = transport.local[1]
    try:
        transport.send(ask(), pbx_address)  # the PBX is a peer: we connected to it
        await asyncio.sleep(0.2)
        stranger_reader, stranger = await connect(port, "127.0.0.60")
        peer_reader, peer = await connect(port, HOST)
        batch = b"".join(options(2000 + n) for n in range(600))
        stranger.write(batch)
        peer.write(batch.replace(b"branch=z9hG4bK-", b"branch=z9hG4bK-p"))
        got = await asyncio.gather(
            answers_within(stranger_reader, 1.5), answers_within(peer_reader, 1.5)
        )
        assert got[1] == 600
        assert STRANGER_BURST <= got[0] <= STRANGER_BURST + 2 * STRANGER_RATE, got
        assert not stranger_reader.at_eof()  # held back, not closed: it gets the rest later
        stranger.close()
        peer.close()
    finally:
        transport.close()
        pbx.close()


async def test_a_head_out_of_bounds_is_refused_unparsed() -> None:
    receiver = Answering()
    transport = await TcpTransport.listen(HOST, 0, receiver)
    try:
        # 200 header lines in 4 KiB: within what a stranger may leave unfinished, past
        # the 128 lines a head may have (intake.precheck, as for a datagram).
        head = options(5).replace(b"Content-Length: 0\r\n", b"X: y\r\n" * 200 + b"l: 0\r\n")
        reader, writer = await connect(transport.local[1], "127.0.0.61")
        writer.write(head)
        assert await closed_within(reader, 2.0)
        assert receiver.requests == []
        writer.close()
    finally:
        transport.close()


async def test_a_stranger_reconnecting_to_break_the_rules_is_refused_at_the_door() -> None:
    # Closed for a head out of bounds, a stranger reconnects at once to send the next
    # (3,000 connections a second from one process): each connection costs it a token,
    # each refused head what was looked at (8 KiB: 9), so the door closes after a dozen.
    receiver = Answering()
    transport = await TcpTransport.listen(HOST, 0, receiver)
    line = b"X-Long: " + b"y" * 30 + b"\r\n"
    head = options(7).replace(b"Content-Length: 0\r\n", line * 200)
    try:
        for _ in range(40):
            reader, writer = await connect(transport.local[1], "127.0.0.63")
            writer.write(head + b"l: 0\r\n\r\n")
            assert await closed_within(reader, 2.0)
            writer.close()
        dropped = transport.table.dropped
        assert dropped["header-lines"] <= 15, dropped  # read and refused
        assert dropped["rate-source"] >= 25, dropped  # refused before anything was read
        assert receiver.requests == []
    finally:
        transport.close()


async def test_a_head_is_parsed_once_while_its_body_trickles_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    heads: list[int] = []
    parse_head = sip_message._parse_head

    def counted(head: bytes) -> Request | sip_message.Response:
        heads.append(len(head))
        return parse_head(head)

    monkeypatch.setattr(sip_message, "_parse_head", counted)
    receiver = Answering()
    transport = await TcpTransport.listen(HOST, 0, receiver)
    client = socket.socket()
    try:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.bind(("127.0.0.62", 0))
        client.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(client, transport.local)
        body = b"x" * 300
        length = f"Content-Type: text/plain\r\nContent-Length: {len(body)}".encode()
        await loop.sock_sendall(client, options(6).replace(b"Content-Length: 0", length))
        await asyncio.sleep(0.05)
        for byte in range(len(body)):  # a byte a segment, each read on its own
            await loop.sock_sendall(client, body[byte : byte + 1])
            await asyncio.sleep(0.002)
        for _ in range(100):
            if receiver.requests:
                break
            await asyncio.sleep(0.02)
        assert [r.body for r in receiver.requests] == [body]
        assert len(heads) == 1, f"the head was parsed {len(heads)} times"  # was 300 and more
    finally:
        client.close()
        transport.close()


async def test_one_read_of_many_messages_leaves_the_loop_its_turns() -> None:
    # The PBX (not limited by rate) pipelines 3,000 OPTIONS at once: each read of
    # 256 KiB holds 700 of them, 150 ms and more of work in one go before.
    pbx = Pbx()
    pbx_address = await pbx.start()
    transport = await TcpTransport.listen(HOST, 0, Answering())
    lags: list[float] = []
    stop = False

    async def tick() -> None:
        loop = asyncio.get_running_loop()
        while not stop:
            before = loop.time()
            await asyncio.sleep(0.005)
            lags.append(loop.time() - before - 0.005)

    try:
        transport.send(ask(), pbx_address)
        await asyncio.sleep(0.2)
        reader, writer = await connect(transport.local[1], HOST)
        # What is measured is SIP's work: not a collection of earlier tests' garbage.
        gc.collect()
        gc.disable()
        ticker = asyncio.create_task(tick())
        writer.write(b"".join(options(5000 + n) for n in range(3000)))
        assert await answers_within(reader, 20.0, expected=3000) == 3000
        stop = True
        await ticker
        writer.close()
    finally:
        gc.enable()
        transport.close()
        pbx.close()
    lags.sort()
    # A generous bound against a frozen loop (a busy machine preempts us now and then):
    # before, the largest gap was a whole read's work (96 ms here, 1,100 messages).
    assert lags[-1] < 0.040, f"the loop was held {1000 * lags[-1]:.0f} ms"  # 6 ms here
    assert lags[int(0.95 * len(lags))] < 0.010, f"p95 {1000 * lags[int(0.95 * len(lags))]:.1f} ms"

"""RFC 5626 keep-alives on a connection we made (issue 15 point 9, the outside review's
point 7): the peer answers each of our pings (CRLF CRLF) with one CRLF, and the agent
answers nothing back. Before, a lone CRLF at the end of a read was kept as "maybe half
a ping", so the next pong, another lone CRLF, made a ping of the two, answered with a
CRLF: every second pong drew an answer, over TCP and TLS alike (the same stream code)."""

from __future__ import annotations

import asyncio
import socket
import threading

from edge_agent.sip.message import parse
from edge_agent.sip.transport import TcpTransport

HOST = "127.0.0.1"
OPTIONS = (
    "OPTIONS sip:pbx SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bK-pong\r\n"
    "From: <sip:a@b>;tag=1\r\nTo: <sip:pbx>\r\nCall-ID: pong\r\nCSeq: 1 OPTIONS\r\n"
    "Content-Length: 0\r\n\r\n"
)


def _ponging_peer() -> tuple[socket.socket, list[bytes]]:
    """A TCP peer that answers each ping with one CRLF and keeps what it reads."""
    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(1)
    got: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        conn.settimeout(5)
        with conn:
            while True:
                try:
                    data = conn.recv(4096)
                except OSError:
                    return
                if not data:
                    return
                got.append(data)
                if data == b"\r\n\r\n":
                    conn.sendall(b"\r\n")

    threading.Thread(target=serve, daemon=True).start()
    return listener, got


async def test_the_pongs_to_our_pings_are_never_answered() -> None:
    listener, got = _ponging_peer()
    peer = (HOST, int(listener.getsockname()[1]))
    transport = await TcpTransport.listen(HOST, 0, lambda *_: None)
    try:
        message = parse(OPTIONS.encode())
        transport.send(message, peer)  # the connection, ours
        async with asyncio.timeout(5):
            while peer not in transport.streams:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        for _ in range(6):
            transport.keep_alive(peer)
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.3)
    finally:
        transport.close()
        listener.close()
    after = b"".join(got).split(b"Content-Length: 0\r\n\r\n", 1)[1]
    assert after == b"\r\n\r\n" * 6, got

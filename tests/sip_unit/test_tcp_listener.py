"""The TCP listener listens again when its socket closes under it (the outside review of
issue 15, point 9: on Windows' proactor loop an accept that fails, a client resetting
during AcceptEx, closes the listening socket for good, CPython gh-93821).

On Linux the same state is made by hand: the listening socket closed, the server not
told, as the proactor's accept loop leaves it. A new connection must be taken and
answered on the same port within a few seconds.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from edge_agent.sip.transport import TcpTransport
from tests.sip_unit.test_tcp_limits import Answering, options

HOST = "127.0.0.1"


def listening_socket(transport: TcpTransport) -> Any:
    """The server's own socket (the transport before the watchdog kept it as `_server`)."""
    listener = getattr(transport, "_listener", None)
    server = listener.server if listener is not None else getattr(transport, "_server", None)
    assert server is not None
    return server.sockets[0]._sock  # the socket itself, not asyncio's guarded view


async def test_a_listener_whose_socket_closed_under_it_listens_again() -> None:
    transport = await TcpTransport.listen(HOST, 0, Answering())
    port = transport.local[1]
    try:
        sock = listening_socket(transport)
        asyncio.get_running_loop().remove_reader(sock.fileno())
        sock.close()  # what the proactor does after a failed AcceptEx
        started = time.monotonic()
        answer = b""
        while not answer and time.monotonic() - started < 5.0:
            try:
                reader, writer = await asyncio.open_connection(HOST, port)
            except OSError:
                await asyncio.sleep(0.1)  # nobody listens (yet)
                continue
            writer.write(options(1))
            answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
            writer.close()
        assert answer.startswith(b"SIP/2.0 200 "), "nobody listens on the port any more"
        assert time.monotonic() - started < 3.0
        assert transport.local == (HOST, port)
    finally:
        transport.close()

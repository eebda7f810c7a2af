"""SIP over TLS to the PBX: the TCP stream code (`transport.TcpTransport`) with TLS under it.

docs/decisions/sip-tls.md says why each choice below:

- the PBX's certificate is checked against the configured CA file alone, or, with none,
  the system's trust store, and must name the configured PBX host (also sent as SNI
  when it is a name); a client certificate when configured (`tls_context.py`);
- one connection to the PBX, made when the dialer starts and reused for every request
  and answer either way; the agent does not listen for TLS, so its Contact names that
  connection's own address and port (`;transport=tls`) for the PBX to reuse it; kept
  alive as TCP's (RFC 5626 pings and TCP keep-alive, `TcpTransport.keep_alive`);
- connecting and the handshake are bounded in time, each on its own; whoever waits for
  the connection waits for one attempt, and within a second after a failed one fails
  the same way without another (`tls_link.py`);
- a lost connection (a reset, a close, a TLS record that does not decrypt) is made again
  at once, then with a growing pause; requests that waited for it name its address
  (`restamp`), and `on_remade` lets the user agent tell the PBX (`reconnect.py`);
- a failure is a `TransportFailure` with a code (`tls_failures.py`; `registration.py`
  lists them), never a fall-back to TCP or UDP; TLS 1.3's refusal of a client
  certificate whose alert is lost is `tlsClientCertificate` too (`HandshakeWatch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import ssl
from collections.abc import Callable

from edge_agent.sip import tcp_options
from edge_agent.sip.errors import SipError
from edge_agent.sip.message import Request, Response
from edge_agent.sip.stream import SipStream
from edge_agent.sip.tls_context import HANDSHAKE_TIMEOUT_S, TlsConfig, client_context, verify_flags
from edge_agent.sip.tls_failures import (
    HandshakeWatch,
    TransportFailure,
    connect_failure,
    handshake_failure,
    lost_connection,
    lost_failure,
    reason_of,
)
from edge_agent.sip.tls_link import Link
from edge_agent.sip.transport import CONNECT_TIMEOUT_S, Address, Receiver, TcpTransport

__all__ = [
    "DEFAULT_PORT",
    "HANDSHAKE_TIMEOUT_S",
    "TlsConfig",
    "TlsTransport",
    "TransportFailure",
    "client_context",
    "server_port",
    "verify_flags",
]

log = logging.getLogger(__name__)

DEFAULT_PORT = 5061  # RFC 3261 19.1.2: sips: and SIP over TLS
PLAIN_PORT = 5060
# Messages waiting for the connection at most (an alarm's INVITEs fit many times over),
# and connections to others than the PBX kept (a call without the outbound proxy).
MAX_WAITING = 4096
MAX_LINKS = 16


def server_port(transport: str, configured: int | None) -> int:
    """The PBX's port: as configured, but 5061 for TLS when unset or left at 5060 (the
    plain port of an installation switched to TLS); 5060 for UDP and TCP when unset."""
    if transport.upper() == "TLS":
        return DEFAULT_PORT if configured in (None, PLAIN_PORT) else configured
    return PLAIN_PORT if configured is None else configured


class _TlsStream(SipStream):
    """A stream whose bytes come through TLS: the same framing and limits as TCP's."""

    ssl_object: object = None
    tls13 = False
    heard = False  # the PBX sent data on it (a message, a keep-alive's answer)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.ssl_object = transport.get_extra_info("ssl_object")
        version = getattr(self.ssl_object, "version", None)
        self.tls13 = version is not None and version() == "TLSv1.3"
        owner = self.owner
        assert isinstance(owner, TlsTransport)
        owner.connected(self, transport)

    def data_received(self, data: bytes) -> None:
        self.heard = True
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        # TLS 1.3 tells of a refused client certificate only after the handshake: the
        # connection is lost with the PBX's alert, or (its reset first) without it. Said
        # first, so that every request waiting on the connection fails with that code.
        owner = self.owner
        assert isinstance(owner, TlsTransport)
        refused_unheard = (
            self.tls13 and not self.heard and owner.handshakes.asked_unanswered(self.ssl_object)
        )
        failure = lost_failure(
            exc, owner.config.server_name, self.peer[1], refused_unheard=refused_unheard
        )
        if failure is not None and not owner.closed:  # (closing it was ours)
            owner.failed(self.peer, failure)
        super().connection_lost(exc)
        owner.dropped(self, exc)


class TlsTransport(TcpTransport):
    """SIP over TLS to the PBX at `server`; connects out only (see the module's text).

    Sends wait for the connection (`tls_link.Link`: one attempt for all of them, none
    within its hold-off after a failure) and go in their order once it is there; a
    request that waited gets the connection's address in its Via and Contact
    (`restamp`, the user agent's). A lost connection to the PBX is made again at once
    (then with a growing pause), and `on_remade` is told when it is there again.
    """

    name = "TLS"

    def __init__(
        self,
        receiver: Receiver,
        config: TlsConfig,
        context: ssl.SSLContext,
        *,
        host: str,
        server: Address,
    ) -> None:
        super().__init__(receiver)
        self.config = config
        self.context = context
        self.handshakes = HandshakeWatch()
        self.handshakes.watch(context)
        self.host = host  # the local address connections are made from
        self.server = server
        self._local: Address = (host, 0)
        self._links: dict[Address, Link] = {}
        self._waiting: dict[Address, list[Request | Response]] = {}
        self._flushing: dict[Address, asyncio.Task[None]] = {}
        # Writes the connection's address into a request built while there was none
        # (the user agent's Via and Contact); None: sent as built.
        self.restamp: Callable[[Request], None] | None = None
        # Told when the connection to the PBX is made again after it was lost: the PBX
        # must learn its address (a REGISTER, the calls' target refresh).
        self.on_remade: list[Callable[[], None]] = []

    @classmethod
    async def create(
        cls, host: str, server: Address, receiver: Receiver, config: TlsConfig
    ) -> TlsTransport:
        """The transport to the PBX at `server` from `host`, not connected yet; raises
        TransportFailure `tlsConfig` when a file cannot be used."""
        # A thread: the files may sit on a slow share, and the loop must not wait for it.
        context = await asyncio.to_thread(client_context, config)
        return cls(receiver, config, context, host=host, server=server)

    @classmethod
    async def open(
        cls, host: str, server: Address, receiver: Receiver, config: TlsConfig
    ) -> TlsTransport:
        """Connects to the PBX at `server` from `host`; raises TransportFailure (nothing
        stays open) when the files, the connection or the handshake fail."""
        transport = await cls.create(host, server, receiver, config)
        try:
            await transport.connect()
        except TransportFailure:
            transport.close()
            raise
        return transport

    @property
    def local(self) -> Address:
        """The address of the connection to the PBX (Via, Contact and SDP name it)."""
        return self._local

    @property
    def closed(self) -> bool:
        return self._closed

    def link(self, address: Address | None = None) -> Link:
        """The connection to `address` (the PBX's by default) as it is kept."""
        address = address or self.server
        link = self._links.get(address)
        if link is None:
            while len(self._links) >= MAX_LINKS:  # others than the PBX: rare, and bounded
                oldest = next(a for a in self._links if a != self.server)
                self._links.pop(oldest).close()
            link = Link(
                functools.partial(self._open_connection, address),
                functools.partial(self._is_open, address),
                on_failed=functools.partial(self._attempt_failed, address),
                on_made=functools.partial(self._made, address),
            )
            self._links[address] = link
        return link

    async def connect(self, address: Address | None = None) -> None:
        """Returns once connected to `address` (the PBX by default); raises
        TransportFailure when the attempt (shared with whoever waits) fails, or at once
        while the last failure's hold-off lasts."""
        await self.link(address).connect()

    def _is_open(self, address: Address) -> bool:
        stream = self.streams.get(address)
        return stream is not None and stream.writer is not None and not stream.writer.is_closing()

    def connected(self, stream: SipStream, transport: asyncio.BaseTransport) -> None:
        if stream.peer == self.server:
            host, port = transport.get_extra_info("sockname")[:2]
            self._local = (str(host), int(port))

    def send(self, message: Request | Response, address: Address) -> None:
        if self._closed:
            return
        stream = self.streams.get(address)
        if stream is not None and self._is_open(address):
            stream.write(bytes(message))
            return
        waiting = self._waiting.setdefault(address, [])
        if len(waiting) >= MAX_WAITING:  # its transaction times out as for a lost datagram
            self.table.log.log(
                logging.WARNING,
                "tls-waiting-full",
                "%d messages wait for the TLS connection to %s:%d already; one is dropped",
                len(waiting),
                *address,
            )
            return
        waiting.append(message)
        if address not in self._flushing:
            self._flushing[address] = asyncio.create_task(self._flush(address))

    async def _flush(self, address: Address) -> None:
        """Connects, then writes what waited, in its order; when the connection cannot
        be made the requests that waited fail with the failure (`on_failure`)."""
        try:
            try:
                await self.connect(address)
            except TransportFailure as failure:
                self._waiting.pop(address, None)
                self._tell_failed(address, failure)
                return
            waiting = self._waiting.pop(address, [])
            stream = self.streams.get(address)
            if stream is None or not self._is_open(address):  # lost again at once
                self._tell_failed(address, lost_connection(None, *address, sent=False))
                return
            for message in waiting:
                if isinstance(message, Request) and self.restamp is not None:
                    self.restamp(message)
                stream.write(bytes(message))
        finally:
            self._flushing.pop(address, None)

    def unanswerable(self, address: Address, exc: Exception | None) -> Exception | None:
        """The connection to `address` was lost: nobody can answer what went out on it
        any more (the agent does not listen for TLS: the PBX cannot connect back)."""
        return lost_connection(exc, *address)

    def failed(self, address: Address, failure: TransportFailure) -> None:
        """A failure found on a connection (the PBX refused our certificate just after
        the handshake): remembered for the hold-off, the waiting requests fail."""
        self.link(address).remember(failure)
        self._attempt_failed(address, failure)

    def _attempt_failed(self, address: Address, failure: SipError) -> None:
        self.table.log.log(
            logging.WARNING, "tls-failed", "SIP over TLS to %s:%d: %s", *address, failure
        )
        self._tell_failed(address, failure)

    def _tell_failed(self, address: Address, failure: SipError) -> None:
        for listener in list(self.on_failure):
            listener(address, failure)

    def _made(self, address: Address, again: bool) -> None:
        if address != self.server or not again:
            return
        log.info("SIP over TLS to %s:%d: connected again from %s:%d", *address, *self._local)
        for listener in list(self.on_remade):
            listener()

    def dropped(self, stream: SipStream, exc: Exception | None) -> None:
        """A connection we made ended; the PBX's is made again (`Link.keep_up`)."""
        if self._closed or stream.refused or stream.peer != self.server:
            return
        self.table.log.log(
            logging.WARNING,
            "tls-lost",
            "the TLS connection to the PBX %s:%d was lost (%s); connecting again",
            *stream.peer,
            reason_of(exc) if exc is not None else "closed",
        )
        self.link().keep_up()

    async def _open_connection(self, address: Address) -> None:
        """A TCP connection, then the handshake, each bounded; TransportFailure if either
        fails (`Link` remembers it for the hold-off)."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            tcp_options.keep_alive(sock)
            sock.bind((self.host, 0))
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await loop.sock_connect(sock, address)
        except (OSError, TimeoutError) as exc:
            sock.close()
            raise connect_failure(exc, *address) from exc
        except BaseException:  # cancelled: the socket must not stay open
            sock.close()
            raise
        timeout = self.config.handshake_timeout_s
        try:
            # asyncio's own bound aborts a handshake that stalls; ours is the backstop.
            async with asyncio.timeout(timeout + 1.0):
                await loop.create_connection(
                    lambda: _TlsStream(self),
                    sock=sock,
                    ssl=self.context,
                    server_hostname=self.config.server_name,
                    ssl_handshake_timeout=timeout,
                )
        except (OSError, TimeoutError, ValueError) as exc:
            with contextlib.suppress(OSError):
                sock.close()
            raise handshake_failure(exc, self.config.server_name, address[1]) from exc
        except BaseException:
            with contextlib.suppress(OSError):
                sock.close()
            raise

    def close(self) -> None:
        for link in self._links.values():
            link.close()
        for task in self._flushing.values():
            task.cancel()
        self._waiting.clear()
        super().close()

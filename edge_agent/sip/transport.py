"""SIP over UDP and TCP: bytes in and out, messages up. Nothing received crashes it.

A datagram or stream that does not parse is logged; if it was a request with
enough of its headers to answer, it gets 400 Bad Request (RFC 3261 21.4.1). So does
a request that parses but that the user agent finds malformed when it reads it
(`_deliver`); what handling a message raises is logged through a `LogLimiter`, so
that a peer cannot fill the log with a traceback per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
from collections.abc import Callable

from edge_agent import platforms
from edge_agent.sip import nat, tcp_options
from edge_agent.sip.errors import SipError, SipParseError
from edge_agent.sip.intake import Intake
from edge_agent.sip.listener import Listener
from edge_agent.sip.log_limit import LogLimiter
from edge_agent.sip.message import Request, Response, new_tag, parse, response_to
from edge_agent.sip.peers import Networks
from edge_agent.sip.refusal import bad_request_phrase, refusal
from edge_agent.sip.stream import SipStream as _Stream
from edge_agent.sip.stream import StreamTable
from edge_agent.sip.stream_limits import StreamLimits
from edge_agent.sip.stream_table import OnLost
from edge_agent.sip.udp import UdpSocket

log = logging.getLogger(__name__)

Address = tuple[str, int]
# What a transport hands up: the message, where it came from, and how to answer there.
Receiver = Callable[["Request | Response", "Address", "Transport"], None]
# Told when a connection to the address cannot be made (the exception says why).
OnFailure = Callable[["Address", Exception], None]
# Datagrams read per wake-up at most: each answer wakes a call, and the calls woken
# together run in one pass of the loop, which the RTP pacer has to wait for (64 held
# it up to 70 ms when 500 members answered at once; 16, about 4 ms).
DRAIN_BATCH = 16
# ... and at most this long (plus one datagram's work): the pacer's next slot comes first.
DRAIN_BUDGET_S = 0.002
BUFFER_BYTES = 4 * 1024 * 1024
# Linux's values (asm-generic/socket.h), where Python lacks the names. Used on Linux only:
# elsewhere the numbers mean other options (on Windows 32 is SO_BROADCAST).
LINUX_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
LINUX_SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)
CONNECT_TIMEOUT_S = 5.0


def bad_request(data: bytes, reason: str, source: Address | None = None) -> bytes | None:
    """A 400 (505 for another SIP version) for bytes that start like a request; None
    when nothing can be answered (`refusal.py`). With `source`, where the request came
    from, its top Via says so (`received`, `rport`: `nat.stamp_via`), as every other
    answer's does: behind a NAT the client finds its mapping there."""
    answer = refusal(data, reason)
    if answer is None:
        return None
    if source is not None:
        nat.stamp_via(answer, source)
    return bytes(answer)


class Transport:
    """One way to send: `send(message, address)`. Subclasses say the protocol name."""

    name = "UDP"

    def send(self, message: Request | Response, address: Address) -> None:
        raise NotImplementedError

    @property
    def local(self) -> Address:
        raise NotImplementedError

    def keep_alive(self, address: Address) -> None:
        """Keeps the NAT mapping towards `address` open (`nat.py`); nothing by default."""

    def watch(self, lost: OnLost, failed: OnFailure) -> None:
        """`lost(address, exc)` is told when a connection we opened closes, `failed(address,
        exc)` when one cannot be made; connectionless transports have neither."""

    def unanswerable(self, address: Address, exc: Exception | None) -> Exception | None:
        """The failure for requests that went out on a connection to `address` that was
        lost (`exc`), when their answers cannot come any other way; None when they may
        (the peer opens a connection to our listener: RFC 3261 18.2.2)."""
        return None

    def close(self) -> None:
        raise NotImplementedError

    @functools.cached_property
    def log_limit(self) -> LogLimiter:
        """This transport's lines about what its peers sent, limited (`log_limit.py`)."""
        return LogLimiter(log)


class UdpTransport(Transport):
    """SIP over UDP on a socket of its own (`udp.UdpSocket`: drained on every wake-up
    where the loop has readers, an asyncio endpoint on Windows' proactor loop).

    asyncio's datagram transport reads one datagram per loop pass; when hundreds
    of answers arrive at once (every member of an alarm picking up) the kernel
    buffer overflows and answers are lost. So on a selector loop a reader takes
    up to `DRAIN_BATCH` datagrams per wake-up, and the buffer is enlarged.
    """

    name = "UDP"

    def __init__(self, receiver: Receiver, sock: socket.socket) -> None:
        self._receiver = receiver
        self._sock = sock
        # Rate per source and bounds on the head before parsing (issue 15, point 4).
        self.intake = Intake()
        self._udp = UdpSocket(
            sock, self.datagram_received, batch=DRAIN_BATCH, budget_s=DRAIN_BUDGET_S
        )
        self._closed = False
        self._local: Address | None = None

    @classmethod
    async def listen(cls, host: str, port: int, receiver: Receiver) -> UdpTransport:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            _enlarge_buffers(sock)
            sock.bind((host, port))
            transport = cls(receiver, sock)
        except BaseException:
            sock.close()
            raise
        await transport._udp.ready()
        return transport

    @property
    def local(self) -> Address:
        if self._local is None:  # asked for in every message: once is enough
            host, port = self._sock.getsockname()[:2]
            self._local = str(host), int(port)
        return self._local

    def datagram_received(self, data: bytes, address: Address) -> None:
        if not data.strip(b"\r\n"):
            return  # a keep-alive
        if not self.intake.admit(data, address):
            return
        try:
            message = parse(data)
        except SipParseError as exc:
            self.intake.malformed(address, str(exc))  # logged with the others, not each
            answer = bad_request(data, str(exc), address)
            if answer is not None:
                self._sendto(answer, address)
            return
        _deliver(self._receiver, message, address, self)

    def send(self, message: Request | Response, address: Address) -> None:
        if isinstance(message, Request) and message.learn_peer:
            self.intake.sent_request(address)  # its answers are a known peer's
        self._sendto(bytes(message), address)

    def keep_alive(self, address: Address) -> None:
        self._sendto(b"\r\n\r\n", address)  # RFC 5626's ping; SIP peers skip it

    def _sendto(self, data: bytes, address: Address) -> None:
        if self._closed:
            return
        try:
            self._udp.sendto(data, address)
        except (BlockingIOError, InterruptedError):
            # The send buffer is full: like a lost datagram, retransmission covers it.
            log.warning("SIP send buffer full; a datagram to %s:%d is dropped", *address)
        except OSError as exc:
            log.warning("sending to %s:%d failed: %r", *address, exc)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._udp.close()


def _enlarge_buffers(sock: socket.socket) -> None:
    """Room for an alarm's worth of answers. Linux caps SO_RCVBUF at net.core.rmem_max,
    which its SO_RCVBUFFORCE passes when the agent may (CAP_NET_ADMIN); other systems
    get the plain options only."""
    force = platforms.on_linux()
    for forced, plain in (
        (LINUX_SO_RCVBUFFORCE, socket.SO_RCVBUF),
        (LINUX_SO_SNDBUFFORCE, socket.SO_SNDBUF),
    ):
        if force:
            try:
                sock.setsockopt(socket.SOL_SOCKET, forced, BUFFER_BYTES)
                continue
            except OSError:
                pass  # not allowed: the plain option, capped
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, plain, BUFFER_BYTES)


class TcpTransport(Transport):
    """Listens for TCP and connects out on demand; one connection per peer, reused.

    Its `table` (stream_table.StreamTable) holds the connections, the limits on the
    ones others open to us (stream_limits.py), the strangers' rate and the budget per
    loop pass; a TLS transport shares all of it. Connections we open keep TCP's own
    keep-alive (tcp_options.py) and answer to `keep_alive` with an RFC 5626 ping;
    `on_lost` is told when one closes, `on_failure` when one cannot be made. The
    listener listens again if its socket closes under it (listener.py).
    """

    name = "TCP"

    def __init__(self, receiver: Receiver, limits: StreamLimits | None = None) -> None:
        self.receiver = receiver
        self.table = StreamTable(self.name, self._hand_up, bad_request, limits)
        self.streams: dict[Address, _Stream] = self.table.streams
        self.on_lost: list[OnLost] = self.table.on_lost
        self.on_failure: list[OnFailure] = []
        self._listener: Listener | None = None
        self._connecting: dict[Address, asyncio.Task[None]] = {}
        self._closed = False

    @classmethod
    async def listen(
        cls, host: str, port: int, receiver: Receiver, limits: StreamLimits | None = None
    ) -> TcpTransport:
        transport = cls(receiver, limits)
        transport.table.fit(asyncio.get_running_loop())
        # Each connection others open is admitted by the table, or refused.
        transport._listener = Listener(lambda: _Stream(transport.table, inbound=True), host)
        await transport._listener.open(port)
        return transport

    def _hand_up(self, message: Request | Response, peer: Address) -> None:
        _deliver(self.receiver, message, peer, self)

    @property
    def local(self) -> Address:
        assert self._listener is not None
        return self._listener.address

    def watch(self, lost: OnLost, failed: OnFailure) -> None:
        self.on_lost.append(lost)
        self.on_failure.append(failed)

    def learn(self, host: str) -> None:
        """`host` is the PBX's (another address its name resolves to): a peer."""
        self.table.learn(host)

    def trust(self, networks: Networks) -> None:
        """These networks are the PBX's (RUNDRUF_AGENT_SIP_PBX_ADDRESSES): peers."""
        self.table.trust(networks)

    def send(self, message: Request | Response, address: Address) -> None:
        if self._closed:
            return
        stream = self.streams.get(address)
        if stream is not None and stream.writer is not None and not stream.writer.is_closing():
            stream.write(bytes(message))
            return
        pending = self._connecting.get(address)
        self._connecting[address] = asyncio.create_task(self._connect(address, message, pending))

    def keep_alive(self, address: Address) -> None:
        """RFC 5626's ping on the open connection to `address` (never a new one); a
        peer that answered pings before and leaves this one unanswered is gone: the
        connection closes and `on_lost` is told (SipStream.ping)."""
        stream = self.streams.get(address)
        if stream is not None and not stream.inbound:
            stream.ping()

    async def _connect(
        self, address: Address, message: Request | Response, before: asyncio.Task[None] | None
    ) -> None:
        if before is not None:
            await asyncio.gather(before, return_exceptions=True)  # keep the order of sends
        stream = self.streams.get(address)
        if stream is None or stream.writer is None or stream.writer.is_closing():
            try:
                await self._open_connection(address)
            except (OSError, TimeoutError, SipError) as exc:
                if not self._closed:
                    self._connection_failed(address, exc)
                return
            stream = self.streams.get(address)
        if stream is not None and stream.writer is not None:
            stream.write(bytes(message))

    # The two hooks `tls.TlsTransport` replaces (TLS under the same streams).
    async def _open_connection(self, address: Address) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET6 if ":" in address[0] else socket.AF_INET)
        try:
            sock.setblocking(False)
            tcp_options.keep_alive(sock)
            # Bounded: a PBX that drops SYNs must not hold every later send for minutes.
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await loop.sock_connect(sock, address)
            await loop.create_connection(lambda: _Stream(self), sock=sock)
        except BaseException:
            sock.close()
            raise

    def _connection_failed(self, address: Address, exc: BaseException) -> None:
        self.table.log.log(
            logging.WARNING, "tcp-connect", "TCP connection to %s:%d failed: %r", *address, exc
        )
        failure = exc if isinstance(exc, Exception) else ConnectionError(str(exc))
        for listener in list(self.on_failure):  # the requests waiting for it fail now
            listener(address, failure)

    def close(self) -> None:
        self._closed = True
        for task in self._connecting.values():
            task.cancel()
        self.table.close()
        if self._listener is not None:
            self._listener.close()


def _deliver(
    receiver: Receiver, message: Request | Response, address: Address, via: Transport
) -> None:
    try:
        receiver(message, address, via)
    except SipParseError as exc:  # parsed, but malformed where the user agent looked
        via.log_limit.log(
            logging.WARNING,
            "sip-malformed-handled",
            "malformed SIP message from %s:%d: %s",
            *address,
            str(exc)[:200],
        )
        answer = _bad_request_to(message, str(exc))
        if answer is not None:
            nat.stamp_via(answer, address)  # as every answer of ours (UserAgent._reply)
            via.send(answer, address)
    except Exception:  # a bug in handling one message must not stop the transport
        if via.log_limit.allow("sip-handling-failed", logging.ERROR):
            log.exception("handling a SIP message from %s:%d failed", *address)


def _bad_request_to(message: Request | Response, reason: str) -> Response | None:
    """The 400 to a request (never an ACK) that the user agent could not read; None
    for responses and ACKs, or when even the fields an answer copies are missing."""
    if not isinstance(message, Request) or message.method == "ACK":
        return None
    try:
        return response_to(message, 400, bad_request_phrase(reason), new_tag())
    except SipParseError:
        return None

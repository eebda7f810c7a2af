"""SIP over a byte stream (TCP, TLS under it): framing, keep-alives, and the limits on
connections others open to us.

`StreamTable` is a transport's set of connections: it admits accepted ones (a total
cap for strangers, a cap per stranger's address, own places per peer we connected to),
counts what it refuses or closes, and logs through a `LogLimiter`. `SipStream` is one
connection's protocol. Connections we open (to the PBX, the registrar, a member) are
never refused, timed out or closed to make room; accepted ones must deliver complete
messages in time (see stream_limits.py). docs/decisions/sip-tcp-limits.md says why.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from edge_agent.sip.errors import SipParseError
from edge_agent.sip.log_limit import LogLimiter, limit_repeats
from edge_agent.sip.message import Request, Response, parse_stream
from edge_agent.sip.stream_limits import StreamLimits, descriptor_limit, source_key

if TYPE_CHECKING:
    from edge_agent.sip.transport import Address

log = logging.getLogger(__name__)

# asyncio's own lines when accept() fails (no descriptors left): logged on every retry.
ACCEPT_ERRORS = ("socket.accept() out of system resource", "Accept failed on a socket")
MAX_KNOWN_PEERS = 1024  # peers we connected to, remembered (oldest forgotten first)
_CRLFS = re.compile(rb"(?:\r\n)*")
PONG = b"\r\n"  # RFC 5626 3.5.1: a double CRLF is answered with one

Deliver = Callable[[Request | Response, "Address"], None]
Answer = Callable[[bytes, str, "Address"], bytes | None]


class StreamTable:
    """One transport's connections by peer address, and the rules for accepting them.

    `deliver(message, peer)` hands a message up; `answer(data, reason, peer)` makes
    the 400 for bytes from `peer` that do not parse (None: nothing to answer).
    `protocol` names the transport in the log ("TCP", "TLS").
    """

    def __init__(
        self,
        protocol: str,
        deliver: Deliver,
        answer: Answer,
        limits: StreamLimits | None = None,
    ) -> None:
        self.protocol = protocol
        self.deliver = deliver
        self.answer = answer
        self.limits = limits or StreamLimits()
        self.streams: dict[Address, SipStream] = {}
        self.log = LogLimiter(log)
        self._strangers: Counter[str] = Counter()  # accepted, by source_key
        self._peers: Counter[str] = Counter()  # accepted from known peers, by source_key
        self._stranger_total = 0
        self._known: OrderedDict[str, None] = OrderedDict()
        # What was refused or closed, and why: for the health report, tests and figures.
        self.dropped: Counter[str] = Counter()

    @property
    def inbound(self) -> int:
        """Accepted connections open now (strangers and peers)."""
        return self._stranger_total + self._peers.total()

    def fit(self, loop: asyncio.AbstractEventLoop) -> None:
        """Sizes the caps to the sockets this process may hold on `loop`, and limits
        asyncio's own accept-failure lines. Called by whoever listens."""
        self.limits = self.limits.fitted(descriptor_limit(loop))
        limit_repeats(logging.getLogger("asyncio"), ACCEPT_ERRORS)

    def accepting(self) -> SipStream:
        """The protocol factory for a server: each connection is admitted or refused."""
        return SipStream(self, inbound=True)

    def opening(self) -> SipStream:
        """The protocol factory for a connection we open."""
        return SipStream(self)

    def known(self, host: str) -> bool:
        return source_key(host) in self._known

    def learn(self, host: str) -> None:
        """A peer we connected to: its connections to us get the peers' places."""
        key = source_key(host)
        self._known[key] = None
        self._known.move_to_end(key)
        while len(self._known) > MAX_KNOWN_PEERS:
            self._known.popitem(last=False)

    def admit(self, stream: SipStream) -> bool:
        """Counts an accepted connection in, or says why not (the newest is refused:
        connections that already work are never closed to make room)."""
        host, port = stream.peer
        key = source_key(host)
        limits = self.limits
        counts, why = self._strangers, ""
        if key in self._known:
            counts = self._peers
            why = "peer-full" if counts[key] >= limits.max_per_peer else ""
        elif counts[key] >= limits.max_per_source:
            why = "source-full"
        elif self._stranger_total >= limits.max_inbound:
            why = "all-full"
        if why:
            self.dropped[why] += 1
            self.log.log(
                logging.WARNING,
                f"{self.protocol.lower()}-refused-{why}",
                "refused a %s connection from %s:%d (%s: %d open from there, %d from strangers)",
                self.protocol,
                host,
                port,
                why,
                counts[key],
                self._stranger_total,
            )
            return False
        counts[key] += 1
        if counts is self._strangers:
            self._stranger_total += 1
        stream.counted = (counts, key)
        self.log.log(
            logging.DEBUG,
            f"{self.protocol.lower()}-accepted",
            "accepted a %s connection from %s:%d",
            self.protocol,
            host,
            port,
        )
        return True

    def release(self, stream: SipStream) -> None:
        if stream.counted is not None:
            counts, key = stream.counted
            counts[key] -= 1
            if counts is self._strangers:
                self._stranger_total -= 1
            if counts[key] <= 0:
                del counts[key]
            stream.counted = None
        if self.streams.get(stream.peer) is stream:
            del self.streams[stream.peer]

    def closing(self, stream: SipStream, why: str, text: str) -> None:
        """Counts and logs (limited) a connection we close for breaking a rule."""
        self.dropped[why] += 1
        self.log.log(
            logging.WARNING,
            f"{self.protocol.lower()}-{why}",
            "closing the %s connection from %s:%d: %s",
            self.protocol,
            *stream.peer,
            text,
        )

    def close(self) -> None:
        for stream in list(self.streams.values()):
            stream.close()
        self.log.flush()


class StreamOwner(Protocol):
    """What `SipStream(owner)` needs of its transport (TcpTransport, TlsTransport)."""

    table: StreamTable


class SipStream(asyncio.Protocol):
    """One connection: SIP messages framed by Content-Length, keep-alives answered.

    Made with a `StreamTable` (or a transport that has one as `.table`); `inbound`
    connections are admitted by the table and held to its time and size limits.
    """

    def __init__(self, owner: StreamTable | StreamOwner, inbound: bool = False) -> None:
        self.owner = owner
        self.table = owner if isinstance(owner, StreamTable) else owner.table
        self.inbound = inbound
        self.writer: asyncio.Transport | None = None
        self.peer: Address = ("", 0)
        self.buffer = b""
        self.counted: tuple[Counter[str], str] | None = None
        self.refused = False
        self.peer_known = not inbound  # connections we open are ours
        self._last = 0.0  # when it opened or delivered its last message
        self._partial_since: float | None = None
        self._lone_crlf = False  # a CRLF at the end: maybe half of a keep-alive
        self._timer: asyncio.TimerHandle | None = None

    # ---------------------------------------------------------------- connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.writer = transport
        host, port = transport.get_extra_info("peername")[:2]
        self.peer = (str(host), int(port))
        table = self.table
        if self.inbound:
            if not table.admit(self):
                self.refused = True
                transport.abort()  # its descriptor is free at once; nothing to flush
                return
            self.peer_known = table.known(host)
            self._last = asyncio.get_running_loop().time()
            self._arm(self._deadline())
        else:
            table.learn(self.peer[0])
        table.streams[self.peer] = self

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.table.release(self)

    def write(self, data: bytes) -> None:
        """Sends on this connection; an accepted one that leaves too much unread is
        closed (a peer that sends requests and never reads the answers)."""
        writer = self.writer
        if writer is None or writer.is_closing():
            return
        writer.write(data)
        if self.inbound and writer.get_write_buffer_size() > self.table.limits.max_unread:
            self.table.closing(self, "unread", "it does not read what we send")
            writer.abort()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    # ---------------------------------------------------------------- bytes in

    def data_received(self, data: bytes) -> None:
        if self.refused or self.writer is None or self.writer.is_closing():
            return
        self.buffer += data
        while self.buffer:
            if not self._keep_alives():
                break
            try:
                message, self.buffer = parse_stream(self.buffer)
            except SipParseError as exc:
                self._malformed(str(exc))
                return
            if message is None:
                break
            self._partial_since = None
            if self.inbound:
                self._last = asyncio.get_running_loop().time()
            self.table.deliver(message, self.peer)
            if self.writer.is_closing():
                return  # closed while the message was handled
        self._check_partial()

    def _keep_alives(self) -> bool:
        """Takes the CRLFs off the buffer's start; a double one (RFC 5626 keep-alive)
        is answered with one CRLF, once per read. False when nothing else is left."""
        crlf_run = _CRLFS.match(self.buffer)  # always matches, perhaps nothing
        run = crlf_run.end() if crlf_run else 0
        if not run:
            self._lone_crlf = False
            return True
        crlfs = run // 2 + self._lone_crlf
        self.buffer = self.buffer[run:]
        if crlfs >= 2:
            self.write(PONG)
            if self.peer_known and self.inbound:
                self._last = asyncio.get_running_loop().time()
        # A CRLF alone at the end may be the first half of a keep-alive split in two.
        self._lone_crlf = not self.buffer and crlfs % 2 == 1
        return bool(self.buffer)

    def _malformed(self, reason: str) -> None:
        # A stream out of step cannot be resynchronised: answer if we can, then close.
        self.table.dropped["malformed"] += 1
        self.table.log.log(
            logging.WARNING,
            f"{self.table.protocol.lower()}-malformed",
            "malformed SIP on %s from %s:%d: %s",
            self.table.protocol,
            *self.peer,
            reason,
        )
        answer = self.table.answer(self.buffer, reason, self.peer)
        if answer is not None:
            self.write(answer)
        self.close()

    def _check_partial(self) -> None:
        """An unfinished message: bounded in bytes, and (accepted ones) in time."""
        if not self.buffer:
            self._partial_since = None
            return
        limits = self.table.limits
        bound = limits.max_partial_peer if self.peer_known else limits.max_partial
        if len(self.buffer) > bound:
            assert self.writer is not None
            self.table.closing(self, "too-large", f"more than {bound} bytes without a message")
            self.writer.abort()
            return
        if self._partial_since is None and self.inbound:
            self._partial_since = asyncio.get_running_loop().time()
            deadline = self._deadline()
            if self._timer is None or deadline < self._timer.when():
                self._arm(deadline)

    # ---------------------------------------------------------------- time

    def _deadline(self) -> float:
        """When an accepted connection is closed unless a message arrives first."""
        limits = self.table.limits
        deadline = self._last + (limits.peer_idle_s if self.peer_known else limits.message_s)
        if self._partial_since is not None:
            deadline = min(deadline, self._partial_since + limits.message_s)
        return deadline

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        # Messages move the deadline without touching the timer; it is looked at here.
        self._timer = None
        deadline = self._deadline()
        if asyncio.get_running_loop().time() < deadline:
            self._arm(deadline)
            return
        if self.writer is None or self.writer.is_closing():
            return
        if self._partial_since is not None:
            why, text = "slow", f"a message unfinished after {self.table.limits.message_s:g} s"
        else:
            idle = self.table.limits.peer_idle_s if self.peer_known else self.table.limits.message_s
            why, text = "idle", f"no message within {idle:g} s"
        self.table.closing(self, why, text)
        self.writer.abort()

"""SIP over a byte stream (TCP, TLS under it): framing, keep-alives, and the bounds on
what a connection may make the agent do.

`SipStream` is one connection's protocol; `StreamTable` (stream_table.py) the set of a
transport's connections and the rules for accepting them. Connections we open (to the
PBX, the registrar, a member) are never refused, timed out or closed to make room;
accepted ones must deliver complete messages in time (stream_limits.py). Every
message's head first passes the UDP intake's bounds on its shape (`intake.precheck`),
a stranger's message its rate (`Intake.stream_wait`: the stream stops reading until
its tokens are there), and all streams of a transport share a budget of time per loop
pass (stream_turns.py). A head is parsed once; its body is waited for by its length.
docs/decisions/sip-tcp-limits.md says why.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from typing import TYPE_CHECKING, Protocol

from edge_agent.sip.errors import SipParseError
from edge_agent.sip.intake import MAX_HEAD, MAX_LINE, cost, precheck, size_cost
from edge_agent.sip.message import Request, Response, parse_stream_head
from edge_agent.sip.peers import source_key
from edge_agent.sip.stream_table import ACCEPT_ERRORS, MAX_KNOWN_PEERS, StreamTable

if TYPE_CHECKING:
    from edge_agent.sip.transport import Address

__all__ = ["ACCEPT_ERRORS", "MAX_KNOWN_PEERS", "PING", "PONG", "SipStream", "StreamTable"]

log = logging.getLogger(__name__)

_CRLFS = re.compile(rb"(?:\r\n)*")
PING = b"\r\n\r\n"  # RFC 5626 3.5.1: a double CRLF ...
PONG = b"\r\n"  # ... is answered with one
# RFC 5626 4.4.1: a flow whose pong does not come within 10 s has failed.
PONG_TIMEOUT_S = 10.0


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
        self.source = ""  # the peer's host as the table keys it (a link-local one scoped)
        self.buffer = b""
        self.counted: tuple[Counter[str], str] | None = None
        self.refused = False
        self.peer_known = not inbound  # connections we open are ours
        # The head of the message being read: (message, where its body starts, length).
        self._head: tuple[Request | Response, int, int] | None = None
        self._paused = False  # reading stopped by us: for the next turn, or the rate
        self._resume: asyncio.TimerHandle | None = None  # the rate's wait
        self._last = 0.0  # when it opened or delivered its last message
        self._partial_since: float | None = None
        self._lone_crlf = False  # a CRLF at the end: maybe half of a keep-alive
        self._timer: asyncio.TimerHandle | None = None
        self._pong: asyncio.TimerHandle | None = None  # waiting for the answer to a ping
        self.pongs = False  # the peer has answered a ping of ours on this connection

    # ---------------------------------------------------------------- connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.writer = transport
        peername = transport.get_extra_info("peername")
        host, port = str(peername[0]), int(peername[1])
        self.peer = (host, port)
        # fe80::/64 is on every interface: its scope tells the hosts apart.
        scope = peername[3] if len(peername) > 3 else 0
        self.source = f"{host}%{scope}" if scope and "%" not in host else host
        table = self.table
        if self.inbound:
            if not table.admit(self):
                self.refused = True
                transport.abort()  # its descriptor is free at once; nothing to flush
                return
            self.peer_known = table.known(self.source)
            self._last = asyncio.get_running_loop().time()
            self._arm(self._deadline())
        else:
            table.learn(self.source)
        table.streams[self.peer] = self

    def connection_lost(self, exc: Exception | None) -> None:
        for handle in (self._timer, self._resume, self._pong):
            if handle is not None:
                handle.cancel()
        self._timer = self._resume = self._pong = None
        self.table.release(self)
        if not self.inbound and not self.refused:
            self.table.lost(self, exc)

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

    def ping(self) -> None:
        """RFC 5626 4.4.1's keep-alive on this connection: a peer that has answered one
        before and leaves this one unanswered for PONG_TIMEOUT_S is gone (rebooted, cut
        off): the connection is closed, and whoever waits on it told."""
        self.write(PING)
        if self._pong is None and self.writer is not None and not self.writer.is_closing():
            self._pong = asyncio.get_running_loop().call_later(PONG_TIMEOUT_S, self._no_pong)

    def _no_pong(self) -> None:
        self._pong = None
        if not self.pongs:  # it never answers pings: TCP's own keep-alive watches it
            return
        if self.writer is not None and not self.writer.is_closing():
            self.table.closing(self, "no-pong", "no answer to a keep-alive")
            self.writer.abort()

    # ---------------------------------------------------------------- bytes in

    def data_received(self, data: bytes) -> None:
        if self.refused or self.writer is None or self.writer.is_closing():
            return
        if self._pong is not None:  # anything from the peer: the connection is alive
            self._pong.cancel()
            self._pong = None
            self.pongs = self.pongs or data.startswith(PONG)
            if data == PONG and not self.buffer:  # our ping's answer, not half of theirs
                return
        self.buffer += data
        if not self._paused:
            self._work()

    def go_on(self) -> None:
        """Its turn (stream_turns.py) or its rate's wait is over: the buffer's messages."""
        self._resume = None
        if self.writer is not None and not self.writer.is_closing():
            self._work()

    def _work(self) -> None:
        """Hands up the buffer's complete messages, as far as the budget and (a
        stranger's) rate allow; stops reading while some are left."""
        writer = self.writer
        assert writer is not None
        table = self.table
        buffer, at = self.buffer, 0
        try:
            while True:
                at = self._keep_alives(buffer, at)
                if at >= len(buffer):
                    break
                if self._head is None:
                    end = buffer.find(b"\r\n\r\n", at, at + MAX_HEAD + 4)
                    why = _shape(buffer, at, end)
                    if why is not None:
                        self._refuse(why, min(len(buffer) - at, MAX_HEAD))
                        return
                    if end < 0:
                        break  # the head is still coming
                    if table.turns.spent():
                        self._hold()
                        table.turns.wait(self)
                        return
                    head = buffer[at:end]
                    if not self.peer_known and not self._paid(head):
                        return
                    try:
                        message, length = parse_stream_head(head)
                    except SipParseError as exc:
                        self._malformed(str(exc), buffer[at:])
                        return
                    self._head = (message, end + 4 - at, length)
                message, body, length = self._head
                if len(buffer) - at < body + length:
                    break  # the body is still coming: the head is not parsed again
                message.body = buffer[at + body : at + body + length]
                at += body + length
                self._head = None
                self._partial_since = None
                if self.inbound:
                    self._last = asyncio.get_running_loop().time()
                table.deliver(message, self.peer)
                if writer.is_closing():
                    return  # closed while the message was handled
        finally:
            self.buffer = buffer[at:]
        if self._paused:
            self._paused = False
            writer.resume_reading()
        self._check_partial()

    def _paid(self, head: bytes) -> bool:
        """A stranger's message pays its tokens (one, and one per KiB of its head); when
        they are short the stream stops reading until they are there (TCP pushes back
        on the sender)."""
        wait, why = self.table.intake.stream_wait(source_key(self.source), cost(head))
        if not wait:
            return True
        self.table.holding(self, why, wait)
        self._hold()
        self._resume = asyncio.get_running_loop().call_later(wait, self.go_on)
        return False

    def _hold(self) -> None:
        if not self._paused:
            self._paused = True
            assert self.writer is not None
            self.writer.pause_reading()

    def _keep_alives(self, buffer: bytes, at: int) -> int:
        """Skips the CRLFs at `at`; a double one (RFC 5626 keep-alive) is answered with
        one CRLF, once per run. Returns where the rest starts."""
        crlf_run = _CRLFS.match(buffer, at)  # always matches, perhaps nothing
        run = crlf_run.end() - at if crlf_run else 0
        if not run:
            self._lone_crlf = False
            return at
        crlfs = run // 2 + self._lone_crlf
        at += run
        if crlfs >= 2:
            self.write(PONG)
            if self.peer_known and self.inbound:
                self._last = asyncio.get_running_loop().time()
        # A CRLF alone at the end may be the first half of a keep-alive split in two.
        self._lone_crlf = at == len(buffer) and crlfs % 2 == 1
        return at

    def _refuse(self, why: str, looked_at: int) -> None:
        # A head out of bounds is not parsed, nor answered (a 400 would make a flood
        # ours); the stream cannot be resynchronised past it.
        assert self.writer is not None
        self._penalize(looked_at)
        self.table.closing(self, why, f"a message head out of bounds ({why})")
        self.writer.abort()

    def _penalize(self, looked_at: int) -> None:
        """A stranger that broke a rule pays for the bytes we looked at (intake.py)."""
        if not self.peer_known:
            self.table.intake.penalize(source_key(self.source), size_cost(looked_at))

    def _malformed(self, reason: str, data: bytes) -> None:
        # A stream out of step cannot be resynchronised: answer if we can, then close.
        self._penalize(min(len(data), MAX_HEAD))
        self.table.dropped["malformed"] += 1
        self.table.log.log(
            logging.WARNING,
            f"{self.table.protocol.lower()}-malformed",
            "malformed SIP on %s from %s:%d: %s",
            self.table.protocol,
            *self.peer,
            reason,
        )
        answer = self.table.answer(data, reason, self.peer)
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


def _shape(buffer: bytes, at: int, end: int) -> str | None:
    """The intake's bounds on the head at `at` (ending at `end`, -1 while it is still
    coming): None when it is within them so far."""
    if end >= 0:
        return precheck(buffer[at : end + 4])
    chunk = buffer[at : at + MAX_HEAD + 1]  # never more: a read's work stays bounded
    if b"\n" not in chunk and len(chunk) <= MAX_LINE:
        return None  # the start line is still coming
    return precheck(chunk)

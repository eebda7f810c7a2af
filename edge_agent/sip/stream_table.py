"""A transport's SIP stream connections (TCP, TLS under it): who may connect, who is a
peer, what was refused or closed, and the shared intake and turns.

`StreamTable` admits accepted connections (a total cap for strangers, a cap per
stranger's host, own places per peer), remembers the peers (every address we connected
to, every address the PBX's name resolves to, and the networks an installation names),
counts what it refuses, closes or holds back, and logs through a `LogLimiter`. Its
`intake` holds the strangers' rate (intake.py's buckets) and its `turns` the budget of
time per loop pass (stream_turns.py). docs/decisions/sip-tcp-limits.md says why.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

from edge_agent.sip.intake import Intake
from edge_agent.sip.log_limit import LogLimiter, limit_repeats
from edge_agent.sip.message import Request, Response
from edge_agent.sip.peers import Networks, peer_key, source_key, within
from edge_agent.sip.stream_limits import StreamLimits, descriptor_limit
from edge_agent.sip.stream_turns import Turns

if TYPE_CHECKING:
    from edge_agent.sip.stream import SipStream
    from edge_agent.sip.transport import Address

log = logging.getLogger(__name__)

# asyncio's own lines when accept() fails (no descriptors left): logged on every retry.
ACCEPT_ERRORS = ("socket.accept() out of system resource", "Accept failed on a socket")
MAX_KNOWN_PEERS = 1024  # peers we connected to, remembered (oldest forgotten first)
CONNECTION_COST = 1  # a stranger's tokens (intake.py) for each connection it opens

Deliver = Callable[[Request | Response, "Address"], None]
Answer = Callable[[bytes, str, "Address"], bytes | None]
# Told when a connection we opened closes (the exception, None for a plain close).
OnLost = Callable[["Address", Exception | None], None]


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
        # Strangers' messages pay tokens as datagrams do; peers are not limited by rate.
        self.intake = Intake()
        self.turns = Turns()
        self.on_lost: list[OnLost] = []
        self._strangers: Counter[str] = Counter()  # accepted, by source_key
        self._peers: Counter[str] = Counter()  # accepted from known peers, by peer_key
        self._stranger_total = 0
        self._known: OrderedDict[str, None] = OrderedDict()
        self._trusted: Networks = ()
        # What was refused or closed, and why: for the health report, tests and figures.
        self.dropped: Counter[str] = Counter()
        # Messages held back (the stream stopped reading for a while), and why.
        self.delayed: Counter[str] = Counter()

    @property
    def inbound(self) -> int:
        """Accepted connections open now (strangers and peers)."""
        return self._stranger_total + self._peers.total()

    def fit(self, loop: asyncio.AbstractEventLoop) -> None:
        """Sizes the caps to the sockets this process may hold on `loop`, and limits
        asyncio's own accept-failure lines. Called by whoever listens."""
        self.limits = self.limits.fitted(descriptor_limit(loop))
        limit_repeats(logging.getLogger("asyncio"), ACCEPT_ERRORS)

    def known(self, host: str) -> bool:
        """Whether `host` is a peer: exactly an address we connected to or learned, or
        in a network an installation named as the PBX's."""
        return peer_key(host) in self._known or (
            bool(self._trusted) and within(host, self._trusted)
        )

    def learn(self, host: str) -> None:
        """A peer (we connected to it, or the PBX's name resolves to it): its
        connections to us get the peers' places. By exact address: over IPv6 its /64
        neighbours stay strangers."""
        key = peer_key(host)
        self._known[key] = None
        self._known.move_to_end(key)
        while len(self._known) > MAX_KNOWN_PEERS:
            self._known.popitem(last=False)

    def trust(self, networks: Networks) -> None:
        """These networks (RUNDRUF_AGENT_SIP_PBX_ADDRESSES) are the PBX's: peers."""
        self._trusted = tuple(networks)

    def admit(self, stream: SipStream) -> bool:
        """Counts an accepted connection in, or says why not (the newest is refused:
        connections that already work are never closed to make room)."""
        host, port = stream.peer
        limits = self.limits
        counts, why = self._strangers, ""
        if self.known(stream.source):
            counts, key = self._peers, peer_key(stream.source)
            why = "peer-full" if counts[key] >= limits.max_per_peer else ""
        else:
            key = source_key(stream.source)
            if counts[key] >= limits.max_per_source:
                why = "source-full"
            elif self._stranger_total >= limits.max_inbound:
                why = "all-full"
            else:  # a token per connection: reconnecting fast is held to the rate too
                why = self.intake.pay(key, CONNECTION_COST) or ""
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
        self.turns.forget(stream)
        if self.streams.get(stream.peer) is stream:
            del self.streams[stream.peer]

    def lost(self, stream: SipStream, exc: Exception | None) -> None:
        """A connection we opened closed: whoever waits on it is told (`on_lost`)."""
        for listener in list(self.on_lost):
            try:
                listener(stream.peer, exc)
            except Exception:  # one listener's bug must not keep the others untold
                log.exception("a listener of a closed %s connection failed", self.protocol)

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

    def holding(self, stream: SipStream, why: str, seconds: float) -> None:
        """Counts and logs (limited) a stranger's stream held back by its rate."""
        self.delayed[why] += 1
        self.log.log(
            logging.INFO,
            f"{self.protocol.lower()}-{why}",
            "holding the %s connection from %s:%d back for %.0f ms (%s)",
            self.protocol,
            *stream.peer,
            1000 * seconds,
            why,
        )

    def close(self) -> None:
        self.on_lost.clear()  # closing them is ours: nobody to tell
        for stream in list(self.streams.values()):
            stream.close()
        self.log.flush()

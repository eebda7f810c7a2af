"""What a SIP datagram passes before it is parsed (issue 15, point 4).

A stranger sending 65 KB messages of short header lines 200 times a second made the
agent parse each one in full (about 10 ms of Python for a head of a thousand
name-addrs), so the event loop spent more than its time on them and a running call's
RTP stopped for up to 650 ms at a time. Now every datagram first passes:

1. its source's rate, unless the source is a known peer: the PBX the dialer is
   configured with (`trust`) and every address:port we sent a request to in the last
   `KNOWN_FOR_S` (`sent_request`; answers and in-dialog requests come from there).
   A stranger's datagram costs `cost(data)` tokens (one, and one more per KiB) from
   the bucket of its host (`STRANGER_RATE` a second, `STRANGER_BURST` at once) and
   from one bucket all strangers share (`STRANGERS_RATE`, `STRANGERS_BURST`), so that
   a flood from sprayed source addresses is bounded too. At most `MAX_SOURCES` hosts
   have a bucket, the least recently heard forgotten first, and at most `MAX_KNOWN`
   known addresses are kept: an attacker cannot grow either table.
2. `precheck`: a few searches over the bytes, done in C, that bound what the parser
   does with what passes: a first line that names SIP, the end of the head
   within `MAX_HEAD` bytes, at most `MAX_HEADER_LINES` header lines, none longer than
   `MAX_LINE`. A head within these bounds parses in about 3 ms at worst (16 KiB of
   URI parameters; a real PBX's answer in well under 0.1 ms).

What is refused is counted (`dropped`, by reason) and logged at most every
`LOG_EVERY_S`; so are messages that pass but do not parse (`malformed`). Nothing
refused here is answered: a 400 to a stranger's flood would only make it ours.
The bounds are far above what real peers send (PJSIP takes packets of 4,000 bytes
unless built otherwise; RFC 4475's longest valid message, longreq, is 3.5 KB). The
UDP transport also bounds the work per loop pass (`udp.UdpSocket`'s budget), so that
the RTP pacer never waits behind a burst.

SIP over TCP and TLS (stream.py) runs the same checks on each message's head: `precheck`
for everyone, and for strangers the same buckets, by the host's `source_key` (an IPv6
/64): a message waits (`stream_wait`: the stream stops reading) where a datagram would
be dropped, a new connection costs a token (`pay`), and one closed for breaking a rule
costs what was looked at (`penalize`), so that reconnecting to break it again is cheap
for no one but us.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable

from edge_agent.sip.peers import Networks, within

__all__ = ["Intake", "cost", "precheck", "size_cost"]

log = logging.getLogger(__name__)

Address = tuple[str, int]

MAX_HEAD = 16 * 1024  # the start line and the header fields, up to the empty line
MAX_LINE = 8 * 1024  # one line of the head (Apache's default is 8190 as well)
MAX_HEADER_LINES = 128  # header lines, folded continuation lines counted
STRANGER_RATE = 32.0  # tokens a second per stranger host: 32 small messages, or 2 of 16 KiB
STRANGER_BURST = 128.0  # at once: two datagrams of 64 KB, or 128 small ones
STRANGERS_RATE = 256.0  # tokens a second for all strangers together
STRANGERS_BURST = 1024.0
MAX_SOURCES = 1024  # stranger hosts with a bucket of their own
MAX_KNOWN = 4096  # addresses we sent a request to, remembered
KNOWN_FOR_S = 3600.0  # after the last request we sent there: longer than any call
LOG_EVERY_S = 10.0


def cost(data: bytes) -> int:
    """Tokens a datagram takes from a stranger's budget: one, and one per whole KiB."""
    return size_cost(len(data))


def size_cost(size: int) -> int:
    """`cost` of `size` bytes."""
    return 1 + size // 1024


def precheck(data: bytes) -> str | None:
    """None when `data` is in bounds for the parser, else the reason it is not."""
    first = data.find(b"\n", 0, MAX_LINE + 1)
    # Only that it names SIP: which version, and whether the rest is right, the parser
    # says (and answers, 505 to another version).
    if first < 0 or b"SIP/" not in data[:first].upper():
        return "start-line"
    end = data.find(b"\r\n\r\n", 0, MAX_HEAD + 4)
    if end < 0:
        end = data.find(b"\n\n", 0, MAX_HEAD + 2)
    if end < 0:
        if len(data) > MAX_HEAD:
            return "head-size"
        end = len(data)  # no end of the head: the parser says what is wrong, cheaply
    if data.count(b"\n", 0, end) > MAX_HEADER_LINES:
        return "header-lines"
    if end > MAX_LINE and any(len(line) > MAX_LINE for line in data[:end].split(b"\n")):
        return "line-length"
    return None


class _Bucket:
    """A token bucket's state: tokens left at time `at`."""

    __slots__ = ("at", "tokens")

    def __init__(self, tokens: float, at: float) -> None:
        self.tokens = tokens
        self.at = at

    def take(self, amount: float, now: float, rate: float, burst: float) -> bool:
        tokens = min(burst, self.tokens + (now - self.at) * rate)
        self.at = now
        if tokens < amount:
            self.tokens = tokens
            return False
        self.tokens = tokens - amount
        return True

    def short_s(self, amount: float, now: float, rate: float, burst: float) -> float:
        """Seconds until `amount` tokens are there (0: now); takes nothing."""
        tokens = min(burst, self.tokens + (now - self.at) * rate)
        return max(0.0, (min(amount, burst) - tokens) / rate)


class Intake:
    """The checks of one SIP socket (see the module text); `admit` says yes or no."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        stranger_rate: float = STRANGER_RATE,
        stranger_burst: float = STRANGER_BURST,
        strangers_rate: float = STRANGERS_RATE,
        strangers_burst: float = STRANGERS_BURST,
        max_sources: int = MAX_SOURCES,
        max_known: int = MAX_KNOWN,
        known_for_s: float = KNOWN_FOR_S,
    ) -> None:
        self._clock = clock
        self.stranger_rate, self.stranger_burst = stranger_rate, stranger_burst
        self.strangers_rate, self.strangers_burst = strangers_rate, strangers_burst
        self.max_sources = max_sources
        self.max_known = max_known
        self.known_for_s = known_for_s
        self.admitted = 0
        self.dropped: Counter[str] = Counter()  # by reason, since the start
        self._trusted: set[Address] = set()
        self._trusted_hosts: Networks = ()  # the PBX's other addresses, any port
        self._known: OrderedDict[Address, float] = OrderedDict()  # -> known until
        self._sources: OrderedDict[str, _Bucket] = OrderedDict()  # stranger host -> bucket
        self._strangers = _Bucket(strangers_burst, clock())
        self._logged_at = -LOG_EVERY_S
        self._logged_total = 0
        self._latest: tuple[str, Address] | None = None

    @property
    def sources(self) -> int:
        """Stranger hosts with a bucket now (at most `max_sources`)."""
        return len(self._sources)

    @property
    def known(self) -> int:
        """Addresses known from requests we sent (at most `max_known`)."""
        return len(self._known)

    def trust(self, address: Address) -> None:
        """`address` (the configured PBX) is never limited by rate."""
        self._trusted.add(address)

    def trust_hosts(self, networks: Networks) -> None:
        """Every port of these addresses (RUNDRUF_AGENT_SIP_PBX_ADDRESSES: the PBX's
        other nodes and interfaces) is never limited by rate."""
        self._trusted_hosts = tuple(networks)

    def sent_request(self, address: Address) -> None:
        """We sent a request to `address`: what comes from there is a known peer's."""
        known = self._known
        known[address] = self._clock() + self.known_for_s
        known.move_to_end(address)
        while len(known) > self.max_known:
            known.popitem(last=False)

    def is_known(self, address: Address) -> bool:
        if address in self._trusted:
            return True
        if self._trusted_hosts and within(address[0], self._trusted_hosts):
            return True
        until = self._known.get(address)
        if until is None:
            return False
        if until < self._clock():
            del self._known[address]
            return False
        return True

    def admit(self, data: bytes, source: Address) -> bool:
        """True when `data` from `source` may be parsed; counts and logs a refusal."""
        if not self.is_known(source):
            why = self._limit(source[0], cost(data))
            if why is not None:
                return self._drop(why, source)
        why = precheck(data)
        if why is not None:
            return self._drop(why, source)
        self.admitted += 1
        return True

    def stream_wait(self, host: str, amount: int) -> tuple[float, str]:
        """For a stranger's message on a stream (TCP, TLS): (0, "") when `amount` tokens
        were taken from `host`'s bucket and the strangers' one, else the seconds until
        both hold them and which one is short; nothing is taken then. A stream waits (it
        stops reading) where a datagram is dropped: TCP pushes back on the sender."""
        now = self._clock()
        bucket = self._bucket(host, now)
        own = bucket.short_s(amount, now, self.stranger_rate, self.stranger_burst)
        shared = self._strangers.short_s(amount, now, self.strangers_rate, self.strangers_burst)
        if own > 0.0 or shared > 0.0:
            return max(own, shared), "rate-source" if own >= shared else "rate-strangers"
        bucket.take(amount, now, self.stranger_rate, self.stranger_burst)
        self._strangers.take(amount, now, self.strangers_rate, self.strangers_burst)
        self.admitted += 1
        return 0.0, ""

    def pay(self, host: str, amount: int) -> str | None:
        """A stranger's `amount` tokens (a new stream connection: one), taken now: None,
        or the bucket that is short ("rate-source", "rate-strangers")."""
        return self._limit(host, amount)

    def penalize(self, host: str, amount: int) -> None:
        """A stranger broke a rule (a head out of bounds, bytes that do not parse): its
        bucket pays `amount` for the work, into debt down to minus its burst, so that a
        stranger reconnecting to break it again is refused at the door for a while."""
        now = self._clock()
        bucket = self._bucket(host, now)
        bucket.take(0, now, self.stranger_rate, self.stranger_burst)  # brought up to now
        bucket.tokens = max(-self.stranger_burst, bucket.tokens - amount)

    def malformed(self, source: Address, reason: str) -> None:
        """A datagram that passed but did not parse: counted, logged with the others."""
        self._drop("malformed", source, reason)

    def _bucket(self, host: str, now: float) -> _Bucket:
        sources = self._sources
        bucket = sources.get(host)
        if bucket is None:
            bucket = sources[host] = _Bucket(self.stranger_burst, now)
            while len(sources) > self.max_sources:
                sources.popitem(last=False)  # the least recently heard
        else:
            sources.move_to_end(host)
        return bucket

    def _limit(self, host: str, amount: int) -> str | None:
        now = self._clock()
        bucket = self._bucket(host, now)
        if not bucket.take(amount, now, self.stranger_rate, self.stranger_burst):
            return "rate-source"
        if not self._strangers.take(amount, now, self.strangers_rate, self.strangers_burst):
            return "rate-strangers"
        return None

    def _drop(self, why: str, source: Address, detail: str = "") -> bool:
        self.dropped[why] += 1
        self._latest = (why + (f" ({detail[:80]})" if detail else ""), source)
        now = self._clock()
        if now - self._logged_at >= LOG_EVERY_S:
            total = sum(self.dropped.values())
            latest, (host, port) = self._latest
            log.warning(
                "SIP: dropped %d datagrams since the last report (%d in all: %s); "
                "the latest from %s:%d: %s",
                total - self._logged_total,
                total,
                ", ".join(f"{n} {reason}" for reason, n in self.dropped.most_common()),
                host,
                port,
                latest,
            )
            self._logged_at, self._logged_total = now, total
        return False

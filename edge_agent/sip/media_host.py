"""The address an SDP `c=` line names, as an IP literal, looked up off the loop.

RFC 4566 lets `c=` carry a host name. Handing that name to ``sendto`` made the
socket module resolve it on the event loop for every 20 ms packet (a blocking
``getaddrinfo``); with a resolver that did not answer, one re-INVITE froze every
call and all SIP handling for minutes (issue 15, point 2). So a name is looked up
here, in a thread, and each offer waits for it at most `timeout_s`; whoever asked
refuses the offer (488) when that fails. IP literals never leave the loop.

A fan-out's answers mostly name one host (a cloud PBX's media relay), so:

- one lookup per name at a time: an offer naming a name already being looked up
  waits for that lookup instead of starting another (single flight);
- what a lookup gave is kept `ttl_s` (30 s), a failure `negative_ttl_s` (5 s), at
  most `max_cached` names;
- at most `max_lookups` names are looked up at once (one thread each); a further
  name waits for a free slot within its offer's own timeout, FIFO, and only when
  `max_waiting` names wait already is it refused at once. So an answered call fails
  only when its own name gives no address in time, never because other calls are
  resolving other names.

The threads are daemons: a lookup glibc keeps retrying after our timeout must not
hold up the agent's exit; it keeps its slot until it ends, so a peer naming hosts
nobody answers holds at most `max_lookups` threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from edge_agent.sip.errors import SdpError

__all__ = [
    "Lookup",
    "MediaHostResolver",
    "UnresolvableHost",
    "UnusableAddress",
    "is_ip_literal",
    "media_literal",
    "system_lookup",
]

# host, port, family (AF_INET or AF_INET6) -> one address of that family; blocking.
Lookup = Callable[[str, int, int], str]

LOOKUP_TIMEOUT_S = 2.0
MAX_LOOKUPS = 16  # names looked up at once (threads)
MAX_WAITING = 256  # names waiting for a free lookup slot
CACHE_TTL_S = 30.0  # getaddrinfo gives no DNS TTL: short, a relay may move
NEGATIVE_TTL_S = 5.0
MAX_CACHED = 256

_Key = tuple[str, int]  # the name in lower case, the address family


class UnresolvableHost(SdpError):
    """Raised when the host name of a `c=` line gives no address in time."""


class UnusableAddress(SdpError):
    """Raised for a `c=` address RTP cannot be sent to from the call's socket: another
    address family, a multicast or the broadcast address."""


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def media_literal(host: str, family: int) -> str | None:
    """`host` as the IP literal the call's socket of `family` sends RTP to; None for
    a host name. Raises UnusableAddress when no RTP can go there: an IPv6 address for
    an IPv4 socket (an IPv4-mapped one, ::ffff:a.b.c.d, is taken as its IPv4) or the
    other way round, a multicast or the limited broadcast address."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if family == socket.AF_INET and isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    wanted = 4 if family == socket.AF_INET else 6
    if ip.version != wanted:
        raise UnusableAddress(f"the media address {host[:60]} is not IPv{wanted} like ours")
    if ip.is_multicast or ip == ipaddress.IPv4Address("255.255.255.255"):
        raise UnusableAddress(f"the media address {host[:60]} is no unicast address")
    return str(ip)


def system_lookup(host: str, port: int, family: int) -> str:
    """The first address the system resolver gives for `host` (blocking)."""
    found = socket.getaddrinfo(host, port, family, socket.SOCK_DGRAM)
    if not found:
        raise OSError(f"no address for {host}")
    return str(found[0][4][0])


@dataclass
class _Lookup:
    """One name's lookup, running or waiting for a slot, and the offers waiting for it."""

    host: str
    port: int
    family: int
    waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[str]]] = field(
        default_factory=list
    )


class MediaHostResolver:
    """Looks host names up off the event loop, each offer waiting at most `timeout_s`.

    Shared by every call of the process and by any event loop: its state is guarded
    by a lock, and a lookup's outcome reaches each waiter on the waiter's loop."""

    def __init__(
        self,
        lookup: Lookup = system_lookup,
        *,
        timeout_s: float = LOOKUP_TIMEOUT_S,
        max_lookups: int = MAX_LOOKUPS,
        max_waiting: int = MAX_WAITING,
        ttl_s: float = CACHE_TTL_S,
        negative_ttl_s: float = NEGATIVE_TTL_S,
        max_cached: int = MAX_CACHED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup = lookup
        self.timeout_s = timeout_s
        self.max_lookups = max_lookups
        self.max_waiting = max_waiting
        self.ttl_s = ttl_s
        self.negative_ttl_s = negative_ttl_s
        self.max_cached = max_cached
        self._clock = clock
        self.started = 0  # lookups started since the start (each one thread)
        self._lock = threading.Lock()
        self._running: dict[_Key, _Lookup] = {}
        self._waiting: OrderedDict[_Key, _Lookup] = OrderedDict()
        # name -> (until when, the address or None for a failure, what failed)
        self._cache: OrderedDict[_Key, tuple[float, str | None, str]] = OrderedDict()

    @property
    def running(self) -> int:
        """Lookups running (also those nobody waits for any more)."""
        with self._lock:
            return len(self._running)

    @property
    def waiting(self) -> int:
        """Names waiting for a free lookup slot."""
        with self._lock:
            return len(self._waiting)

    @property
    def cached(self) -> int:
        """Names whose lookup's outcome is kept (some perhaps expired)."""
        with self._lock:
            return len(self._cache)

    async def resolve(self, host: str, port: int, family: int) -> str:
        """`host` as an IP literal of `family`; UnresolvableHost when it has none in time,
        UnusableAddress when it is one no RTP of ours can go to."""
        literal = media_literal(host, family)
        if literal is not None:
            return literal
        key = (host.lower(), family)
        loop = asyncio.get_running_loop()
        result: asyncio.Future[str] = loop.create_future()
        with self._lock:
            cached = self._cached(key)
            if cached is None:
                self._join(key, _Lookup(host, port, family), loop, result)
        if cached is not None:
            address, why = cached
            if address is None:
                raise UnresolvableHost(f"no address for {host[:60]}: {why}")
            return address
        try:
            async with asyncio.timeout(self.timeout_s):
                return await result
        except TimeoutError:
            raise UnresolvableHost(
                f"no address for {host[:60]} within {self.timeout_s:g} s"
            ) from None
        except OSError as exc:
            raise UnresolvableHost(f"no address for {host[:60]}: {exc}") from None
        finally:
            with self._lock:
                self._leave(key, result)

    # ------------------------------------------------------------ under the lock

    def _cached(self, key: _Key) -> tuple[str | None, str] | None:
        found = self._cache.get(key)
        if found is None:
            return None
        until, address, why = found
        if until <= self._clock():
            del self._cache[key]
            return None
        return address, why

    def _join(
        self,
        key: _Key,
        new: _Lookup,
        loop: asyncio.AbstractEventLoop,
        result: asyncio.Future[str],
    ) -> None:
        lookup = self._running.get(key) or self._waiting.get(key)
        if lookup is not None:  # single flight: the lookup of this name already asked
            lookup.waiters.append((loop, result))
        elif len(self._running) < self.max_lookups:
            new.waiters.append((loop, result))
            self._start(key, new)
        elif len(self._waiting) < self.max_waiting:
            new.waiters.append((loop, result))
            self._waiting[key] = new
        else:
            raise UnresolvableHost(
                f"cannot look up {new.host[:60]}: {len(self._waiting)} other host names"
                " wait for a lookup"
            )

    def _leave(self, key: _Key, result: asyncio.Future[str]) -> None:
        """`result`'s offer waits no more: a waiting name nobody wants is dropped (a
        running lookup cannot be stopped; it ends by itself)."""
        lookup = self._running.get(key) or self._waiting.get(key)
        if lookup is None:
            return
        lookup.waiters = [w for w in lookup.waiters if w[1] is not result]
        if not lookup.waiters and self._waiting.get(key) is lookup:
            del self._waiting[key]

    def _start(self, key: _Key, lookup: _Lookup) -> None:
        thread = threading.Thread(target=self._run, args=(key, lookup), daemon=True)
        self._running[key] = lookup
        try:
            thread.start()
        except RuntimeError as exc:  # no thread left: this name fails, the next may not
            del self._running[key]
            _settle_all(lookup.waiters, OSError(f"cannot start a lookup: {exc}"))
            lookup.waiters = []
            return
        self.started += 1

    def _remember(self, key: _Key, outcome: str | BaseException) -> None:
        now = self._clock()
        if isinstance(outcome, BaseException):
            self._cache[key] = (now + self.negative_ttl_s, None, str(outcome)[:200])
        else:
            self._cache[key] = (now + self.ttl_s, outcome, "")
        self._cache.move_to_end(key)
        while len(self._cache) > self.max_cached:
            self._cache.popitem(last=False)

    def _start_waiting(self) -> None:
        while self._waiting and len(self._running) < self.max_lookups:
            key, lookup = self._waiting.popitem(last=False)
            if lookup.waiters:
                self._start(key, lookup)

    # ------------------------------------------------------------ in the lookup's thread

    def _run(self, key: _Key, lookup: _Lookup) -> None:
        outcome: str | BaseException
        try:
            address = self._lookup(lookup.host, lookup.port, lookup.family)
            literal = media_literal(address, lookup.family)
            if literal is None:
                raise OSError(f"the lookup of {lookup.host[:60]} gave no IP address")
            outcome = literal
        except Exception as exc:  # handed to the waiters as the lookup's outcome
            outcome = exc
        with self._lock:
            if self._running.get(key) is lookup:
                del self._running[key]
            self._remember(key, outcome)
            waiters, lookup.waiters = lookup.waiters, []
            self._start_waiting()
        _settle_all(waiters, outcome)


def _settle_all(
    waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[str]]],
    outcome: str | BaseException,
) -> None:
    for loop, result in waiters:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(_settle, result, outcome)


def _settle(result: asyncio.Future[str], outcome: str | BaseException) -> None:
    if result.done():  # timed out and cancelled meanwhile
        return
    if isinstance(outcome, BaseException):
        result.set_exception(outcome if isinstance(outcome, OSError) else OSError(str(outcome)))
    else:
        result.set_result(outcome)


# The agent's one resolver: lookups, their cache and their bound are the whole process's.
default_resolver = MediaHostResolver()

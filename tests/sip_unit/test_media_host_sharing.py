"""How c= host lookups are shared (issue 15, point 2): a fan-out whose answers all name
one host asks for it once; what a lookup gave is kept a short while, a failure a
shorter one; the bound is on names looked up at once, not on offers, and a name
beyond it waits for a slot instead of failing; memory stays bounded. And which
addresses no RTP of ours can reach (point 8 of the review: another family)."""

from __future__ import annotations

import asyncio
import functools
import socket
import threading
import time
from collections import Counter

import pytest

from edge_agent.sip.media_host import (
    MediaHostResolver,
    UnresolvableHost,
    UnusableAddress,
    media_literal,
)
from tests.sip_unit.dns_server import SilentDnsServer, query

V4 = socket.AF_INET


class Lookups:
    """A blocking lookup that counts what it is asked and answers after `delay_s`;
    names in `silent` are never answered (until `release`)."""

    def __init__(self, delay_s: float = 0.1, silent: tuple[str, ...] = ()) -> None:
        self.delay_s = delay_s
        self.silent = set(silent)
        self.asked: Counter[str] = Counter()
        self.threads: set[int] = set()
        self._lock = threading.Lock()
        self._release = threading.Event()
        self.fail: set[str] = set()

    def __call__(self, host: str, port: int, family: int) -> str:
        with self._lock:
            self.asked[host] += 1
            self.threads.add(threading.get_ident())
        if host in self.silent:
            self._release.wait(30)
            raise OSError("released")
        time.sleep(self.delay_s)
        if host in self.fail:
            raise OSError("Name or service not known")
        return "127.0.0.7"

    def release(self) -> None:
        self._release.set()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_thirty_answers_naming_one_host_share_one_lookup():
    # b1_dns_fanout.py 30 0.1: before, 8 got the address and 22 "too many lookups pending".
    lookups = Lookups(delay_s=0.1)
    resolver = MediaHostResolver(lookups, timeout_s=2.0)
    got = await asyncio.gather(
        *(resolver.resolve("media.pbx.example", 40000 + n, V4) for n in range(30)),
        return_exceptions=True,
    )
    assert got == ["127.0.0.7"] * 30
    assert lookups.asked == {"media.pbx.example": 1}
    assert resolver.started == 1


async def test_what_a_lookup_gave_is_kept_a_short_while():
    lookups, clock = Lookups(delay_s=0), Clock()
    resolver = MediaHostResolver(lookups, ttl_s=30, clock=clock)
    assert await resolver.resolve("media.pbx.example", 4000, V4) == "127.0.0.7"
    clock.now += 29
    assert await resolver.resolve("MEDIA.pbx.example", 4002, V4) == "127.0.0.7"
    assert sum(lookups.asked.values()) == 1  # kept (names are case-blind): no lookup
    clock.now += 2
    assert await resolver.resolve("media.pbx.example", 4000, V4) == "127.0.0.7"
    assert sum(lookups.asked.values()) == 2  # expired: asked again


async def test_a_failed_lookup_is_kept_briefly_and_then_asked_again():
    lookups, clock = Lookups(delay_s=0), Clock()
    lookups.fail.add("gone.example")
    resolver = MediaHostResolver(lookups, negative_ttl_s=5, clock=clock)
    with pytest.raises(UnresolvableHost, match="Name or service not known"):
        await resolver.resolve("gone.example", 4000, V4)
    with pytest.raises(UnresolvableHost, match="Name or service not known"):
        await resolver.resolve("gone.example", 4000, V4)  # at once, from what was kept
    assert lookups.asked["gone.example"] == 1
    clock.now += 5.5
    lookups.fail.clear()
    assert await resolver.resolve("gone.example", 4000, V4) == "127.0.0.7"
    assert lookups.asked["gone.example"] == 2


async def test_a_name_nobody_answers_fails_only_its_own_offers():
    # b1_dns_fanout.py 10 0 silent-first: before, 8 offers of a dead name left every
    # later offer refused at once ("too many lookups pending").
    lookups = Lookups(delay_s=0.05, silent=("dead.pbx.example",))
    resolver = MediaHostResolver(lookups, timeout_s=0.5)
    try:
        dead = [
            asyncio.ensure_future(resolver.resolve("dead.pbx.example", 4000, V4)) for _ in range(8)
        ]
        await asyncio.sleep(0.05)
        live = await asyncio.gather(
            *(resolver.resolve("media.pbx.example", 5000 + n, V4) for n in range(10))
        )
        assert live == ["127.0.0.7"] * 10
        failed = await asyncio.gather(*dead, return_exceptions=True)
        assert all(isinstance(f, UnresolvableHost) and "within 0.5 s" in str(f) for f in failed)
        assert lookups.asked == {"dead.pbx.example": 1, "media.pbx.example": 1}
    finally:
        lookups.release()


async def test_beyond_the_bound_of_names_an_offer_waits_for_a_slot_and_gets_its_address():
    lookups = Lookups(delay_s=0.2)
    resolver = MediaHostResolver(lookups, timeout_s=2.0, max_lookups=1)
    started = time.monotonic()
    got = await asyncio.gather(
        resolver.resolve("a.example", 4000, V4),
        resolver.resolve("b.example", 4000, V4),
        resolver.resolve("a.example", 4002, V4),
    )
    assert got == ["127.0.0.7"] * 3
    assert time.monotonic() - started >= 0.35  # one after the other: one slot
    assert lookups.asked == {"a.example": 1, "b.example": 1}
    assert len(lookups.threads) == 2


async def test_only_beyond_the_waiting_bound_is_a_name_refused_at_once():
    lookups = Lookups(silent=("a.example", "b.example"))
    resolver = MediaHostResolver(lookups, timeout_s=0.3, max_lookups=1, max_waiting=1)
    try:
        first = asyncio.ensure_future(resolver.resolve("a.example", 4000, V4))
        second = asyncio.ensure_future(resolver.resolve("b.example", 4000, V4))
        await asyncio.sleep(0.05)
        at = time.monotonic()
        with pytest.raises(UnresolvableHost, match="other host names wait"):
            await resolver.resolve("c.example", 4000, V4)
        assert time.monotonic() - at < 0.1
        # The waiting name whose offer gave up is dropped: it holds no slot and no memory.
        for made in (first, second):
            with pytest.raises(UnresolvableHost, match=r"within 0\.3 s"):
                await made
        assert lookups.asked == {"a.example": 1}
        assert resolver.waiting == 0
        assert resolver.running == 1  # the silent lookup runs on in its thread
    finally:
        lookups.release()
    for _ in range(50):
        if resolver.running == 0:
            break
        await asyncio.sleep(0.02)
    assert resolver.running == 0


async def test_what_is_kept_is_bounded():
    lookups = Lookups(delay_s=0)
    resolver = MediaHostResolver(lookups, max_cached=3)
    for n in range(10):
        await resolver.resolve(f"host{n}.example", 4000, V4)
    assert resolver.cached == 3
    await resolver.resolve("host9.example", 4000, V4)  # the newest is kept
    assert lookups.asked["host9.example"] == 1


async def test_a_name_nobody_answers_on_a_real_dns_server_is_asked_once() -> None:
    server = SilentDnsServer()
    try:
        resolver = MediaHostResolver(functools.partial(_ask, server.address), timeout_s=0.3)
        results = await asyncio.gather(
            *(resolver.resolve("media.pbx.example", 4000, V4) for _ in range(20)),
            return_exceptions=True,
        )
        assert all(isinstance(r, UnresolvableHost) for r in results)
        await asyncio.sleep(0.05)
        assert server.names == ["media.pbx.example"]
    finally:
        server.close()


def _ask(server: tuple[str, int], host: str, port: int, family: int) -> str:
    return query(server, host, wait_s=1.0)


def test_an_address_of_the_other_family_or_no_unicast_one_is_unusable():
    assert media_literal("media.pbx.example", V4) is None  # a name: looked up
    assert media_literal("127.0.0.1", V4) == "127.0.0.1"
    assert media_literal("::ffff:127.0.0.1", V4) == "127.0.0.1"  # IPv4-mapped
    assert media_literal("::1", socket.AF_INET6) == "::1"
    for address, family in [
        ("::1", V4),
        ("127.0.0.1", socket.AF_INET6),
        ("224.0.0.1", V4),
        ("255.255.255.255", V4),
        ("ff02::1", socket.AF_INET6),
    ]:
        with pytest.raises(UnusableAddress):
            media_literal(address, family)


async def test_a_lookup_giving_an_address_of_the_other_family_fails():
    resolver = MediaHostResolver(lambda host, port, family: "::1")
    with pytest.raises(UnresolvableHost, match="not IPv4"):
        await resolver.resolve("media.pbx.example", 4000, V4)

"""The stream limits' own parts: whose connection it is, the caps sized to the
descriptors (the Windows branch too), and a silent peer's time (shortened). What the
limits do to connections is tested through the public transport API alone in
test_stream_places.py."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import pytest

from edge_agent import platforms
from edge_agent.sip.stream import StreamTable
from edge_agent.sip.stream_limits import (
    WINDOWS_SELECT_MAX,
    StreamLimits,
    descriptor_limit,
    source_key,
)
from edge_agent.sip.transport import TcpTransport
from tests.sip_unit.test_stream_places import Pbx, ask
from tests.sip_unit.test_tcp_limits import Answering, closed_within, connect

HOST = "127.0.0.1"


def test_source_key_groups_what_one_host_holds() -> None:
    assert source_key("192.0.2.7") == "192.0.2.7"
    assert source_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert source_key("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert source_key("2001:db8:1:2:ffff::9%eth0") == "2001:db8:1:2::/64"
    assert source_key("2001:db8:1:3::1") == "2001:db8:1:3::/64"
    assert source_key("not an address") == "not an address"


def test_a_link_local_source_keeps_its_interface() -> None:
    # fe80::/64 is on every interface: hosts on two LANs are not one source.
    assert source_key("fe80::1%2") == "fe80::/64%2"
    assert source_key("fe80::9%2") == "fe80::/64%2"
    assert source_key("fe80::1%3") == "fe80::/64%3"


def ignore(*args: object) -> None:
    """Neither hands up nor answers anything."""


def test_a_peer_is_its_exact_address_its_neighbours_stay_strangers() -> None:
    # The outside review: every host in the PBX's IPv6 /64 got the PBX's places, and a
    # neighbour held all 32 with keep-alives, locking the PBX out.
    table = StreamTable("TCP", ignore, ignore)
    table.learn("2001:db8:1:2::1")
    table.learn("::ffff:192.0.2.7")
    table.learn("fe80::1%2")
    assert table.known("2001:db8:1:2::1")
    assert table.known("2001:db8:1:2:0:0:0:1")  # the same address written otherwise
    assert not table.known("2001:db8:1:2::2")
    assert table.known("192.0.2.7")
    assert not table.known("192.0.2.8")
    assert table.known("fe80::1%2")
    assert not table.known("fe80::1%3")  # the same address on another LAN
    assert not table.known("fe80::2%2")


def test_caps_take_a_quarter_of_the_descriptors_at_most() -> None:
    limits = StreamLimits()
    assert limits.fitted(None) == limits
    assert limits.fitted(20_000) == limits
    assert limits.fitted(1024).max_inbound == 256
    small = limits.fitted(256)  # macOS's default soft limit
    assert (small.max_inbound, small.max_per_source, small.max_per_peer) == (64, 8, 32)
    tiny = limits.fitted(20)
    assert (tiny.max_inbound, tiny.max_per_source, tiny.max_per_peer) == (16, 8, 16)


@pytest.mark.skipif(not platforms.on_linux(), reason="RLIMIT_NOFILE is read on POSIX")
async def test_the_descriptor_limit_is_the_soft_rlimit_on_posix() -> None:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert descriptor_limit(asyncio.get_running_loop()) == soft


async def test_on_windows_the_limit_is_selects_or_none_and_resource_is_never_loaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(platforms, "on_windows", lambda: True)
    monkeypatch.setitem(sys.modules, "resource", None)  # importing it would raise
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(platforms, "loop_has_readers", lambda loop: True)
    assert descriptor_limit(loop) == WINDOWS_SELECT_MAX  # a selector loop: select()
    monkeypatch.setattr(platforms, "loop_has_readers", lambda loop: False)
    assert descriptor_limit(loop) is None  # the proactor loop: handles, no table
    # Listening there keeps the configured caps.
    transport = await TcpTransport.listen(HOST, 0, Answering())
    try:
        assert transport.table.limits == StreamLimits()
    finally:
        transport.close()


@pytest.fixture
async def pbx() -> AsyncIterator[Pbx]:
    pbx = Pbx()
    yield pbx
    pbx.close()
    await asyncio.sleep(0.05)


async def test_a_silent_peers_connection_is_closed_after_its_own_time(pbx: Pbx) -> None:
    # The peer's 120 s, shortened: the one test here that needs its own limits.
    pbx_address = await pbx.start()
    limits = StreamLimits(message_s=0.5, peer_idle_s=1.0)
    transport = await TcpTransport.listen(HOST, 0, Answering(), limits)
    try:
        transport.send(ask(), pbx_address)
        await asyncio.sleep(0.1)
        reader, writer = await connect(transport.local[1], HOST)
        assert not await closed_within(reader, 0.7)  # longer than a stranger's 0.5 s
        assert await closed_within(reader, 1.0)
        assert transport.table.dropped["idle"] == 1
        writer.close()
    finally:
        transport.close()

"""The PBX is a peer at every address it speaks from (the outside review of issue 15,
point 4): before, only the address of our own outbound connection was learned, so a
PBX whose connections come from another of its addresses (a cluster's node, a second
network card, the other address family) was a stranger: 8 connections at most, 5 s to
a message, its messages held to a stranger's rate.

Now every address the PBX's name resolves to is a peer from the start, and so is every
address in RUNDRUF_AGENT_SIP_PBX_ADDRESSES, for the TCP places and the UDP intake alike.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from edge_agent.dialer import make_dialer
from edge_agent.dialer.sip import SipDialer
from edge_agent.settings import AgentSettings
from edge_agent.sip.transport import TcpTransport
from edge_agent.sip.ua import Account
from tests.agent.test_dialer_sip_flood import Answered, options
from tests.sip_unit.test_tcp_limits import closed_within, connect
from tests.sip_unit.test_tcp_limits import options as tcp_options

HOST = "127.0.0.1"
NODE = "127.0.0.200"  # the PBX's other address: its connections come from there
PER_SOURCE = 8  # a stranger's connections at most (stream_limits.MAX_PER_SOURCE)


class AnsweredAt(Answered):
    """`Answered` (counts the 200s it gets) on another loopback address."""

    def __init__(self, host: str) -> None:
        super().__init__()
        asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setblocking(False)
        self.address = self.sock.getsockname()
        self._loop.add_reader(self.sock.fileno(), self._read)


async def connections_kept(port: int, source: str, count: int) -> list[bool]:
    """Opens `count` connections from `source`; which the agent keeps (not closed in
    0.5 s). The last one sends an OPTIONS and must get its 200."""
    held = [await connect(port, source) for _ in range(count)]
    try:
        reader, writer = held[-1]
        kept = [
            not closed for closed in await asyncio.gather(*(closed_within(r, 0.5) for r, _ in held))
        ]
        if kept[-1]:
            writer.write(tcp_options(30))
            answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
            assert answer.startswith(b"SIP/2.0 200 ")
        return kept
    finally:
        for _, writer in held:
            writer.close()


@pytest.fixture
async def closing() -> AsyncIterator[list[SipDialer]]:
    dialers: list[SipDialer] = []
    yield dialers
    for dialer in dialers:
        await dialer.close()


async def test_every_address_the_pbxs_name_resolves_to_is_a_peer(
    monkeypatch: pytest.MonkeyPatch, closing: list[SipDialer]
) -> None:
    loop = asyncio.get_running_loop()

    async def cluster(host: str, port: int, **kwargs: Any) -> list[Any]:
        assert host == "pbx.example.test"
        return [
            (socket.AF_INET, socket.SOCK_DGRAM, 17, "", (address, port)) for address in (HOST, NODE)
        ]

    monkeypatch.setattr(loop, "getaddrinfo", cluster)
    account = Account("Rundruf", "s", "pbx.example.test", ("pbx.example.test", 9), register=False)
    dialer = SipDialer(account, proxy=False, transport="TCP")
    closing.append(dialer)
    await dialer.start()
    assert dialer.account.server == (HOST, 9)  # requests go to the first
    assert dialer.ua is not None
    # The second node opens more connections than a stranger may: all are kept.
    kept = await connections_kept(dialer.ua.transport.local[1], NODE, PER_SOURCE + 4)
    assert kept == [True] * (PER_SOURCE + 4)  # before: the 9th and later refused


async def test_a_configured_pbx_address_is_a_peer_over_tcp(closing: list[SipDialer]) -> None:
    from edge_agent.sip.peers import parse_networks  # what the setting brought

    account = Account("Rundruf", "s", HOST, (HOST, 9), register=False)
    dialer = SipDialer(account, proxy=False, transport="TCP", pbx_addresses=parse_networks(NODE))
    closing.append(dialer)
    await dialer.start()
    assert dialer.ua is not None
    transport = dialer.ua.transport
    assert isinstance(transport, TcpTransport)
    port = transport.local[1]
    assert await connections_kept(port, NODE, PER_SOURCE + 4) == [True] * (PER_SOURCE + 4)
    # Another address stays a stranger.
    kept = await connections_kept(port, "127.0.0.201", PER_SOURCE + 1)
    assert kept == [True] * PER_SOURCE + [False]


async def test_a_configured_pbx_network_is_never_limited_by_rate_over_udp(
    closing: list[SipDialer],
) -> None:
    # 300 OPTIONS at once from the PBX's other node, from any port: every one answered.
    from edge_agent.sip.peers import parse_networks  # what the setting brought

    node = AnsweredAt(NODE)
    stranger = AnsweredAt("127.0.0.220")  # outside the /28
    account = Account("Rundruf", "s", HOST, (HOST, 9), register=False)
    dialer = SipDialer(account, pbx_addresses=parse_networks("127.0.0.192/28"))
    closing.append(dialer)
    try:
        await dialer.start()
        assert dialer.ua is not None
        to = dialer.ua.transport.local
        for n in range(300):
            for peer in (node, stranger):
                peer.sock.sendto(options(n, peer.address), to)
            if n % 50 == 49:
                await asyncio.sleep(0.01)
        for _ in range(100):
            if node.count == 300:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
    finally:
        node.close()
        stranger.close()
    assert node.count == 300
    assert stranger.count < 300  # a stranger is held to its rate


def test_the_setting_takes_addresses_and_networks_and_refuses_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {
        "PBX": "sim",
        "DIALER": "sip",
        "SIP_PBX_ADDRESSES": "192.0.2.11, 2001:db8:5::/64,::ffff:198.51.100.0/120",
    }.items():
        monkeypatch.setenv(f"RUNDRUF_AGENT_{name}", value)
    dialer = make_dialer(AgentSettings())  # type: ignore[call-arg]
    assert isinstance(dialer, SipDialer)
    assert [str(n) for n in dialer.pbx_addresses] == [
        "192.0.2.11/32",
        "2001:db8:5::/64",
        "198.51.100.0/24",  # an IPv4 network written in IPv6: compared as IPv4
    ]
    for wrong, why in {
        "pbx.example.test": "is no IP address or network",
        "10.0.0.0/8": "is wider than /16",
        "2001:db8::/32": "is wider than /48",
        ",".join(f"192.0.2.{n}" for n in range(40)): "at most 32",
    }.items():
        monkeypatch.setenv("RUNDRUF_AGENT_SIP_PBX_ADDRESSES", wrong)
        with pytest.raises(ValueError, match=why):
            AgentSettings()  # type: ignore[call-arg]

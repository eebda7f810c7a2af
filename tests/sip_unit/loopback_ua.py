"""The user agent under test on a UDP socket of 127.0.0.1, as most SIP unit tests make it."""

from __future__ import annotations

from edge_agent.sip.transport import UdpTransport
from edge_agent.sip.ua import Account, UserAgent

HOST = "127.0.0.1"


async def loopback_ua(server: tuple[str, int]) -> tuple[UserAgent, UdpTransport]:
    """A user agent (account "Rundruf", not registering, `server` its PBX) listening on a
    free UDP port of 127.0.0.1, and that transport."""
    holder: list[UserAgent] = []
    transport = await UdpTransport.listen(HOST, 0, lambda m, s, t: holder[0].receive(m, s, t))
    ua = UserAgent(Account("Rundruf", "pw", HOST, server, register=False), transport)
    holder.append(ua)
    return ua, transport

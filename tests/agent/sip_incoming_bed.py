"""The agent's user agent taking calls (issue 16) on loopback, for SIPp callers: a router
of known numbers whose handler the test writes, over UDP or TCP."""

from __future__ import annotations

import math
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from edge_agent.ivr.port import CallerLine
from edge_agent.sip.incoming import Accept, IncomingCalls, IncomingInvite, Refuse
from edge_agent.sip.transport import TcpTransport, Transport, UdpTransport
from edge_agent.sip.ua import Account, UserAgent
from tests.sip.bed import SippUac
from tests.sip.trigger_caller import TriggerCaller

HOST = "127.0.0.1"


@dataclass
class Numbers:
    """Routes the numbers it knows to `handler`; 480 while not `configured`."""

    handler: Callable[[CallerLine], Awaitable[None]]
    known: tuple[str, ...] = ("299",)
    configured: bool = True
    ring_s: float = 0.0
    invites: list[IncomingInvite] = field(default_factory=list)

    def route(self, invite: IncomingInvite) -> Refuse | Accept:
        self.invites.append(invite)
        if not self.configured:
            return Refuse.not_configured()
        if any(number in self.known for number in invite.called):
            return Accept(self.handler, ring_s=self.ring_s)
        return Refuse.unknown_number()


@asynccontextmanager
async def answering_ua(
    router: Numbers, transport: str = "udp", **options: object
) -> AsyncIterator[UserAgent]:
    """A user agent on a free port of 127.0.0.1 taking calls through `router`."""
    holder: list[UserAgent] = []

    def receive(message: object, source: tuple[str, int], via: Transport) -> None:
        holder[0].receive(message, source, via)  # type: ignore[arg-type]

    made: Transport
    if transport == "tcp":
        made = await TcpTransport.listen(HOST, 0, receive)
    else:
        made = await UdpTransport.listen(HOST, 0, receive)
    ua = UserAgent(Account("Rundruf", "pw", HOST, (HOST, 9), register=False), made)
    holder.append(ua)
    ua.incoming = IncomingCalls(ua, router, **options)  # type: ignore[arg-type]
    try:
        yield ua
    finally:
        await ua.close()


def dial_agent(
    caller: TriggerCaller,
    tmp_path: Path,
    port: int,
    *,
    number: str = "299",
    transport: str = "udp",
    timeout: float = 30,
) -> SippUac:
    """The trigger caller dialling `number` at the agent's user agent itself (on `port`;
    not started: use `with`)."""
    scenario, media = caller.write(tmp_path / f"caller-{caller.dtmf}-{transport}")
    # SIPp sends a pcap's RTP from the port its [media_port] keyword gave out, and from
    # port 0 when the SDP names [rtp_port] instead: the agent hears only the SDP's port.
    scenario.write_text(scenario.read_text().replace("m=audio [rtp_port]", "m=audio [media_port]"))
    keys = {"domain": HOST, "caller": caller.caller, "caller_name": caller.caller_name}
    return SippUac(
        f"sip:{number}@{HOST}:{port}",
        tmp_path,
        scenario=str(scenario),
        keys=keys,
        media=media,
        transport=transport,
        timeout=timeout,
    )


def tone(seconds: float, frequency: float = 440.0, amplitude: int = 8000) -> bytes:
    """A sine tone as 8 kHz 16-bit little-endian PCM."""
    count = int(seconds * 8000)
    return array(
        "h",
        (int(amplitude * math.sin(2 * math.pi * frequency * n / 8000)) for n in range(count)),
    ).tobytes()


def correlation(a: bytes, b: bytes) -> float:
    """Pearson correlation of two 16-bit PCM signals (the shorter length)."""
    x, y = array("h", a), array("h", b)
    n = min(len(x), len(y))
    if n == 0:
        return 0.0
    mx = sum(x[:n]) / n
    my = sum(y[:n]) / n
    sxy = sum((x[i] - mx) * (y[i] - my) for i in range(n))
    sxx = sum((x[i] - mx) ** 2 for i in range(n))
    syy = sum((y[i] - my) ** 2 for i in range(n))
    return sxy / math.sqrt(sxx * syy) if sxx and syy else 0.0

"""Helpers for the registration tests: waiting for a state, and a scripted registrar.

SIPp (tests/sip/) plays the registrars whose answers are well-formed; the scripted one
here answers on loopback with whatever a test writes, malformed numbers included, which
a SIPp scenario cannot send reliably.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import cast

from edge_agent.dialer.sip import SipDialer
from edge_agent.sip.message import Request, Response, new_tag, parse, response_to
from edge_agent.sip.registration import RegistrationState

# A REGISTER in, the answer out: status, reason and the headers to add.
Answer = tuple[int, str, list[tuple[str, str]]]


async def until_state(dialer: SipDialer, state: RegistrationState, within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while dialer.registration_status().state is not state:  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def registered(dialer: SipDialer, within: float = 10.0) -> None:
    await until_state(dialer, RegistrationState.REGISTERED, within)


@dataclass
class ScriptedRegistrar(asyncio.DatagramProtocol):
    """Answers every request but ACK with `script(request)`; keeps what it received
    (REGISTERs mostly; an INVITE's challenges too, as a PBX challenging a call)."""

    script: Callable[[Request], Answer]
    received: list[Request] = field(default_factory=list)
    transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        request = parse(data)
        if not isinstance(request, Request) or request.method == "ACK":
            return  # an ACK (to a failure) is never answered
        self.received.append(request)
        status, reason, headers = self.script(request)
        response: Response = response_to(request, status, reason, new_tag())
        for name, value in headers:
            response.headers.add(name, value)
        assert self.transport is not None
        self.transport.sendto(bytes(response), addr)

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])


@asynccontextmanager
async def scripted_registrar(
    script: Callable[[Request], Answer],
) -> AsyncIterator[ScriptedRegistrar]:
    loop = asyncio.get_running_loop()
    _, registrar = await loop.create_datagram_endpoint(
        lambda: ScriptedRegistrar(script), local_addr=("127.0.0.1", 0)
    )
    try:
        yield registrar
    finally:
        assert registrar.transport is not None
        registrar.transport.close()

"""A call of a user agent under test to a bare UDP socket that plays the PBX and the
phone: the test reads and writes each datagram itself."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from edge_agent.sip.call import Call, Ended
from edge_agent.sip.message import Request, Response, parse, response_to
from edge_agent.sip.transport import UdpTransport
from tests.sip_unit.loopback_ua import loopback_ua

HOST = "127.0.0.1"


@dataclass
class RawPbxCall:
    call: Call  # not begun
    pbx: socket.socket  # blocking, 5 s timeout; the account's server and the callee
    transport: UdpTransport


@asynccontextmanager
async def raw_pbx_call() -> AsyncIterator[RawPbxCall]:
    pbx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    pbx.bind((HOST, 0))
    pbx.settimeout(5)
    ua, transport = await loopback_ua(pbx.getsockname())
    call = Call(ua, f"sip:member@{HOST}:{pbx.getsockname()[1]}", {})
    try:
        yield RawPbxCall(call, pbx, transport)
    finally:
        call.close()
        transport.close()
        pbx.close()


def begin_and_answer(bed: RawPbxCall, answer: bytes) -> Response:
    """The call begun; the phone's 200 to its INVITE with `answer` as SDP (not sent yet)."""
    bed.call.begin()
    invite = parse(bed.pbx.recvfrom(65536)[0])
    assert isinstance(invite, Request)
    ok = response_to(invite, 200, "OK", "phone")
    ok.headers.add("Contact", f"<sip:member@{HOST}:{bed.pbx.getsockname()[1]}>")
    ok.headers.add("Content-Type", "application/sdp")
    ok.body = answer
    return ok


async def answer_with(bed: RawPbxCall, answer: bytes) -> tuple[Ended | object, list[str]]:
    """The phone answers the call's INVITE with `answer`; the call's result and the
    requests the phone got after that (ACK, BYE)."""
    ok = begin_and_answer(bed, answer)

    async def phone() -> list[str]:
        bed.pbx.sendto(bytes(ok), bed.transport.local)
        seen: list[str] = []
        while "BYE" not in seen:
            message = parse((await asyncio.to_thread(bed.pbx.recvfrom, 65536))[0])
            if isinstance(message, Request):
                seen.append(message.method)
                if message.method == "BYE":
                    bed.pbx.sendto(bytes(response_to(message, 200, "OK")), bed.transport.local)
        return seen

    async def ringing() -> None:
        pass

    result, seen = await asyncio.gather(bed.call.start(5, ringing), phone())
    return result, seen

"""An incoming call over SIP over TLS (issue 16): the agent listens for no TLS, so the PBX
brings the call over the connection the agent made to it (docs/decisions/sip-tls.md).
The SIP dialer takes it (`SipDialer.answer_calls`); keys come as INFO, our BYE goes
back over the same connection."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path

from edge_agent.dialer.sip import SipDialer
from edge_agent.ivr.port import CallerLine
from edge_agent.sip import sdp
from edge_agent.sip.tls import TlsConfig
from edge_agent.sip.ua import Account
from tests.agent.sip_incoming_bed import HOST, Numbers, tone
from tests.sip.tls_bed import Authority
from tests.sip.tls_pbx import RingingPbx


async def until(check: Callable[[], bool], within: float = 10.0) -> None:
    for _ in range(int(within / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("not within time")


def request(
    method: str,
    pbx: int,
    agent: tuple[str, int],
    cseq: int,
    to: str,
    body: bytes,
    kind: str = "application/sdp",
) -> bytes:
    lines = [
        f"{method} sip:Rundruf@{agent[0]}:{agent[1]};transport=tls SIP/2.0",
        f"Via: SIP/2.0/TLS {HOST}:{pbx};branch=z9hG4bK{method}{cseq}",
        f'From: "Pforte" <sip:100@{HOST}>;tag=pbx1',
        f"To: {to}",
        "Call-ID: tls-call-1",
        f"CSeq: {cseq} {method}",
        f"Contact: <sip:100@{HOST}:{pbx};transport=tls>",
        f"Content-Type: {kind}",
        f"Content-Length: {len(body)}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def test_a_call_over_the_agents_tls_connection(tmp_path: Path) -> None:
    ca = Authority(tmp_path / "ca")
    got: list[str] = []

    async def handler(line: CallerLine) -> None:
        await line.play(tone(0.2), barge_in=False)
        got.append(await line.read_digits(1, 10.0, None))
        await line.hang_up()

    media = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    media.bind((HOST, 0))
    with RingingPbx(ca.issue("pbx")) as pbx:
        account = Account("Rundruf", "secret", HOST, (HOST, pbx.port), register=True)
        dialer = SipDialer(account, transport="TLS", tls=TlsConfig(HOST, ca_file=ca.cert))
        dialer.answer_calls(Numbers(handler, known=("Rundruf",)))
        try:
            await dialer.start()
            await until(lambda: bool(pbx.requests("REGISTER")))
            assert dialer.ua is not None
            agent = dialer.ua.transport.local
            offer = sdp.offer(HOST, media.getsockname()[1], 9, payloads=(8, 101))
            pbx.send(request("INVITE", pbx.port, agent, 1, f"<sip:Rundruf@{HOST}>", offer))
            await until(lambda: any(r.status == 200 for r in pbx.responses))
            ok = next(r for r in pbx.responses if r.status == 200)
            assert b"PCMA" in ok.body
            to = ok.headers.get("To") or ""
            pbx.send(request("ACK", pbx.port, agent, 1, to, b""))
            await asyncio.sleep(0.5)
            pbx.send(
                request("INFO", pbx.port, agent, 2, to, b"Signal=7\r\n", "application/dtmf-relay")
            )
            await until(lambda: bool(pbx.requests("BYE")))
        finally:
            await dialer.close()
            media.close()
    assert got == ["7"]
    bye = pbx.requests("BYE")[0].request
    assert bye.call_id == "tls-call-1" and bye.to_tag == "pbx1"

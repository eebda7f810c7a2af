"""Scenario for test_rtp_source_lan.py, run in a network namespace of its own
(``unshare -rn``) whose loopback carries private and global addresses, so the calls
see the addresses a LAN and a cloud PBX have (review of issue 15, point 1).

- LAN: the agent 192.168.1.10 calls a phone 192.168.1.20 directly; the phone's SDP
  names its own address. A forger at 192.168.1.66 and one on another port of the
  phone's IP send the telephone-event "1" before the phone sends anything, again
  after a re-INVITE moves the phone's RTP to a new port.
- NAT: the agent calls through a PBX at 93.184.216.34 whose answer names a private
  10.0.0.5 (a phone behind NAT); the PBX's media comes from 93.184.216.34 on another
  port, and the forger at 192.168.1.66 sends "1" first.

Prints JSON: per case the digits taken, the packets dropped, the latched source and
whether our RTP reached the real peer.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edge_agent.sip import sdp
from edge_agent.sip.call import Call
from edge_agent.sip.message import Request, parse
from edge_agent.sip.rtp import RtpPacket, TelephoneEvent
from edge_agent.sip.transport import UdpTransport
from edge_agent.sip.ua import Account, UserAgent
from tests.sip_unit.media_host_freeze import loopback_up

AGENT, PHONE, FORGER, PBX = "192.168.1.10", "192.168.1.20", "192.168.1.66", "93.184.216.34"
ADDRESSES = [f"{AGENT}/24", f"{PHONE}/24", f"{FORGER}/24", f"{PBX}/32"]


def press(digit: int, timestamp: int) -> bytes:
    event = TelephoneEvent(digit, end=True, volume=10, duration=800)
    return bytes(RtpPacket(101, 7, timestamp, 0xBAD, bytes(event), marker=True))


def voice(ssrc: int = 0x5EED) -> bytes:
    return bytes(RtpPacket(0, 1, 160, ssrc, b"\xff" * 160))


def udp(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.settimeout(1)
    return sock


def reinvite(call_id: str, port: int) -> Request:
    body = sdp.offer(PHONE, port, 99, payloads=(0, 101))
    head = (
        f"INVITE sip:Rundruf@{AGENT} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {PHONE}:5090;branch=z9hG4bK-lan-move\r\n"
        "From: <sip:member@pbx>;tag=them\r\nTo: <sip:Rundruf@pbx>;tag=us\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 2 INVITE\r\nContact: <sip:member@{PHONE}:5090>\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    request = parse(head.encode() + body)
    assert isinstance(request, Request)
    return request


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0.02)


async def one_call(signalling: str, sdp_address: str | None, move: bool) -> dict[str, object]:
    """A call whose INVITE goes to `signalling`; the answer names `sdp_address` (None:
    the real peer's own address and port). The real peer's RTP comes from `signalling`."""
    sip = udp(signalling)  # takes the INVITE
    media, other_port, forger = udp(signalling), udp(signalling), udp(FORGER)
    transport = await UdpTransport.listen(AGENT, 0, lambda *_: None)
    ua = UserAgent(Account("Rundruf", "pw", AGENT, sip.getsockname(), register=False), transport)
    call = Call(ua, f"sip:member@{signalling}:{sip.getsockname()[1]}", {})
    call.begin()
    try:
        assert call.media is not None
        to = (AGENT, call.media.port)
        named = sdp_address or signalling
        port = media.getsockname()[1] if sdp_address is None else 40000
        call.negotiated = sdp.negotiate(sdp.parse(sdp.offer(named, port, 7, payloads=(0, 101))))
        forger.sendto(press(1, 1000), to)  # before the real peer's first packet
        if sdp_address is None:  # on a LAN: also another port of the phone's IP
            other_port.sendto(press(1, 1100), to)
        await settle()
        media.sendto(voice(), to)
        await settle()
        call.send_rtp(voice(0x1))
        reached = RtpPacket.parse(media.recv(2048)).ssrc == 0x1
        forger.sendto(press(1, 2000), to)
        await settle()
        if move:  # the phone moves its RTP to a new port; the forger keeps sending
            moved = udp(signalling)
            answer = call.handle(reinvite(call.call_id, moved.getsockname()[1]), (PHONE, 5090))
            assert answer is not None and answer.status == 200
            forger.sendto(press(1, 3000), to)
            media.sendto(press(1, 3100), to)  # the old port is no longer the phone
            await settle()
            moved.sendto(voice(), to)
            await settle()
            call.send_rtp(voice(0x2))
            reached = reached and RtpPacket.parse(moved.recv(2048)).ssrc == 0x2
            moved.close()
        digits = [call.digits.get_nowait() for _ in range(call.digits.qsize())]
        return {
            "digits": digits,
            "dropped": call.rtp_dropped,
            "latched": list(call.rtp_source.latched or ()),
            "reached": reached,
        }
    finally:
        assert call._transaction is not None
        call._transaction.final.cancel()
        call.close()
        transport.close()
        for sock in (sip, media, other_port, forger):
            sock.close()


async def main() -> dict[str, object]:
    return {
        "lan": await one_call(PHONE, None, move=True),
        "nat": await one_call(PBX, "10.0.0.5", move=False),
    }


if __name__ == "__main__":
    loopback_up()
    for address in ADDRESSES:
        subprocess.run(["ip", "addr", "add", address, "dev", "lo"], check=True)
    print(json.dumps(asyncio.run(main())))

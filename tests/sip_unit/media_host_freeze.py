"""Scenario for test_media_host_pacing.py, run inside its own network and mount namespace
(``unshare -rmn``) where /etc/resolv.conf names a DNS server on 127.0.0.1:53 that never
answers (`SilentDnsServer`). So the agent's real lookup (glibc's getaddrinfo) and the old
per-packet lookup in ``sendto`` both ask a resolver that does not answer.

Ten calls play through one pacer (four lanes, as the SIP dialer's) to ten phones on
loopback; after WARM_S the PBX re-INVITEs call 0 with ``c=IN IP4 media.pbx.example``
and, a little later, sends an OPTIONS. Prints JSON: the other calls' largest arrival
gap and packet counts, the answers to the re-INVITE and the OPTIONS with their delays,
the names the DNS server was asked.
"""

from __future__ import annotations

import asyncio
import fcntl
import itertools
import json
import socket
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edge_agent.sip import sdp
from edge_agent.sip.call import Call
from edge_agent.sip.dialog_match import DialogPeer
from edge_agent.sip.message import Response, parse
from edge_agent.sip.pacer import Pacer, RtpStream
from edge_agent.sip.transport import UdpTransport
from edge_agent.sip.ua import Account, UserAgent
from tests.sip_unit.dns_server import SilentDnsServer

HOST = "127.0.0.1"
NAME = "media.pbx.example"
CALLS = 10
WARM_S = 0.6
AFTER_S = 3.0  # watched after the re-INVITE: beyond the lookup's 2 s timeout


def loopback_up() -> None:
    """A new network namespace's loopback is down (SIOCSIFFLAGS with IFF_UP)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH14s", fcntl.ioctl(sock, 0x8913, request))[1]
        fcntl.ioctl(sock, 0x8914, struct.pack("16sH14s", b"lo", flags | 0x1, b""))


class Phone:
    """Takes one call's RTP and keeps each packet's arrival time."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]
        self.arrivals: list[float] = []
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._read)

    def _read(self) -> None:
        while True:
            try:
                self.sock.recv(2048)
            except BlockingIOError:
                return
            self.arrivals.append(time.monotonic())


def reinvite(call_id: str, port: int) -> bytes:
    body = sdp.offer(HOST, port, 99, payloads=(0, 101)).replace(
        f"c=IN IP4 {HOST}".encode(), f"c=IN IP4 {NAME}".encode()
    )
    head = (
        f"INVITE sip:Rundruf@{HOST} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {HOST}:5090;branch=z9hG4bK-freeze-1\r\n"
        "From: <sip:member@pbx>;tag=them\r\nTo: <sip:Rundruf@pbx>;tag=us\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 2 INVITE\r\nContact: <sip:member@{HOST}:5090>\r\n"
        "Content-Type: application/sdp\r\n"
    )
    return head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body


OPTIONS = (
    f"OPTIONS sip:Rundruf@{HOST} SIP/2.0\r\n"
    f"Via: SIP/2.0/UDP {HOST}:5090;branch=z9hG4bK-freeze-2\r\n"
    "From: <sip:pbx@pbx>;tag=p\r\nTo: <sip:Rundruf@pbx>\r\n"
    "Call-ID: keepalive-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
).encode()


def ack_for(final: Response) -> bytes:
    """The ACK of a final answer to the re-INVITE (a non-2xx's: the same branch)."""
    via = final.headers.get_all("Via")[0]
    return (
        f"ACK sip:Rundruf@{HOST} SIP/2.0\r\nVia: {via}\r\n"
        f"From: {final.headers.get('From')}\r\nTo: {final.headers.get('To')}\r\n"
        f"Call-ID: {final.call_id}\r\nCSeq: {final.cseq[0]} ACK\r\nContent-Length: 0\r\n\r\n"
    ).encode()


async def main() -> dict[str, object]:
    loop = asyncio.get_running_loop()
    pbx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    pbx.bind((HOST, 0))
    pbx.setblocking(False)
    answers: list[tuple[float, str, int]] = []

    def read_pbx() -> None:
        while True:
            try:
                data = pbx.recv(65536)
            except BlockingIOError:
                return
            message = parse(data)
            if isinstance(message, Response):
                answers.append((time.monotonic(), message.cseq[1], message.status))
                if message.cseq[1] == "INVITE" and message.status >= 200:
                    # As a PBX does: else the final answer is repeated (RFC 3261 17.2.1).
                    pbx.sendto(ack_for(message), (HOST, transport.local[1]))

    loop.add_reader(pbx.fileno(), read_pbx)
    holder: list[UserAgent] = []
    transport = await UdpTransport.listen(HOST, 0, lambda m, s, t: holder[0].receive(m, s, t))
    ua = UserAgent(Account("Rundruf", "pw", HOST, pbx.getsockname(), register=False), transport)
    holder.append(ua)
    pacer = Pacer(lanes=4)
    pacer.start()
    calls, phones = [], []
    for _ in range(CALLS):
        phone = Phone()
        call = Call(ua, f"sip:member@{HOST}:{pbx.getsockname()[1]}", {})
        call.begin()
        # The dialog the re-INVITE names (tags "us", "them"), the PBX its peer.
        call.peer = DialogPeer("us", remote_tag="them", hosts={HOST})
        call.negotiated = sdp.negotiate(
            sdp.parse(sdp.offer(HOST, phone.port, 7, payloads=(0, 101)))
        )
        pacer.add(RtpStream(b"\xff" * 160 * 1000, 0, call.ssrc, call.send_rtp))
        calls.append(call)
        phones.append(phone)
    await asyncio.sleep(WARM_S)
    sent = time.monotonic()
    pbx.sendto(reinvite(calls[0].call_id, phones[0].port), (HOST, transport.local[1]))
    await asyncio.sleep(0.3)
    options_sent = time.monotonic()
    pbx.sendto(OPTIONS, (HOST, transport.local[1]))
    await asyncio.sleep(AFTER_S - 0.3)
    ended = time.monotonic()
    pacer.close()
    gaps, counts = [], []
    for phone in phones[1:]:
        seen = [t for t in phone.arrivals if sent - 0.1 <= t <= ended]
        counts.append(len(seen))
        gaps.append(max((b - a for a, b in itertools.pairwise(seen)), default=99.0))
    for call in calls:
        call.close()
    transport.close()
    return {
        "watched_s": ended - sent,
        "max_gap_s": max(gaps),
        "min_packets": min(counts),
        "reinvite": [(round(t - sent, 3), status) for t, m, status in answers if m == "INVITE"],
        "options": [round(t - options_sent, 3) for t, m, _ in answers if m == "OPTIONS"],
    }


if __name__ == "__main__":
    loopback_up()
    dns = SilentDnsServer(HOST, 53)
    result = asyncio.run(main())
    result["dns_names"] = dns.names
    print(json.dumps(result))

"""Where an incoming call's prompts go (review of issue 16, finding 5): never to a third
host the SDP names, unless the caller's RTP came from there (symmetric RTP), or the
INVITE came from the PBX itself (second review, finding 4: direct media)."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from edge_agent.ivr.port import CallerGone, CallerLine
from edge_agent.sip import incoming_rtp, sdp
from edge_agent.sip.incoming import Accept, IncomingCalls, IncomingInvite, Refuse
from edge_agent.sip.incoming_call import IncomingCall
from edge_agent.sip.peers import parse_networks
from tests.sip_unit.loopback_ua import loopback_ua
from tests.sip_unit.test_incoming_dialog import final, in_dialog, invite
from tests.sip_unit.udp_peers import Peer

THIRD = "127.0.0.2"  # the host the SDP names: not the caller's SIP source
PBX_HOST = "127.0.0.9"  # the account's server when the caller is not the PBX


class Prompt:
    def __init__(self) -> None:
        self.played = asyncio.Event()

    def route(self, invite: IncomingInvite) -> Refuse | Accept:
        return Accept(self.handler)

    async def handler(self, line: CallerLine) -> None:
        try:
            await line.play(bytes(8000), barge_in=False)  # 0.5 s
            self.played.set()
            await line.read_digits(1, 30.0, None)
        except CallerGone:
            pass


async def call_with_media_at(victim: socket.socket, speak: bool, *, pbx: bool = False) -> int:
    """A call whose SDP names `victim`'s address; the packets it got while the prompt
    played (the victim sends one RTP packet first when `speak`). The caller is the PBX
    when `pbx`, else a source trusted by RUNDRUF_AGENT_SIP_TRIGGER_SOURCES' network."""
    caller = Peer(phone=True)
    try:
        ua, transport = await loopback_ua(caller.address if pbx else (PBX_HOST, 5060))
        router = Prompt()
        trusted = () if pbx else parse_networks("127.0.0.1")
        ua.incoming = incoming = IncomingCalls(ua, router, trusted=trusted)
        caller.agent = transport.local
        port = victim.getsockname()[1]
        caller.send(invite(caller, body=sdp.offer(THIRD, port, 77, payloads=(0, 101))))
        ok = await final(caller)
        call = incoming.calls["in-1"]
        assert isinstance(call, IncomingCall) and call.media is not None
        if speak:
            rtp = struct.pack("!BBHII", 0x80, 0, 1, 160, 1234) + bytes(160)
            victim.sendto(rtp, ("127.0.0.1", call.media.port))
        caller.send(in_dialog(caller, "ACK", ok.to_tag or "", 1))
        await asyncio.wait_for(router.played.wait(), 5)
        got = 0
        while True:
            try:
                victim.recv(2048)
            except BlockingIOError:
                break
            got += 1
        await ua.close()
        return got
    finally:
        caller.close()


async def test_no_prompt_to_a_third_host_named_in_the_sdp() -> None:
    victim = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    victim.bind((THIRD, 0))
    victim.setblocking(False)
    try:
        assert await call_with_media_at(victim, speak=False) == 0
    finally:
        victim.close()


async def test_the_prompt_goes_where_the_callers_rtp_comes_from() -> None:
    victim = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    victim.bind((THIRD, 0))
    victim.setblocking(False)
    try:
        assert await call_with_media_at(victim, speak=True) >= 20  # 0.5 s of 20 ms packets
    finally:
        victim.close()


async def test_the_pbxs_sdp_is_taken_at_its_word() -> None:
    """Second review, finding 4: a phone behind the PBX (direct media) that sends no RTP
    before it hears us got no prompt at all; the PBX's own INVITE names it, so it gets
    the prompt at once."""
    phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    phone.bind((THIRD, 0))
    phone.setblocking(False)
    try:
        assert await call_with_media_at(phone, speak=False, pbx=True) >= 20
    finally:
        phone.close()


async def test_an_rtp_flood_is_cut_before_it_is_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding 6: 2,000 packets in well under 2 s from the caller's own RTP address: at most
    RTP_MAX_PER_S a second (50 here) are looked at, the rest dropped and counted."""
    monkeypatch.setattr(incoming_rtp, "RTP_MAX_PER_S", 50)
    caller = Peer(phone=True)
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind(("127.0.0.1", 0))
    try:
        ua, transport = await loopback_ua(caller.address)
        ua.incoming = incoming = IncomingCalls(ua, Prompt())
        caller.agent = transport.local
        body = sdp.offer("127.0.0.1", rtp.getsockname()[1], 77, payloads=(0, 101))
        caller.send(invite(caller, body=body))
        ok = await final(caller)
        caller.send(in_dialog(caller, "ACK", ok.to_tag or "", 1))
        call = incoming.calls["in-1"]
        assert isinstance(call, IncomingCall) and call.media is not None
        for n in range(2000):
            event = struct.pack("!BBH", n % 10, 0x80 | 10, 400)
            packet = struct.pack("!BBHII", 0x80, 101, n, n * 400, 99) + event
            rtp.sendto(packet, ("127.0.0.1", call.media.port))
            if n % 50 == 49:  # within the receive buffer: the agent reads each one
                await asyncio.sleep(0.002)
        for _ in range(100):
            await asyncio.sleep(0.02)
            if call.rtp_flooded + call.rtp_source.dropped >= 1000:
                break
        # Even if sending took 10 s on a loaded machine: 10 windows of 50 looked at.
        assert call.rtp_flooded >= 2000 - 10 * 50
        await ua.close()
    finally:
        rtp.close()
        caller.close()

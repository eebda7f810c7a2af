"""An agent behind a NAT and a PBX in the cloud (issue 15, point 10; RFC 3581).

The NAT is tests/sip/nat_relay.py: a port-restricted NAT on loopback (LAN 127.0.0.2,
public 127.0.0.3, cloud 127.0.0.1) that forgets an idle mapping. SIPp plays the cloud:
a registrar that answers with `received`/`rport` and then pings the agent with OPTIONS
through the NAT (scenarios/pbx_nat_register.xml), and a member who sends its requests to
the agent's Contact, echoes its audio and presses 1 by INFO (scenarios/uas_nat_call.xml).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.dialer.port import CallOutcome
from edge_agent.dialer.sip import SipDialer
from edge_agent.sip import g711, nat
from edge_agent.sip.ua import Account
from tests.agent.dialer_contract import Recorder
from tests.agent.registrar import registered
from tests.agent.test_dialer_sip import call_request, tone_wav
from tests.sip.bed import RtpPacket, SippUas, need_sipp
from tests.sip.nat_relay import CLOUD, CLOUD_SEEN_FROM_LAN, LAN, PUBLIC, PortRestrictedNat

# The NAT forgets a mapping after 1.2 s without outbound traffic; the registrar waits 2 s
# before its OPTIONS. Only the agent's keep-alive (every 0.2 s here) keeps the way open;
# a loop late by up to a second still keeps it.
IDLE_S = 1.2
KEEPALIVE_S = 0.2


@pytest.fixture
def relay() -> Iterator[PortRestrictedNat]:
    with PortRestrictedNat(idle_s=IDLE_S) as made:
        yield made


@pytest.fixture(autouse=True)
def quick_keep_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    assert nat.KEEPALIVE_S < 30  # the real one: below the NATs' usual 30 s
    monkeypatch.setattr(nat, "KEEPALIVE_S", KEEPALIVE_S)


def start_registrar(tmp_path: Path, relay: PortRestrictedNat) -> SippUas:
    keys = {"nat_ip": PUBLIC, "nat_port": str(relay.first_public_port), "expires": "300"}
    return SippUas("pbx_nat_register.xml", tmp_path, keys=keys, timeout=30).start()


def behind_the_nat(relay: PortRestrictedNat, registrar: SippUas) -> SipDialer:
    server = relay.expose(registrar.port)  # the PBX, as the LAN reaches it
    account = Account("Rundruf", "secret", CLOUD, server)
    return SipDialer(account, local=(LAN, 0), proxy=False, check_s=60)


def contacts(sipp: SippUas, start: str) -> list[str]:
    return [
        line.split(":", 1)[1].strip()
        for message in sipp.find(start)
        for line in message.splitlines()
        if line.lower().startswith("contact:")
    ]


def top_via(message: str) -> str:
    return next(line for line in message.splitlines() if line.lower().startswith("via:"))


def stranger_is_kept_out(relay: PortRestrictedNat) -> bool:
    """An OPTIONS from an address the agent never sent to, at the agent's public address,
    gets no answer (the NAT drops it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        stranger.bind((CLOUD, 0))
        stranger.settimeout(0.5)
        options = (
            "OPTIONS sip:Rundruf@127.0.0.3 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {CLOUD}:{stranger.getsockname()[1]};branch=z9hG4bKx;rport\r\n"
            "From: <sip:x@127.0.0.1>;tag=x\r\nTo: <sip:Rundruf@127.0.0.3>\r\n"
            "Call-ID: stranger\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
        stranger.sendto(options.encode(), (PUBLIC, relay.first_public_port))
        try:
            stranger.recv(65536)
        except TimeoutError:
            return any(b"Call-ID: stranger" in data for _, _, data in relay.dropped)
    return False


async def until(condition: object, within: float) -> None:
    async with asyncio.timeout(within):
        while not condition():  # type: ignore[operator]  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_behind_nat_the_agent_registers_its_public_address_and_is_reached_there(
    tmp_path: Path, relay: PortRestrictedNat
) -> None:
    need_sipp()
    registrar = start_registrar(tmp_path, relay)
    dialer = behind_the_nat(relay, registrar)
    try:
        await dialer.start()
        await registered(dialer)
        assert dialer.ua is not None
        local = dialer.ua.transport.local
        assert relay.mapping_of(local) == (PUBLIC, relay.first_public_port)
        assert stranger_is_kept_out(relay), "the emulator is no port-restricted NAT"
        await until(lambda: "> OPTIONS" in registrar.flow() and "< 200" in registrar.flow(), 10)
    finally:
        await dialer.close()
        try:
            code = registrar.wait(10)
        finally:
            registrar.stop()
    assert code == 0, registrar.log()
    private = f"<sip:Rundruf@{LAN}:{local[1]};transport=udp>"
    reachable = f"<sip:Rundruf@{PUBLIC}:{relay.first_public_port};transport=udp>"
    # The first REGISTER names the LAN address; the registrar's received/rport tell the
    # agent better, and it registers the address the NAT gave it at once.
    assert contacts(registrar, "REGISTER ")[:2] == [private, reachable]
    # The de-registration removes the binding that was made.
    assert contacts(registrar, "REGISTER ")[2] == reachable
    # The registrar's OPTIONS came in through the mapping 2 s after the last REGISTER
    # (the NAT forgets after 1.2 s: the keep-alives held it) and its 200 went back the
    # same way, with where the request came from in the Via (RFC 3581 4).
    (ok,) = [m for m in registrar.find("SIP/2.0 200") if "CSeq: 100 OPTIONS" in m]
    port = registrar.port
    assert top_via(ok).endswith(f";rport={port};received={CLOUD_SEEN_FROM_LAN}"), ok
    keep_alives = [p for p in relay.went_out((CLOUD, port)) if p.data == b"\r\n\r\n"]
    assert len(keep_alives) >= 3


async def test_a_call_through_the_nat_plays_the_announcement_and_is_confirmed(
    tmp_path: Path, relay: PortRestrictedNat, caplog: pytest.LogCaptureFixture
) -> None:
    need_sipp()
    announcement = tone_wav(tmp_path / "announcement.wav", seconds=1.0)
    registrar = start_registrar(tmp_path, relay)
    member = SippUas(
        "uas_nat_call.xml",
        tmp_path,
        keys={"seen_ip": CLOUD_SEEN_FROM_LAN},
        rtp_echo=True,
        timeout=30,
    ).start()
    relay.expose(member.port)
    relay.expose(member.media_port)
    dialer = behind_the_nat(relay, registrar)
    caplog.set_level(logging.WARNING, logger="edge_agent.sip.call")
    try:
        await dialer.start()
        await registered(dialer)
        recorder = Recorder()
        target = f"member@{CLOUD_SEEN_FROM_LAN}:{member.port}"
        request = call_request(target, announcement, dtmf_timeout_s=5.0, ring_timeout_s=10.0)
        outcome = await asyncio.wait_for(dialer.call(request, recorder), 30)
        assert member.wait(10) == 0, member.log()
    finally:
        await dialer.close()
        registrar.stop()
        member.stop()
    assert outcome is CallOutcome.CONFIRMED, recorder.events
    # The INVITE's Contact is the address the NAT gave the agent's SIP socket: the
    # member's INFO and its 200 took that way (the member sends to the Contact).
    assert contacts(member, "INVITE ") == [
        f"<sip:Rundruf@{PUBLIC}:{relay.first_public_port};transport=udp>"
    ]
    (info_ok,) = [m for m in member.find("SIP/2.0 200") if "CSeq: 1 INFO" in m]
    assert f";rport={member.port};received={CLOUD_SEEN_FROM_LAN}" in top_via(info_ok)
    # The announcement left through the NAT byte for byte (symmetric RTP: from the port
    # the agent receives on), and the member's echo came back in through that mapping.
    out = [RtpPacket.parse(p.data) for p in relay.went_out((CLOUD, member.media_port))]
    assert out, "no RTP left through the NAT"
    assert {p.inside[0] for p in relay.came_in((CLOUD, member.media_port))} == {LAN}
    assert len(relay.came_in((CLOUD, member.media_port))) >= 25
    with wave.open(str(announcement)) as w:
        frames = w.readframes(w.getnframes())
    encode = g711.alaw_encode if out[0].payload_type == 8 else g711.ulaw_encode
    audio = [p for p in sorted(out, key=lambda p: p.sequence) if p.payload_type in (0, 8)]
    sent = b"".join(p.payload for p in audio)
    assert sent[: len(encode(frames))] == encode(frames)
    # Every echo was taken as the member's own RTP: none dropped as a stranger's.
    assert not [r for r in caplog.records if "dropped" in r.getMessage()]

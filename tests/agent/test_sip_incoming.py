"""The agent answers calls itself (issue 16, point 1): real SIPp callers dial the agent's
user agent on loopback, over UDP and TCP. Before, every INVITE got 603."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest

from edge_agent.ivr.port import CallerGone, CallerLine
from edge_agent.sip.g711 import ulaw_decode, ulaw_encode
from edge_agent.sip.rtp import RtpPacket
from tests.agent.sip_incoming_bed import (
    HOST,
    Numbers,
    answering_ua,
    correlation,
    dial_agent,
    tone,
)
from tests.sip.bed import SippUac, need_pcap_play, need_sipp
from tests.sip.caller_rtp import Keys, Wait
from tests.sip.trigger_caller import Dtmf, TriggerCaller


async def _nothing(line: CallerLine) -> None:
    raise AssertionError("the handler must not run")


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize(
    ("diverted", "configured", "limit", "status"),
    [("4711", True, 20, "404"), ("299", False, 20, "480"), ("299", True, 0, "486")],
)
async def test_refusals(
    tmp_path: Path, transport: str, diverted: str, configured: bool, limit: int, status: str
) -> None:
    """An unknown number gets 404, any call without configuration 480, a call beyond the
    limit of calls at once 486; the original number in Diversion decides (the
    Request-URI names the "Rundruf" account). Before, every INVITE got 603."""
    need_sipp()
    router = Numbers(_nothing, configured=configured)
    async with answering_ua(router, transport, limit=limit) as ua:
        port = ua.transport.local[1]
        with SippUac(
            f"sip:Rundruf@{HOST}:{port}",
            tmp_path,
            scenario="uac_refused.xml",
            keys={"diverted": diverted},
            transport=transport,
            timeout=15,
        ) as sipp:
            code = await asyncio.to_thread(sipp.wait, 30)
    assert code == 0, sipp.log()
    assert f"< {status}" in sipp.flow(), sipp.flow()
    if limit:
        assert router.invites[0].called == (diverted, "Rundruf")
        assert router.invites[0].caller_number == "100"
        assert router.invites[0].caller_name == "Pforte"


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("dtmf", ["rfc4733", "info"])
async def test_keys_reach_the_handler(tmp_path: Path, transport: str, dtmf: Dtmf) -> None:
    """An accepted call: the prompt plays (barge-in), the caller's keys come by RFC 4733
    or SIP INFO into read_digits, and our hang-up is a BYE the caller answers."""
    need_sipp()
    if dtmf == "rfc4733":
        need_pcap_play()
    got: list[str] = []
    heard: list[str] = []

    async def handler(line: CallerLine) -> None:
        heard.append(line.caller_number)
        await line.play(tone(3.0))  # the first key stops it
        got.append(await line.read_digits(8, 4.0, "#"))
        got.append(await line.read_digits(1, 4.0, None))
        await line.hang_up()

    router = Numbers(handler)
    caller = TriggerCaller([Wait(1.0), Keys("4711#"), Wait(0.5), Keys("2"), Wait(3)], dtmf=dtmf)
    async with answering_ua(router, transport) as ua:
        with dial_agent(caller, tmp_path, ua.transport.local[1], transport=transport) as sipp:
            code = await asyncio.to_thread(sipp.wait, 30)
    assert code == 0, sipp.log()
    assert got == ["4711", "2"]
    assert heard == ["100"]
    assert sipp.flow()[-2:] == ["< BYE", "> 200"], sipp.flow()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_caller_hangs_up(tmp_path: Path, transport: str) -> None:
    """The caller's BYE: the handler waiting for keys gets CallerGone, at once."""
    need_sipp()
    need_pcap_play()
    outcome: list[str] = []

    async def handler(line: CallerLine) -> None:
        try:
            await line.read_digits(8, 20.0, "#")
        except CallerGone:
            outcome.append("gone")
            raise
        outcome.append("no")

    router = Numbers(handler)
    caller = TriggerCaller([Wait(1.0)], hang_up=True)
    async with answering_ua(router, transport) as ua:
        with dial_agent(caller, tmp_path, ua.transport.local[1], transport=transport) as sipp:
            code = await asyncio.to_thread(sipp.wait, 30)
        for _ in range(50):
            if outcome:
                break
            await asyncio.sleep(0.05)
    assert code == 0, sipp.log()
    assert outcome == ["gone"]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_cancel_before_the_answer(tmp_path: Path, transport: str) -> None:
    """A CANCEL while the call rings: 200 for it, 487 for the INVITE, the handler never
    runs, and the call's slot is free once the ACK came."""
    need_sipp()
    router = Numbers(_nothing, ring_s=5.0)
    async with answering_ua(router, transport) as ua:
        port = ua.transport.local[1]
        with SippUac(
            f"sip:299@{HOST}:{port}",
            tmp_path,
            scenario="uac_cancel.xml",
            transport=transport,
            timeout=15,
        ) as sipp:
            code = await asyncio.to_thread(sipp.wait, 30)
        assert code == 0, sipp.log()
        assert ua.incoming is not None
        for _ in range(50):
            if not ua.incoming.calls:  # type: ignore[attr-defined]
                break
            await asyncio.sleep(0.05)
        assert not ua.incoming.calls  # type: ignore[attr-defined]
        assert not ua.dialogs
    assert sipp.flow() == ["> INVITE", "< 100", "< 180", "> CANCEL", "< 200", "< 487", "> ACK"]


class RtpPeer:
    """The caller's phone for the audio (SIPp does the signalling with its SDP naming
    this socket): keeps what the agent sends, and sends speech from the same port."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.settimeout(0.3)
        self.port: int = self.sock.getsockname()[1]
        self.heard: list[RtpPacket] = []
        self.agent: tuple[str, int] | None = None

    def listen(self, until_quiet_s: float = 0.3, at_most_s: float = 10.0) -> None:
        """Keeps the agent's packets until none came for `until_quiet_s` after the first."""
        end = time.monotonic() + at_most_s
        while time.monotonic() < end:
            try:
                data, self.agent = self.sock.recvfrom(2048)
            except TimeoutError:
                if self.heard:
                    return
                continue
            self.heard.append(RtpPacket.parse(data))

    def speak(self, codes: bytes, lose: set[int]) -> None:
        """`codes` (μ-law) in real time as 20 ms packets; those numbered in `lose` are
        not sent (lost on the way)."""
        assert self.agent is not None
        for n, at in enumerate(range(0, len(codes), 160)):
            if n not in lose:
                packet = RtpPacket(0, 100 + n, 5000 + at, 0x1234, codes[at : at + 160])
                self.sock.sendto(bytes(packet), self.agent)
            time.sleep(0.02)

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_prompt_heard_and_message_recorded(tmp_path: Path, transport: str) -> None:
    """What the agent plays reaches the caller as the prompt in G.711; what the caller
    says is recorded sample for sample by timestamp (a lost packet is silence of its
    length), and the recording ends after the silence that follows the speech."""
    need_sipp()
    prompt = tone(1.0, 440.0)
    speech = tone(1.5, 300.0, amplitude=6000)
    codes = ulaw_encode(speech)
    recorded: list[bytes] = []

    async def handler(line: CallerLine) -> None:
        await line.play(prompt, barge_in=False)
        recorded.append(await line.record(10.0, 1.0, "#"))
        await line.hang_up()

    peer = RtpPeer()
    try:
        async with answering_ua(Numbers(handler), transport) as ua:
            with SippUac(
                f"sip:299@{HOST}:{ua.transport.local[1]}",
                tmp_path,
                scenario="uac_until_bye.xml",
                keys={"rtp_port": str(peer.port)},
                transport=transport,
                timeout=30,
            ) as sipp:

                def phone() -> None:
                    peer.listen()
                    peer.speak(codes, lose={10, 11})

                await asyncio.to_thread(phone)
                code = await asyncio.to_thread(sipp.wait, 30)
    finally:
        peer.close()
    assert code == 0, sipp.log()
    heard = ulaw_decode(b"".join(p.payload for p in sorted(peer.heard, key=lambda p: p.sequence)))
    assert len(heard) == len(prompt)
    assert correlation(heard, prompt) > 0.99
    assert {p.ssrc for p in peer.heard} == {peer.heard[0].ssrc}
    assert [p.marker for p in peer.heard[:2]] == [True, False]
    expected = bytearray(ulaw_decode(codes))
    expected[10 * 320 : 12 * 320] = bytes(640)  # the two lost packets: silence
    (message,) = recorded
    assert message[: len(expected)] == bytes(expected)
    assert correlation(message, speech) > 0.95
    # Ended by the silence after the speech: about 1 s of nothing follows it, not 10 s.
    assert len(message) <= len(expected) + 2 * 8000 * 2


async def test_a_recording_without_speech_ends_early(tmp_path: Path) -> None:
    """A caller who says nothing after the tone: the recording ends `no_speech_s` after its
    start (the IVR then says it failed), not at its limit (review of issue 16, finding 7)."""
    need_sipp()
    silence = ulaw_encode(bytes(4 * 8000 * 2))  # 4 s of a silent line, sent as RTP
    recorded: list[bytes] = []

    async def handler(line: CallerLine) -> None:
        await line.play(tone(0.2), barge_in=False)
        recorded.append(await line.record(10.0, 1.0, "#", no_speech_s=1.0))
        await line.hang_up()

    peer = RtpPeer()
    try:
        async with answering_ua(Numbers(handler), "udp") as ua:
            with SippUac(
                f"sip:299@{HOST}:{ua.transport.local[1]}",
                tmp_path,
                scenario="uac_until_bye.xml",
                keys={"rtp_port": str(peer.port)},
                transport="udp",
                timeout=30,
            ) as sipp:

                def phone() -> None:
                    peer.listen()
                    peer.speak(silence, lose=set())

                await asyncio.to_thread(phone)
                code = await asyncio.to_thread(sipp.wait, 30)
    finally:
        peer.close()
    assert code == 0, sipp.log()
    (message,) = recorded
    # About 1 s of the 4 s of silence, not all of it (and not 10 s).
    assert 0 < len(message) <= 2 * 8000 * 2

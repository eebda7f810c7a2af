"""The trigger caller itself (tests/sip/trigger_caller.py), against a SIPp member whose
media goes to the test's RtpSink: its keys arrive in order and at their times, as RFC
4733 events in one unbroken stream or as SIP INFO, and its speech arrives as sent."""

from __future__ import annotations

import itertools
import math
import struct
from pathlib import Path

from edge_agent.sip.g711 import ulaw_decode
from tests.sip.bed import RtpSink, SippUas, TelephoneEvent, need_pcap_play
from tests.sip.caller_rtp import FRAME, PT_EVENT, PT_PCMU, Keys, Speak, Step, Wait, build, spoken
from tests.sip.trigger_caller import TriggerCaller


def tone(seconds: float, hz: float = 440.0) -> bytes:
    n = int(seconds * 8000)
    return struct.pack(
        f"<{n}h", *(int(8000 * math.sin(2 * math.pi * hz * i / 8000)) for i in range(n))
    )


def to(sink: RtpSink) -> dict[str, str]:
    """The member's SDP names the sink as its media address."""
    return {"rx_port": str(sink.port)}


def pressed(sink: RtpSink) -> str:
    """The keys in the sink's RFC 4733 events: one per event (start timestamp)."""
    keys, seen = [], set()
    for packet in sink.packets:
        if packet.payload_type == PT_EVENT and packet.timestamp not in seen:
            seen.add(packet.timestamp)
            keys.append("0123456789*#"[TelephoneEvent.parse(packet.payload).event])
    return "".join(keys)


def test_the_timeline_puts_each_key_at_its_time_in_one_stream() -> None:
    steps: list[Step] = [Wait(1), Keys("12#", press_ms=160, gap_ms=140), Wait(0.5), Keys("2")]
    packets, keys = build(steps)
    assert [k for _, k in keys] == ["1", "2", "#", "2"]
    # 1 s of silence, then a key every 160 + 40 (end repeats) + 140 ms.
    assert [round(t, 2) for t, _ in keys] == [1.0, 1.34, 1.68, 2.38]
    sequences = [p.sequence for _, p in packets]
    assert sequences == list(range(1, len(packets) + 1)), "one unbroken sequence"
    times = [t for t, _ in packets]
    assert all(round(b - a, 3) == 0.02 for a, b in itertools.pairwise(times))
    ends = [TelephoneEvent.parse(p.payload) for _, p in packets if p.payload_type == PT_EVENT]
    assert sum(e.end for e in ends) == 4 * 3, "each end packet three times"


def test_rfc4733_keys_and_speech_reach_the_member(tmp_path: Path) -> None:
    need_pcap_play()
    speech = tone(0.4)
    caller = TriggerCaller([Wait(0.3), Keys("47#"), Wait(0.2), Speak(speech)], hang_up=True)
    with RtpSink() as sink, SippUas("uas_answer_rtp_to.xml", tmp_path, keys=to(sink)) as member:
        with caller.dial(tmp_path, ("127.0.0.1", member.port), "299") as sipp:
            assert sipp.wait(30) == 0, sipp.log()
        assert member.wait(10) == 0, member.log()
    assert pressed(sink) == "47#"
    voice = b"".join(p.payload for p in sink.packets if p.payload_type == PT_PCMU)
    assert len(sink.packets) == caller.packets()
    # The speech is the last 0.4 s of audio, as μ-law; decoded it is what G.711 keeps.
    assert ulaw_decode(voice[-len(speech) // 2 :]) == spoken(speech)
    assert len(voice) % FRAME == 0


def test_info_keys_reach_the_member_in_order_and_the_rtp_carries_no_events(
    tmp_path: Path,
) -> None:
    need_pcap_play()
    caller = TriggerCaller([Wait(0.3), Keys("47#"), Wait(0.3), Keys("2")], "info", hang_up=True)
    with RtpSink() as sink, SippUas("uas_answer_rtp_to.xml", tmp_path, keys=to(sink)) as member:
        with caller.dial(tmp_path, ("127.0.0.1", member.port), "299") as sipp:
            assert sipp.wait(30) == 0, sipp.log()
        assert member.wait(10) == 0, member.log()
    infos = member.find("INFO ")
    assert [i.split("Signal=")[1].split()[0] for i in infos] == ["4", "7", "#", "2"]
    assert all("application/dtmf-relay" in i for i in infos)
    assert pressed(sink) == "" and sink.packets

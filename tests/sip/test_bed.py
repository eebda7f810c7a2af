"""The SIP test bed works: each SIPp member scenario against a SIPp caller, the registrar
against a registering SIPp, baresip recording what a caller plays, and the pcaps."""

from __future__ import annotations

import hashlib
import itertools
import math
import re
import struct
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sip.bed import (
    SIPP_SHARE,
    Baresip,
    RtpPacket,
    RtpSink,
    SippUac,
    SippUas,
    TelephoneEvent,
    dtmf_pcap,
    need_baresip,
    need_pcap_play,
    need_sipp,
    read_pcap,
    tone_packets,
)

ANSWERED = ["> INVITE", "< 180", "< 200", "> ACK"]  # a caller's view, without 100 Trying


@pytest.fixture
def sipp() -> None:
    need_sipp()


def run(uas: SippUas, uac: SippUac) -> None:
    """Both SIPps end their one call successfully."""
    assert uac.wait(30) == 0, uac.log()
    assert uas.wait(10) == 0, uas.log()


def without_100(flow: list[str]) -> list[str]:
    return [step for step in flow if step != "< 100"]


# ------------------------------------------------------------------ the members


def test_a_member_answers_echoes_rtp_and_takes_the_bye(sipp: None, tmp_path: Path) -> None:
    with (
        RtpSink() as sink,
        SippUas("uas_answer.xml", tmp_path, rtp_echo=True) as uas,
        SippUac(uas.uri, tmp_path, keys={"rtp_port": str(sink.port)}) as uac,
    ):
        time.sleep(0.5)
        for i in range(5):
            sink.send(RtpPacket(0, i, 160 * i, 1234, b"\xff" * 160), uas.media_port)
        run(uas, uac)
    assert uas.flow() == ["< INVITE", "> 180", "> 200", "< ACK", "< BYE", "> 200"]
    assert without_100(uac.flow()) == [*ANSWERED, "> BYE", "< 200"]
    answer = uas.find("SIP/2.0 200")[0]
    assert f"m=audio {uas.media_port} RTP/AVP 0 8 101" in answer
    assert "a=rtpmap:101 telephone-event/8000" in answer
    assert [p.sequence for p in sink.packets] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_a_busy_member_answers_486_and_takes_the_ack(
    transport: str, sipp: None, tmp_path: Path
) -> None:
    with (
        SippUas("uas_busy.xml", tmp_path, transport=transport) as uas,
        SippUac(uas.uri, tmp_path, "uac_busy.xml", transport=transport) as uac,
    ):
        run(uas, uac)
    assert uas.flow() == ["< INVITE", "> 486", "< ACK"]


def test_a_member_who_does_not_answer_rings_until_cancel(sipp: None, tmp_path: Path) -> None:
    with (
        SippUas("uas_no_answer.xml", tmp_path) as uas,
        SippUac(uas.uri, tmp_path, "uac_cancel.xml") as uac,
    ):
        run(uas, uac)
    assert uas.flow() == ["< INVITE", "> 180", "< CANCEL", "> 200", "> 487", "< ACK"]
    assert "CSeq: 1 INVITE" in uas.find("SIP/2.0 487")[0]
    assert "CSeq: 1 CANCEL" in uas.find("SIP/2.0 200")[0]


def digest(message: str) -> dict[str, str]:
    header = re.search(r"^(?:WWW-Authenticate|Authorization): Digest (.*?)\r$", message, re.M)
    assert header, message
    return {k: v.strip('"') for k, v in re.findall(r'(\w+)=("[^"]*"|[^,\s]+)', header[1])}


def test_a_member_behind_a_pbx_challenges_the_invite_with_md5_digest(
    sipp: None, tmp_path: Path
) -> None:
    with (
        SippUas("uas_auth.xml", tmp_path) as uas,
        SippUac(uas.uri, tmp_path, "uac_auth.xml", auth=("Rundruf", "secret")) as uac,
    ):
        run(uas, uac)
    assert uas.flow() == [
        *("< INVITE", "> 401", "< ACK"),
        *("< INVITE", "> 180", "> 200", "< ACK", "< BYE", "> 200"),
    ]
    challenge = digest(uas.find("SIP/2.0 401")[0])
    assert challenge == {
        "realm": "rundruf.test",
        "nonce": uas.keys["nonce"],
        "algorithm": "MD5",
        "qop": "auth",
    }
    # SIPp's own client computed a digest over our challenge (RFC 2617 3.2.2): so the
    # challenge is one a real client can answer.
    answer = digest(uas.find("INVITE")[1])
    ha1 = hashlib.md5(b"Rundruf:rundruf.test:secret").hexdigest()
    ha2 = hashlib.md5(f"INVITE:{answer['uri']}".encode()).hexdigest()
    parts = [ha1, answer["nonce"], answer["nc"], answer["cnonce"], "auth", ha2]
    assert answer["response"] == hashlib.md5(":".join(parts).encode()).hexdigest()


def test_a_member_can_hang_up_first(sipp: None, tmp_path: Path) -> None:
    with (
        SippUas("uas_early_bye.xml", tmp_path) as uas,
        SippUac(uas.uri, tmp_path, "uac_until_bye.xml") as uac,
    ):
        run(uas, uac)
    assert uas.flow()[-2:] == ["> BYE", "< 200"]
    assert without_100(uac.flow()) == [*ANSWERED, "< BYE", "> 200"]
    # The member's BYE goes to the caller's Contact, in the caller's dialog.
    bye = uac.find("BYE")[0]
    assert bye.startswith(f"BYE sip:Rundruf@127.0.0.1:{uac.port};transport=UDP SIP/2.0\r\n")
    from_tag = re.search(r"^From: .*;tag=(\S+)\r$", uac.find("INVITE")[0], re.M)
    assert from_tag and re.search(rf"^To: .*;tag={from_tag[1]}\r$", bye, re.M)


def test_a_member_presses_1_as_sip_info_like_swyxware(sipp: None, tmp_path: Path) -> None:
    with (
        SippUas("uas_dtmf_info.xml", tmp_path) as uas,
        SippUac(uas.uri, tmp_path, "uac_take_info.xml") as uac,
    ):
        run(uas, uac)
    assert uas.flow()[4:] == ["> INFO", "< 200", "< BYE", "> 200"]
    info = uac.find("INFO")[0]
    assert "\r\nContent-Type: application/dtmf-relay\r\n" in info
    assert info.split("\r\n\r\n", 1)[1].startswith("Signal=1\r\nDuration=160\r\n")


@pytest.mark.parametrize("source", ["sipp", "bed"])
def test_a_member_presses_1_as_rfc4733_events(source: str, tmp_path: Path) -> None:
    need_pcap_play()
    if source == "sipp" and not (SIPP_SHARE / "dtmf_2833_1.pcap").is_file():
        pytest.skip("this SIPp ships no dtmf_2833_1.pcap (the bed writes its own)")
    media = {"dtmf_2833_1.pcap": dtmf_pcap(tmp_path / "ours.pcap")} if source == "bed" else {}
    with (
        RtpSink() as sink,
        SippUas("uas_dtmf_rfc4733.xml", tmp_path, media=media) as uas,
        SippUac(uas.uri, tmp_path, keys={"rtp_port": str(sink.port)}) as uac,
    ):
        run(uas, uac)
    assert {p.payload_type for p in sink.packets} == {101}
    events = sink.events()
    assert len(events) >= 8 and {e.event for e in events} == {1}
    assert events[-1].end and not events[0].end
    assert sink.packets[0].marker


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_the_registrar_challenges_every_register_without_credentials(
    algorithm: str, sipp: None, tmp_path: Path
) -> None:
    keys = {"algorithm": algorithm, "expires": "60"}
    with (
        SippUas("uas_register.xml", tmp_path, keys=keys) as pbx,
        SippUac(pbx.uri, tmp_path, "uac_register.xml") as ua,
    ):
        run(pbx, ua)
    register, challenged, accepted = "< REGISTER", "> 401", "> 200"
    assert pbx.flow() == [
        *(register, challenged, register, accepted),  # registration
        *(register, challenged, register, accepted),  # re-registration, challenged anew
        *(register, accepted),  # de-registration (Expires: 0)
    ]
    assert digest(pbx.find("SIP/2.0 401")[0])["algorithm"] == algorithm
    granted = pbx.find("SIP/2.0 200")[0]
    assert f"Contact: <sip:Rundruf@127.0.0.1:{ua.port};transport=UDP>;expires=60\r\n" in granted
    assert "\r\nExpires: 60\r\n" in granted
    assert "Contact:" not in pbx.find("SIP/2.0 200")[-1]


def test_sipp_places_calls_at_a_rate_for_the_benchmark(sipp: None, tmp_path: Path) -> None:
    with (
        SippUas("uas_answer.xml", tmp_path, calls=5) as uas,
        SippUac(uas.uri, tmp_path, "uac", calls=5, rate=20) as uac,
    ):
        run(uas, uac)
    assert uas.flow().count("< BYE") == 5


# ---------------------------------------------------------------------- baresip


def dominant_frequency(path: Path) -> tuple[float, float]:
    """RMS level and frequency (from zero crossings) of a 16-bit mono WAV's loud part."""
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        frames = w.readframes(w.getnframes())
    samples = struct.unpack(f"<{len(frames) // 2}h", frames)
    loud = [i for i, s in enumerate(samples) if abs(s) > 1000]
    if not loud:
        return 0.0, 0.0
    part = samples[loud[0] : loud[-1]]
    crossings = sum(1 for a, b in itertools.pairwise(part) if (a < 0) != (b < 0))
    rms = math.sqrt(sum(s * s for s in part) / len(part))
    return rms, crossings / 2 / (len(part) / 8000)


@pytest.fixture
def baresip(tmp_path: Path) -> Iterator[Baresip]:
    need_baresip()
    with Baresip(tmp_path) as phone:
        yield phone


def test_baresip_answers_and_records_what_the_caller_plays(
    baresip: Baresip, tmp_path: Path
) -> None:
    need_pcap_play()
    with SippUac(baresip.uri, tmp_path, "uac_play_tone.xml") as uac:
        assert uac.wait(30) == 0, uac.log() + baresip.log()
    assert without_100(uac.flow()) == [*ANSWERED, "> BYE", "< 200"]
    assert "m=audio" in uac.find("SIP/2.0 200")[0]
    baresip.stop()
    [recording] = baresip.recordings()
    rms, frequency = dominant_frequency(recording)
    assert rms > 5000, f"{recording} is (nearly) silent"
    assert 420 < frequency < 460


# ----------------------------------------------------------------------- pcaps


def test_the_bed_writes_rfc4733_events_of_the_digit(tmp_path: Path) -> None:
    packets = read_pcap(dtmf_pcap(tmp_path / "dtmf.pcap", "#"))
    events = [TelephoneEvent.parse(p.payload) for _, p in packets]
    assert [round(t, 2) for t, _ in packets] == [round(0.02 * i, 2) for i in range(10)]
    assert {e.event for e in events} == {11}
    assert [e.duration for e in events] == [160 * i for i in range(1, 9)] + [1280, 1280]
    assert [e.end for e in events] == [False] * 7 + [True] * 3
    assert [p.marker for _, p in packets] == [True] + [False] * 9
    assert {p.timestamp for _, p in packets} == {8000}


def test_rtp_packets_round_trip_and_reject_what_is_not_rtp() -> None:
    _, packet = tone_packets(0.1, payload_type=8)[1]
    assert RtpPacket.parse(bytes(packet)) == packet
    with pytest.raises(ValueError, match=r"^RTP packet of 11 bytes is shorter than its header$"):
        RtpPacket.parse(bytes(packet)[:11])
    with pytest.raises(ValueError, match=r"^RTP version 1, expected 2$"):
        RtpPacket.parse(b"\x40" + bytes(packet)[1:])
    with pytest.raises(ValueError, match=r"^telephone-event payload of 3 bytes, expected 4$"):
        TelephoneEvent.parse(b"\x01\x0a\x00")

"""A caller's recording from RTP (sip/recording.py, issue 16 mode 3): every sample where
its timestamp says, lost packets as silence, late ones in their place, bounded."""

from __future__ import annotations

from array import array

from edge_agent.sip.g711 import alaw_encode, ulaw_decode, ulaw_encode
from edge_agent.sip.recording import SPEECH_RMS, Recording, loud
from edge_agent.sip.rtp import RtpPacket
from tests.agent.sip_incoming_bed import tone

FRAME = 160


def packets(codes: bytes, *, ssrc: int = 7, ts: int = 1000, seq: int = 1) -> list[RtpPacket]:
    return [
        RtpPacket(
            0, (seq + n) & 0xFFFF, (ts + n * FRAME) & 0xFFFFFFFF, ssrc, codes[at : at + FRAME]
        )
        for n, at in enumerate(range(0, len(codes), FRAME))
    ]


def test_in_order_it_is_the_decoded_audio() -> None:
    codes = ulaw_encode(tone(1.0))
    recording = Recording("PCMU", 8000 * 5)
    for n, packet in enumerate(packets(codes)):
        recording.feed(packet, n * 0.02)
    assert recording.pcm() == ulaw_decode(codes)


def test_lost_packets_are_silence_and_late_ones_land_in_place() -> None:
    codes = ulaw_encode(tone(0.2))
    sent = packets(codes)
    late = sent.pop(3)
    del sent[5]  # lost for good (the sixth of the ten: index 6 of the original)
    recording = Recording("PCMU", 8000)
    for packet in sent:
        recording.feed(packet, 0.0)
    recording.feed(late, 0.0)
    expected = bytearray(ulaw_decode(codes))
    expected[6 * 2 * FRAME : 7 * 2 * FRAME] = bytes(2 * FRAME)
    assert recording.pcm() == bytes(expected)


def test_a_gap_without_packets_keeps_its_length() -> None:
    """A phone with voice activity detection sends nothing while silent: the recording
    keeps the pause, so later speech stays at its time."""
    codes = ulaw_encode(tone(0.1))
    recording = Recording("PCMU", 8000)
    for packet in packets(codes, ts=0):
        recording.feed(packet, 0.0)
    for packet in packets(codes, ts=8 * FRAME + 4000):
        recording.feed(packet, 0.5)
    pcm = recording.pcm()
    assert len(pcm) == 2 * (8 * FRAME + 4000 + len(codes))
    assert pcm[2 * 8 * FRAME : 2 * (8 * FRAME + 4000)] == bytes(8000)


def test_wrapping_timestamps_and_a_new_ssrc() -> None:
    codes = ulaw_encode(tone(0.1))
    recording = Recording("PCMU", 8000)
    for packet in packets(codes, ts=0xFFFFFFFF - 300):  # wraps within the stream
        recording.feed(packet, 0.0)
    for packet in packets(codes, ssrc=99, ts=5):  # the phone starts a new stream
        recording.feed(packet, 0.0)
    assert recording.pcm() == ulaw_decode(codes) * 2


def test_bounded_and_old_packets_ignored() -> None:
    codes = ulaw_encode(tone(1.0))
    recording = Recording("PCMU", 1000)
    sent = packets(codes, ts=5000)
    recording.feed(sent[0], 0.0)
    recording.feed(RtpPacket(0, 0, 4000, 7, codes[:FRAME]), 0.0)  # before the start
    recording.feed(RtpPacket(0, 0, 5000 + 10**9, 7, codes[:FRAME]), 0.0)  # far beyond
    for packet in sent[1:]:
        recording.feed(packet, 0.0)
    assert recording.samples == 1000 and recording.full
    assert recording.pcm() == ulaw_decode(codes[:1000])


def test_alaw() -> None:
    codes = alaw_encode(tone(0.1))
    recording = Recording("PCMA", 8000)
    for packet in packets(codes):
        recording.feed(packet, 0.0)
    assert loud(recording.pcm())


def test_speech_is_minus_40_dbfs() -> None:
    quiet = tone(0.02, amplitude=int(SPEECH_RMS * 1.41 * 0.8))  # RMS = amplitude / sqrt 2
    speech = tone(0.02, amplitude=int(SPEECH_RMS * 1.41 * 1.2))
    assert not loud(quiet)
    assert loud(speech)
    assert not loud(array("h", [0] * 160).tobytes())
    recording = Recording("PCMU", 8000)
    recording.feed(packets(ulaw_encode(quiet))[0], 1.0)
    assert recording.last_speech is None
    recording.feed(packets(ulaw_encode(speech), ts=1160)[0], 2.0)
    assert recording.last_speech == 2.0

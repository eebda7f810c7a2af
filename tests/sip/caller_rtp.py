"""What a trigger caller's phone sends as RTP: one continuous G.711 μ-law stream (20 ms
packets, silence where nobody speaks), its keys as RFC 4733 events in the same stream
(one SSRC, one sequence, timestamps on the 8 kHz clock), and a recorded message as
speech; written as one pcap with each packet at its time, for SIPp's play_pcap_audio.

A caller is a timeline of steps: `Wait(seconds)`, `Keys("4711#")`, `Speak(pcm)`. The
same timeline gives the times of the keys, so the SIP INFO variant of the caller sends
them at the same moments (`key_times`) over a stream of silence and speech alone.
"""

from __future__ import annotations

import wave
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edge_agent.sip.g711 import ulaw_decode, ulaw_encode
from tests.sip.bed import DTMF_EVENTS, RtpPacket, TelephoneEvent, TimedPacket, write_pcap

RATE = 8000
FRAME = 160  # samples in 20 ms
PT_PCMU = 0
PT_EVENT = 101
SSRC = 0x43414C4C  # "CALL"
SILENCE = b"\xff" * FRAME  # μ-law zero


@dataclass(frozen=True)
class Wait:
    """Silence for `seconds` (rounded to 20 ms frames)."""

    seconds: float


@dataclass(frozen=True)
class Keys:
    """Keys pressed one after another: each `press_ms` long, `gap_ms` between two."""

    text: str
    press_ms: int = 160
    gap_ms: int = 140


@dataclass(frozen=True)
class Speak:
    """Speech: 8 kHz 16-bit mono PCM (little-endian), sent as it is (μ-law coded)."""

    pcm: bytes


Step = Wait | Keys | Speak


def frames(seconds: float) -> int:
    return max(0, round(seconds * RATE / FRAME))


def _speech_frames(pcm: bytes) -> list[bytes]:
    coded = ulaw_encode(pcm)
    coded += SILENCE[: (-len(coded)) % FRAME]
    return [coded[i : i + FRAME] for i in range(0, len(coded), FRAME)]


@dataclass
class _Stream:
    """Packs frames and events into one RTP stream, one 20 ms slot at a time."""

    events: bool  # keys as RFC 4733 events (False: silence; the keys go as SIP INFO)
    slot: int = 0
    sequence: int = 1
    packets: list[TimedPacket] | None = None
    keys: list[tuple[float, str]] | None = None

    def __post_init__(self) -> None:
        self.packets, self.keys = [], []

    def _send(self, payload_type: int, timestamp: int, payload: bytes, marker: bool) -> None:
        assert self.packets is not None
        packet = RtpPacket(payload_type, self.sequence, timestamp, SSRC, payload, marker)
        self.packets.append((self.slot * FRAME / RATE, packet))
        self.sequence = (self.sequence + 1) & 0xFFFF

    def audio(self, frame: bytes) -> None:
        self._send(PT_PCMU, self.slot * FRAME, frame, marker=self.slot == 0)
        self.slot += 1

    def key(self, key: str, press_ms: int) -> None:
        """RFC 4733 section 2.5: a packet every 20 ms with the duration so far, all with the
        start's timestamp, the first marked, the end packet three times."""
        assert self.keys is not None
        self.keys.append((self.slot * FRAME / RATE, key))
        steps = max(1, press_ms // 20)
        if not self.events:
            for _ in range(steps):
                self.audio(SILENCE)
            return
        start = self.slot * FRAME
        for i in range(steps):
            end = i + 1 == steps
            payload = bytes(TelephoneEvent(DTMF_EVENTS[key], end, 10, (i + 1) * FRAME))
            self._send(PT_EVENT, start, payload, marker=i == 0)
            self.slot += 1
        for _ in range(2):  # the end packet twice more, 20 ms apart
            self._send(PT_EVENT, start, payload, marker=False)
            self.slot += 1


def build(
    steps: Sequence[Step], *, events: bool = True
) -> tuple[list[TimedPacket], list[tuple[float, str]]]:
    """The caller's RTP packets at their times, and (time, key) for every key pressed."""
    stream = _Stream(events)
    for step in steps:
        if isinstance(step, Wait):
            for _ in range(frames(step.seconds)):
                stream.audio(SILENCE)
        elif isinstance(step, Speak):
            for frame in _speech_frames(step.pcm):
                stream.audio(frame)
        else:
            for n, key in enumerate(step.text):
                if n:
                    for _ in range(frames(step.gap_ms / 1000)):
                        stream.audio(SILENCE)
                stream.key(key, step.press_ms)
    assert stream.packets is not None and stream.keys is not None
    return stream.packets, stream.keys


def duration(steps: Iterable[Step]) -> float:
    """Seconds the timeline lasts (the time of its last packet plus one frame)."""
    packets, _ = build(list(steps), events=False)
    return packets[-1][0] + FRAME / RATE if packets else 0.0


def caller_pcap(
    path: Path, steps: Sequence[Step], *, events: bool = True
) -> list[tuple[float, str]]:
    """Writes the timeline as a pcap; returns the (time, key) of its keys."""
    packets, keys = build(steps, events=events)
    write_pcap(path, packets)
    return keys


def spoken(pcm: bytes) -> bytes:
    """`pcm` as the agent hears it: through μ-law and back (what G.711 keeps of it)."""
    return ulaw_decode(ulaw_encode(pcm))


def read_pcm(path: Path) -> bytes:
    """The frames of an 8 kHz 16-bit mono WAV."""
    with wave.open(str(path), "rb") as w:
        if (w.getframerate(), w.getsampwidth(), w.getnchannels()) != (RATE, 2, 1):
            raise ValueError(f"{path.name}: not 8 kHz 16-bit mono")
        return w.readframes(w.getnframes())

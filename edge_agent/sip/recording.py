"""What a caller says, from the RTP of an incoming call (issue 16, mode 3's message).

Pure: packets in (already admitted: only the accepted media source's, `media_source.py`,
and decrypted when SRTP), 8 kHz 16-bit PCM out. Each packet's G.711 payload is decoded
and put where its RTP timestamp says, counted from the first packet: a packet lost
on the way leaves silence of its length, a late one still lands in its place, and a
phone that sends nothing while its user is silent (voice activity detection) leaves
silence of the same length. So the recording keeps the caller's timing sample for
sample; nothing is resampled, dropped or stretched. A new SSRC (the phone restarted
its stream) goes on where the recording stands. At most `max_samples`.

Speech: a 20 ms frame whose RMS reaches SPEECH_RMS (-40 dBFS) is speech. Telephone
speech runs at about -20 to -30 dBFS, a quiet line's noise below -50 dBFS
(comfort noise, RFC 3389, is sent at about that level); `last_speech` is when the
last such frame arrived, for the end after some seconds of silence
(docs/decisions/sip-incoming-calls.md).
"""

from __future__ import annotations

import math
import sys
from array import array

from edge_agent.sip.g711 import alaw_decode, ulaw_decode
from edge_agent.sip.rtp import RtpPacket

__all__ = ["RATE", "SPEECH_RMS", "Recording"]

RATE = 8000  # samples a second
SPEECH_RMS = round(32768 * 10 ** (-40 / 20))  # -40 dBFS: 328
FRAME = 160  # samples looked at for speech at once (20 ms)
_MASK32 = 0xFFFFFFFF
_BIG_ENDIAN = sys.byteorder == "big"


def loud(pcm: bytes, threshold: int = SPEECH_RMS) -> bool:
    """Whether some 20 ms of 16-bit little-endian `pcm` reach `threshold` RMS."""
    samples = array("h", pcm[: len(pcm) - len(pcm) % 2])
    if _BIG_ENDIAN:
        samples.byteswap()
    limit = threshold * threshold
    for start in range(0, len(samples), FRAME):
        frame = samples[start : start + FRAME]
        if frame and math.fsum(s * s for s in frame) / len(frame) >= limit:
            return True
    return False


class Recording:
    """One recording's PCM, built from the caller's packets (see the module text)."""

    def __init__(self, codec: str, max_samples: int, threshold: int = SPEECH_RMS) -> None:
        self._decode = alaw_decode if codec == "PCMA" else ulaw_decode
        self.max_samples = max(0, max_samples)
        self.threshold = threshold
        self._pcm = bytearray()
        self._ssrc: int | None = None
        self._base = 0  # the RTP timestamp of sample 0 (of the current SSRC's clock)
        self.first_packet: float | None = None  # when the first packet came (loop time)
        self.last_speech: float | None = None  # when the last loud frame came
        self.packets = 0

    @property
    def samples(self) -> int:
        return len(self._pcm) // 2

    @property
    def full(self) -> bool:
        return self.samples >= self.max_samples

    def feed(self, packet: RtpPacket, now: float) -> None:
        """One packet of the caller's audio (codec as given), arrived at `now`."""
        payload = packet.payload
        if not payload:
            return
        if packet.ssrc != self._ssrc:  # the first packet, or a new stream: go on from here
            self._ssrc = packet.ssrc
            self._base = (packet.timestamp - self.samples) & _MASK32
        offset = (packet.timestamp - self._base) & _MASK32
        if offset >= 0x80000000 or offset >= self.max_samples:
            return  # before the start (a late packet of before), or past the end
        payload = payload[: self.max_samples - offset]
        pcm = self._decode(payload)
        start = 2 * offset
        if len(self._pcm) < start:
            self._pcm.extend(bytes(start - len(self._pcm)))  # lost or unsent: silence
        self._pcm[start : start + len(pcm)] = pcm
        self.packets += 1
        if self.first_packet is None:
            self.first_packet = now
        if loud(pcm, self.threshold):
            self.last_speech = now

    def pcm(self) -> bytes:
        """The recording: 8 kHz 16-bit little-endian mono."""
        return bytes(self._pcm)

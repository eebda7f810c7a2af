"""Announcement audio: what a file is, and its telephony master.

Every announcement is kept as uploaded (or synthesised) and as a telephony
master, WAV PCM 16-bit mono 8 kHz, made here once. The agent plays the master
as it is, so what a member hears is exactly what the server converted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from api.domain import resample, wav
from api.errors import BadInput

TELEPHONY_RATE = 8000


@dataclass(frozen=True)
class AudioInfo:
    content_type: str
    duration_ms: int
    sample_rate: int
    channels: int
    sha256: str
    format: str  # "16-bit PCM, stereo, 48000 Hz"


@dataclass(frozen=True)
class Converted:
    original: AudioInfo
    master: AudioInfo
    master_data: bytes

    @property
    def is_master(self) -> bool:
        """The file was its own master, byte for byte: one copy is enough."""
        return self.original.sha256 == self.master.sha256


def _info(parsed: wav.Wav, data: bytes) -> AudioInfo:
    return AudioInfo(
        content_type="audio/wav",
        duration_ms=parsed.duration_ms,
        sample_rate=parsed.rate,
        channels=parsed.channels,
        sha256=hashlib.sha256(data).hexdigest(),
        format=parsed.description,
    )


def probe(data: bytes, max_seconds: int) -> wav.Wav:
    """The parsed WAV if it decodes and lasts at most max_seconds; BadInput otherwise."""
    if not data:
        raise BadInput("the file is empty", field="file")
    parsed = wav.parse(data)
    if parsed.frames > max_seconds * parsed.rate:
        raise BadInput(f"longer than {max_seconds} s", field="file")
    return parsed


def telephony_master(data: bytes, max_seconds: int) -> Converted:
    """Decodes a WAV (PCM 8-32 bit, A-law, μ-law; mono or stereo; 8-192 kHz) and
    converts it to the telephony master; BadInput with the reason when it cannot.

    CPU-bound (about a second for five minutes of 48 kHz stereo): callers in the
    event loop run it in a thread.
    """
    parsed = probe(data, max_seconds)
    samples = resample.resample(parsed.split(), parsed.rate, TELEPHONY_RATE)
    if not samples:
        raise BadInput("the recording is shorter than one telephony sample", field="file")
    master = wav.master(samples, TELEPHONY_RATE)
    return Converted(
        original=_info(parsed, data),
        master=_info(wav.parse(master), master),
        master_data=master,
    )

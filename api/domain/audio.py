"""What an uploaded audio file is, decided from its bytes alone."""

from __future__ import annotations

import hashlib
import io
import wave
from dataclasses import dataclass

from api.errors import BadInput


@dataclass(frozen=True)
class AudioInfo:
    content_type: str
    duration_ms: int
    sample_rate: int
    channels: int
    sha256: str


def probe(data: bytes, max_seconds: int) -> AudioInfo:
    """Accepts PCM WAV (8 to 48 kHz, mono or stereo, 8/16-bit); anything else is refused.

    Conversion to the telephony master (8 kHz mono 16-bit) and other formats
    come with the real dialer; until then only what we can decode is stored.
    """
    if not data:
        raise BadInput("the file is empty", field="file")
    try:
        with wave.open(io.BytesIO(data)) as wav:
            rate, channels, width = wav.getframerate(), wav.getnchannels(), wav.getsampwidth()
            frames = wav.getnframes()
            if wav.getcomptype() != "NONE":
                raise BadInput("only uncompressed PCM WAV is accepted", field="file")
            # The header may promise more than the file holds: count what is there.
            sound = wav.readframes(frames)
            if len(sound) < frames * channels * width:
                raise BadInput("the file ends before its sound does (truncated WAV)", field="file")
    except (wave.Error, EOFError) as exc:
        raise BadInput(f"not a PCM WAV file ({exc})", field="file") from None
    if not 8000 <= rate <= 48000:
        raise BadInput(f"sample rate {rate} Hz not supported (8000 to 48000)", field="file")
    if channels not in (1, 2) or width not in (1, 2):
        raise BadInput("only mono or stereo, 8 or 16 bit", field="file")
    if frames == 0:
        raise BadInput("the recording holds no sound", field="file")
    duration_ms = frames * 1000 // rate
    if duration_ms > max_seconds * 1000:
        raise BadInput(f"longer than {max_seconds} s", field="file")
    return AudioInfo(
        content_type="audio/wav",
        duration_ms=duration_ms,
        sample_rate=rate,
        channels=channels,
        sha256=hashlib.sha256(data).hexdigest(),
    )

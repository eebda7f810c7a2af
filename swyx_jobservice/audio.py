"""The recorded message: a PCM WAV, checked whole before a job is accepted."""

from __future__ import annotations

import hashlib
import io
import re
import wave
from dataclasses import dataclass
from typing import Any

from swyx_jobservice.errors import BadRequest, PayloadTooLarge

HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Recording:
    """What a job file says about its WAV: enough for the agent to check the
    download and to plan the broadcast without opening the audio."""

    sha256: str
    bytes: int
    duration_ms: int

    def to_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "bytes": self.bytes, "durationMs": self.duration_ms}

    @classmethod
    def parse(cls, value: Any) -> Recording:
        if not isinstance(value, dict):
            raise BadRequest("recording must be an object", "recording")
        sha = value.get("sha256")
        size = value.get("bytes")
        duration = value.get("durationMs")
        if not (isinstance(sha, str) and HEX64.fullmatch(sha)):
            raise BadRequest("recording.sha256 must be 64 lowercase hex digits", "recording")
        for name, number in (("bytes", size), ("durationMs", duration)):
            if type(number) is not int or number <= 0:
                raise BadRequest(f"recording.{name} must be a positive integer", "recording")
        assert isinstance(size, int) and isinstance(duration, int)  # narrowed above
        return cls(sha256=sha, bytes=size, duration_ms=duration)


def inspect_wav(data: bytes, *, max_bytes: int, max_seconds: float, field: str) -> Recording:
    """The recording's facts, or a precise error naming ``field``.

    Parsing the header is not enough: a WAV cut short (the PBX still writing, a
    truncated upload) has a header that promises frames the file does not hold,
    so every frame is read and counted.
    """
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"recording larger than {max_bytes} bytes", field)
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            channels = wav.getnchannels()
            width = wav.getsampwidth()
            rate = wav.getframerate()
            declared = wav.getnframes()
            frames = wav.readframes(declared)
    except (wave.Error, EOFError) as exc:
        # wave accepts only uncompressed PCM: A-law, MP3 and the rest land here.
        raise BadRequest(f"recording is not a PCM WAV file ({exc})", field) from None
    if channels < 1 or width < 1 or rate < 1:
        raise BadRequest("recording has an invalid WAV format header", field)
    if declared == 0:
        raise BadRequest("recording holds no audio frames", field)
    present = len(frames) // (channels * width)
    if present < declared:
        raise BadRequest(
            f"recording is truncated: {present} of {declared} audio frames present", field
        )
    seconds = declared / rate
    if seconds > max_seconds:
        raise BadRequest(f"recording lasts {seconds:.1f} s, longer than {max_seconds:g} s", field)
    return Recording(
        sha256=hashlib.sha256(data).hexdigest(),
        bytes=len(data),
        duration_ms=max(1, round(seconds * 1000)),
    )

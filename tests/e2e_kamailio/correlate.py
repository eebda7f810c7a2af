"""How much of a message a recording holds: the normalised cross-correlation of the two at
the best offset (1.0: the same waveform, any loudness), in pure Python.

The offset is found coarsely first (the 5 ms energy envelopes, every lag), then exactly
around the best few coarse offsets (every sample): a full search over every sample lag
would take minutes in Python for a few seconds of audio.
"""

from __future__ import annotations

import math
import operator
import sys
import wave
from array import array
from pathlib import Path

BLOCK = 40  # samples per envelope step: 5 ms at 8 kHz


def samples(pcm: bytes) -> array[int]:
    values = array("h", pcm[: len(pcm) // 2 * 2])
    if sys.byteorder == "big":
        values.byteswap()
    return values


def wav_samples(path: Path) -> array[int]:
    """The samples of an 8 kHz 16-bit mono WAV (baresip's recordings, the prompts)."""
    with wave.open(str(path), "rb") as w:
        if (w.getframerate(), w.getsampwidth(), w.getnchannels()) != (8000, 2, 1):
            raise ValueError(f"{path.name}: not 8 kHz 16-bit mono")
        return samples(w.readframes(w.getnframes()))


def _envelope(values: array[int]) -> list[float]:
    return [
        float(sum(map(abs, values[i : i + BLOCK])))
        for i in range(0, len(values) - BLOCK + 1, BLOCK)
    ]


def _normalised(reference: list[float] | array[int], window: list[float] | array[int]) -> float:
    dot = sum(map(operator.mul, reference, window))
    energy = math.sqrt(sum(map(operator.mul, reference, reference)))
    energy *= math.sqrt(sum(map(operator.mul, window, window)))
    return dot / energy if energy else 0.0


def best_correlation(message: array[int], recording: array[int], candidates: int = 3) -> float:
    """The highest normalised correlation of `message` with an equally long stretch of
    `recording` (0.0 when the recording is shorter than the message)."""
    n = len(message)
    if n == 0 or len(recording) < n:
        return 0.0
    coarse, long = _envelope(message), _envelope(recording)
    lags = range(len(long) - len(coarse) + 1)
    scored = sorted(
        ((_normalised(coarse, long[lag : lag + len(coarse)]), lag) for lag in lags), reverse=True
    )
    best = 0.0
    for _, lag in scored[:candidates]:
        centre = lag * BLOCK
        for offset in range(max(0, centre - BLOCK), min(len(recording) - n, centre + BLOCK) + 1):
            best = max(best, _normalised(message, recording[offset : offset + n]))
    return best

"""The measure of mode 3's test (correlate.py) tells a message from another sound: the
message found at any offset and loudness scores ~1, a different sound far less."""

from __future__ import annotations

import math
import random
from array import array

from tests.e2e_kamailio.correlate import best_correlation


def chirp(seconds: float, start_hz: float, end_hz: float, level: float = 8000) -> array[int]:
    n = int(seconds * 8000)
    values = array("h")
    for i in range(n):
        t = i / 8000
        hz = start_hz + (end_hz - start_hz) * i / n
        values.append(int(level * math.sin(2 * math.pi * hz * t)))
    return values


def test_the_message_is_found_at_its_offset_whatever_its_loudness() -> None:
    message = chirp(0.5, 300, 1200)
    recording = (
        array("h", [0] * 2437) + array("h", (v // 3 for v in message)) + array("h", [0] * 3000)
    )
    assert best_correlation(message, recording) > 0.999


def test_another_sound_or_noise_does_not_pass_for_the_message() -> None:
    message = chirp(0.5, 300, 1200)
    other = array("h", [0] * 1000) + chirp(0.5, 1500, 600) + array("h", [0] * 1000)
    noise = array("h", (random.Random(7).randint(-8000, 8000) for _ in range(8000)))
    assert best_correlation(message, other) < 0.5
    assert best_correlation(message, noise) < 0.5
    assert best_correlation(message, message[:100]) == 0.0  # shorter than the message

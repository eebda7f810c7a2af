"""The caller's spoken message for mode 3: German speech from espeak-ng as an 8 kHz 16-bit
mono telephony master (make_prompts' resampler), made once per test session."""

from __future__ import annotations

import shutil
import wave
from pathlib import Path

import pytest

from swyx_jobservice.callrouting.make_prompts import synthesize
from tests.sip.bed import _need

# About three seconds: long enough to tell a message from noise, short for the suite.
MESSAGE = "Achtung, Wasserschaden im Keller. Bitte sofort kommen."


def need_espeak() -> str:
    espeak = shutil.which("espeak-ng")
    _need(espeak is not None, "espeak-ng")
    assert espeak is not None
    return espeak


def message_pcm(folder: Path, text: str = MESSAGE) -> bytes:
    """The message as PCM (8 kHz, 16-bit, mono, little-endian)."""
    out = folder / "message.wav"
    if not out.exists():
        synthesize(need_espeak(), "de", text, out)
    with wave.open(str(out), "rb") as w:
        assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (8000, 2, 1)
        return w.readframes(w.getnframes())


@pytest.fixture(scope="session")
def message(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return message_pcm(tmp_path_factory.mktemp("speech"))

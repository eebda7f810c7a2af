"""The trigger call's prompts as PCM, per language, read once and kept in memory.

Files are `prompts/<language>/<file>` next to this module (definition.PROMPTS names
them). A prompt missing in the tenant's language is taken from the other language;
missing in both (or unreadable), a short tone stands in: the caller still hears that
something happened, and an alarm is never lost for want of a prompt file.
"""

from __future__ import annotations

import functools
import io
import logging
import math
import sys
import threading
import wave
from array import array
from pathlib import Path

from edge_agent.broadcast import audio
from edge_agent.ivr import definition

log = logging.getLogger(__name__)

PROMPT_DIR = Path(__file__).with_name("prompts")
DEFAULT_LANGUAGE = "de"
# What stands in for a prompt no file has: a short beep, quieter than the record tone.
STAND_IN_HZ = 440
STAND_IN_MS = 200
STAND_IN_LEVEL = 0.2


def tone(hz: int, ms: int, level: float = 0.3) -> bytes:
    """A sine tone as 8 kHz 16-bit mono PCM (little-endian)."""
    rate = definition.SAMPLE_RATE
    amplitude = int(32767 * level)
    step = 2 * math.pi * hz / rate
    samples = array("h", (int(amplitude * math.sin(step * n)) for n in range(rate * ms // 1000)))
    return _little_endian(samples)


@functools.cache
def record_tone() -> bytes:
    """The tone before a recording starts (definition.RECORD_TONE_*)."""
    return tone(definition.RECORD_TONE_HZ, definition.RECORD_TONE_MS)


def language_of(settings: object) -> str:
    """The tenant's language from the cached settings; "de" for anything unusable."""
    value = settings.get("language") if isinstance(settings, dict) else None
    if isinstance(value, str) and value.strip().lower() in definition.LANGUAGES:
        return value.strip().lower()
    return DEFAULT_LANGUAGE


def pcm_of_wav(data: bytes) -> bytes:
    """The PCM of any PCM WAV, as the telephony master (8 kHz 16-bit mono)."""
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            shape = (wav.getframerate(), wav.getsampwidth(), wav.getnchannels())
            if shape == (definition.SAMPLE_RATE, definition.SAMPLE_WIDTH, definition.CHANNELS):
                return wav.readframes(wav.getnframes())  # a master already (the shipped ones)
    except (EOFError, wave.Error) as exc:
        raise audio.AudioError(f"not a PCM WAV: {exc}") from exc
    master = audio.telephony_master(data)
    with wave.open(io.BytesIO(master), "rb") as wav:
        return wav.readframes(wav.getnframes())


class PromptBook:
    """Prompt name -> PCM; each file read at most once per process."""

    def __init__(self, folder: Path = PROMPT_DIR) -> None:
        self.folder = folder
        self._pcm: dict[tuple[str, str], bytes | None] = {}  # (language, file) -> PCM
        self._lock = threading.Lock()  # read from worker threads
        self.stand_in = tone(STAND_IN_HZ, STAND_IN_MS, STAND_IN_LEVEL)

    def pcm(self, name: str, language: str) -> bytes:
        """The prompt `name` (a key of definition.PROMPTS); never raises for a file."""
        file = definition.PROMPTS[name]
        others = [lang for lang in definition.LANGUAGES if lang != language]
        for lang in (language, *others):
            found = self._load(lang, file)
            if found is not None:
                if lang != language:
                    log.warning("prompt %s missing in %s: playing the %s one", file, language, lang)
                return found
        log.error("prompt %s is missing in every language: playing a tone instead", file)
        return self.stand_in

    def preload(self, language: str) -> None:
        """Reads every prompt of `language` now (a call then never waits for a disk)."""
        for name in definition.PROMPTS:
            self.pcm(name, language)

    def _load(self, language: str, file: str) -> bytes | None:
        key = (language, file)
        with self._lock:
            if key in self._pcm:
                return self._pcm[key]
        found = self._read(self.folder / language / file)
        with self._lock:
            self._pcm[key] = found
        return found

    @staticmethod
    def _read(path: Path) -> bytes | None:
        try:
            return pcm_of_wav(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, audio.AudioError) as exc:
            log.error("prompt %s cannot be read: %s", path, exc)
            return None


def _little_endian(samples: array[int]) -> bytes:
    if sys.byteorder == "big":
        samples = array("h", samples)
        samples.byteswap()
    return samples.tobytes()

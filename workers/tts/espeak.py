"""espeak-ng: the default engine, a formant synthesiser installed from the distribution.

Robotic but always there, fast, and understandable on a phone line. It writes
22050 Hz WAV; `store_synthesised` makes the 8 kHz master.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from api.models import Language
from api.settings import Settings
from workers.tts.engine import Engine
from workers.tts.errors import SynthesisError
from workers.tts.process import run

# espeak-ng's voice for each language we offer.
VOICES = {Language.DE: "de", Language.EN: "en-gb"}


@dataclass(frozen=True)
class EspeakEngine(Engine):
    name: ClassVar[str] = "espeak-ng"

    binary: str = "espeak-ng"
    words_per_minute: int = 150
    timeout: float = 120.0

    @classmethod
    def from_settings(cls, settings: Settings) -> EspeakEngine:
        return cls(
            binary=settings.tts_espeak_binary,
            words_per_minute=settings.tts_espeak_words_per_minute,
            timeout=settings.tts_timeout_seconds,
        )

    def argv(self, language: Language, out: Path) -> list[str]:
        """The command line; the text is not on it (it goes to stdin, read as UTF-8)."""
        return [
            self.binary,
            "-v",
            VOICES[language],
            "-s",
            str(self.words_per_minute),
            "-b",
            "1",
            "-w",
            str(out),
            "--stdin",
        ]

    async def synthesize(self, text: str, language: Language) -> bytes:
        with tempfile.TemporaryDirectory(prefix="rundruf-espeak-") as tmp:
            out = Path(tmp) / "speech.wav"
            await run(self.argv(language, out), text.encode("utf-8"), self.timeout, self.name)
            data = await asyncio.to_thread(_read, out)
        if not data:
            raise SynthesisError(f"{self.name} wrote no audio")
        return data


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""

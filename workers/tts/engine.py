"""The engine port: speaks a text in a language and returns a WAV file's bytes."""

from __future__ import annotations

import abc
from typing import ClassVar

from api.models import Language
from api.settings import Settings


class Engine(abc.ABC):
    """A text-to-speech engine; adapters: `espeak.EspeakEngine`, `coqui.CoquiEngine`."""

    name: ClassVar[str]

    @abc.abstractmethod
    async def synthesize(self, text: str, language: Language) -> bytes:
        """The WAV (any rate the telephony master accepts); SynthesisError says why not."""


def from_settings(settings: Settings) -> Engine:
    """The engine RUNDRUF_TTS_ENGINE names, configured from the settings."""
    if settings.tts_engine == "coqui":
        from workers.tts.coqui import CoquiEngine

        return CoquiEngine.from_settings(settings)
    from workers.tts.espeak import EspeakEngine

    return EspeakEngine.from_settings(settings)

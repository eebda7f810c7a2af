"""coqui-tts: neural voices from a local model (extra ``[coqui]``), never downloaded.

The model runs in a child process (`coqui_runner.py` under the Python that has
coqui-tts and torch): the worker stays free of torch's gigabytes and threads,
a hung or crashed synthesis is killed at the time limit without taking the
worker with it, and the main install stays small. Why: docs/decisions/tts-engines.md.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from api.models import Language
from api.settings import Settings
from workers.tts.engine import Engine
from workers.tts.errors import SynthesisError
from workers.tts.process import run

RUNNER = Path(__file__).with_name("coqui_runner.py")


@dataclass(frozen=True)
class CoquiEngine(Engine):
    name: ClassVar[str] = "coqui-tts"

    model_path: Path
    config_path: Path
    # The interpreter with coqui-tts installed (its own venv, or the worker's).
    python: Path = Path(sys.executable)
    languages: tuple[Language, ...] = (Language.DE,)
    speaker: str | None = None
    timeout: float = 120.0

    @classmethod
    def from_settings(cls, settings: Settings) -> CoquiEngine:
        assert settings.tts_coqui_model_path is not None  # checked by Settings
        assert settings.tts_coqui_config_path is not None
        return cls(
            model_path=settings.tts_coqui_model_path,
            config_path=settings.tts_coqui_config_path,
            python=settings.tts_coqui_python or Path(sys.executable),
            languages=tuple(Language(code) for code in settings.tts_coqui_languages),
            speaker=settings.tts_coqui_speaker,
            timeout=settings.tts_timeout_seconds,
        )

    def argv(self) -> list[str]:
        # -I: the runner sees neither PYTHON* variables, nor user site-packages, nor its folder.
        return [str(self.python), "-I", str(RUNNER), "synthesize"]

    async def synthesize(self, text: str, language: Language) -> bytes:
        if language not in self.languages:
            spoken = ", ".join(lang.value for lang in self.languages)
            raise SynthesisError(
                f"the coqui-tts model speaks {spoken}, not {language.value} "
                "(RUNDRUF_TTS_COQUI_LANGUAGES)"
            )
        for label, path in (("model", self.model_path), ("model config", self.config_path)):
            if not path.is_file():
                raise SynthesisError(f"the coqui-tts {label} {path} is missing")
        with tempfile.TemporaryDirectory(prefix="rundruf-coqui-") as tmp:
            out = Path(tmp) / "speech.wav"
            request = {
                "model_path": str(self.model_path),
                "config_path": str(self.config_path),
                "text": text,
                "language": language.value,
                "speaker": self.speaker,
                "out": str(out),
            }
            await run(self.argv(), json.dumps(request).encode(), self.timeout, self.name)
            try:
                data = await asyncio.to_thread(out.read_bytes)
            except FileNotFoundError:
                data = b""
        if not data:
            raise SynthesisError(f"{self.name} wrote no audio")
        return data

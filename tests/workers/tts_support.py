"""What the TTS tests share: the coqui Python, a tiny coqui model, and audio measurements."""

from __future__ import annotations

import atexit
import functools
import math
import os
import shutil
import subprocess
import tempfile
from array import array
from pathlib import Path

import pytest

from api.domain import audio, wav
from workers.tts.coqui import RUNNER

REQUIRE = os.environ.get("RUNDRUF_REQUIRE_SERVICES") == "1"
# `make test` hands in the Python of its cached coqui venv (`make coqui`).
COQUI_PYTHON = Path(
    os.environ.get("RUNDRUF_TEST_COQUI_PYTHON")
    or Path.home() / ".cache/rundruf/venv-coqui/bin/python"
)


def need_coqui() -> Path:
    """The coqui Python; skips on a developer machine without it, fails where it is required."""
    if not COQUI_PYTHON.is_file():
        message = f"coqui-tts is not installed at {COQUI_PYTHON} (`make coqui`)"
        if REQUIRE:
            pytest.fail(message)
        pytest.skip(message)
    return COQUI_PYTHON


def build_tiny_model(directory: Path) -> tuple[Path, Path]:
    """(model, config) of an untrained tiny VITS model, made by the real coqui code."""
    subprocess.run(
        [str(need_coqui()), "-I", str(RUNNER), "tiny-model", str(directory)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return directory / "model.pth", directory / "config.json"


@functools.cache
def shared_tiny_model() -> tuple[Path, Path]:
    """One tiny model for every test of the session (built once, removed at exit)."""
    directory = Path(tempfile.mkdtemp(prefix="rundruf-coqui-model-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return build_tiny_model(directory)


def master_of(data: bytes) -> wav.Wav:
    """The telephony master made of `data`, parsed."""
    converted = audio.telephony_master(data, max_seconds=300)
    return wav.parse(converted.master_data)


def rms(parsed: wav.Wav) -> float:
    """Root mean square of a 16-bit mono WAV's samples (0 is silence, 32767 full scale)."""
    assert (parsed.bits, parsed.channels) == (16, 1)
    samples = array("h", parsed.data)
    return math.sqrt(sum(s * s for s in samples) / max(1, len(samples)))

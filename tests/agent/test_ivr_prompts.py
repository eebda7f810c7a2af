"""The IVR's prompts (edge_agent/ivr/prompts.py): per language, read once, never missing."""

from __future__ import annotations

import io
import itertools
import wave
from pathlib import Path

import pytest

from edge_agent.ivr import definition
from edge_agent.ivr.prompts import PromptBook, language_of, record_tone


def _wav(path: Path, value: int, rate: int = 8000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(value.to_bytes(2, "little", signed=True) * (rate // 10))
    path.write_bytes(buffer.getvalue())


def test_the_language_of_the_tenant_or_german(tmp_path: Path) -> None:
    assert language_of({"language": "en"}) == "en"
    assert language_of({"language": " EN "}) == "en"
    unusable: list[object] = [{}, {"language": "fr"}, {"language": 3}, {"language": None}, None]
    for settings in unusable:
        assert language_of(settings) == "de"


def test_the_tenant_language_then_the_other_then_a_tone(tmp_path: Path) -> None:
    pin, menu = definition.PROMPTS["pin"], definition.PROMPTS["menu"]
    _wav(tmp_path / "en" / pin, 1000)
    _wav(tmp_path / "de" / pin, 2000)
    _wav(tmp_path / "de" / menu, 3000, rate=16000)  # another rate: made a master
    book = PromptBook(tmp_path)
    assert book.pcm("pin", "en")[:2] == (1000).to_bytes(2, "little", signed=True)
    assert book.pcm("pin", "de")[:2] == (2000).to_bytes(2, "little", signed=True)
    assert len(book.pcm("menu", "de")) == 8000 // 10 * 2
    assert book.pcm("menu", "en") == book.pcm("menu", "de")  # missing in English
    assert book.pcm("goodbye", "de") == book.stand_in  # missing everywhere
    (tmp_path / "de" / "rundruf_abgebrochen.wav").write_bytes(b"no wav")
    assert book.pcm("cancelled", "de") == book.stand_in  # unreadable


def test_each_file_is_read_once(tmp_path: Path) -> None:
    path = tmp_path / "de" / definition.PROMPTS["pin"]
    _wav(path, 1000)
    book = PromptBook(tmp_path)
    first = book.pcm("pin", "de")
    path.unlink()
    assert book.pcm("pin", "de") == first


def test_an_unknown_prompt_name_is_a_bug(tmp_path: Path) -> None:
    with pytest.raises(KeyError):
        PromptBook(tmp_path).pcm("nonsense", "de")


def test_the_record_tone_is_1_khz_for_300_ms() -> None:
    pcm = record_tone()
    assert len(pcm) == 8000 * 300 // 1000 * 2
    samples = [int.from_bytes(pcm[i : i + 2], "little", signed=True) for i in range(0, 64, 2)]
    # 1 kHz at 8 kHz: 8 samples a period, a sign change every 4 samples.
    changes = sum(1 for a, b in itertools.pairwise(samples) if (a < 0) != (b < 0))
    assert 7 <= changes <= 8


def test_the_shipped_prompts_are_read_in_both_languages() -> None:
    book = PromptBook()
    for language in definition.LANGUAGES:
        for name in definition.PROMPTS:
            pcm = book.pcm(name, language)
            assert pcm != book.stand_in, (language, name)
            assert len(pcm) > 8000  # half a second at least
    assert book.pcm("pin", "de") != book.pcm("pin", "en")

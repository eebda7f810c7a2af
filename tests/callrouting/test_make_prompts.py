"""swyx_jobservice/callrouting/make_prompts.py: prompt names and texts, resampling, trimming,
WAV format."""

from __future__ import annotations

import importlib.util
import itertools
import math
import re
import shutil
import wave
from pathlib import Path
from types import ModuleType

import pytest

from edge_agent.ivr import definition

HERE = Path(__file__).resolve()
CALLROUTING = HERE.parents[2] / "swyx_jobservice" / "callrouting"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_prompts", CALLROUTING / "make_prompts.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_prompts = _load()


def tone(freq: float, rate: int, seconds: float = 0.5, amplitude: float = 10000) -> list[int]:
    n = int(rate * seconds)
    return [round(amplitude * math.sin(2 * math.pi * freq * i / rate)) for i in range(n)]


def rms(samples: list[int]) -> float:
    # Leave out the edges, where the filter sees the zero padding.
    middle = samples[len(samples) // 10 : -len(samples) // 10]
    return math.sqrt(sum(s * s for s in middle) / len(middle))


def test_every_prompt_the_script_plays_has_a_text_in_each_language() -> None:
    lua = (CALLROUTING / "rundruf.lua").read_text(encoding="utf-8")
    block = lua[lua.index("M.PROMPTS = {") :]
    block = block[: block.index("}")]

    for lang in ("de", "en"):
        texts = make_prompts.texts(lang)
        assert set(re.findall(r'"(rundruf_\w+\.wav)"', block)) == set(texts)
        assert all(text.strip() for text in texts.values())


def test_it_speaks_the_texts_of_the_one_definition() -> None:
    assert make_prompts.texts("de") == {f: t["de"] for f, t in definition.TEXTS.items()}
    assert make_prompts.texts("en") == {f: t["en"] for f, t in definition.TEXTS.items()}
    with pytest.raises(ValueError, match="no prompts in 'fr'"):
        make_prompts.texts("fr")


def test_silence_before_and_after_the_speech_is_trimmed_to_a_margin() -> None:
    margin = 8000 * make_prompts.TRIM_MARGIN_MS // 1000
    speech = tone(1000, 8000, seconds=0.25)
    samples = [0] * 4000 + [3] * 100 + speech + [-5] * 100 + [0] * 8000

    out = make_prompts.trim(samples, 8000)

    first = next(i for i, s in enumerate(speech) if abs(s) > make_prompts.TRIM_LEVEL)
    last = max(i for i, s in enumerate(speech) if abs(s) > make_prompts.TRIM_LEVEL)
    assert out == samples[4100 + first - margin : 4100 + last + 1 + margin]
    assert make_prompts.trim([0] * 10, 8000) == [0] * 10  # nothing to hear: left alone


def test_a_speech_band_tone_keeps_its_level() -> None:
    src = tone(1000, 22050)
    out = make_prompts.resample(src, 22050, 8000)

    assert len(out) == len(src) * 8000 // 22050
    assert rms(out) == pytest.approx(rms(src), rel=0.05)
    crossings = sum(1 for a, b in itertools.pairwise(out) if a < 0 <= b)
    assert crossings == pytest.approx(500, abs=3)  # 1 kHz for 0.5 s


def test_a_tone_above_the_new_nyquist_frequency_does_not_fold_back() -> None:
    src = tone(6000, 22050)
    out = make_prompts.resample(src, 22050, 8000)

    # Plain linear interpolation would turn this into a loud 2 kHz tone.
    assert rms(out) < 0.02 * rms(src)


def test_written_prompts_are_8khz_16bit_mono(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    make_prompts.write_wav(path, 8000, [0, 1, -1, 32767, -32768])

    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (8000, 2, 1)
    assert make_prompts.read_wav(path) == (8000, [0, 1, -1, 32767, -32768])


def test_espeak_ng_speaks_a_prompt(tmp_path: Path) -> None:
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.skip("espeak-ng is not installed (only needed to generate the prompts)")
    path = tmp_path / "rundruf_ausgeloest.wav"
    make_prompts.synthesize(espeak, "de", make_prompts.texts("de")[path.name], path)

    rate, samples = make_prompts.read_wav(path)
    assert rate == 8000
    assert 0.5 < len(samples) / rate < 5
    assert rms(samples) > 100


def test_it_writes_every_prompt_of_a_language(tmp_path: Path) -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (only needed to generate the prompts)")

    assert make_prompts.main(["--lang", "en", "--out", str(tmp_path)]) == 0

    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(definition.PROMPTS.values())
    rate, samples = make_prompts.read_wav(tmp_path / "rundruf_auf_wiederhoeren.wav")
    # "Goodbye." with no more than the margins of silence around it.
    assert rate == 8000
    assert 0.2 < len(samples) / rate < 1.5

"""The engines on their own: real espeak-ng and real coqui-tts, no database."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest

from api.domain import wav
from api.errors import ConfigurationError
from api.models import Language
from tests.conftest import make_settings
from tests.workers.tts_support import COQUI_PYTHON, master_of, need_coqui, rms, shared_tiny_model
from workers.tts import engine as engines
from workers.tts.coqui import CoquiEngine
from workers.tts.errors import SynthesisError
from workers.tts.espeak import EspeakEngine

SHORT = {Language.DE: "Achtung.", Language.EN: "Attention."}
LONG = {
    Language.DE: "Achtung, dies ist ein Probealarm. Bitte verlassen Sie das Gebäude über "
    "das Treppenhaus und sammeln Sie sich am Parkplatz vor dem Haupteingang.",
    Language.EN: "Attention, this is a fire drill. Please leave the building by the stairs "
    "and gather in the car park in front of the main entrance.",
}
# Text that a shell or an option parser would act on; it must stay words to speak.
OWNED = (Path("/tmp/rundruf-tts-owned.wav"), Path("/tmp/rundruf-tts-owned"))
HOSTILE = f"-w {OWNED[0]} --help; $(touch {OWNED[1]}) `id` | cat &"


def clear_owned() -> None:
    for path in OWNED:
        path.unlink(missing_ok=True)


def owned() -> bool:
    """Whether the hostile text was obeyed (a file it names appeared)."""
    return any(path.exists() for path in OWNED)


def espeak() -> EspeakEngine:
    binary = shutil.which("espeak-ng")
    if binary is None:
        pytest.fail("espeak-ng is not installed (make services installs it)")
    return EspeakEngine(binary=binary)


@pytest.fixture
def tiny_model() -> tuple[Path, Path]:
    return shared_tiny_model()


def coqui(
    model: tuple[Path, Path], languages: tuple[Language, ...] = (Language.DE, Language.EN)
) -> CoquiEngine:
    return CoquiEngine(
        model_path=model[0], config_path=model[1], python=need_coqui(), languages=languages
    )


# --------------------------------------------------------------------------- espeak-ng


@pytest.mark.parametrize("language", [Language.DE, Language.EN])
async def test_espeak_speaks_a_wav_that_becomes_an_audible_telephony_master(language):
    data = await espeak().synthesize(LONG[language], language)

    original = wav.parse(data)
    assert original.description == "16-bit PCM, mono, 22050 Hz"
    master = master_of(data)
    assert master.description == "16-bit PCM, mono, 8000 Hz"
    # About 25 words at 150 words a minute: some seconds, not a blip and not a minute.
    assert 4_000 < master.duration_ms < 20_000
    assert rms(master) > 300


@pytest.mark.parametrize("language", [Language.DE, Language.EN])
async def test_espeak_takes_longer_for_a_longer_text(language):
    short = master_of(await espeak().synthesize(SHORT[language], language))
    long = master_of(await espeak().synthesize(LONG[language], language))
    assert 300 < short.duration_ms < 3_000
    assert long.duration_ms > 4 * short.duration_ms


async def test_espeak_speaks_german_and_english_with_their_own_voices():
    engine = espeak()
    assert engine.argv(Language.DE, Path("x.wav"))[1:3] == ["-v", "de"]
    assert engine.argv(Language.EN, Path("x.wav"))[1:3] == ["-v", "en-gb"]
    german = await engine.synthesize("Guten Morgen", Language.DE)
    english = await engine.synthesize("Guten Morgen", Language.EN)
    assert german != english


async def test_espeak_reads_options_and_shell_syntax_in_the_text_as_words(tmp_path):
    clear_owned()
    data = await espeak().synthesize(HOSTILE, Language.EN)

    # Spoken, not obeyed: no file appeared, and the audio is as long as the words.
    assert not owned()
    assert master_of(data).duration_ms > 3_000
    assert "--stdin" in espeak().argv(Language.EN, tmp_path / "x.wav")
    assert HOSTILE not in espeak().argv(Language.EN, tmp_path / "x.wav")


async def test_a_missing_espeak_binary_is_a_reason_not_a_crash(tmp_path):
    engine = EspeakEngine(binary=str(tmp_path / "no-such-espeak"))
    with pytest.raises(SynthesisError, match=r"^espeak-ng cannot be started: No such file"):
        await engine.synthesize("Achtung.", Language.DE)


async def test_an_engine_that_fails_says_why(tmp_path):
    fake = _script(tmp_path / "espeak-ng", "echo 'Error: voice does not exist' >&2; exit 1")
    with pytest.raises(SynthesisError) as err:
        await EspeakEngine(binary=str(fake)).synthesize("Achtung.", Language.DE)
    assert str(err.value) == "espeak-ng failed (exit code 1): Error: voice does not exist"


async def test_an_engine_that_writes_nothing_fails(tmp_path):
    fake = _script(tmp_path / "espeak-ng", "exit 0")
    with pytest.raises(SynthesisError, match=r"^espeak-ng wrote no audio$"):
        await EspeakEngine(binary=str(fake)).synthesize("Achtung.", Language.DE)


async def test_an_engine_that_hangs_is_killed_at_the_time_limit(tmp_path):
    marker = tmp_path / "child-still-running"
    # The child of the engine must die with it (the whole process group is killed).
    fake = _script(tmp_path / "espeak-ng", f"(sleep 30; touch {marker}) & sleep 30")
    engine = EspeakEngine(binary=str(fake), timeout=0.5)
    with pytest.raises(SynthesisError, match=r"^espeak-ng did not finish within 0\.5 s$"):
        await engine.synthesize("Achtung.", Language.DE)
    assert not marker.exists()


def _script(path: Path, body: str) -> Path:
    path.write_text(f"#!/bin/sh\ncat >/dev/null\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


# --------------------------------------------------------------------------- coqui-tts


@pytest.mark.parametrize("language", [Language.DE, Language.EN])
async def test_coqui_speaks_a_wav_that_becomes_an_audible_telephony_master(tiny_model, language):
    data = await coqui(tiny_model).synthesize(LONG[language], language)

    original = wav.parse(data)
    assert original.description == "16-bit PCM, mono, 22050 Hz"
    master = master_of(data)
    assert master.description == "16-bit PCM, mono, 8000 Hz"
    assert master.duration_ms > 1_000
    assert rms(master) > 300


async def test_coqui_takes_longer_for_a_longer_text(tiny_model):
    engine = coqui(tiny_model)
    short = master_of(await engine.synthesize(SHORT[Language.DE], Language.DE))
    long = master_of(await engine.synthesize(LONG[Language.DE], Language.DE))
    # Durations are sampled (VITS' stochastic duration predictor): 30 runs of the tiny
    # model gave 0.7-1.1 s for the short and 7.0-8.8 s for the long text.
    assert long.duration_ms > 3 * short.duration_ms


async def test_coqui_reads_options_and_shell_syntax_in_the_text_as_words(tiny_model):
    clear_owned()
    data = await coqui(tiny_model).synthesize(HOSTILE, Language.EN)
    assert not owned()
    assert master_of(data).duration_ms > 500


async def test_coqui_refuses_a_language_its_model_does_not_speak(tiny_model):
    engine = coqui(tiny_model, languages=(Language.DE,))
    with pytest.raises(SynthesisError) as err:
        await engine.synthesize("Attention.", Language.EN)
    assert str(err.value) == ("the coqui-tts model speaks de, not en (RUNDRUF_TTS_COQUI_LANGUAGES)")


async def test_coqui_without_its_model_file_says_which_is_missing(tiny_model, tmp_path):
    engine = CoquiEngine(
        model_path=tmp_path / "missing.pth", config_path=tiny_model[1], python=COQUI_PYTHON
    )
    with pytest.raises(SynthesisError) as err:
        await engine.synthesize("Achtung.", Language.DE)
    assert str(err.value) == f"the coqui-tts model {tmp_path / 'missing.pth'} is missing"


async def test_coqui_with_a_broken_model_fails_with_the_reason(tiny_model, tmp_path):
    broken = tmp_path / "model.pth"
    broken.write_bytes(b"not a checkpoint")
    engine = coqui((broken, tiny_model[1]))
    with pytest.raises(SynthesisError, match=r"^coqui-tts failed \(exit code 3\): \w+"):
        await engine.synthesize("Achtung.", Language.DE)


def test_the_coqui_runner_cannot_reach_the_network():
    import subprocess

    probe = (
        "import socket, coqui_runner\n"
        "coqui_runner.forbid_downloads()\n"
        "from TTS.utils.manage import ModelManager\n"
        "manager = ModelManager(progress_bar=False)\n"
        "for attempt in (lambda: socket.create_connection(('127.0.0.1', 9)),\n"
        "                lambda: manager.download_model('tts_models/de/thorsten/vits')):\n"
        "    try:\n"
        "        attempt()\n"
        "    except RuntimeError as exc:\n"
        "        print(exc)\n"
    )
    runner_dir = Path(__file__).parents[2] / "workers" / "tts"
    done = subprocess.run(
        [str(need_coqui()), "-c", probe],
        cwd=runner_dir,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    refusal = "downloads are off in Rundruf: configure a local model"
    assert done.stdout.splitlines() == [refusal, refusal]


# --------------------------------------------------------------------------- settings


def test_espeak_is_the_default_engine():
    engine = engines.from_settings(make_settings())
    assert isinstance(engine, EspeakEngine)
    assert (engine.binary, engine.words_per_minute, engine.timeout) == ("espeak-ng", 150, 120.0)


def test_the_coqui_engine_is_built_from_its_settings(tmp_path):
    settings = make_settings(
        tts_engine="coqui",
        tts_coqui_model_path=tmp_path / "model.pth",
        tts_coqui_config_path=tmp_path / "config.json",
        tts_coqui_python=tmp_path / "python",
        tts_coqui_languages=["de", "en"],
        tts_coqui_speaker="thorsten",
        tts_timeout_seconds=30,
    )
    assert engines.from_settings(settings) == CoquiEngine(
        model_path=tmp_path / "model.pth",
        config_path=tmp_path / "config.json",
        python=tmp_path / "python",
        languages=(Language.DE, Language.EN),
        speaker="thorsten",
        timeout=30.0,
    )


def test_coqui_without_a_model_is_refused_at_start():
    with pytest.raises(ConfigurationError) as err:
        make_settings(tts_engine="coqui")
    assert str(err.value) == (
        "invalid settings:\n  RUNDRUF_TTS_ENGINE=coqui needs RUNDRUF_TTS_COQUI_MODEL_PATH "
        "and RUNDRUF_TTS_COQUI_CONFIG_PATH"
    )

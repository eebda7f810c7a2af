"""Real-time factor (synthesis seconds / audio seconds) of each TTS engine.

    .venv/bin/python bench/tts.py [--rounds 3] [--coqui-python PATH]
                                  [--coqui-model model.pth --coqui-config config.json]

For each engine and each German and English sentence: the engine as the worker
calls it (`Engine.synthesize`: process start, for coqui also torch import and
model load, synthesis, WAV read), median of the rounds. For coqui also the
synthesis alone with the model loaded once in one process (what a resident
runner would reach). Without --coqui-model the tiny untrained VITS model of the
tests is built and used: its figures show the cost of coqui's code path, not
of a real voice (a real VITS voice has ~100x the weights).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from api.domain import wav
from api.models import Language
from workers.tts.coqui import RUNNER, CoquiEngine
from workers.tts.engine import Engine
from workers.tts.espeak import EspeakEngine

SENTENCES = [
    (Language.DE, "Achtung, Feueralarm."),
    (Language.DE, "Dies ist ein Probealarm. Es besteht keine Gefahr."),
    (
        Language.DE,
        "Achtung, dies ist ein Alarm. Bitte verlassen Sie das Gebäude sofort über das "
        "nächste Treppenhaus und sammeln Sie sich am Parkplatz vor dem Haupteingang.",
    ),
    (Language.EN, "Attention, fire alarm."),
    (Language.EN, "This is a fire drill. There is no danger."),
    (
        Language.EN,
        "Attention, this is an alarm. Please leave the building at once by the nearest "
        "staircase and gather in the car park in front of the main entrance.",
    ),
]

# Runs in the coqui Python: loads the model once, then times tts() alone per sentence.
_RESIDENT = """
import json, sys, time, contextlib
sys.path.insert(0, sys.argv[1])
import coqui_runner
coqui_runner.forbid_downloads()
from TTS.api import TTS
job = json.load(sys.stdin)
with contextlib.redirect_stdout(sys.stderr):
    t = time.perf_counter()
    tts = TTS(model_path=job["model"], config_path=job["config"], progress_bar=False)
    load = time.perf_counter() - t
    rate = tts.synthesizer.output_sample_rate
    out = []
    for text in job["texts"]:
        times, seconds = [], 0.0
        for _ in range(job["rounds"]):
            t = time.perf_counter()
            samples = tts.tts(text)
            times.append(time.perf_counter() - t)
            seconds = len(samples) / rate
        out.append([sorted(times)[len(times) // 2], seconds])
print(json.dumps({"load": load, "results": out}))
"""


def audio_seconds(data: bytes) -> float:
    parsed = wav.parse(data)
    return parsed.frames / parsed.rate


async def engine_rtf(engine: Engine, rounds: int) -> list[tuple[Language, str, float, float]]:
    rows = []
    for language, text in SENTENCES:
        times, seconds = [], 0.0
        for _ in range(rounds):
            start = time.perf_counter()
            data = await engine.synthesize(text, language)
            times.append(time.perf_counter() - start)
            seconds = audio_seconds(data)
        rows.append((language, text, statistics.median(times), seconds))
    return rows


def resident_rtf(python: Path, model: Path, config: Path, rounds: int) -> dict[str, object]:
    job = {
        "model": str(model),
        "config": str(config),
        "texts": [t for _, t in SENTENCES],
        "rounds": rounds,
    }
    done = subprocess.run(  # noqa: S603 - fixed argument list
        [str(python), "-I", "-c", _RESIDENT, str(RUNNER.parent)],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def tiny_model(python: Path, directory: Path) -> None:
    subprocess.run(  # noqa: S603 - fixed argument list
        [str(python), "-I", str(RUNNER), "tiny-model", str(directory)],
        check=True,
        capture_output=True,
    )


def show(title: str, rows: list[tuple[Language, str, float, float]]) -> None:
    print(f"\n{title}")
    print(f"  {'lang':4} {'chars':>5} {'audio s':>8} {'synth s':>8} {'RTF':>6}")
    for language, text, took, seconds in rows:
        print(
            f"  {language.value:4} {len(text):5d} {seconds:8.2f} {took:8.3f} {took / seconds:6.3f}"
        )
    total = sum(r[2] for r in rows) / sum(r[3] for r in rows)
    print(f"  all: RTF {total:.3f} (sum of synthesis s / sum of audio s)")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--coqui-python", type=Path, default=Path.home() / ".cache/rundruf/venv-coqui/bin/python"
    )
    parser.add_argument("--coqui-model", type=Path)
    parser.add_argument("--coqui-config", type=Path)
    args = parser.parse_args()

    espeak = shutil.which("espeak-ng")
    if espeak is None:
        print("espeak-ng is not installed (make services)", file=sys.stderr)
        return 2
    show(
        "espeak-ng (per call: process start + synthesis)",
        await engine_rtf(EspeakEngine(espeak), args.rounds),
    )

    if not args.coqui_python.is_file():
        print(f"\ncoqui-tts: no Python at {args.coqui_python} (make coqui); skipped")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        model, config, label = args.coqui_model, args.coqui_config, "given model"
        if model is None or config is None:
            tiny_model(args.coqui_python, Path(tmp))
            model, config = Path(tmp) / "model.pth", Path(tmp) / "config.json"
            label = "tiny untrained VITS of the tests"
        engine = CoquiEngine(
            model_path=model,
            config_path=config,
            python=args.coqui_python,
            languages=(Language.DE, Language.EN),
            timeout=600,
        )
        show(
            f"coqui-tts, {label} (per call: process start, torch import, model load, synthesis)",
            await engine_rtf(engine, args.rounds),
        )
        resident = resident_rtf(args.coqui_python, model, config, args.rounds)
        rows = [
            (language, text, took, seconds)
            for (language, text), (took, seconds) in zip(
                SENTENCES,
                resident["results"],
                strict=True,  # type: ignore[call-overload]
            )
        ]
        show(
            f"coqui-tts, {label} (synthesis alone, model loaded once in {resident['load']:.2f} s)",
            rows,
        )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

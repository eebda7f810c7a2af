"""Generate the trigger call's prompt WAVs with espeak-ng (8 kHz, 16-bit, mono PCM).

    python3 swyx_jobservice/callrouting/make_prompts.py [--lang de|en] [--out DIR] [--voice V]

The file names and texts are the dialogue's one definition, edge_agent/ivr/definition.py
(PROMPTS, TEXTS), which rundruf.lua and the agent's own SIP IVR both use. The agent ships
the result in edge_agent/ivr/prompts/<lang>/; regenerate those with

    python3 swyx_jobservice/callrouting/make_prompts.py --lang de --out edge_agent/ivr/prompts/de
    python3 swyx_jobservice/callrouting/make_prompts.py --lang en --out edge_agent/ivr/prompts/en

espeak-ng writes 22050 Hz; the samples are resampled here with a windowed-sinc low-pass
(cut-off 85 % of the lower Nyquist frequency, i.e. 3.4 kHz for 8 kHz), because plain linear
interpolation would fold espeak's sibilants above 4 kHz back into the band as hiss. Silence
before and after the speech is trimmed (to TRIM_MARGIN_MS): every file ships with the agent.
Only the standard library is used (no audioop, which Python 3.13 removed).

The robot voice is a stand-in: replace the files with recorded or TTS-service prompts of the same
names whenever you like (8 kHz 16-bit mono PCM WAV); rundruf.lua and the agent only know the
file names.
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
import tempfile
import wave
from array import array
from collections.abc import Sequence
from pathlib import Path

try:
    from edge_agent.ivr import definition
except ModuleNotFoundError:  # run as a script from a work tree: the repository is two up
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from edge_agent.ivr import definition

# espeak-ng voice per language of definition.LANGUAGES.
VOICES: dict[str, str] = {"de": "de", "en": "en"}
SPEED_WPM = 150  # slower than espeak's 175: callers are under stress
# Samples quieter than this (of 32767) before the first and after the last speech are cut,
# leaving this much on either side.
TRIM_LEVEL = 100
TRIM_MARGIN_MS = 40


def texts(lang: str) -> dict[str, str]:
    """File name -> what it says in `lang`, for every prompt of definition.PROMPTS."""
    if lang not in definition.LANGUAGES:
        raise ValueError(f"no prompts in {lang!r}; languages: {', '.join(definition.LANGUAGES)}")
    return {name: definition.TEXTS[name][lang] for name in definition.PROMPTS.values()}


TARGET_RATE = 8000


def _kernel_table(cutoff: float, half_width: int, phases: int) -> list[list[float]]:
    """Hann-windowed sinc taps for each fractional phase, each row summing to 1.

    `cutoff` is in cycles per source sample. Row p serves output positions whose fraction
    past a source sample is p / phases; tap j multiplies source sample i - half_width + 1 + j.
    """
    table = []
    for p in range(phases):
        frac = p / phases
        row = []
        for j in range(2 * half_width):
            x = frac + half_width - 1 - j
            arg = 2 * math.pi * cutoff * x
            sinc = 1.0 if x == 0 else math.sin(arg) / arg
            u = x / half_width
            window = 0.5 * (1 + math.cos(math.pi * u)) if abs(u) < 1 else 0.0
            row.append(sinc * window)
        total = sum(row)
        table.append([t / total for t in row])
    return table


def resample(
    samples: Sequence[int],
    src_rate: int,
    dst_rate: int,
    half_width: int = 32,
    phases: int = 256,
) -> list[int]:
    """16-bit samples at src_rate -> 16-bit samples at dst_rate, low-passed before decimation."""
    if src_rate <= 0 or dst_rate <= 0:
        raise ValueError("sample rates must be positive")
    if src_rate == dst_rate:
        return list(samples)
    cutoff = 0.85 * min(src_rate, dst_rate) / 2 / src_rate
    table = _kernel_table(cutoff, half_width, phases)
    padded = [0.0] * half_width + [float(s) for s in samples] + [0.0] * half_width
    out = []
    step = src_rate / dst_rate
    for m in range(len(samples) * dst_rate // src_rate):
        t = m * step
        i = int(t)
        taps = table[min(phases - 1, round((t - i) * phases))]
        # padded[i + 1 + j] is source sample i - half_width + 1 + j
        acc = sum(map(float.__mul__, padded[i + 1 : i + 1 + 2 * half_width], taps))
        out.append(max(-32768, min(32767, round(acc))))
    return out


def read_wav(path: Path) -> tuple[int, list[int]]:
    """(rate, samples) of a 16-bit mono PCM WAV."""
    with wave.open(str(path), "rb") as w:
        if w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16-bit mono, got {w.getparams()}")
        data = array("h")
        data.frombytes(w.readframes(w.getnframes()))
        if sys.byteorder == "big":
            data.byteswap()
        return w.getframerate(), list(data)


def write_wav(path: Path, rate: int, samples: Sequence[int]) -> None:
    data = array("h", samples)
    if sys.byteorder == "big":
        data.byteswap()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data.tobytes())


def trim(samples: Sequence[int], rate: int) -> list[int]:
    """`samples` without the silence before the first and after the last sound louder than
    TRIM_LEVEL, keeping TRIM_MARGIN_MS on either side; all silence stays as it is."""
    loud = [i for i, s in enumerate(samples) if abs(s) > TRIM_LEVEL]
    if not loud:
        return list(samples)
    margin = rate * TRIM_MARGIN_MS // 1000
    return list(samples[max(0, loud[0] - margin) : loud[-1] + 1 + margin])


def synthesize(espeak: str, voice: str, text: str, out: Path, speed: int = SPEED_WPM) -> None:
    """Speak `text` into `out` at TARGET_RATE (`speed` in words per minute), trimmed."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "espeak.wav"
        # Fixed argument list, no shell; the text is ours.
        subprocess.run(  # noqa: S603
            [espeak, "-v", voice, "-s", str(speed), "-w", str(raw), text],
            check=True,
            capture_output=True,
        )
        rate, samples = read_wav(raw)
    write_wav(out, TARGET_RATE, trim(resample(samples, rate, TARGET_RATE), TARGET_RATE))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--lang", choices=definition.LANGUAGES, default="de")
    parser.add_argument(
        "--out", type=Path, help="folder for the WAVs (default: prompts/<lang> next to this file)"
    )
    parser.add_argument("--voice", help="espeak-ng voice (default: the language's)")
    parser.add_argument("--speed", type=int, default=SPEED_WPM, help="words per minute")
    parser.add_argument("--espeak", default=shutil.which("espeak-ng"), help="espeak-ng binary")
    args = parser.parse_args(argv)
    if not args.espeak:
        print("espeak-ng not found (Debian: apt-get install -y espeak-ng)", file=sys.stderr)
        return 2
    out: Path = args.out or Path(__file__).with_name("prompts") / args.lang
    voice: str = args.voice or VOICES[args.lang]
    out.mkdir(parents=True, exist_ok=True)
    for name, text in texts(args.lang).items():
        target = out / name
        synthesize(args.espeak, voice, text, target, args.speed)
        print(f"{target} ({target.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Generate the German prompt WAVs for rundruf.lua with espeak-ng (8 kHz, 16-bit, mono PCM).

    python3 swyx_jobservice/callrouting/make_prompts.py [--out DIR] [--voice de]

espeak-ng writes 22050 Hz; the samples are resampled here with a windowed-sinc low-pass
(cut-off 85 % of the lower Nyquist frequency, i.e. 3.4 kHz for 8 kHz), because plain linear
interpolation would fold espeak's sibilants above 4 kHz back into the band as hiss. Only the
standard library is used (no audioop, which Python 3.13 removed).

The robot voice is a stand-in: replace the files with recorded or TTS-service prompts of the same
names whenever you like; rundruf.lua only knows the file names.
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

# File name -> text. rundruf.lua's M.PROMPTS names the same files (a test keeps them in sync).
PROMPTS: dict[str, str] = {
    "rundruf_pin.wav": (
        "Rundruf. Bitte geben Sie die PIN ein und bestätigen Sie mit der Raute-Taste."
    ),
    "rundruf_pin_falsch.wav": "Die PIN ist falsch.",
    "rundruf_bitte_warten.wav": "Bitte warten Sie einen Moment.",
    "rundruf_menue.wav": (
        "Test: Taste 1. Alarm mit hinterlegter Ansage: Taste 2. "
        "Alarm mit neuer Ansage: Taste 3. Abbrechen: Stern-Taste."
    ),
    "rundruf_ungueltig.wav": "Diese Eingabe ist ungültig.",
    "rundruf_bestaetigen_test.wav": (
        "Test gewählt. Zum Starten drücken Sie die 1, zurück zum Menü mit jeder anderen Taste."
    ),
    "rundruf_bestaetigen_alarm.wav": (
        "Alarm mit hinterlegter Ansage. Alle Teilnehmer werden angerufen, auch in laufenden "
        "Gesprächen. Zum Auslösen drücken Sie die 1, zurück zum Menü mit jeder anderen Taste."
    ),
    "rundruf_aufnahme.wav": (
        "Bitte sprechen Sie jetzt Ihre Ansage, höchstens 60 Sekunden. "
        "Beenden Sie mit der Raute-Taste."
    ),
    "rundruf_aufnahme_pruefen.wav": (
        "Zum Auslösen des Alarms mit dieser Ansage drücken Sie die 1, zum neu Aufnehmen die 2."
    ),
    "rundruf_aufnahme_fehler.wav": "Die Aufnahme ist fehlgeschlagen.",
    "rundruf_ausgeloest.wav": "Rundruf ausgelöst.",
    "rundruf_fehler.wav": (
        "Der Rundruf konnte nicht ausgelöst werden. Bitte alarmieren Sie auf anderem Weg."
    ),
    "rundruf_abgebrochen.wav": "Abgebrochen. Es wurde kein Rundruf ausgelöst.",
    "rundruf_auf_wiederhoeren.wav": "Auf Wiederhören.",
}

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


def synthesize(espeak: str, voice: str, text: str, out: Path) -> None:
    """Speak `text` into `out` at TARGET_RATE."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "espeak.wav"
        # Fixed argument list, no shell; the text is ours.
        subprocess.run(  # noqa: S603
            [espeak, "-v", voice, "-s", "150", "-w", str(raw), text],
            check=True,
            capture_output=True,
        )
        rate, samples = read_wav(raw)
    write_wav(out, TARGET_RATE, resample(samples, rate, TARGET_RATE))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("prompts"))
    parser.add_argument("--voice", default="de")
    parser.add_argument("--espeak", default=shutil.which("espeak-ng"), help="espeak-ng binary")
    args = parser.parse_args(argv)
    if not args.espeak:
        print("espeak-ng not found (Debian: apt-get install -y espeak-ng)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in PROMPTS.items():
        target = args.out / name
        synthesize(args.espeak, args.voice, text, target)
        print(f"{target} ({target.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

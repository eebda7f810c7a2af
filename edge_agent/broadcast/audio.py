"""What a member hears: the announcement, repeated, then the confirm prompt.

Every dialer plays the telephony master only (WAV, PCM 16-bit, mono, 8 kHz).
A recorded message (mode 3) may come in another PCM shape and is converted
here; stored announcements already arrive as masters. The bundled prompts
(`prompts/`, German, espeak-ng, regenerate with `python -m
edge_agent.broadcast.audio`) stand in when a group has no announcement yet:
an alarm never fails for want of a recording.
"""

from __future__ import annotations

import hashlib
import io
import logging
import sys
import tempfile
import wave
from array import array
from pathlib import Path

from edge_agent.dialer.common import held, hold
from edge_agent.files import write_atomic

log = logging.getLogger(__name__)
RATE = 8000
PROMPTS = Path(__file__).with_name("prompts")
CONFIRM_PROMPT = PROMPTS / "bestaetigen.wav"
DEFAULTS = {"alarm": PROMPTS / "alarm.wav", "test": PROMPTS / "test.wav"}
TEXTS = {
    "bestaetigen.wav": (
        "Zum Bestätigen drücken Sie die 1. Zum Wiederholen der Nachricht drücken Sie die 9."
    ),
    "alarm.wav": "Achtung, Alarm. Dies ist ein Alarm-Rundruf. Bitte folgen Sie den Anweisungen.",
    "test.wav": "Dies ist ein Test-Rundruf. Es besteht kein Alarm.",
}


class AudioError(ValueError):
    """Raised when audio cannot be turned into a telephony master (the reason says why)."""


def _samples(data: bytes) -> tuple[int, array[int]]:
    """(rate, 16-bit mono samples) of any PCM WAV Python's `wave` reads."""
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            frames = wav.readframes(wav.getnframes())
    except (EOFError, wave.Error) as exc:
        raise AudioError(f"not a PCM WAV: {exc}") from exc
    if width == 1:  # unsigned 8-bit
        mono16 = array("h", ((b - 128) << 8 for b in frames))
    elif width in (2, 3, 4):
        # Keep the two most significant bytes of each little-endian sample.
        top = b"".join(frames[i + width - 2 : i + width] for i in range(0, len(frames), width))
        mono16 = array("h", top)
        if sys.byteorder == "big":
            mono16.byteswap()
    else:
        raise AudioError(f"{width * 8}-bit samples are not supported")
    if channels > 1:  # the mean of the channels
        mono16 = array(
            "h",
            (
                sum(f) // channels
                for f in zip(*(mono16[c::channels] for c in range(channels)), strict=False)
            ),
        )
    return rate, mono16


def _to_rate(samples: array[int], rate: int) -> array[int]:
    """Box-filtered decimation by the integer part, then linear interpolation for the rest.

    Cruder than a windowed sinc but fast in pure Python: a 60 s message must
    not hold up an alarm, and a phone line carries 300-3400 Hz anyway.
    """
    if rate <= 0:
        raise AudioError("the sample rate must be positive")
    factor = rate // RATE
    if factor > 1:
        samples = array(
            "h",
            (
                sum(t) // factor
                for t in zip(*(samples[i::factor] for i in range(factor)), strict=False)
            ),
        )
        rate //= factor
    if rate == RATE or not samples:
        return samples
    step, last = rate / RATE, len(samples) - 1
    out = array("h")
    for n in range(int(len(samples) * RATE / rate)):
        t = n * step
        i = int(t)
        j = min(i + 1, last)
        out.append(int(samples[i] + (samples[j] - samples[i]) * (t - i)))
    return out


def telephony_master(data: bytes) -> bytes:
    """Any PCM WAV as WAV PCM 16-bit mono 8 kHz; AudioError when it has no sound."""
    rate, samples = _samples(data)
    samples = _to_rate(samples, rate)
    if not samples:
        raise AudioError("the recording is empty")
    return _wav(samples)


def _wav(samples: array[int]) -> bytes:
    if sys.byteorder == "big":
        samples = array("h", samples)
        samples.byteswap()
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(samples.tobytes())
    return buffer.getvalue()


def _master_frames(path: Path) -> bytes:
    data = held(path)
    with wave.open(io.BytesIO(data) if data is not None else str(path), "rb") as wav:
        if (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) != (1, 2, RATE):
            raise AudioError(f"{path.name} is not PCM 16-bit mono 8 kHz")
        return wav.readframes(wav.getnframes())


_composed: dict[tuple[Path, int, int, int, Path], Path] = {}


def compose(announcement: Path, repetitions: int, out_dir: Path) -> Path:
    """`_compose`, remembered per announcement file version: an alarm does not wait for it."""
    data = held(announcement)
    if data is not None:
        key = (announcement, 0, len(data), repetitions, out_dir)
    else:
        stat = announcement.stat()
        key = (announcement, stat.st_mtime_ns, stat.st_size, repetitions, out_dir)
    path = _composed.get(key)
    if path is None or not path.exists():
        path = _composed[key] = _compose(announcement, repetitions, out_dir)
    return path


def folders(out_dir: Path) -> tuple[Path, Path]:
    """Where a play file may go: the agent's folder, else the system's temporary one."""
    return out_dir, Path(tempfile.gettempdir()) / "rundruf-audio"


def compose_anyway(announcement: Path, repetitions: int, out_dir: Path) -> Path:
    """`compose`, which never fails for a disk that cannot be written.

    A full agent disk must not keep an alarm from going out, nor cost it its message
    (issue 14, point 10): the file goes to the system's temporary folder then, and if
    that cannot be written either, it is kept in memory. Raises AudioError or OSError
    only when the announcement itself cannot be read.
    """
    for folder in folders(out_dir):
        try:
            return compose(announcement, repetitions, folder)
        except OSError as exc:
            if not readable(announcement):
                raise
            log.error("the announcement cannot be written to %s: %s", folder, exc)
    data = _play_data(announcement, repetitions)
    return hold(f"play-{hashlib.sha256(data).hexdigest()[:32]}.wav", data)


def keep(name: str, data: bytes, out_dir: Path) -> Path:
    """Writes a WAV (a caller's recording) to the first folder that takes it, else memory."""
    for folder in folders(out_dir):
        try:
            write_atomic(folder / name, data)
            return folder / name
        except OSError as exc:
            log.error("%s cannot be written to %s: %s", name, folder, exc)
    return hold(name, data)


def readable(path: Path) -> bool:
    """Whether the announcement can be read (held in memory, or a file that opens)."""
    if held(path) is not None:
        return True
    try:
        with path.open("rb"):
            return True
    except OSError:
        return False


def _play_data(announcement: Path, repetitions: int) -> bytes:
    """The WAV a call plays: the announcement `repetitions` times, then the confirm prompt."""
    try:
        body = _master_frames(announcement)
    except (EOFError, wave.Error) as exc:
        raise AudioError(f"{announcement.name} cannot be read: {exc}") from exc
    if not body:
        raise AudioError(f"{announcement.name} has no sound")
    pause = b"\x00\x00" * (RATE // 2)  # half a second between plays
    frames = (body + pause) * repetitions + _master_frames(CONFIRM_PROMPT)
    samples = array("h")
    samples.frombytes(frames)
    if sys.byteorder == "big":
        samples.byteswap()
    return _wav(samples)


def _compose(announcement: Path, repetitions: int, out_dir: Path) -> Path:
    """The play file (`_play_data`) in `out_dir`.

    Named by its content, so the same inputs give the same file and a restart
    finds it again. Raises AudioError or OSError when the announcement is unusable.
    """
    data = _play_data(announcement, repetitions)
    path = out_dir / f"play-{hashlib.sha256(data).hexdigest()[:32]}.wav"
    if not path.exists():
        write_atomic(path, data)
    return path


def _regenerate() -> None:
    """Writes the bundled prompts again with espeak-ng (a maintainer's tool)."""
    from swyx_jobservice.callrouting.make_prompts import synthesize  # dev-only dependency

    for name, text in TEXTS.items():
        synthesize("espeak-ng", "de", text, PROMPTS / name)
        print(PROMPTS / name)


if __name__ == "__main__":
    _regenerate()

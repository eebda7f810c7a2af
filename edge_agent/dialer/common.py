"""What every dialer adapter needs: events emitted in order, and the telephony master."""

from __future__ import annotations

import io
import logging
import wave
from datetime import UTC, datetime
from pathlib import Path

from edge_agent.dialer.port import CallEvent, CallEventKind, CallOutcome, EventSink

log = logging.getLogger(__name__)


class UnplayableAnnouncement(Exception):
    """Raised when the announcement is not a telephony master with sound; the text says why."""


# Announcements held in memory, by a path that names no file: a disk that cannot take
# the play file (or a caller's recording) must not cost the alarm its message (issue 14,
# point 10). They live as long as the process.
_HELD: dict[Path, bytes] = {}
HELD_FOLDER = Path("<memory>")


def hold(name: str, data: bytes) -> Path:
    """Keeps a WAV in memory; returns the path every dialer plays it by."""
    path = HELD_FOLDER / name
    _HELD[path] = data
    return path


def held(path: Path) -> bytes | None:
    """The WAV held under `path`, or None when it names a file."""
    return _HELD.get(path)


def open_master(path: Path, *, read_frames: bool) -> tuple[int, bytes]:
    """(frame count, PCM frames or b"") of a WAV PCM 16-bit mono 8 kHz with sound.

    Every dialer plays the telephony master only; anything else is refused alike.
    """
    data = held(path)
    try:
        with wave.open(io.BytesIO(data) if data is not None else str(path), "rb") as wav:
            shape = (wav.getcomptype(), wav.getnchannels(), wav.getsampwidth(), wav.getframerate())
            count = wav.getnframes()
            frames = wav.readframes(count) if read_frames else b""
    except (OSError, EOFError, wave.Error) as exc:
        raise UnplayableAnnouncement(f"the announcement {path} cannot be read: {exc}") from exc
    if shape != ("NONE", 1, 2, 8000) or count == 0 or (read_frames and not frames):
        raise UnplayableAnnouncement(
            f"the announcement {path} is not PCM 16-bit mono 8 kHz with sound"
        )
    return count, frames


class Emitter:
    """Emits one call's events to its sink in order; ENDED exactly once."""

    def __init__(self, call_id: str, sink: EventSink) -> None:
        self.call_id = call_id
        self._sink = sink
        self.ended = False

    async def emit(
        self,
        kind: CallEventKind,
        detail: str | None = None,
        *,
        digit: str | None = None,
        outcome: CallOutcome | None = None,
    ) -> None:
        # ENDED is marked before the sink runs: a cancellation inside it must not end twice.
        self.ended = self.ended or kind is CallEventKind.ENDED
        event = CallEvent(self.call_id, kind, datetime.now(UTC), outcome, detail, digit)
        await self._sink(event)

    async def end(self, outcome: CallOutcome, detail: str | None) -> CallOutcome:
        await self.emit(CallEventKind.ENDED, detail, outcome=outcome)
        log.info("call %s ended %s (%s)", self.call_id, outcome, detail)
        return outcome

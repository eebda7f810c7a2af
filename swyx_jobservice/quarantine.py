"""Job files that could not be read: kept, counted and listed until the agent has told.

An accepted alarm whose file cannot be read, parsed or checked at start is never
skipped or deleted: it is moved (one rename, its recording with it) into
``quarantine/`` under a name that starts with the time it was found, bytes
unchanged. ``/health`` is failing while any lies there unreported; the agent
lists them, reports each to the central service (mail and history) and then marks
it reported, which moves it on to ``quarantine/reported/`` for an operator. So
the problem clears once told, and the bytes stay for whoever can still save the
alarm by hand.

Only whole files are judged: jobs are written under a temporary name and renamed
(``edge_agent.files.write_atomic``), the scan takes ``*.json`` only and runs at
start, before anything is written.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge_agent.files import TEMP_PREFIX, move_atomic, private_dir
from swyx_jobservice.errors import BadRequest, NotFound

log = logging.getLogger(__name__)

QUARANTINE_DIR = "quarantine"
REPORTED_DIR = "reported"
STAMP = "%Y%m%dT%H%M%SZ"  # no ':' (Windows file names), sorts by time
# A name we made: the stamp, a dash, the job file's name; kept within 64 characters
# so the agent can use it as the notice's key as it is.
MAX_NAME = 64
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}\.json")
# Enough for any job file (the recording lies beside it); a bigger file is no job.
READ_LIMIT = 64 * 1024
_FIELD = {
    key: re.compile(rb'"' + key.encode() + rb'"\s*:\s*"([^"\\\x00-\x1f]{1,64})"')
    for key in ("agentNumber", "groupId", "callerNumber", "receivedAt")
}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_MODE = re.compile(rb'"mode"\s*:\s*([123])\b')


@dataclass(frozen=True)
class Entry:
    """One quarantined job file, with what its bytes still tell."""

    name: str
    quarantined_at: datetime
    # When the alarm was accepted: its receivedAt if the bytes still hold one, else the
    # file's modification time (kept by the rename; the job was written at accept).
    triggered_at: datetime
    bytes: int
    recording: bool  # its WAV was moved along
    agent_number: str | None = None
    group_id: str | None = None
    caller_number: str | None = None
    mode: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "quarantinedAt": self.quarantined_at.isoformat(timespec="seconds"),
            "triggeredAt": self.triggered_at.isoformat(timespec="microseconds"),
            "bytes": self.bytes,
            "recording": self.recording,
            "agentNumber": self.agent_number,
            "groupId": self.group_id,
            "callerNumber": self.caller_number,
            "mode": self.mode,
        }


def recovered(data: bytes) -> dict[str, Any]:
    """The fields a damaged job file may still show (pure). A regular expression per
    field, not a parser: the file is damaged, any part of it may be missing."""
    found: dict[str, Any] = {}
    for key, pattern in _FIELD.items():
        match = pattern.search(data)
        if match:
            found[key] = match.group(1).decode("utf-8", errors="replace")
    mode = _MODE.search(data)
    found["mode"] = int(mode.group(1)) if mode else None
    return found


def _moment(text: str | None) -> datetime | None:
    try:
        at = datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
    return at if at is not None and at.tzinfo is not None else None


def quarantine_name(found_at: datetime, original: str) -> str:
    stamp = found_at.astimezone(UTC).strftime(STAMP)
    # Only characters a name of ours has: a file put in jobs/ by hand may have others.
    stem = _UNSAFE.sub("_", Path(original).stem)[: MAX_NAME - len(stamp) - len("-.json")]
    return f"{stamp}-{stem}.json"


def is_entry_name(name: str) -> bool:
    return bool(NAME.fullmatch(name)) and ".." not in name


class Quarantine:
    """The ``quarantine/`` folder and the entries in it not yet reported."""

    def __init__(self, data_dir: Path, *, clock: Callable[[], datetime]) -> None:
        self.dir = data_dir / QUARANTINE_DIR
        self.reported_dir = self.dir / REPORTED_DIR
        self.clock = clock
        self._names: set[str] = set()
        # Files that could not be moved (listed and counted all the same, from where
        # they lie, until reported): name -> (path, found at).
        self._stuck: dict[str, tuple[Path, datetime]] = {}

    def load(self) -> None:
        private_dir(self.reported_dir)
        self._names = set(self._scan())

    def count(self) -> int:
        return len(self._names) + len(self._stuck)

    def take(self, job_file: Path, reason: str) -> None:
        """Moves a job file that cannot be used (and its recording) here. Never raises:
        a file that cannot be moved stays where it is, said in the log; one bad file
        must not keep the others from running."""
        name = quarantine_name(self.clock(), job_file.name)
        stem = name.removesuffix(".json")
        n = 1
        while (self.dir / name).exists() or (self.reported_dir / name).exists():
            n += 1
            name = f"{stem[: MAX_NAME - 8]}-{n}.json"
        wav = job_file.with_suffix(".wav")
        try:
            if wav.exists():
                # The recording first: a json here always has its wav beside it.
                move_atomic(wav, (self.dir / name).with_suffix(".wav"))
            move_atomic(job_file, self.dir / name)
        except OSError as exc:
            log.error("cannot quarantine job file %s (%s): %s", job_file, reason, exc)
            self._stuck[job_file.name] = (job_file, self.clock())
            return
        self._names.add(name)
        log.error("job file %s cannot be used (%s): quarantined as %s", job_file, reason, name)

    def entries(self) -> list[Entry]:
        """Every unreported entry, oldest first, read from the folder (an operator may
        have removed some by hand)."""
        self._names = set(self._scan())
        found: list[Entry] = []
        for name in sorted(self._names):
            entry = self._entry(self.dir / name, None)
            if entry is not None:
                found.append(entry)
        for path, found_at in self._stuck.values():
            entry = self._entry(path, found_at)
            if entry is not None:
                found.append(entry)
        return found

    def mark_reported(self, name: str) -> None:
        """Moves a told entry to ``reported/``; a repeat finds it there and is fine."""
        if not is_entry_name(name):
            raise NotFound("no such quarantined job file")
        if self._stuck.pop(name, None) is not None:
            return  # told; it stays where it is, for the operator
        path = self.dir / name
        if not path.exists():
            if (self.reported_dir / name).exists():
                return
            raise NotFound("no such quarantined job file")
        wav = path.with_suffix(".wav")
        if wav.exists():
            move_atomic(wav, (self.reported_dir / name).with_suffix(".wav"))
        move_atomic(path, self.reported_dir / name)
        self._names.discard(name)
        log.info("quarantined job file %s is reported", name)

    def _scan(self) -> list[str]:
        return [
            p.name
            for p in self.dir.glob("*.json")
            if not p.name.startswith(TEMP_PREFIX) and is_entry_name(p.name) and p.is_file()
        ]

    def _entry(self, path: Path, found_at: datetime | None) -> Entry | None:
        name = path.name
        try:
            stat = path.stat()
        except OSError:
            return None  # removed meanwhile
        try:
            with path.open("rb") as f:
                head = f.read(READ_LIMIT)
        except OSError:
            head = b""  # unreadable: what the file system says is all there is
        fields = recovered(head)
        modified = datetime.fromtimestamp(stat.st_mtime, UTC)
        try:
            quarantined_at = found_at or datetime.strptime(name[:16], STAMP).replace(tzinfo=UTC)
        except ValueError:
            quarantined_at = modified  # put here by hand
        return Entry(
            name=name,
            quarantined_at=quarantined_at,
            triggered_at=_moment(fields.get("receivedAt")) or modified,
            bytes=stat.st_size,
            recording=path.with_suffix(".wav").exists(),
            agent_number=fields.get("agentNumber"),
            group_id=fields.get("groupId"),
            caller_number=fields.get("callerNumber"),
            mode=fields.get("mode"),
        )


def reason_of(exc: BaseException) -> str:
    if isinstance(exc, BadRequest):
        return exc.message
    return str(exc) or type(exc).__name__

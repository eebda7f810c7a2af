"""Job files that could not be read: kept, counted and listed until the agent has told.

An accepted alarm whose file cannot be read, parsed or checked at start is never
skipped or deleted: it is moved (one rename, its recording with it) into
``quarantine/`` under a name that starts with the time it was found, bytes
unchanged. Whatever lay under a job's name is moved so, a folder, a symlink or a
FIFO too (renamed, never opened or followed). ``/health`` is failing while any
lies there unreported; the agent lists them a page at a time, reports each to the
central service (mail and history) and then marks it reported, which moves it on to
``quarantine/reported/`` for an operator. So the problem clears once told, and the
bytes stay for whoever can still save the alarm by hand.

The quarantine never stops the service: a file it cannot take stays where it lies
(listed and counted all the same, "stuck"), a ``reported/`` it cannot write keeps
the told file in ``quarantine/``; either is the health problem
``quarantineNotWritable``, and valid jobs run on.

One rule names and lists: every name ``quarantine_name`` makes passes
``is_entry_name``, and the listing takes every entry with such a name, of any kind.

Only whole files are judged: jobs are written under a temporary name and renamed
(``edge_agent.files.write_atomic``), the scan takes ``*.json`` only and runs at
start, before anything is written.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge_agent import files
from edge_agent.files import TEMP_PREFIX, fsync_dir, private_dir
from swyx_jobservice.errors import QUARANTINE_NOT_WRITABLE, JobServiceError, NotFound
from swyx_jobservice.jobfile import kind_of, read_head

log = logging.getLogger(__name__)

QUARANTINE_DIR = "quarantine"
REPORTED_DIR = "reported"
JOBS_DIR = "jobs"
STAMP = "%Y%m%dT%H%M%SZ"  # no ':' (Windows file names), sorts by time
# A name we made: the stamp, a dash, the job file's name; kept within 64 characters
# so the agent can use it as the notice's key as it is.
MAX_NAME = 64
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,58}\.json")
# A listing answers this many of the oldest entries at most (the agent asks for more
# with `after`): 5000 damaged files must not make every poll a megabyte.
PAGE = 50
# Files logged one by one at start; the rest are counted in one line.
LOGGED = 20
_FIELD = {
    key: re.compile(rb'"' + key.encode() + rb'"\s*:\s*"([^"\\\x00-\x1f]{1,64})"')
    for key in ("agentNumber", "groupId", "callerNumber", "receivedAt")
}
# Dots too: a name of ours never holds "..", which is_entry_name refuses.
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
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
    kind: str = "file"  # what lay under the job's name: "file", "folder", "symbolic link" …
    # Where it lies, from the data folder: quarantine/<name>, or jobs/<its name> when
    # it could not be moved (shown printable; the true name may not be UTF-8).
    file: str = ""

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
            "kind": self.kind,
            "file": self.file,
        }


@dataclass
class _Stuck:
    path: Path
    entry: Entry
    told: bool = False


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


def _file_time(seconds: float) -> datetime:
    # A bit-flipped or zero mtime is still a time to show; the agent bounds what it sends.
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return datetime(1970, 1, 1, tzinfo=UTC)


def quarantine_name(found_at: datetime, original: str) -> str:
    """``<UTC stamp>-<the job file's stem, letters, digits, '_' and '-' only>.json``,
    at most MAX_NAME characters: always a name ``is_entry_name`` accepts."""
    stamp = found_at.astimezone(UTC).strftime(STAMP)
    # Only characters a name of ours has: a file put in jobs/ by hand may have others.
    stem = _UNSAFE.sub("_", original.removesuffix(".json"))
    return f"{stamp}-{stem[: MAX_NAME - len(stamp) - len('-.json')]}.json"


def is_entry_name(name: str) -> bool:
    return bool(NAME.fullmatch(name)) and ".." not in name


def shown(name: str) -> str:
    """A file name as a person can read it in JSON and mail: not-UTF-8 bytes and
    controls become '?'."""
    text = os.fsencode(name).decode("utf-8", errors="replace")
    return "".join(c if c.isprintable() else "?" for c in text)


def _describe(
    name: str, path: Path, found_at: datetime | None, data: bytes | None, file: str
) -> Entry | None:
    """What an entry tells, from its lstat and (for a regular file) its first bytes;
    None when it is gone."""
    try:
        info = path.lstat()
    except OSError:
        return None
    kind = kind_of(info.st_mode)
    head = (data if data is not None else read_head(path)) if kind == "file" else b""
    fields = recovered(head)
    modified = _file_time(info.st_mtime)
    quarantined_at = found_at
    if quarantined_at is None:
        try:
            quarantined_at = datetime.strptime(name[:16], STAMP).replace(tzinfo=UTC)
        except ValueError:
            quarantined_at = modified  # put here by hand
    return Entry(
        name=name,
        quarantined_at=quarantined_at,
        triggered_at=_moment(fields.get("receivedAt")) or modified,
        bytes=info.st_size if kind == "file" else 0,
        recording=os.path.lexists(path.with_suffix(".wav")),
        agent_number=fields.get("agentNumber"),
        group_id=fields.get("groupId"),
        caller_number=fields.get("callerNumber"),
        mode=fields.get("mode"),
        kind=kind,
        file=file,
    )


class Quarantine:
    """The ``quarantine/`` folder and the entries in it not yet reported."""

    def __init__(self, data_dir: Path, *, clock: Callable[[], datetime]) -> None:
        self.dir = data_dir / QUARANTINE_DIR
        self.reported_dir = self.dir / REPORTED_DIR
        self.clock = clock
        self._names: set[str] = set()  # entries in quarantine/, reported or not
        # What is known of each entry, so that a listing reads no file twice.
        self._cache: dict[str, Entry] = {}
        # Reported, but reported/ could not take them: they stay in quarantine/.
        self._told: set[str] = set()
        # Files that could not be moved, listed from where they lie, by entry name.
        self._stuck: dict[str, _Stuck] = {}
        self._folder_ok = True
        self._unsynced: set[Path] = set()
        self._taken = 0

    # -- start -----------------------------------------------------------------

    def load(self) -> None:
        """Finds the entries left unreported; never raises: a folder that cannot be
        used is a health problem, and damaged files then stay where they are."""
        try:
            private_dir(self.dir)
            self._names = set(self._scan())
            self._folder_ok = True
        except OSError as exc:
            log.error("the quarantine folder %s cannot be used: %s", self.dir, exc)
            self._folder_ok = False

    def take(self, job_file: Path, reason: str, data: bytes | None = None) -> None:
        """Moves a job file that cannot be used (and its recording) here; `data` is
        what was read of it, kept for the listing. Never raises: a file that cannot
        be moved stays where it is, listed from there; one bad file must not keep the
        others from running. Folders are made durable once, in settle()."""
        found = self.clock()
        name = self._free(quarantine_name(found, job_file.name))
        self._taken += 1
        try:
            self._move_in(job_file, name)
        except OSError as exc:
            self._stick(job_file, found, data, exc)
            return
        entry = _describe(name, self.dir / name, found, data, f"{QUARANTINE_DIR}/{name}")
        self._names.add(name)
        if entry is not None:
            self._cache[name] = entry
        if self._taken <= LOGGED:
            log.error("job file %s cannot be used (%s): quarantined as %s", job_file, reason, name)

    def settle(self) -> None:
        """Makes the moves of take() durable: each folder fsynced once, not per file."""
        for folder in sorted(self._unsynced):
            try:
                fsync_dir(folder)
            except OSError as exc:
                log.error("cannot make %s durable: %s", folder, exc)
        self._unsynced.clear()
        if self._taken > LOGGED:
            log.error("%d more job files could not be used: see quarantine/", self._taken - LOGGED)

    # -- reading ---------------------------------------------------------------

    def count(self) -> int:
        """Entries not yet reported (as of the last listing or move)."""
        stuck = sum(1 for s in self._stuck.values() if not s.told)
        return len(self._names - self._told) + stuck

    def problems(self) -> list[str]:
        unmoved = self._told or self._stuck
        return [] if self._folder_ok and not unmoved else [QUARANTINE_NOT_WRITABLE]

    def entries(self, limit: int = PAGE, after: str = "") -> list[Entry]:
        """Up to `limit` unreported entries, oldest first, with names after `after`.
        The names are read from the folder (an operator may have removed some), what
        they tell from memory: each file is read once."""
        self._refresh()
        unreported = {n for n in self._names - self._told if n > after}
        unreported |= {n for n, s in self._stuck.items() if not s.told and n > after}
        found: list[Entry] = []
        for name in sorted(unreported):
            if len(found) >= limit:
                break
            entry = self._entry(name)
            if entry is not None:
                found.append(entry)
        return found

    def _entry(self, name: str) -> Entry | None:
        stuck = self._stuck.get(name)
        if stuck is not None:
            return stuck.entry
        entry = self._cache.get(name)
        if entry is None:
            entry = _describe(name, self.dir / name, None, None, f"{QUARANTINE_DIR}/{name}")
            if entry is not None:
                self._cache[name] = entry
        return entry

    def _refresh(self) -> None:
        try:
            names = set(self._scan())
            self._folder_ok = True
        except OSError:
            self._folder_ok = False
            return
        self._names = names
        self._told &= names
        for gone in self._cache.keys() - names:
            del self._cache[gone]
        # Told entries reported/ could not take: once it is repaired, the problem clears.
        for name in sorted(self._told):
            if not self._to_reported(name, log.debug):
                break
        for name, stuck in list(self._stuck.items()):
            if not os.path.lexists(stuck.path):
                del self._stuck[name]  # removed by an operator

    def _scan(self) -> list[str]:
        # Every kind of entry (nothing is followed or opened here); a name not of the
        # form we make was not put here by us and is left alone.
        with os.scandir(self.dir) as found:
            return [
                e.name
                for e in found
                if not e.name.startswith(TEMP_PREFIX) and is_entry_name(e.name)
            ]

    # -- changes ---------------------------------------------------------------

    def mark_reported(self, name: str) -> None:
        """Moves a told entry to ``reported/``; a repeat finds it there and is fine.
        Never fails for a folder that cannot take it: the central service has it, so it
        counts as told, stays where it lies, and the folder is a health problem."""
        stuck = self._stuck.get(name)
        if stuck is not None:
            stuck.told = True  # it stays in jobs/, for the operator (and the health problem)
            return
        if not is_entry_name(name):
            raise NotFound("no such quarantined job file")
        if name in self._told:
            return
        path = self.dir / name
        if not os.path.lexists(path):
            if os.path.lexists(self.reported_dir / name):
                return
            raise NotFound("no such quarantined job file")
        self._told.add(name)
        self._to_reported(name, log.error)
        log.info("quarantined job file %s is reported", name)

    def _to_reported(self, name: str, complain: Callable[..., None]) -> bool:
        """Moves a told entry on into reported/; False (and it stays told in
        quarantine/, a health problem) when that folder cannot take it."""
        try:
            private_dir(self.reported_dir)
            self._move(self.dir / name, self.reported_dir / name)
            for folder in (self.reported_dir, self.dir):
                fsync_dir(folder)
        except OSError as exc:
            complain("cannot move the reported job file %s to %s: %s", name, REPORTED_DIR, exc)
            return False
        self._told.discard(name)
        self._names.discard(name)
        self._cache.pop(name, None)
        return True

    def _free(self, name: str) -> str:
        stem = name.removesuffix(".json")
        n = 1
        while (
            name in self._names
            or name in self._stuck
            or os.path.lexists(self.dir / name)
            or os.path.lexists(self.reported_dir / name)
        ):
            n += 1
            name = f"{stem[: MAX_NAME - 10]}-{n}.json"
        return name

    def _move_in(self, job_file: Path, name: str) -> None:
        if not self._folder_ok:
            raise OSError(f"{self.dir} is not a usable folder")
        self._move(job_file, self.dir / name)
        self._unsynced |= {self.dir, job_file.parent}

    @staticmethod
    def _move(source: Path, target: Path) -> None:
        """The recording first, so a json always has its wav beside it; when the json
        cannot follow, the wav goes back (no orphan the next start would delete)."""
        wav, target_wav = source.with_suffix(".wav"), target.with_suffix(".wav")
        moved_wav = os.path.lexists(wav)
        if moved_wav:
            files.rename(wav, target_wav)
        try:
            files.rename(source, target)
        except OSError:
            if moved_wav:
                try:
                    files.rename(target_wav, wav)
                except OSError as exc:
                    log.error("recording %s left at %s: %s", wav.name, target_wav, exc)
            raise

    def _stick(self, job_file: Path, found: datetime, data: bytes | None, exc: OSError) -> None:
        # Named by the file's modification time, not the hour found: the same name at
        # every start while it stays stuck, so the central service sees a repeat.
        try:
            modified = _file_time(job_file.lstat().st_mtime)
        except OSError:
            modified = found
        name = quarantine_name(modified, job_file.name)
        stem, n = name.removesuffix(".json"), 1
        while name in self._stuck:
            n += 1
            name = f"{stem[: MAX_NAME - 10]}-{n}.json"
        file = f"{JOBS_DIR}/{shown(job_file.name)}"
        entry = _describe(name, job_file, found, data, file)
        if entry is None:
            return  # gone meanwhile
        self._stuck[name] = _Stuck(job_file, entry)
        log.error("cannot quarantine job file %s: %s; it stays in jobs/", shown(job_file.name), exc)


def reason_of(exc: BaseException) -> str:
    if isinstance(exc, JobServiceError):
        return exc.message
    return str(exc) or type(exc).__name__

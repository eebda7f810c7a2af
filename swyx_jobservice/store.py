"""The durable stores: jobs (files on disk, an index in memory, a wake-up for
long polls) and the much simpler notices.

Layout under ``data_dir``::

    jobs/<id>.wav    the recording (mode 3), written and fsynced before the json
    jobs/<id>.json   the job; its presence is what makes a job exist
    done/<sha256 of the idempotency key>   a finished job's id (a tombstone)
    notices/<id>.json   a pending notice
    quarantine/<time>-<id>.json (.wav)   a job file found unusable at start (quarantine.py)
    quarantine/reported/…   the same, once the agent has told the central service

All changes go through one asyncio lock per store, so a key is checked and
claimed in one step; the disk work runs in a thread so that polls keep being
answered.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from edge_agent.files import TEMP_PREFIX, fsync_dir, private_dir, write_atomic
from swyx_jobservice.errors import (
    DATA_DIR_NOT_WRITABLE,
    BadRequest,
    JobFileBusy,
    JobFileDamaged,
    JobServiceError,
    KeyConflict,
    NotFound,
    QueueFull,
    StoreError,
)
from swyx_jobservice.jobfile import Reader
from swyx_jobservice.jobs import Audio, Job, JobRequest, differences, is_job_id
from swyx_jobservice.notices import Notice, NoticeRequest
from swyx_jobservice.quarantine import Quarantine, reason_of, shown

log = logging.getLogger(__name__)


MAX_PENDING_NOTICES = 1000
TOMBSTONE_MAX_BYTES = 100  # a job id


def remove_temp_files(folder: Path) -> None:
    # Half-written files of a crash: never renamed, so never part of a job or notice.
    stale = [p for p in folder.iterdir() if p.name.startswith(TEMP_PREFIX)]
    for path in stale:
        _remove(path)
    if stale:
        fsync_dir(folder)


def _remove(path: Path) -> None:
    # A leftover that cannot be removed (a folder someone made, say) is logged, never
    # a reason not to start.
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.error("cannot remove %s: %s", path, exc)


def tombstone_name(key: str) -> str:
    # Hashed: keys may hold ':' (not allowed in Windows file names) and are
    # chosen by the caller, so they never become a path of their own.
    return hashlib.sha256(key.encode()).hexdigest()


class JobStore:
    def __init__(
        self,
        data_dir: Path,
        *,
        tombstone_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.jobs_dir = data_dir / "jobs"
        self.done_dir = data_dir / "done"
        self.tombstone_seconds = tombstone_seconds
        # Wall clock, since tombstones age by their file's mtime across restarts.
        self.clock = clock
        self.quarantine = Quarantine(
            data_dir, clock=lambda: datetime.fromtimestamp(self.clock(), UTC)
        )
        self._jobs: dict[str, Job] = {}  # insertion order is oldest first
        self._by_key: dict[str, str] = {}
        self._tombstones: dict[str, tuple[str, float]] = {}  # name -> (job id, written at)
        # Job files that may not be read now (a scanner holds them): kept in jobs/,
        # tried again by retry_held(), a health problem meanwhile. Name -> path.
        self.held: dict[str, Path] = {}
        self._lock = asyncio.Lock()
        self._arrived = asyncio.Condition()
        self._stopping = False  # the service stops: long polls answer now

    # -- start -----------------------------------------------------------------

    def load(self) -> None:
        """Reads every job and tombstone; finishes what a crash interrupted."""
        try:
            for folder in (self.jobs_dir, self.done_dir):
                private_dir(folder)
                remove_temp_files(folder)
            self.quarantine.load()  # never raises: its trouble is a health problem
            reader = Reader()
            self._load_tombstones(reader)
            self._load_jobs(reader)
            self._remove_orphan_audio()
            self._clean_tombstones_sync()
        except OSError as exc:
            raise StoreError(f"data folder {self.jobs_dir.parent} is not usable: {exc}") from None
        log.info(
            "%d pending jobs, %d tombstones, %d quarantined and %d held job files",
            len(self._jobs),
            len(self._tombstones),
            self.quarantine.count(),
            len(self.held),
        )

    def _load_tombstones(self, reader: Reader) -> None:
        for path in self.done_dir.iterdir():
            try:
                data = reader.read(path, TOMBSTONE_MAX_BYTES)
                job_id = data.decode("ascii", errors="replace").strip()
                written_at = path.lstat().st_mtime
            except (OSError, JobFileDamaged, JobFileBusy) as exc:
                log.error("ignoring unreadable tombstone %s: %s", path, exc)
                continue
            if len(path.name) != 64 or not is_job_id(job_id):
                log.error("ignoring unreadable tombstone %s", path)
                continue
            self._tombstones[path.name] = (job_id, written_at)

    def _load_jobs(self, reader: Reader) -> None:
        loaded: list[Job] = []
        for path in sorted(self.jobs_dir.glob("*.json")):
            job = self._judge(path, reader)
            if job is not None:
                loaded.append(job)
        self.quarantine.settle()
        for job in sorted(loaded, key=lambda j: (j.received_at, j.id)):
            self._add(job)

    def _judge(self, path: Path, reader: Reader) -> Job | None:
        """The job in `path`; None when it was finished, is gone, held or quarantined."""
        data: bytes | None = None
        try:
            data = reader.read(path)
            job = Job.parse(json.loads(data))
            if path.stem != job.id:
                raise BadRequest(f"file name does not match id {job.id}")
            self._check_audio(job)
        except FileNotFoundError:
            return None
        except JobFileBusy as exc:
            # Not damaged: the alarm is kept where it is and tried again soon.
            if path.name not in self.held:
                log.warning("job file %s %s; trying again later", shown(path.name), exc.message)
            self.held[path.name] = path
            return None
        except (OSError, ValueError, RecursionError, JobFileDamaged, BadRequest) as exc:
            # An accepted alarm that cannot run: kept (an operator may still save
            # it by hand) and told, never skipped; the other alarms run on.
            self.held.pop(path.name, None)
            self.quarantine.take(path, reason_of(exc), data)
            return None
        self.held.pop(path.name, None)
        tomb = self._tombstones.get(tombstone_name(job.idempotency_key))
        if tomb is not None and tomb[0] == job.id:
            # The tombstone is written first: the agent had finished this
            # job when the service stopped in the middle of deleting it.
            self._unlink_job(job.id)
            return None
        return job

    async def retry_held(self) -> int:
        """Reads the held job files again; returns how many became jobs."""
        if not self.held:
            return 0
        async with self._lock:
            found = await asyncio.to_thread(self._retry_held_sync)
            for job in found:
                self._add(job)
        if found:
            log.info("%d held job files could be read now", len(found))
            async with self._arrived:
                self._arrived.notify_all()
        return len(found)

    def _retry_held_sync(self) -> list[Job]:
        reader = Reader()
        found = [self._judge(path, reader) for path in list(self.held.values())]
        self.quarantine.settle()
        return sorted(
            (job for job in found if job is not None and job.id not in self._jobs),
            key=lambda j: (j.received_at, j.id),
        )

    def _check_audio(self, job: Job) -> None:
        if job.recording is None:
            return
        try:
            size = self._wav(job.id).stat().st_size
        except FileNotFoundError:
            raise BadRequest("its recording file is missing") from None
        if size != job.recording.bytes:
            raise BadRequest(f"its recording has {size} bytes, not {job.recording.bytes}")

    def _remove_orphan_audio(self) -> None:
        # A wav without json: a crash between the two writes, or mid-delete.
        # lexists: a json that is a dangling symlink (or was held back) still owns its wav.
        orphans = [
            p for p in self.jobs_dir.glob("*.wav") if not os.path.lexists(p.with_suffix(".json"))
        ]
        for path in orphans:
            _remove(path)
        if orphans:
            fsync_dir(self.jobs_dir)

    # -- reading ---------------------------------------------------------------

    def pending(self) -> list[Job]:
        return list(self._jobs.values())

    def get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFound("no such job")
        return job

    def previous(self, request: JobRequest) -> str | None:
        """The id of the job this request's key already made, if any; a
        KeyConflict when the key made a different job."""
        key = request.idempotency_key
        job_id = self._by_key.get(key)
        if job_id is not None:
            different = differences(self._jobs[job_id], request)
            if different:
                named = ", ".join(different)
                raise KeyConflict(
                    f"idempotencyKey was used for a different job (differs in {named})",
                    "idempotencyKey",
                )
            return job_id
        tomb = self._tombstones.get(tombstone_name(key))
        if tomb is not None and not self._expired(tomb[1]):
            # The job is finished and its content gone; a late retry of the
            # routing script must not start the alarm a second time.
            return tomb[0]
        return None

    async def wait(self, seconds: float, known: frozenset[str] = frozenset()) -> list[Job]:
        """The pending jobs, waiting up to ``seconds`` for one not in ``known``.

        The agent names the jobs it runs already in ``known``: a long broadcast
        must not turn its long poll into a busy loop.
        """

        def news() -> bool:
            return self._stopping or any(job_id not in known for job_id in self._jobs)

        if not news() and seconds > 0:
            try:
                async with asyncio.timeout(seconds), self._arrived:
                    await self._arrived.wait_for(news)
            except TimeoutError:
                pass
        return self.pending()

    async def stop_waiting(self) -> None:
        """Ends every long poll at once (with the pending jobs): the service is stopping."""
        self._stopping = True
        async with self._arrived:
            self._arrived.notify_all()

    async def read_recording(self, job_id: str) -> bytes:
        job = self.get(job_id)
        if job.recording is None:
            raise NotFound("this job has no recording")
        try:
            return await asyncio.to_thread(self._wav(job_id).read_bytes)
        except FileNotFoundError:
            raise NotFound("no such job") from None  # deleted meanwhile

    def writable(self) -> bool:
        """Whether a file can be created in the jobs folder right now."""
        try:
            with tempfile.TemporaryFile(dir=self.jobs_dir, prefix=TEMP_PREFIX) as f:
                f.write(b"probe")
            return True
        except OSError:
            return False

    # -- changes ---------------------------------------------------------------
    # Shielded: a caller that goes away (client gone, shutdown) must not leave a
    # job on disk but not in memory, which a retry would then duplicate.

    async def accept(self, request: JobRequest, audio: Audio | None) -> tuple[str, bool]:
        """Stores the job durably; (id, True) when new, (id, False) for a repeat.

        ``audio`` is the checked recording for mode 3, from the body or copied
        from the PBX's folder.
        """
        return await asyncio.shield(self._accept(request, audio))

    async def _accept(self, request: JobRequest, audio: Audio | None) -> tuple[str, bool]:
        async with self._lock:
            previous = self.previous(request)
            if previous is not None:
                return previous, False
            job = Job.accept(
                request,
                id=str(uuid.uuid4()),
                received_at=datetime.now(UTC),
                recording=audio.recording if audio else None,
            )
            await asyncio.to_thread(self._write, job, audio.data if audio else None)
            self._add(job)
        log.info("accepted job %s (mode %d, key %s)", job.id, job.mode, job.idempotency_key)
        async with self._arrived:
            self._arrived.notify_all()
        return job.id, True

    def _write(self, job: Job, audio: bytes | None) -> None:
        try:
            if audio is not None:
                write_atomic(self._wav(job.id), audio)
            write_atomic(self._json(job.id), json.dumps(job.to_json(), indent=2).encode())
        except OSError as exc:
            log.error("cannot store job %s: %s", job.id, exc)
            self._discard(job.id)
            raise StoreError(
                "the job could not be stored: the data folder cannot be written",
                code=DATA_DIR_NOT_WRITABLE,
            ) from None

    def _discard(self, job_id: str) -> None:
        """Removes what a failed write left, never raising: the folder that just
        refused a write may refuse this too, and the caller must still get its 503.
        The json too, in case it was renamed in before the folder's fsync failed."""
        for path in (self._json(job_id), self._wav(job_id)):
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                # A wav left here is removed at the next start (an orphan without json).
                log.error("cannot remove %s after the failed write: %s", path.name, exc)

    async def finish(self, job_id: str) -> None:
        """Deletes a finished job, leaving a tombstone for late retries."""
        await asyncio.shield(self._finish(job_id))

    async def _finish(self, job_id: str) -> None:
        async with self._lock:
            job = self.get(job_id)
            name = tombstone_name(job.idempotency_key)
            try:
                await asyncio.to_thread(self._remove, job, name)
            except OSError as exc:
                log.error("cannot delete job %s: %s", job_id, exc)
                raise StoreError("the job could not be deleted") from None
            self._tombstones[name] = (job.id, self.clock())
            del self._jobs[job.id], self._by_key[job.idempotency_key]
        log.info("finished job %s", job_id)

    def _remove(self, job: Job, name: str) -> None:
        # Tombstone first: once it is on disk, a restart finishes the delete.
        write_atomic(self.done_dir / name, job.id.encode())
        self._unlink_job(job.id)

    def _unlink_job(self, job_id: str) -> None:
        # json first: a json on disk always has its audio.
        self._json(job_id).unlink(missing_ok=True)
        self._wav(job_id).unlink(missing_ok=True)
        fsync_dir(self.jobs_dir)

    async def clean_tombstones(self) -> int:
        async with self._lock:
            return await asyncio.to_thread(self._clean_tombstones_sync)

    def _clean_tombstones_sync(self) -> int:
        expired = [n for n, (_, at) in self._tombstones.items() if self._expired(at)]
        for name in expired:
            (self.done_dir / name).unlink(missing_ok=True)
            del self._tombstones[name]
        if expired:
            fsync_dir(self.done_dir)
            log.info("removed %d expired tombstones", len(expired))
        return len(expired)

    # -- helpers ---------------------------------------------------------------

    def _expired(self, written_at: float) -> bool:
        return written_at + self.tombstone_seconds <= self.clock()

    def _add(self, job: Job) -> None:
        self._jobs[job.id] = job
        self._by_key[job.idempotency_key] = job.id

    def _json(self, job_id: str) -> Path:
        return self.jobs_dir / f"{job_id}.json"

    def _wav(self, job_id: str) -> Path:
        return self.jobs_dir / f"{job_id}.wav"


class NoticeStore:
    """Pending notices, one file each, until the agent has mailed and deleted them.

    No keys, no tombstones: the routing script sends a notice at most once per
    window, and a rare duplicate costs one extra mail. Bounded, so a flood of
    notices cannot fill the disk the jobs need.
    """

    def __init__(self, data_dir: Path, *, max_pending: int = MAX_PENDING_NOTICES) -> None:
        self.dir = data_dir / "notices"
        self.max_pending = max_pending
        self._notices: dict[str, Notice] = {}  # insertion order is oldest first
        self._lock = asyncio.Lock()

    def load(self) -> None:
        try:
            private_dir(self.dir)
            remove_temp_files(self.dir)
            loaded: list[Notice] = []
            reader = Reader()
            for path in self.dir.glob("*.json"):
                try:
                    notice = Notice.parse(json.loads(reader.read(path)))
                    if path.stem != notice.id:
                        raise BadRequest(f"file name does not match id {notice.id}")
                except (OSError, ValueError, RecursionError, JobServiceError) as exc:
                    # Left for an operator, as an unreadable job is.
                    log.error("ignoring unreadable notice file %s: %s", path, exc)
                    continue
                loaded.append(notice)
        except OSError as exc:
            raise StoreError(f"notice folder {self.dir} is not usable: {exc}") from None
        for notice in sorted(loaded, key=lambda n: (n.received_at, n.id)):
            self._notices[notice.id] = notice
        log.info("%d pending notices", len(self._notices))

    def pending(self) -> list[Notice]:
        return list(self._notices.values())

    async def add(self, request: NoticeRequest) -> Notice:
        """Stores the notice durably (fsynced before this returns)."""
        return await asyncio.shield(self._add(request))

    async def _add(self, request: NoticeRequest) -> Notice:
        async with self._lock:
            if len(self._notices) >= self.max_pending:
                raise QueueFull(
                    f"{self.max_pending} notices are pending already; "
                    "the agent has to fetch and delete some first"
                )
            notice = Notice.accept(request, id=str(uuid.uuid4()), received_at=datetime.now(UTC))
            data = json.dumps(notice.to_json(), indent=2).encode()
            try:
                await asyncio.to_thread(write_atomic, self._path(notice.id), data)
            except OSError as exc:
                log.error("cannot store notice %s: %s", notice.id, exc)
                raise StoreError(
                    "the notice could not be stored: the data folder cannot be written",
                    code=DATA_DIR_NOT_WRITABLE,
                ) from None
            self._notices[notice.id] = notice
        log.info("accepted notice %s (%s, agent %s)", notice.id, notice.kind, notice.agent_number)
        return notice

    async def delete(self, notice_id: str) -> None:
        await asyncio.shield(self._delete(notice_id))

    async def _delete(self, notice_id: str) -> None:
        async with self._lock:
            if notice_id not in self._notices:
                raise NotFound("no such notice")
            try:
                await asyncio.to_thread(self._unlink, notice_id)
            except OSError as exc:
                log.error("cannot delete notice %s: %s", notice_id, exc)
                raise StoreError("the notice could not be deleted") from None
            del self._notices[notice_id]
        log.info("deleted notice %s", notice_id)

    def _unlink(self, notice_id: str) -> None:
        self._path(notice_id).unlink(missing_ok=True)
        fsync_dir(self.dir)

    def _path(self, notice_id: str) -> Path:
        return self.dir / f"{notice_id}.json"

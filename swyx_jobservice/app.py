"""The job service's HTTP API (Starlette); the wire contract is in README.md."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from swyx_jobservice.audio import inspect_wav
from swyx_jobservice.errors import (
    DATA_DIR_NOT_WRITABLE,
    JOB_FILES_HELD,
    QUARANTINED_JOBS,
    BadRequest,
    Forbidden,
    JobServiceError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    StoreError,
    Unauthenticated,
    UnsupportedMediaType,
)
from swyx_jobservice.jobs import Audio, JobRequest, Limits, is_job_id
from swyx_jobservice.notices import NoticeRequest, is_notice_id
from swyx_jobservice.quarantine import MAX_NAME, PAGE
from swyx_jobservice.recordings import read_recording
from swyx_jobservice.settings import JobServiceSettings
from swyx_jobservice.store import JobStore, NoticeStore

log = logging.getLogger(__name__)

Party = Literal["agent", "routing"]
MAX_WAIT_SECONDS = 60.0
# Jobs an agent runs at once and names in `known`; more would be a runaway.
MAX_KNOWN_JOBS = 100
CLEAN_EVERY_SECONDS = 3600.0
# A job file held back at start (a scanner had it) is read again this often.
HELD_RETRY_SECONDS = 10.0
# A refused body is read on (and dropped) up to these bounds, so a client still
# sending meets our answer rather than a reset; a hostile one cannot hold us.
DRAIN_BYTES = 32 * 1024 * 1024
DRAIN_SECONDS = 10.0
# A notice is four short fields; no setting needed.
NOTICE_MAX_BODY_BYTES = 64 * 1024
# Health's write probe answers within this; a disk slower than that is failing.
PROBE_SECONDS = 2.0


class Tokens:
    """Tells which party a request comes from by its bearer token."""

    def __init__(self, settings: JobServiceSettings) -> None:
        self._tokens: list[tuple[Party, bytes]] = [
            ("agent", settings.agent_token.get_secret_value().encode()),
            ("routing", settings.routing_token.get_secret_value().encode()),
        ]

    def require(self, request: Request, party: Party) -> None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        # Bytes: compare_digest refuses non-ASCII str, and headers may hold any.
        presented = given.strip().encode("latin-1", errors="replace")
        # Both compared every time, so the timing does not tell which one is near.
        matches = [p for p, token in self._tokens if hmac.compare_digest(presented, token)]
        if scheme.lower() != "bearer" or not matches:
            raise Unauthenticated("a valid bearer token is required")
        if matches[0] != party:
            raise Forbidden(f"this endpoint is for the {party} token")


class Body:
    """A request body read while it streams, under a limit that holds whether
    or not Content-Length is sent (or true)."""

    def __init__(self, request: Request) -> None:
        self._request = request
        self._stream: AsyncGenerator[bytes, None] = request.stream()
        self._done = False

    async def read(self, limit: int) -> bytes:
        declared = self._request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"request body larger than {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in self._stream:
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"request body larger than {limit} bytes")
                chunks.append(chunk)
        except ClientDisconnect:
            self._done = True
            raise BadRequest("the client went away before the body was complete") from None
        self._done = True
        return b"".join(chunks)

    async def drain(self) -> None:
        """Reads the rest of a refused body, within bounds."""
        if self._done:
            return
        self._done = True
        drained = 0
        with contextlib.suppress(TimeoutError, ClientDisconnect):
            async with asyncio.timeout(DRAIN_SECONDS):
                async for chunk in self._stream:
                    drained += len(chunk)
                    if drained > DRAIN_BYTES:
                        break
        await self._stream.aclose()


def error_response(err: JobServiceError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(err, Unauthenticated) else None
    body: dict[str, str | None] = {"error": err.message, "field": err.field}
    if err.code is not None:
        body["code"] = err.code
    return JSONResponse(body, err.status, headers)


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        # ValueError covers bad UTF-8 too; RecursionError a deeply nested body.
        raise BadRequest("the body is not valid JSON") from None


def _wait_seconds(request: Request) -> float:
    raw = request.query_params.get("wait", "0")
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not 0 <= seconds <= MAX_WAIT_SECONDS:  # also false for NaN
        raise BadRequest(f"wait must be a number of seconds from 0 to {MAX_WAIT_SECONDS:g}", "wait")
    return seconds


async def _disconnected(request: Request) -> None:
    """Returns when the client closes the connection."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _known_jobs(request: Request) -> frozenset[str]:
    raw = request.query_params.get("known", "")
    ids = frozenset(filter(None, raw.split(",")))
    if len(ids) > MAX_KNOWN_JOBS or not all(is_job_id(job_id) for job_id in ids):
        raise BadRequest(
            f"known must list at most {MAX_KNOWN_JOBS} job ids, separated by commas", "known"
        )
    return ids


def _page(request: Request) -> tuple[int, str]:
    raw = request.query_params.get("limit", str(PAGE))
    after = request.query_params.get("after", "")
    if not raw.isdigit() or not 1 <= int(raw) <= PAGE:
        raise BadRequest(f"limit must be a number from 1 to {PAGE}", "limit")
    if len(after) > MAX_NAME:
        raise BadRequest(f"after must be at most {MAX_NAME} characters", "after")
    return int(raw), after


def _require_json(request: Request, what: str) -> None:
    media_type = request.headers.get("content-type", "").partition(";")[0]
    if media_type.strip().lower() != "application/json":
        raise UnsupportedMediaType(f"{what} are posted as application/json")


def _job_id(request: Request) -> str:
    job_id = str(request.path_params["id"])
    if not is_job_id(job_id):
        raise NotFound("no such job")
    return job_id


def _notice_id(request: Request) -> str:
    notice_id = str(request.path_params["id"])
    if not is_notice_id(notice_id):
        raise NotFound("no such notice")
    return notice_id


class Endpoints:
    """The routes' handlers over one store, with the settings they enforce."""

    def __init__(self, settings: JobServiceSettings, store: JobStore, notices: NoticeStore) -> None:
        self.settings = settings
        self.store = store
        self.notices = notices
        self.tokens = Tokens(settings)
        self.limits = Limits(settings.max_audio_bytes, settings.max_recording_seconds)
        self._probe: asyncio.Future[bool] | None = None
        self._quarantine_lock = asyncio.Lock()

    def routes(self) -> list[Route]:
        return [
            Route("/jobs", self.post_job, methods=["POST"]),
            Route("/jobs", self.list_jobs, methods=["GET"]),
            Route("/jobs/{id}/recording", self.get_recording, methods=["GET"]),
            Route("/jobs/{id}", self.delete_job, methods=["DELETE"]),
            Route("/notices", self.post_notice, methods=["POST"]),
            Route("/notices", self.list_notices, methods=["GET"]),
            Route("/notices/{id}", self.delete_notice, methods=["DELETE"]),
            Route("/quarantine", self.list_quarantine, methods=["GET"]),
            Route("/quarantine/{name}/reported", self.quarantine_reported, methods=["POST"]),
            Route("/health", self.health, methods=["GET"]),
        ]

    async def post_job(self, request: Request) -> Response:
        body = Body(request)
        try:
            self.tokens.require(request, "routing")
            _require_json(request, "jobs")
            raw = await body.read(self.settings.max_body_bytes)
            job_request = JobRequest.parse(_parse_json(raw), self.limits)
            # Before the file is read: on a retry, the PBX may have deleted it.
            previous = self.store.previous(job_request)
            if previous is not None:
                return JSONResponse({"id": previous, "created": False}, 200)
            audio = job_request.audio
            if job_request.recording_path is not None:
                audio = await asyncio.to_thread(self._audio_from_path, job_request.recording_path)
            job_id, created = await self.store.accept(job_request, audio)
        except JobServiceError as err:
            await body.drain()
            return error_response(err)
        return JSONResponse({"id": job_id, "created": created}, 201 if created else 200)

    def _audio_from_path(self, path: str) -> Audio:
        limit = self.settings.max_audio_bytes
        data = read_recording(self.settings.recordings_dir, path, limit)
        recording = inspect_wav(
            data,
            max_bytes=limit,
            max_seconds=self.settings.max_recording_seconds,
            field="recordingPath",
        )
        return Audio(data, recording)

    async def list_jobs(self, request: Request) -> Response:
        self.tokens.require(request, "agent")
        waiting = asyncio.create_task(self.store.wait(_wait_seconds(request), _known_jobs(request)))
        gone = asyncio.create_task(_disconnected(request))
        try:
            # A long poll whose agent went away ends now, not at the end of its wait.
            await asyncio.wait({waiting, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if not waiting.done():
            waiting.cancel()
            return Response(status_code=499)  # nobody reads it; nginx's "client closed"
        return JSONResponse({"jobs": [job.to_json() for job in waiting.result()]})

    async def get_recording(self, request: Request) -> Response:
        self.tokens.require(request, "agent")
        data = await self.store.read_recording(_job_id(request))
        return Response(data, media_type="audio/wav")

    async def delete_job(self, request: Request) -> Response:
        self.tokens.require(request, "agent")
        await self.store.finish(_job_id(request))
        return Response(status_code=204)

    async def post_notice(self, request: Request) -> Response:
        body = Body(request)
        try:
            self.tokens.require(request, "routing")
            _require_json(request, "notices")
            raw = await body.read(NOTICE_MAX_BODY_BYTES)
            notice = await self.notices.add(NoticeRequest.parse(_parse_json(raw)))
        except JobServiceError as err:
            await body.drain()
            return error_response(err)
        return JSONResponse({"id": notice.id}, 201)

    async def list_notices(self, request: Request) -> Response:
        self.tokens.require(request, "agent")
        return JSONResponse({"notices": [n.to_json() for n in self.notices.pending()]})

    async def delete_notice(self, request: Request) -> Response:
        self.tokens.require(request, "agent")
        await self.notices.delete(_notice_id(request))
        return Response(status_code=204)

    async def list_quarantine(self, request: Request) -> Response:
        self.tokens.require(request, "agent")
        limit, after = _page(request)
        async with self._quarantine_lock:
            entries = await asyncio.to_thread(self.store.quarantine.entries, limit, after)
            total = self.store.quarantine.count()
        return JSONResponse({"entries": [e.to_json() for e in entries], "total": total})

    async def quarantine_reported(self, request: Request) -> Response:
        self.tokens.require(request, "agent")
        name = str(request.path_params["name"])
        try:
            async with self._quarantine_lock:
                await asyncio.to_thread(self.store.quarantine.mark_reported, name)
        except OSError as exc:
            log.error("cannot mark quarantined job file %s reported: %s", name, exc)
            raise StoreError("the quarantined job file could not be moved") from None
        return Response(status_code=204)

    async def health(self, request: Request) -> Response:
        self.tokens.require(request, "agent")
        writable = await self._data_dir_writable()
        pending = len(self.store.pending())
        quarantined = self.store.quarantine.count()
        problems = [] if writable else [DATA_DIR_NOT_WRITABLE]
        if quarantined:
            # An accepted alarm was lost; failing until the agent has told about it.
            problems.append(QUARANTINED_JOBS)
        problems += self.store.quarantine.problems()
        if self.store.held:
            # An accepted alarm waits for its file to become readable (tried again).
            problems.append(JOB_FILES_HELD)
        return JSONResponse(
            {
                "status": "failing" if problems else "ok",
                "problems": problems,
                "pendingJobs": pending,
                "quarantinedJobs": quarantined,
                "heldJobs": len(self.store.held),
                "dataDir": writable,
            }
        )

    async def _data_dir_writable(self) -> bool:
        """The probe (create and remove a file) in a thread, answered within
        PROBE_SECONDS: a hanging disk or share makes health "failing", not slow.
        One probe at a time, so frequent polls of a hanging disk add no threads."""
        if self._probe is None or self._probe.done():
            self._probe = asyncio.ensure_future(asyncio.to_thread(self.store.writable))
        try:
            return await asyncio.wait_for(asyncio.shield(self._probe), PROBE_SECONDS)
        except TimeoutError:
            return False


def create_app(settings: JobServiceSettings) -> Starlette:
    """The app over the store in ``settings.data_dir``, loaded (synchronously) here,
    so that an unusable folder stops the start instead of the first alarm."""
    store = JobStore(settings.data_dir, tombstone_seconds=settings.tombstone_hours * 3600)
    store.load()
    notices = NoticeStore(settings.data_dir)
    notices.load()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks = [
            asyncio.create_task(_clean_hourly(store)),
            asyncio.create_task(_retry_held(store)),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    app = Starlette(
        routes=Endpoints(settings, store, notices).routes(),
        exception_handlers={
            JobServiceError: _on_error,
            HTTPException: _on_error,
            Exception: _on_crash,
        },
        lifespan=lifespan,
    )
    app.state.store = store
    app.state.notices = notices
    return app


async def _on_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, JobServiceError):
        return error_response(exc)
    if isinstance(exc, HTTPException) and exc.status_code == 405:
        return error_response(MethodNotAllowed("method not allowed here"))
    return error_response(NotFound("no such endpoint"))


async def _on_crash(request: Request, exc: Exception) -> Response:
    # The traceback goes to the log (Starlette re-raises to the server), never to the client.
    return JSONResponse({"error": "internal error", "field": None}, 500)


async def _clean_hourly(store: JobStore) -> None:
    while True:
        await asyncio.sleep(CLEAN_EVERY_SECONDS)
        try:
            await store.clean_tombstones()
        except OSError:
            log.exception("cannot clean tombstones")


async def _retry_held(store: JobStore) -> None:
    while True:
        await asyncio.sleep(HELD_RETRY_SECONDS)
        try:
            await store.retry_held()
        except Exception:  # the loop must outlive any one bad file
            log.exception("cannot read the held job files again")

"""The agent's side of the job service on the PBX host (port 80 there, 8080 here).

The wire contract is in swyx_jobservice/README.md; this client speaks only it.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

import httpx

from edge_agent.error_text import describe
from edge_agent.errors import AgentError

log = logging.getLogger(__name__)

# Entries the job service lists at most per page (swyx_jobservice/quarantine.py PAGE).
QUARANTINE_PAGE = 50


class JobServiceUnavailable(AgentError):
    """Raised when the job service cannot be reached or answers with a server error."""


class JobServiceRefused(AgentError):
    """Raised when the job service refuses a request (bad token, bad request)."""


class JobServiceClient:
    def __init__(
        self, url: str, token: str, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.url = url.rstrip("/")
        # The read timeout leaves room for the longest long poll (60 s).
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(5, read=70),
            headers={"Authorization": f"Bearer {token}"},
            transport=transport,
        )
        self._problems: set[str] = set()

    async def healthy(self) -> bool:
        """Whether the job service answers, accepts our token and can write its folder."""
        try:
            response = await self._client.get(self.url + "/health")
            body = response.json() if response.status_code == 200 else {}
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("job service health check failed: %s", describe(exc))
            return False
        if self._problems:
            return False  # what the agent found itself (damaged jobs it cannot report)
        # Quarantined job files are told as notices (damaged_jobs), not as an unreachable
        # job service: it takes and keeps alarms all the same. Any other problem, or a
        # "failing" that names none, is one.
        problems = body.get("problems")
        ok = body.get("status") == "ok"
        told_otherwise = (
            body.get("status") == "failing"
            and isinstance(problems, list)
            and bool(problems)
            and set(problems) <= {"quarantinedJobs"}
        )
        return (ok or told_otherwise) and body.get("dataDir") is True

    def set_problem(self, code: str, present: bool) -> None:
        """A problem the agent found with the job service beyond its health answer."""
        if present:
            self._problems.add(code)
        else:
            self._problems.discard(code)

    def has_problem(self, code: str) -> bool:
        return code in self._problems

    async def pending_jobs(self, wait: float, known: Collection[str] = ()) -> list[dict[str, Any]]:
        """Every pending job, oldest first; waits up to `wait` seconds for one not in `known`."""
        params = {"wait": f"{wait:g}"}
        if known:
            params["known"] = ",".join(sorted(known))
        body = await self._json("GET", "/jobs", params=params)
        jobs = body.get("jobs")
        if not isinstance(jobs, list):
            raise JobServiceRefused("the job list is not a list")
        return [job for job in jobs if isinstance(job, dict) and isinstance(job.get("id"), str)]

    async def recording(self, job_id: str) -> bytes:
        """The WAV the caller recorded for a mode 3 job."""
        response = await self._request("GET", f"/jobs/{job_id}/recording")
        return response.content

    async def delete_job(self, job_id: str) -> None:
        """Finishes a job; one that is gone already counts as finished."""
        await self._request("DELETE", f"/jobs/{job_id}", missing_ok=True)

    async def pending_notices(self) -> list[dict[str, Any]]:
        body = await self._json("GET", "/notices")
        notices = body.get("notices")
        if not isinstance(notices, list):
            raise JobServiceRefused("the notice list is not a list")
        return [n for n in notices if isinstance(n, dict) and isinstance(n.get("id"), str)]

    async def delete_notice(self, notice_id: str) -> None:
        await self._request("DELETE", f"/notices/{notice_id}", missing_ok=True)

    async def quarantined(self, after: str = "") -> list[dict[str, Any]]:
        """Job files the job service could not read at its start, not yet reported: a
        page of the oldest (QUARANTINE_PAGE) with names after `after`."""
        params = {"limit": str(QUARANTINE_PAGE)}
        if after:
            params["after"] = after
        body = await self._json("GET", "/quarantine", params=params)
        entries = body.get("entries")
        if not isinstance(entries, list):
            raise JobServiceRefused("the quarantine list is not a list")
        return [e for e in entries if isinstance(e, dict) and isinstance(e.get("name"), str)]

    async def mark_reported(self, name: str) -> None:
        """Tells the job service the central service has it; gone already counts as done."""
        await self._request("POST", f"/quarantine/{name}/reported", missing_ok=True)

    async def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = await self._request(method, path, **kwargs)
        try:
            body = response.json()
        except ValueError:
            raise JobServiceRefused(f"{method} {path}: the answer is not JSON") from None
        if not isinstance(body, dict):
            raise JobServiceRefused(f"{method} {path}: the answer is not an object")
        return body

    async def _request(
        self, method: str, path: str, *, missing_ok: bool = False, **kwargs: Any
    ) -> httpx.Response:
        try:
            response = await self._client.request(method, self.url + path, **kwargs)
        except httpx.HTTPError as exc:
            # By its fields: a repr is no safer to hand on than the request it failed on.
            raise JobServiceUnavailable(f"{method} {path}: {describe(exc)}") from None
        if response.status_code >= 500:
            raise JobServiceUnavailable(f"{method} {path}: HTTP {response.status_code}")
        if response.status_code == 404 and missing_ok:
            return response
        if response.status_code >= 400:
            raise JobServiceRefused(
                f"{method} {path}: HTTP {response.status_code} {response.text[:200]}"
            )
        return response

    async def aclose(self) -> None:
        await self._client.aclose()

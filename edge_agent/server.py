"""Requests from the agent to the central service over HTTPS (all outbound, port 443).

The WebSocket carries only the command stream; results, health and audio go
as ordinary requests, which also carry larger bodies than WebSocket frames.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from typing import Any

import httpx

from edge_agent.config import Enrolment
from edge_agent.error_text import describe, redact, safe_url
from edge_agent.errors import ServerRefused, ServerUnreachable
from edge_agent.health_answer import HealthAnswer, HealthQuestion

# Answers that say "not now" rather than "no".
TRY_AGAIN = {408, 425, 429}
# Larger bodies go gzip-encoded: a result with the PBX directory is about 160 bytes of
# JSON per user, 8 MB at 50,000 users; the central service inflates an agent's
# (api/http/agent_bodies.py) and takes at most BODY_MAX, inflated.
GZIP_FROM = 64 * 1024
BODY_MAX = 16 * 1024 * 1024
# Uploading and applying a large directory takes longer than the common 10 s.
LARGE_TIMEOUT = httpx.Timeout(10.0, read=120.0, write=120.0)

COMPLETE = """mutation($id: ID!, $ok: Boolean!, $result: JSON, $error: String) {
  completeCommand(id: $id, ok: $ok, result: $result, error: $error) { id status }
}"""
REPORT = (
    """mutation($input: BroadcastReportInput!) { reportBroadcast(input: $input) { lastSeq } }"""
)
NOTICE = """mutation($input: NoticeInput!) { reportNotice(input: $input) { stored } }"""
REGISTER = """mutation($key: String!, $host: String!, $version: String!) {
  registerInstallation(licenseKey: $key, hostname: $host, agentVersion: $version) {
    installationId tenantName token
  }
}"""


async def graphql(
    client: httpx.AsyncClient, url: str, query: str, variables: dict[str, Any], token: str | None
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers["Content-Type"] = "application/json"
    # As httpx encodes JSON; a lone surrogate raises (a ValueError) before anything is sent.
    content = json.dumps(
        {"query": query, "variables": variables},
        ensure_ascii=False,
        separators=(",", ":"),
        allow_nan=False,
    ).encode("utf-8")
    if len(content) > BODY_MAX:
        size = len(content) // (1024 * 1024)
        words = f"the request is {size} MB, more than the central service takes (16 MB)"
        raise ServerRefused(words, public=words)
    large = len(content) > GZIP_FROM
    if large:
        content = gzip.compress(content, compresslevel=6)
        headers["Content-Encoding"] = "gzip"
    try:
        response = await client.post(
            url,
            content=content,
            headers=headers,
            timeout=LARGE_TIMEOUT if large else httpx.USE_CLIENT_DEFAULT,
        )
    except httpx.HTTPError as exc:
        # The URL without a login or query, the error by its fields (never a repr).
        raise ServerUnreachable(f"{safe_url(url)}: {describe(exc, hide=[token])}") from None
    if response.status_code >= 500 or response.status_code in TRY_AGAIN:
        raise ServerUnreachable(f"{safe_url(url)}: HTTP {response.status_code}")
    if response.status_code != 200:
        answer = redact(response.text[:200], [token])
        raise ServerRefused(
            f"{safe_url(url)}: HTTP {response.status_code} {answer}",
            public=_refusal_words(response.status_code),
        )
    try:
        body: dict[str, Any] = response.json()
    except ValueError:
        # A proxy's maintenance page, say: not the service's answer.
        raise ServerUnreachable(f"{safe_url(url)}: the answer is not JSON") from None
    if body.get("errors"):
        error = body["errors"][0] if isinstance(body["errors"], list) else {}
        error = error if isinstance(error, dict) else {}
        extensions = error.get("extensions")
        extensions = extensions if isinstance(extensions, dict) else {}
        code = extensions.get("code")
        code = code if isinstance(code, str) else ""
        answer = str(error.get("message"))[:500]  # for the log and report_compat.py
        message = f"{code}: {answer}"
        # The server's own trouble (a database hiccup) passes; try again later.
        if code == "INTERNAL_SERVER_ERROR":
            raise ServerUnreachable(message)
        # The service's own words, no address; its code and extensions for the caller.
        raise ServerRefused(message, code=code, extensions=extensions, answer=answer)
    data = body.get("data")
    if not isinstance(data, dict):
        raise ServerUnreachable(f"{safe_url(url)}: an answer without data")
    return data


def _refusal_words(status: int) -> str:
    """An HTTP refusal in words a user may read: never the address or the raw answer."""
    if status == 413:
        return "the request is larger than the central service takes (HTTP 413)"
    return f"HTTP {status}"


class Server:
    def __init__(self, enrolment: Enrolment, verify_tls: bool) -> None:
        self.enrolment = enrolment
        # Short: a request stuck on a dead server is retried (on another one) sooner.
        self._client = httpx.AsyncClient(timeout=10, verify=verify_tls)
        self.health_question = HealthQuestion()

    async def _call(self, query: str, **variables: Any) -> dict[str, Any]:
        return await graphql(
            self._client, self.enrolment.graphql_http, query, variables, self.enrolment.token
        )

    async def complete(
        self, command_id: str, ok: bool, result: dict[str, Any], error: str | None
    ) -> None:
        await self._call(COMPLETE, id=command_id, ok=ok, result=result, error=error)

    async def report_health(self, report: dict[str, Any]) -> HealthAnswer:
        """Sends the heartbeat; the poll interval and the tenant's language (an older
        central service's answer has none: asked again without it)."""
        try:
            data = await self._call(self.health_question.query(), input=report)
        except ServerRefused as exc:
            if not self.health_question.refused(exc):
                raise
            data = await self._call(self.health_question.query(), input=report)
        return self.health_question.answer(data)

    async def report_broadcast(self, report: dict[str, Any]) -> int:
        """Sends a broadcast report; returns the last event number the server stored."""
        data = await self._call(REPORT, input=report)
        return int(data["reportBroadcast"]["lastSeq"])

    async def report_notice(self, notice: dict[str, Any]) -> bool:
        data = await self._call(NOTICE, input=notice)
        return bool(data["reportNotice"]["stored"])

    async def download_audio(self, audio_id: str, sha256: str) -> bytes:
        url = self.enrolment.server.rstrip("/") + f"/api/audio/{audio_id}"
        try:
            response = await self._client.get(
                url, headers={"Authorization": f"Bearer {self.enrolment.token}"}
            )
        except httpx.HTTPError as exc:
            where, why = safe_url(url), describe(exc, hide=[self.enrolment.token])
            raise ServerUnreachable(f"{where}: {why}") from None
        if response.status_code != 200:
            raise ServerRefused(f"audio {audio_id}: HTTP {response.status_code}")
        data = response.content
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ServerRefused(f"audio {audio_id}: checksum differs from the announcement's")
        return data

    async def aclose(self) -> None:
        await self._client.aclose()

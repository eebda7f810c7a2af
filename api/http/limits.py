"""Request body limits, enforced while the body streams in (Content-Length may lie
or be missing, as with chunked transfer encoding)."""

from __future__ import annotations

import asyncio
import contextlib

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.http.refusals import refusal

DRAIN_BYTES = 1024 * 1024
DRAIN_SECONDS = 5.0
# A bound set for this request by a middleware before this one (agent_bodies.py).
SCOPE_LIMIT = "rundruf.body_limit"


class BodyLimit:
    """Answers 413 for bodies over the limit of their path prefix.

    The body is read whole before the app sees it: past the limit nothing of the
    app runs, so a refusal is always a clean 413 and never half a response.
    """

    def __init__(self, app: ASGIApp, limits: dict[str, int], default: int) -> None:
        self.app = app
        self.limits = sorted(limits.items(), key=lambda kv: -len(kv[0]))
        self.default = default

    def _limit_for(self, path: str) -> int:
        return next((n for prefix, n in self.limits if path.startswith(prefix)), self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = scope.get(SCOPE_LIMIT) or self._limit_for(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(scope, receive, send, limit)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                # Drained first: once the response is complete, the server
                # stops reading and the client would meet a reset, not the 413.
                if message.get("more_body", False):
                    await drain(receive)
                await _too_large(scope, receive, send, limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def drain(receive: Receive) -> None:
    """Reads (and drops) a little more of the refused body, so that the client,
    still sending, reads our 413 instead of a connection reset; bounded in
    bytes and time, since a hostile client could send forever."""
    drained = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DRAIN_SECONDS):
            while drained < DRAIN_BYTES:
                message = await receive()
                if message["type"] != "http.request":
                    return
                drained += len(message.get("body", b""))
                if not message.get("more_body", False):
                    return


async def _too_large(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    response = refusal(scope["path"], 413, f"request body larger than {limit} bytes")
    response.headers["Connection"] = "close"
    await response(scope, receive, send)

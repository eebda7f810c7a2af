"""An enrolled agent's large request bodies: a bound of their own, gzip accepted.

A command's result carries the PBX directory: about 160 bytes of JSON per user, so
8 MB at 50,000 users, far over the 256 KiB every other GraphQL request may send
(issue 14, point 1, review point 5). For a request that bears a valid agent token
and needs it (over the common bound, or gzip-encoded), this reads the body up to
its own bound, inflates it (bounded as well: no zip bomb gets further) and hands it
on as a plain body with the larger bound in the scope, which BodyLimit (limits.py)
honours, and a mark that json_guard's bound on values does not apply (a directory
holds 50,000 users, several values each). Every other request passes untouched,
and the token is looked up only for the few that need it.
"""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.http.limits import SCOPE_LIMIT, drain
from api.http.refusals import refusal

# Set in the scope of a body read here, after its token was verified.
SCOPE_VERIFIED = "rundruf.verified_agent_body"

# Far above a directory of 50,000 users; compressed it is a tenth of that.
AGENT_BODY_LIMIT = 16 * 1024 * 1024


@dataclass(frozen=True)
class AgentBodies:
    app: ASGIApp
    paths: tuple[str, ...]
    # What any request may send to these paths (BodyLimit's bound for them).
    common_limit: int
    token_prefix: str
    # Whether a token is a valid agent token (looked up in the database).
    verify: Callable[[str], Awaitable[bool]]
    limit: int = AGENT_BODY_LIMIT

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = self._token(scope)
        if token is None:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        gzipped = headers.get(b"content-encoding", b"").strip().lower() == b"gzip"
        declared = headers.get(b"content-length")
        small = declared is not None and declared.isdigit() and int(declared) <= self.common_limit
        if (small and not gzipped) or not await self.verify(token):
            await self.app(scope, receive, send)
            return
        body = await self._read(receive)
        if body is None:
            await _refuse(scope, receive, send, 413, f"request body larger than {self.limit} bytes")
            return
        if gzipped:
            try:
                body = _inflate(body, self.limit)
            except zlib.error:
                await _refuse(scope, receive, send, 400, "the gzip-encoded body is damaged")
                return
            if body is None:
                message = f"request body larger than {self.limit} bytes once inflated"
                await _refuse(scope, receive, send, 413, message)
                return
        plain = [
            (k, v) for k, v in scope["headers"] if k not in (b"content-encoding", b"content-length")
        ]
        plain.append((b"content-length", str(len(body)).encode()))
        inner = {**scope, "headers": plain, SCOPE_LIMIT: self.limit, SCOPE_VERIFIED: True}
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(inner, replay, send)

    def _token(self, scope: Scope) -> str | None:
        """The agent token of an HTTP request to one of the paths, unverified."""
        if scope["type"] != "http" or scope["path"] not in self.paths:
            return None
        value = bytes(dict(scope["headers"]).get(b"authorization", b"")).decode("latin-1")
        scheme, _, token = value.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token.startswith(self.token_prefix):
            return None
        return token

    async def _read(self, receive: Receive) -> bytes | None:
        """The body, or None past the bound (drained a little, so the 413 is read)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"".join(chunks)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                if message.get("more_body", False):
                    await drain(receive)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def from_verified_agent(scope: Scope) -> bool:
    """Whether this request's body came through AgentBodies with a verified token."""
    return scope.get(SCOPE_VERIFIED) is True


def _inflate(data: bytes, limit: int) -> bytes | None:
    """The gzip body inflated, or None when it would be larger than `limit`."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip header and trailer
    body = inflater.decompress(data, limit + 1)
    if len(body) > limit or inflater.unconsumed_tail:
        return None
    body += inflater.flush()
    if not inflater.eof:
        raise zlib.error("the gzip stream ends early")
    return body if len(body) <= limit else None


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, message: str) -> None:
    response = refusal(scope["path"], status, message)
    response.headers["Connection"] = "close"
    await response(scope, receive, send)

"""Security headers on every HTTP answer (see docs/decisions/website-headers.md).

The website can delete users and start alarms with one click, so no other site
may frame it, and injected markup must not run: scripts and styles come only
from our own files.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# 'self' in connect-src covers ws:/wss: to the same host (CSP Level 3).
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        # The favicon is an empty data: URL (index.html), so no request for it.
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    # For browsers that predate frame-ancestors.
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class SecurityHeaders:
    """Adds SECURITY_HEADERS to HTTP responses (and to a WebSocket handshake
    refused with one); ``without_csp`` names path prefixes
    whose pages need inline script (the GraphQL IDE, only when it is switched on)."""

    def __init__(self, app: ASGIApp, without_csp: tuple[str, ...] = ()) -> None:
        self.app = app
        self.without_csp = without_csp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        skip_csp = scope["path"].startswith(self.without_csp)

        async def send_with_headers(message: Message) -> None:
            # A WebSocket handshake refused with an HTTP answer (429) is one too.
            if message["type"] in ("http.response.start", "websocket.http.response.start"):
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if skip_csp and name == "Content-Security-Policy":
                        continue
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class WeakEtagWhenCompressed:
    """A compressed answer is another representation than the file's bytes, so
    its ETag may not be the same strong validator (RFC 9110, 8.8.1 and 8.8.3):
    GZipMiddleware keeps StaticFiles' ETag, and a cache could hand gzip bytes to
    a client that asked for none. Marked weak, it still revalidates (304), since
    If-None-Match compares weakly."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_weak(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                etag = headers.get("etag")
                if etag and not etag.startswith("W/") and "content-encoding" in headers:
                    headers["etag"] = "W/" + etag
            await send(message)

        await self.app(scope, receive, send_weak)

"""The ASGI application: the one place that knows both Starlette and the schema."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from cross_web import HTTPException
from starlette.applications import Starlette
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from api.errors import RundrufError
from api.http import json_guard, metrics, rest
from api.http.graphql_ws import (
    CLOSE_FORBIDDEN,
    GuardedTransportWSHandler,
    InvalidUtf8OnOneLine,
    SocketCap,
)
from api.http.headers import SecurityHeaders
from api.http.limits import BodyLimit
from api.runtime import Runtime
from api.services import agents
from schema.context import Context
from schema.schema import build_schema

# Agents send the whole PBX directory with a command's result: about 2,000 users fit.
GRAPHQL_BODY_LIMIT = 256 * 1024
EXPIRY_SWEEP_SECONDS = 15.0
log = logging.getLogger(__name__)


_HTTP_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE"}


class GraphQLApp(GraphQL[Context, None]):
    graphql_transport_ws_handler_class = GuardedTransportWSHandler

    def __init__(self, rt: Runtime) -> None:
        s = rt.settings
        super().__init__(
            build_schema(s),
            graphql_ide="graphiql" if s.graphql_ide else None,
            # Queries only by POST: nothing with a side effect can ride on a link.
            allow_queries_via_get=False,
            # Only graphql-transport-ws: the legacy graphql-ws protocol is off.
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            multipart_uploads_enabled=False,
            max_subscriptions_per_connection=20,
            allowed_origins=s.ws_allowed_origins,
            # Without connection_init in time the socket closes with 4408.
            connection_init_wait_timeout=timedelta(seconds=s.ws_init_timeout_seconds),
        )
        self.rt = rt
        self.sockets = SocketCap(s.ws_max_per_client)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._socket(scope, receive, send)
            return
        try:
            response = await self.run(Request(scope, receive))
        except HTTPException as err:
            response = _refusal(err.status_code, err.reason)
            log.info("refused a GraphQL request: %s %s", err.status_code, err.reason)
        await response(scope, receive, send)

    async def _socket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """At most ``ws_max_per_client`` sockets per client address in this process;
        one more is refused at the handshake (429 where the server can say so)."""
        ws = WebSocket(scope, receive, send)
        client = ws.client.host if ws.client else "unknown"
        if not self.sockets.enter(client):
            log.info("refused a WebSocket from %s: %d open", client, self.sockets.limit)
            if "websocket.http.response" in scope.get("extensions", {}):
                await ws.send_denial_response(_refusal(429, "too many open WebSockets"))
            else:
                await ws.close(CLOSE_FORBIDDEN)
            return
        try:
            await self.run(ws)
        finally:
            self.sockets.leave(client)

    def decode_json(self, data: str | bytes) -> object:
        """Bodies and frames through json_guard; Strawberry answers its
        JSONDecodeError with 400 over HTTP and 4400 on a WebSocket."""
        try:
            return json_guard.loads(data)
        except json_guard.MalformedJSON as err:
            raise json.JSONDecodeError(str(err), "", 0) from None

    def parse_json(self, data: str | bytes) -> Any:
        """A GraphQL body is one JSON object (lists only with batching, which is off:
        Strawberry refuses them); a bare string, number or null used to give 500."""
        try:
            value = json_guard.loads(data)
        except json_guard.MalformedJSON as err:
            raise HTTPException(400, str(err)) from None
        if not isinstance(value, dict | list):
            raise HTTPException(400, "the request body must be a JSON object")
        return value

    async def on_ws_connect(self, context: Context) -> dict[str, object] | None:
        """A socket needs a session (cookie or token) or an installation token in
        ``connection_init``; without one it closes with 4403 before any operation."""
        token = context.token()
        if token is None:
            raise ConnectionRejectionError({"code": "UNAUTHENTICATED", "message": "sign in first"})
        try:
            if token.startswith(agents.AGENT_TOKEN_PREFIX):
                await context.agent()
            else:
                await context.actor()
        except RundrufError as err:
            raise ConnectionRejectionError({"code": err.code, "message": err.message}) from None
        return None

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        client = request.client.host if request.client else "unknown"
        return Context(
            rt=self.rt,
            request=request,
            response=response if isinstance(response, Response) else None,
            client=client,
        )


def create_app(rt: Runtime) -> Any:
    graphql = GraphQLApp(rt)
    InvalidUtf8OnOneLine.install()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await rt.hub.start()
        sweeper = asyncio.create_task(_expire_commands(rt), name="command-expiry")
        yield
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper
        await rt.hub.stop()
        await rt.db.dispose()

    app = Starlette(
        routes=[
            Route("/health", rest.health, methods=["GET"]),
            Route("/metrics", metrics.endpoint(rt), methods=["GET"]),
            Route("/api/uploads", rest.upload_audio, methods=["POST"]),
            Route("/api/audio/{audio_id}", rest.download_audio, methods=["GET"]),
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Mount("/", app=_frontend()),
        ],
        lifespan=lifespan,
    )
    app.state.runtime = rt
    limited = BodyLimit(
        app,
        limits={"/graphql": GRAPHQL_BODY_LIMIT, "/api/uploads": rt.settings.upload_max_bytes},
        default=64 * 1024,
    )
    # GZip passes WebSockets through, skips audio and event streams, and flushes
    # each chunk of a streamed body, so nothing waits for the end of a stream.
    compressed = GZipMiddleware(limited, minimum_size=1024, compresslevel=6)
    ide = ("/graphql",) if rt.settings.graphql_ide else ()
    return SecurityHeaders(compressed, without_csp=ide)


def _refusal(status: int, reason: str) -> Response:
    """A request refused before execution, in the shape of a GraphQL error."""
    code = _HTTP_CODES.get(status, "BAD_REQUEST")
    return JSONResponse(
        {"errors": [{"message": reason, "extensions": {"code": code}}]}, status_code=status
    )


async def _expire_commands(rt: Runtime) -> None:
    """Every API process sweeps; the conditional UPDATE makes doubles harmless."""
    while True:
        await asyncio.sleep(EXPIRY_SWEEP_SECONDS)
        try:
            await agents.expire_overdue(rt)
        except Exception:  # the next sweep tries again; a failed sweep loses nothing
            log.exception("expiring overdue commands failed")


class _Website(StaticFiles):
    """The website's files (frontend_stub/). Browsers revalidate them on every load (a 304
    while unchanged), so after an upgrade no page mixes old and new ES modules."""

    def file_response(
        self,
        full_path: PathLike,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        return response


def _frontend() -> Any:
    folder = Path(__file__).resolve().parent.parent / "frontend_stub"
    return _Website(directory=folder, html=True, check_dir=False)

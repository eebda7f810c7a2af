"""The ASGI application: the one place that knows both Starlette and the schema."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Scope
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from api.errors import RundrufError
from api.http import metrics, rest
from api.http.limits import BodyLimit
from api.runtime import Runtime
from api.services import agents
from schema.context import Context
from schema.schema import build_schema

# Agents send the whole PBX directory with a command's result: about 2,000 users fit.
GRAPHQL_BODY_LIMIT = 256 * 1024
EXPIRY_SWEEP_SECONDS = 15.0
log = logging.getLogger(__name__)


class GraphQLApp(GraphQL[Context, None]):
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
        )
        self.rt = rt

    async def on_ws_connect(self, context: Context) -> dict[str, object] | None:
        """Checks a token given in ``connection_init`` before any operation runs."""
        token = context.token()
        if token is not None:
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
    return BodyLimit(
        app,
        limits={"/graphql": GRAPHQL_BODY_LIMIT, "/api/uploads": rt.settings.upload_max_bytes},
        default=64 * 1024,
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

"""The ASGI application: the one place that knows both Starlette and the schema."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, Literal

from cross_web import HTTPException
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError, MissingQueryError
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.graphql import OperationType

from api.errors import RundrufError, Unauthenticated
from api.http import json_guard, metrics, rest
from api.http.agent_bodies import AgentBodies, from_verified_agent
from api.http.graphql_ws import (
    CLOSE_FORBIDDEN,
    CLOSE_TOO_MANY,
    CLOSE_UNAUTHORIZED,
    GuardedTransportWSHandler,
    GuardedWebSocketAdapter,
    InvalidUtf8OnOneLine,
    SocketRefused,
)
from api.http.headers import SecurityHeaders, WeakEtagWhenCompressed
from api.http.limits import BodyLimit
from api.http.refusals import GRAPHQL_PATH, code_for, refusal
from api.http.socket_cap import CLOSE_PUSHED_OUT, SocketCap, Ticket, client_key
from api.runtime import Runtime
from api.services import agents, auth
from schema.context import Context, bearer_from, plausible_token
from schema.schema import build_schema

# Over HTTP by POST; GET runs nothing (allow_queries_via_get is off).
HTTP_OPERATIONS = {OperationType.QUERY, OperationType.MUTATION}
# Agents send the whole PBX directory with a command's result: about 2,000 users fit.
GRAPHQL_BODY_LIMIT = 256 * 1024
EXPIRY_SWEEP_SECONDS = 15.0
# How often an open user socket asks whether its session still holds.
SESSION_RECHECK_SECONDS = 30.0
log = logging.getLogger(__name__)


class GraphQLApp(GraphQL[Context, None]):
    graphql_transport_ws_handler_class = GuardedTransportWSHandler
    websocket_adapter_class = GuardedWebSocketAdapter

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
        request = Request(scope, receive)
        try:
            if not from_verified_agent(scope):
                # Counted here, where the sender is known; parse_json then decodes.
                json_guard.check_values(await request.body())
            response = await self.run(request)
        except json_guard.TooManyValues as err:
            extensions = {"reason": err.reason, "max": err.max_values}
            response = _refusal(400, str(err), extensions)
            log.info("refused a GraphQL request: 400 BAD_REQUEST %s", err.reason)
        except HTTPException as err:
            response = _refusal(err.status_code, err.reason)
            # The reason may quote the client (an operation name): bounded and
            # escaped, so no client text can forge or flood a log line.
            log.info(
                "refused a GraphQL request: %d %s %s",
                err.status_code,
                code_for(err.status_code),
                loggable(err.reason),
            )
        await response(scope, receive, send)

    async def _socket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """At most ``ws_max_per_client`` signed-in users' sockets per client address
        in this process, and apart from them a few per agent's installation (see
        api/http/socket_cap.py); with all of them taken, one more is refused at the
        handshake (429 where the server can say so)."""
        ws = WebSocket(scope, receive, send)
        key = client_key(ws.client.host if ws.client else None)
        vouched_for = await self._vouched_for(ws, users_too=not self.sockets.full(key))
        if vouched_for is None and self.sockets.full(key):
            self.sockets.note(
                "handshake-" + key,
                logging.INFO,
                "refused a WebSocket from %s: %d signed-in sockets open",
                key,
                self.sockets.limit,
            )
            await _refuse_handshake(ws)
            return
        if vouched_for is not None:
            installation = vouched_for.installation_id if vouched_for is not True else None
            vouched = self.sockets.open_signed_in(key, lambda: _push_out(ws), installation)
            if vouched is None:  # the others signed in meanwhile
                await _refuse_handshake(ws)
                return
            ticket = vouched
        else:
            ticket, pushed_out = self.sockets.open(key, lambda: _push_out(ws))
            if pushed_out is not None:
                await pushed_out.evict()
        ws.state.socket_ticket = ticket
        try:
            await self.run(ws)
        finally:
            ticket.close()

    async def _vouched_for(
        self, ws: WebSocket, users_too: bool
    ) -> agents.Agent | Literal[True] | None:
        """Who the handshake's session cookie or token vouches for: the agent (it
        sends its token as Authorization header as well as in connection_init),
        True for a user, None for no one. Users' tokens are looked up only when
        ``users_too`` (their address has places left). Such a socket still signs
        in with connection_init as any other."""
        token = bearer_from(ws.headers.get("authorization")) or ws.cookies.get(
            self.rt.settings.session_cookie_name
        )
        if not token or not plausible_token(token):
            return None
        try:
            if token.startswith(agents.AGENT_TOKEN_PREFIX):
                return await agents.agent_for_token(self.rt, token)
            if users_too:
                await auth.actor_for_token(self.rt, token)
                return True
        except RundrufError:
            return None
        except SQLAlchemyError:  # connection_init will tell the client
            log.warning("checking a WebSocket handshake's token failed", exc_info=True)
        return None

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
        value = _decoded(data, "the payload", max_values=None)  # counted in __call__
        if not isinstance(value, dict | list):
            raise HTTPException(400, "the request body must be a JSON object")
        return value

    def parse_query_params(self, params: Any) -> dict[str, Any]:
        """GET: ``variables`` and ``extensions`` are JSON objects in the query string,
        read by the same guard as bodies, and refused under their own name."""
        parsed: dict[str, Any] = dict(params)
        for name in ("variables", "extensions"):
            if parsed.get(name):
                value = _decoded(parsed[name], f"'{name}'")
                if not isinstance(value, dict):
                    raise HTTPException(400, f"'{name}' must be a JSON object")
                parsed[name] = value
        return parsed

    async def execute_single(
        self,
        request: Request,
        request_adapter: Any,
        sub_response: Any,
        context: Context,
        root_value: None,
        request_data: Any,
    ) -> Any:
        """Queries and mutations over HTTP; subscriptions only over the WebSocket.
        Strawberry would run a subscription sent by POST or GET (for its multipart
        protocol, which is off here) and fail with 'Unexpected error' and tracebacks."""
        allowed = HTTP_OPERATIONS if request_adapter.method == "POST" else set()
        try:
            return await self.schema.execute(
                request_data.query,
                root_value=root_value,
                variable_values=request_data.variables,
                context_value=context,
                operation_name=request_data.operation_name,
                allowed_operation_types=allowed,
                operation_extensions=request_data.extensions,
            )
        except CannotGetOperationTypeError as err:
            raise HTTPException(400, err.as_http_error_reason()) from None
        except InvalidOperationTypeError as err:
            raise HTTPException(400, _not_over_http(err.operation_type)) from None
        except MissingQueryError:
            raise HTTPException(400, "No GraphQL query found in the request") from None

    async def on_ws_connect(self, context: Context) -> dict[str, object] | None:
        """A socket needs a session (cookie or token) or an installation token in
        ``connection_init``; without one it closes with 4403 before any operation."""
        token = context.token()
        if token is None:
            raise ConnectionRejectionError({"code": "UNAUTHENTICATED", "message": "sign in first"})
        installation = None
        try:
            if token.startswith(agents.AGENT_TOKEN_PREFIX):
                installation = (await context.agent()).installation_id
            else:
                await context.actor()
        except RundrufError as err:
            raise ConnectionRejectionError({"code": err.code, "message": err.message}) from None
        ticket: Ticket = context.request.state.socket_ticket
        # An agent's socket counts against its installation, a user's against its address.
        if not ticket.sign_in(installation):
            if ticket.closed:  # pushed out by a newer socket meanwhile
                raise SocketRefused(CLOSE_PUSHED_OUT, "too many sockets waiting to sign in")
            whose = "of this installation" if installation else "from this address"
            raise SocketRefused(CLOSE_TOO_MANY, f"too many open WebSockets {whose}")
        return None

    async def watch_session(self, context: Context) -> None:
        """A user's socket closes with 4401 once its session ended (signed out,
        password changed, user deactivated), even while no subscription runs on it
        to notice. Agents' sockets are watched by their command stream."""
        token = context.token()
        if token is None or token.startswith(agents.AGENT_TOKEN_PREFIX):
            return
        while True:
            await asyncio.sleep(SESSION_RECHECK_SECONDS)
            try:
                await auth.actor_for_token(self.rt, token)
            except Unauthenticated:
                await context.close(CLOSE_UNAUTHORIZED, "signed out")
                return
            except Exception:  # a database hiccup: the next round asks again
                log.warning("rechecking a socket's session failed", exc_info=True)

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
            # Any method reaches GraphQL, which refuses all but GET and POST with a
            # 405 in its own shape (a route limited to two would fall through to
            # the website mount and its 405).
            Route("/graphql", graphql),
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
    # An enrolled agent's command result carries the PBX directory: a larger bound, gzip.
    for_agents = AgentBodies(
        limited,
        paths=(GRAPHQL_PATH,),
        common_limit=GRAPHQL_BODY_LIMIT,
        token_prefix=agents.AGENT_TOKEN_PREFIX,
        verify=partial(agents.is_agent_token, rt),
    )
    # GZip passes WebSockets through, skips audio and event streams, and flushes
    # each chunk of a streamed body, so nothing waits for the end of a stream.
    compressed = WeakEtagWhenCompressed(
        GZipMiddleware(for_agents, minimum_size=1024, compresslevel=6)
    )
    ide = ("/graphql",) if rt.settings.graphql_ide else ()
    return SecurityHeaders(compressed, without_csp=ide)


async def _refuse_handshake(ws: WebSocket) -> None:
    """429 where the server can answer a handshake with HTTP, else a plain refusal."""
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(_refusal(429, "too many open WebSockets"))
    else:
        await ws.close(CLOSE_FORBIDDEN)


async def _push_out(ws: WebSocket) -> None:
    # Only an accepted socket can be closed from here; one still in its
    # handshake is no longer counted and meets the sign-in timeout. Its client
    # may be gone already: that is its own socket's end, not the newcomer's.
    if ws.application_state is WebSocketState.CONNECTED:
        with contextlib.suppress(WebSocketDisconnect):
            await ws.close(CLOSE_PUSHED_OUT, "too many sockets waiting to sign in")


def _decoded(
    data: str | bytes, what: str, max_values: int | None = json_guard.MAX_VALUES
) -> object:
    try:
        return json_guard.loads(data, max_values=max_values)
    except json_guard.MalformedJSON as err:
        raise HTTPException(400, str(err).replace("the payload", what, 1)) from None


def _not_over_http(kind: OperationType) -> str:
    if kind is OperationType.SUBSCRIPTION:
        return "subscriptions are served over the WebSocket (graphql-transport-ws) only"
    return "queries and mutations are sent by POST"


def loggable(text: str, limit: int = 200) -> str:
    """Client text for a log line: at most ``limit`` characters, escaped like a
    Python literal (no line breaks, control or non-ASCII characters)."""
    return ascii(text[:limit]) + ("..." if len(text) > limit else "")


def _refusal(status: int, reason: str, extensions: Mapping[str, object] | None = None) -> Response:
    """A GraphQL request refused before execution, in the shape of a GraphQL error."""
    allow = {"Allow": "GET, POST"} if status == 405 else None
    return refusal(GRAPHQL_PATH, status, reason, headers=allow, extensions=extensions)


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

"""graphql-transport-ws as this service speaks it: garbage closes with 4400, a closed
socket stays closed, an operation that cannot run gets an ``error`` message, and a
socket pings a bounded number of times.

Strawberry's handler reads ``message["payload"]["query"]`` as it comes; a frame
that is a JSON string, or a ``subscribe`` whose payload is a number, raised
TypeError out of the socket's task (an abnormal close and a traceback).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from json import JSONDecodeError
from typing import Any, cast

from graphql import GraphQLError
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.http.exceptions import (
    NonJsonMessageReceived,
    NonTextMessageReceived,
    WebSocketDisconnected,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    Message,
    PingMessage,
)

log = logging.getLogger(__name__)

# graphql-transport-ws close codes (PROTOCOL.md of enisdenjo/graphql-ws).
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TOO_MANY = 4429

# RFC 6455, 5.5: a control frame carries at most 125 bytes; the close code takes 2.
CLOSE_REASON_BYTES = 123
# Pings per socket: a burst, then this many per second (the agent pings every 20 s).
PINGS_PER_SECOND = 5.0
PING_BURST = 20

_OPTIONAL_OBJECT = (dict, type(None))
_OPTIONAL_STRING = (str, type(None))


class SocketRefused(Exception):
    """Raised at connection_init when the socket may not sign in; it closes with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def close_reason(text: str) -> str:
    """``text`` cut to fit a close frame: at most 123 bytes of UTF-8, at a character
    boundary (a reason cut by characters raised 'control frame too long' in the
    server). Lone surrogates, which UTF-8 cannot carry, are escaped."""
    raw = text.encode("utf-8", "backslashreplace")
    if len(raw) <= CLOSE_REASON_BYTES:
        return raw.decode("utf-8")
    return raw[: CLOSE_REASON_BYTES - 3].decode("utf-8", "ignore") + "..."


def malformed(message: object) -> str | None:
    """Why a decoded frame is no graphql-transport-ws message, or None when it is one."""
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return "a message is a JSON object with a string 'type'"
    kind = message["type"]
    if kind in ("subscribe", "complete") and not (
        isinstance(message.get("id"), str) and message["id"]
    ):
        return f"'{kind}' needs a non-empty string 'id'"
    if kind != "subscribe":
        return None
    payload = message.get("payload")
    if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
        return "'subscribe' needs a payload object with a string 'query'"
    if not isinstance(payload.get("variables"), _OPTIONAL_OBJECT):
        return "'variables' must be an object"
    if not isinstance(payload.get("extensions"), _OPTIONAL_OBJECT):
        return "'extensions' must be an object"
    if not isinstance(payload.get("operationName"), _OPTIONAL_STRING):
        return "'operationName' must be a string"
    return None


class GuardedWebSocketAdapter(ASGIWebSocketAdapter):
    """Every close of the socket, Strawberry's own included (4409 names the
    client's id, 4400 may quote its query), goes through here: once, and with a
    reason that fits the frame."""

    async def close(self, code: int, reason: str) -> None:
        if self.ws.application_state is WebSocketState.CONNECTED:
            # The client may have gone meanwhile: then there is nothing to close.
            with contextlib.suppress(WebSocketDisconnect):
                await self.ws.close(code=code, reason=close_reason(reason))


class PingBudget:
    """A token bucket: ``burst`` pings at once, then ``rate`` per second."""

    def __init__(self, rate: float = PINGS_PER_SECOND, burst: int = PING_BURST) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


SessionWatch = Callable[[Any], Coroutine[Any, Any, None]]


class GuardedTransportWSHandler(BaseGraphQLTransportWSHandler[Any, None]):
    """Checks each message's shape before Strawberry reads it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pings = PingBudget()
        self.watch: asyncio.Task[None] | None = None

    @property
    def _socket(self) -> WebSocket:
        return cast(WebSocket, self.websocket.ws)  # type: ignore[attr-defined]

    def _closed(self) -> bool:
        return self._socket.application_state is WebSocketState.DISCONNECTED

    async def handle(self) -> None:
        """Strawberry's loop, but a frame that is no JSON closes with the guard's
        reason (too deep, not UTF-8, a number out of range), not one text for all."""
        self.on_request_accepted()
        try:
            try:
                async for message in self.websocket.iter_json():
                    await self.handle_message(cast(Message, message))
            except NonTextMessageReceived:
                await self.handle_invalid_message("WebSocket message type must be text")
            except NonJsonMessageReceived as err:
                cause = err.__cause__
                reason = cause.msg if isinstance(cause, JSONDecodeError) else "not valid JSON"
                await self.handle_invalid_message(reason)
        except WebSocketDisconnected:
            pass
        finally:
            await self.shutdown()

    async def shutdown(self) -> None:
        if self.watch is not None:
            self.watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.watch
        await super().shutdown()

    async def handle_message(self, message: Message) -> None:
        reason = malformed(message)
        if reason is not None:
            await self.handle_invalid_message(reason)
            return
        await super().handle_message(message)

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        try:
            await super().handle_connection_init(message)
        except SocketRefused as refusal:
            await self.websocket.close(refusal.code, refusal.reason)
            return
        watch = cast(SessionWatch | None, getattr(self.view, "watch_session", None))
        if self.connection_acknowledged and watch is not None and not self._closed():
            self.watch = asyncio.create_task(watch(self.context))

    async def handle_ping(self, message: PingMessage) -> None:
        if not self.pings.take():
            await self.websocket.close(CLOSE_TOO_MANY, "too many pings")
            return
        await super().handle_ping(message)

    async def handle_invalid_message(self, error_message: str) -> None:
        await self.websocket.close(CLOSE_BAD_REQUEST, error_message)

    @staticmethod
    def _get_pre_execution_close_reason(error: GraphQLError) -> str | None:
        """A syntax error, an empty query or an unknown operationName ends that
        operation with an ``error`` message for its id; the socket stays open."""
        return None

    async def send_message(self, message: Message) -> None:
        # An operation may close the socket itself (revoked agent, signed-out user);
        # its final `complete` then has nowhere to go and is dropped, not raised.
        if not self._closed():
            await super().send_message(message)


class InvalidUtf8OnOneLine(logging.Filter):
    """uvicorn closes a socket that sends a text frame of invalid UTF-8 with 1007, as
    RFC 6455 (8.1) asks, but logs that client's mistake as an error with a traceback;
    this keeps it as one warning line."""

    MESSAGE = "Invalid UTF-8 sequence received from client."

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == self.MESSAGE:
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True

    @classmethod
    def install(cls) -> None:
        server_log = logging.getLogger("uvicorn.error")
        if not any(isinstance(f, cls) for f in server_log.filters):
            server_log.addFilter(cls())

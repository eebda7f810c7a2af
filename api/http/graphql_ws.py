"""graphql-transport-ws as this service speaks it: garbage closes with 4400, a closed
socket stays closed, and one client address holds a bounded number of sockets.

Strawberry's handler reads ``message["payload"]["query"]`` as it comes; a frame
that is a JSON string, or a ``subscribe`` whose payload is a number, raised
TypeError out of the socket's task (an abnormal close and a traceback).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any, cast

from starlette.websockets import WebSocket, WebSocketState
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import Message

log = logging.getLogger(__name__)

# graphql-transport-ws close codes (PROTOCOL.md of enisdenjo/graphql-ws).
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403

_OPTIONAL_OBJECT = (dict, type(None))
_OPTIONAL_STRING = (str, type(None))


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


class GuardedTransportWSHandler(BaseGraphQLTransportWSHandler[Any, None]):
    """Checks each message's shape before Strawberry reads it."""

    @property
    def _socket(self) -> WebSocket:
        return cast(WebSocket, self.websocket.ws)  # type: ignore[attr-defined]

    def _closed(self) -> bool:
        return self._socket.application_state is WebSocketState.DISCONNECTED

    async def handle_message(self, message: Message) -> None:
        reason = malformed(message)
        if reason is not None:
            await self.handle_invalid_message(reason)
            return
        await super().handle_message(message)

    async def handle_invalid_message(self, error_message: str) -> None:
        if not self._closed():
            await self.websocket.close(code=CLOSE_BAD_REQUEST, reason=error_message[:120])

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


class SocketCap:
    """Open sockets per client address, for one process."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: Counter[str] = Counter()

    def enter(self, client: str) -> bool:
        if self._open[client] >= self.limit:
            return False
        self._open[client] += 1
        return True

    def leave(self, client: str) -> None:
        self._open[client] -= 1
        if self._open[client] <= 0:
            del self._open[client]

    def open_for(self, client: str) -> int:
        return self._open[client]

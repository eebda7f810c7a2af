"""The typed context every resolver gets: runtime, the caller, per-request loaders."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from starlette.requests import HTTPConnection
from starlette.responses import Response
from strawberry.dataloader import DataLoader

from api.errors import Forbidden, NotFound, Unauthenticated
from api.models import Announcement, BroadcastGroup, CallAttempt, PbxUser, WatchdogIncident
from api.runtime import Runtime
from api.services import (
    agents,
    announcements,
    auth,
    broadcast_results,
    directory,
    history,
    watchdog,
)
from api.services.actor import Actor
from api.services.agents import Agent

# What a token can be: ours are about 50 characters of URL-safe base64 with a prefix.
# Anything else (a lone surrogate in connection_init, 100,000 characters, a number) is
# refused as UNAUTHENTICATED before it is hashed or looked up: over a WebSocket that is the
# close with 4403, not an unexpected error and an abnormal close.
TOKEN_MAX = 512
_MALFORMED = "\x00"  # stands for a connection parameter that is no text at all


def plausible_token(token: str) -> bool:
    return 0 < len(token) <= TOKEN_MAX and token.isascii() and token.isprintable()


def bearer_from(header: str | None) -> str | None:
    if header and header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return None


@dataclass
class Loaders:
    """DataLoaders live for one request, so no cache outlives what the caller may see."""

    rt: Runtime

    @cached_property
    def members(self) -> DataLoader[uuid.UUID, list[PbxUser]]:
        return DataLoader(lambda ids: directory.members_of(self.rt, ids))

    @cached_property
    def broadcast_group_of(self) -> DataLoader[uuid.UUID, BroadcastGroup | None]:
        return DataLoader(lambda ids: directory.broadcast_groups_of(self.rt, ids))

    @cached_property
    def announcements(self) -> DataLoader[uuid.UUID, list[Announcement]]:
        return DataLoader(lambda ids: announcements.of_broadcast_groups(self.rt, ids))

    @cached_property
    def attempts(self) -> DataLoader[uuid.UUID, list[CallAttempt]]:
        return DataLoader(lambda ids: history.attempts_of(self.rt, ids))

    @cached_property
    def confirmed_counts(self) -> DataLoader[uuid.UUID, int]:
        # Issue 17, point 4: the list's "15/20 bestätigt", one query per page.
        return DataLoader(lambda ids: broadcast_results.confirmed_counts(self.rt, ids))

    @cached_property
    def pbx_user(self) -> DataLoader[uuid.UUID, PbxUser | None]:
        return DataLoader(lambda ids: history.pbx_users_by_id(self.rt, ids))

    @cached_property
    def broadcast_group(self) -> DataLoader[uuid.UUID, BroadcastGroup | None]:
        return DataLoader(lambda ids: history.broadcast_groups_by_id(self.rt, ids))

    @cached_property
    def open_incidents(self) -> DataLoader[uuid.UUID, list[WatchdogIncident]]:
        return DataLoader(lambda ids: watchdog.open_incidents_of(self.rt, list(ids)))


@dataclass
class Context:
    rt: Runtime
    request: HTTPConnection
    response: Response | None
    client: str
    # Filled by Strawberry from graphql-transport-ws `connection_init`.
    connection_params: dict[str, Any] | None = None
    _actor: Actor | None = field(default=None, init=False)
    _agent: Agent | None = field(default=None, init=False)
    _loaders: Loaders | None = field(default=None, init=False)

    @property
    def on_websocket(self) -> bool:
        return self.request.scope.get("type") == "websocket"

    @property
    def loaders(self) -> Loaders:
        """Per HTTP request; a WebSocket context lives as long as its connection,
        so there each use gets fresh loaders (no cache outlives an operation)."""
        if self.on_websocket:
            return Loaders(self.rt)
        if self._loaders is None:
            self._loaders = Loaders(self.rt)
        return self._loaders

    def token(self) -> str | None:
        params = self.connection_params or {}
        from_ws = params.get("authorization") if isinstance(params, dict) else None
        if from_ws is not None and not isinstance(from_ws, str):
            return _MALFORMED
        token = bearer_from(from_ws)
        token = token or bearer_from(self.request.headers.get("authorization"))
        return token or self.request.cookies.get(self.rt.settings.session_cookie_name)

    async def actor(self) -> Actor:
        """The signed-in user; UNAUTHENTICATED without a valid session.

        Over HTTP the answer is kept for the request. A WebSocket lives for
        hours, so there every operation asks again: a deactivated or signed-out
        user must lose access at once, not when the socket closes.
        """
        if self._actor is None or self.on_websocket:
            token = self.token()
            if token is None:
                raise Unauthenticated("sign in first")
            if not plausible_token(token):
                raise Unauthenticated("not a valid token")
            if token.startswith(agents.AGENT_TOKEN_PREFIX):
                raise Forbidden("agents cannot use the website's operations")
            self._actor = await auth.actor_for_token(self.rt, token)
        return self._actor

    async def agent(self) -> Agent:
        """The calling agent (installation token); users are FORBIDDEN here."""
        if self._agent is None or self.on_websocket:
            token = self.token()
            if token is None:
                raise Unauthenticated("send the installation token")
            if not plausible_token(token):
                raise Unauthenticated("not a valid token")
            if not token.startswith(agents.AGENT_TOKEN_PREFIX):
                await self.actor()  # a signed-in user is known, but is no agent
                raise Forbidden("only an enrolled agent may do this")
            self._agent = await agents.agent_for_token(self.rt, token)
        return self._agent

    def forget_actor(self) -> None:
        self._actor = None

    async def close(self, code: int, reason: str) -> bool:
        """Closes the WebSocket this operation runs on (no-op over HTTP); False when
        it was closed already (by another operation on the same socket)."""
        from starlette.websockets import WebSocket, WebSocketState

        ws = self.request
        if isinstance(ws, WebSocket) and ws.application_state is WebSocketState.CONNECTED:
            await ws.close(code, reason)
            return True
        return False


def parse_id(value: str, what: str = "object") -> uuid.UUID:
    """An ID argument as UUID; a malformed one names nothing, so it is NOT_FOUND."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound(f"{what} not found") from None


def optional_id(value: str | None, what: str) -> uuid.UUID | None:
    return parse_id(value, what) if value is not None else None


def parse_ids(values: list[Any], what: str) -> list[uuid.UUID]:
    return [parse_id(v, what) for v in values]

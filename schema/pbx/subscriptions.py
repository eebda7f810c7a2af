"""Live updates for browsers: command status and directory changes of the own tenant."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator

import strawberry

from api.errors import BadInput, Unauthenticated
from api.pubsub import tenant_events
from api.runtime import Runtime
from api.services import auth, commands, history, platform
from schema.agent.types import DirectoryChange
from schema.context import optional_id, parse_id
from schema.history.types import Broadcast
from schema.info import Info
from schema.pbx.types import Command

KEEPALIVE = 30.0
CLOSE_SIGNED_OUT = 4401


async def _events(
    info: Info, tenant_id: strawberry.ID | None, kinds: set[str]
) -> AsyncGenerator[dict[str, str], None]:
    ctx = info.context
    actor = await ctx.actor()
    scope = actor.read_scope(optional_id(tenant_id, "tenant"))
    if scope.tenant_id is None:
        raise BadInput("name the tenant", field="tenantId")
    await platform.get_tenant(ctx.rt, actor, scope.tenant_id)  # NOT_FOUND for no such tenant
    async with ctx.rt.hub.subscribe([tenant_events(scope.tenant_id)]) as inbox:
        while True:
            message = await inbox.get(KEEPALIVE)
            event = json.loads(message[1]) if message is not None else None
            if event is not None and event.get("kind") not in kinds:
                continue  # another feature's wake-up: no reason to ask the database
            # Signed out, deactivated or expired meanwhile: nothing more for this socket
            # (asked before anything is sent, and at each keep-alive).
            if not await still_signed_in(ctx.rt, ctx.token()):
                await ctx.close(CLOSE_SIGNED_OUT, "signed out")
                return
            if event is not None:
                yield event


async def still_signed_in(rt: Runtime, token: str | None) -> bool:
    if token is None:
        return False
    try:
        await auth.actor_for_token(rt, token)
    except Unauthenticated:
        return False
    return True


@strawberry.type
class PbxSubscription:
    @strawberry.subscription(description="Each command of the tenant whose status changed.")
    async def command_updated(
        self, info: Info, tenant_id: strawberry.ID | None = None
    ) -> AsyncGenerator[Command, None]:
        actor = await info.context.actor()
        async for event in _events(info, tenant_id, {"command"}):
            command = await commands.get_command(
                info.context.rt, actor, parse_id(event["id"], "command")
            )
            yield Command.of(command)

    @strawberry.subscription(description="A broadcast of the tenant changed: a call moved on.")
    async def broadcast_updated(
        self,
        info: Info,
        tenant_id: strawberry.ID | None = None,
        broadcast_id: strawberry.ID | None = None,
    ) -> AsyncGenerator[Broadcast, None]:
        actor = await info.context.actor()
        only = optional_id(broadcast_id, "broadcast")
        async for event in _events(info, tenant_id, {"broadcast"}):
            if only is not None and event["id"] != str(only):
                continue
            found = await history.get_broadcast(
                info.context.rt, actor, parse_id(event["id"], "broadcast")
            )
            yield Broadcast.of(found)

    @strawberry.subscription(description="The PBX directory mirror changed; refetch groups.")
    async def directory_changed(
        self, info: Info, tenant_id: strawberry.ID | None = None
    ) -> AsyncGenerator[DirectoryChange, None]:
        async for _ in _events(info, tenant_id, {"directory"}):
            yield DirectoryChange(at=info.context.rt.clock())

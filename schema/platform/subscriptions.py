"""Live state of a tenant's agent for the website's banner and its waiting changes.

A silent agent sends nothing, so no event says that it went offline. The
subscription itself wakes at the moment the current answer would turn stale
(``staleAt``), asks the one rule again and sends what changed; a report wakes
it at once. No page has to keep its own clock, and no worker has to remember
whom it told.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncGenerator
from datetime import datetime

import strawberry

from api.domain.connection import AgentState, Connection
from api.pubsub import Inbox, tenant_events
from api.services import connection
from schema.context import optional_id
from schema.info import Info
from schema.pbx.subscriptions import CLOSE_SIGNED_OUT, KEEPALIVE, still_signed_in
from schema.platform.types import AgentConnection

# Wakes just after the bound, so that "more than two intervals" holds by then.
STALE_MARGIN = 0.25
WAKING_KINDS = {"health"}


async def _until_change(inbox: Inbox, seen: Connection, now: datetime) -> None:
    """Returns on a report, when ``seen`` turns stale, or after the keep-alive."""
    wait = KEEPALIVE
    if seen.stale_at is not None:
        wait = min(wait, max(0.0, (seen.stale_at - now).total_seconds()) + STALE_MARGIN)
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        message = await inbox.get(left)
        if message is None or json.loads(message[1]).get("kind") in WAKING_KINDS:
            return


@strawberry.type
class PlatformSubscription:
    @strawberry.subscription(
        description="The tenant's agentConnection at once, then each change of its state: "
        "a report, silence past two poll intervals, a new or revoked installation. "
        "Platform admins name the tenant."
    )
    async def agent_connection_changed(
        self, info: Info, tenant_id: strawberry.ID | None = None
    ) -> AsyncGenerator[AgentConnection, None]:
        ctx = info.context
        actor = await ctx.actor()
        tenant = optional_id(tenant_id, "tenant")
        # Refused (NOT_FOUND, BAD_USER_INPUT) before anything listens.
        await connection.of_tenant(ctx.rt, actor, tenant)
        own: uuid.UUID = tenant or actor.own_tenant_id
        last: tuple[AgentState, datetime | None] | None = None
        async with ctx.rt.hub.subscribe([tenant_events(own)]) as inbox:
            while True:
                # Read after listening began, so no report falls in between.
                agent = await connection.of_tenant(ctx.rt, actor, tenant)
                key = (agent.connection.state, agent.connection.since)
                if key != last:
                    last = key
                    yield AgentConnection.of(agent)
                await _until_change(inbox, agent.connection, ctx.rt.clock())
                if not await still_signed_in(ctx.rt, ctx.token()):
                    await ctx.close(CLOSE_SIGNED_OUT, "signed out")
                    return

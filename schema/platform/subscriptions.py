"""Live state of a tenant's agent for the website's banner and its waiting changes.

A silent agent sends nothing, so no event says that it went offline. The
subscription itself wakes at the moment the current answer would turn stale
(``staleAt``), asks the one rule again and sends what changed; a report wakes
it at once. No page has to keep its own clock, and no worker has to remember
whom it told.

What it costs: a report's wake-up carries the new heartbeat, so a report that
leaves the state as it was is judged without reading the database; the state
is read again only when it may have changed (a report that changes it, the
moment it turns stale, a wake-up without the heartbeat: enrolment, revocation)
and at the keep-alive, which also checks that the session still holds.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import strawberry

from api.domain.connection import AgentState, Connection, connection
from api.pubsub import Inbox, tenant_events
from api.services import connection as connections
from api.services.connection import TenantAgent
from schema.context import optional_id
from schema.info import Info
from schema.pbx.subscriptions import CLOSE_SIGNED_OUT, KEEPALIVE, still_signed_in
from schema.platform.types import AgentConnection

# Wakes just after the bound, so that "more than two intervals" holds by then.
STALE_MARGIN = 0.25
WAKING_KINDS = {"health"}


@dataclass(frozen=True)
class Wake:
    """Why the subscription woke: a report (its event), or time (stale or keep-alive)."""

    event: dict[str, Any] | None = None
    keepalive: bool = False


async def _until_change(inbox: Inbox, seen: Connection, now: datetime) -> Wake:
    """Returns on a report, when ``seen`` turns stale, or after the keep-alive."""
    wait = KEEPALIVE
    if seen.stale_at is not None:
        wait = min(wait, max(0.0, (seen.stale_at - now).total_seconds()) + STALE_MARGIN)
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        message = await inbox.get(left)
        if message is None:
            break
        event = json.loads(message[1])
        if event.get("kind") in WAKING_KINDS:
            return Wake(event=event)
    return Wake(keepalive=wait >= KEEPALIVE)


def after_report(
    agent: TenantAgent, event: dict[str, Any] | None, now: datetime
) -> Connection | None:
    """The connection a report's wake-up implies, without reading the database; None
    when the event cannot say (another installation, another poll interval, none)."""
    if event is None or agent.installation is None:
        return None
    inst = agent.installation.installation
    heartbeat = event.get("heartbeatAt")
    if (
        event.get("id") != str(inst.id)
        or event.get("pollSeconds") != agent.poll_seconds
        or not isinstance(heartbeat, str)
    ):
        return None
    last = datetime.fromisoformat(heartbeat)
    return connection(last, inst.created_at, inst.revoked_at, now, agent.poll_seconds)


def _key(seen: Connection) -> tuple[AgentState, datetime | None]:
    return seen.state, seen.since


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
        await connections.of_tenant(ctx.rt, actor, tenant)
        own: uuid.UUID = tenant or actor.own_tenant_id
        async with ctx.rt.hub.subscribe([tenant_events(own)]) as inbox:
            # Read after listening began, so no report falls in between.
            agent = await connections.of_tenant(ctx.rt, actor, tenant)
            seen = agent.connection
            yield AgentConnection.of(agent)
            while True:
                wake = await _until_change(inbox, seen, ctx.rt.clock())
                if wake.keepalive and not await still_signed_in(ctx.rt, ctx.token()):
                    await ctx.close(CLOSE_SIGNED_OUT, "signed out")
                    return
                guess = after_report(agent, wake.event, ctx.rt.clock())
                if guess is not None and _key(guess) == _key(seen):
                    seen = guess  # the same state, a later staleAt: nothing to read or send
                    continue
                agent = await connections.of_tenant(ctx.rt, actor, tenant)
                changed = _key(agent.connection) != _key(seen)
                seen = agent.connection
                if changed:
                    # Nothing goes to a socket whose session ended meanwhile.
                    if not wake.keepalive and not await still_signed_in(ctx.rt, ctx.token()):
                        await ctx.close(CLOSE_SIGNED_OUT, "signed out")
                        return
                    yield AgentConnection.of(agent)

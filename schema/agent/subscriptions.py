"""The agent's command stream: replay of everything open, then live commands.

The push is only a wake-up; the command table is the truth. Each wake-up (or,
without one, every SAFETY_POLL seconds) rereads the open commands, so a lost
pub/sub message delays a command at most that long and never loses it. The
timers are jittered so that thousands of agents connected in one burst do not
read the database in lockstep, and a database hiccup delays the stream instead
of ending it (the agent would only reconnect and add load).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import AsyncGenerator

import strawberry
from sqlalchemy.exc import SQLAlchemyError

from api.pubsub import installation_control, tenant_commands
from api.services import agents
from schema.agent.types import AgentCommand
from schema.info import Info

log = logging.getLogger(__name__)

# Seconds, as (low, high) for a uniform draw each time.
SAFETY_POLL = (60.0, 120.0)
# Revocation arrives as a wake-up within seconds; this catches a lost one.
RECHECK = (240.0, 360.0)
RETRY_AFTER_DB_ERROR = (1.0, 5.0)
CLOSE_REVOKED = 4403


def _draw(bounds: tuple[float, float]) -> float:
    return random.uniform(*bounds)  # noqa: S311 - spreading load, not cryptography


@strawberry.type
class AgentSubscription:
    @strawberry.subscription(description="Commands for the calling agent, oldest first.")
    async def agent_commands(self, info: Info) -> AsyncGenerator[AgentCommand, None]:
        ctx = info.context
        agent = await ctx.agent()
        token = ctx.token() or ""
        rt = ctx.rt
        sent: set[uuid.UUID] = set()
        channels = [tenant_commands(agent.tenant_id), installation_control(agent.installation_id)]
        async with rt.hub.subscribe(channels) as inbox:
            next_check = time.monotonic() + _draw(RECHECK)
            while True:
                try:
                    deliveries = await agents.take_open_commands(rt, agent, sent)
                except SQLAlchemyError:
                    log.warning("reading open commands failed; retrying", exc_info=True)
                    await asyncio.sleep(_draw(RETRY_AFTER_DB_ERROR))
                    continue
                for delivery in deliveries:
                    sent.add(delivery.command.id)
                    yield AgentCommand.of(delivery)
                message = await inbox.get(_draw(SAFETY_POLL))
                revoked = message is not None and message[0].startswith("installation:")
                if not revoked and time.monotonic() > next_check:
                    next_check = time.monotonic() + _draw(RECHECK)
                    try:
                        revoked = not await agents.still_allowed(rt, agent, token)
                    except SQLAlchemyError:
                        log.warning("rechecking the agent token failed", exc_info=True)
                if revoked:
                    # Each stream on the socket hears it; the one that closes it logs.
                    if await ctx.close(CLOSE_REVOKED, "installation or license revoked"):
                        log.info(
                            "installation %s revoked: closed its socket", agent.installation_id
                        )
                    return

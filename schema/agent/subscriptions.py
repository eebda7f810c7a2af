"""The agent's command stream: replay of everything open, then live commands.

The push is only a wake-up; the command table is the truth. Each wake-up (or,
without one, every SAFETY_POLL seconds) rereads the open commands, so a lost
pub/sub message delays a command at most that long and never loses it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator

import strawberry

from api.pubsub import installation_control, tenant_commands
from api.services import agents
from schema.agent.types import AgentCommand
from schema.info import Info

SAFETY_POLL = 30.0
# Revocation arrives as a wake-up within seconds; this catches a lost one.
RECHECK = 60.0
CLOSE_REVOKED = 4403


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
            checked = time.monotonic()
            while True:
                for delivery in await agents.take_open_commands(rt, agent, sent):
                    sent.add(delivery.command.id)
                    yield AgentCommand.of(delivery)
                message = await inbox.get(SAFETY_POLL)
                revoked = message is not None and message[0].startswith("installation:")
                if not revoked and time.monotonic() - checked > RECHECK:
                    checked = time.monotonic()
                    revoked = not await agents.still_allowed(rt, agent, token)
                if revoked:
                    await ctx.close(CLOSE_REVOKED, "installation or license revoked")
                    return

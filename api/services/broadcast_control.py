"""What a tenant admin asks of a broadcast group's runs: one now, and how they go.

Both become commands for the agent. A triggered broadcast's command succeeds as
soon as the agent has accepted (journaled) it, with ``{"broadcastId": ...}``;
the calls themselves arrive later as broadcast reports.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from api.domain import validation
from api.errors import BadInput
from api.models import BroadcastMode, Command
from api.runtime import Runtime
from api.services import audit, commands
from api.services.actor import Actor
from api.services.directory import require_broadcast_group

# A recorded message needs a caller's voice: only the phone can start that mode.
WEBSITE_MODES = (BroadcastMode.TEST, BroadcastMode.ALARM)
QUORUM_MAX = 1000
REPETITIONS_MAX = 5


async def trigger(rt: Runtime, actor: Actor, group_id: uuid.UUID, mode: BroadcastMode) -> Command:
    """Asks the agent to start a test or alarm broadcast of the group now."""
    scope = actor.write_scope()
    if mode not in WEBSITE_MODES:
        raise BadInput("the website starts test or alarm broadcasts only", field="mode")
    async with rt.db.transaction() as session:
        group, _ = await require_broadcast_group(session, scope, group_id)
        command = await commands.enqueue(
            session,
            rt,
            actor,
            "triggerBroadcast",
            {
                "groupPbxId": group.pbx_id,
                "mode": int(mode),
                "requestedBy": await commands.requested_by(session, actor),
            },
            # An alarm waits for an agent that is offline a long time (it runs late, marked
            # so); a test that late would only surprise people: it keeps the usual expiry.
            expires_in=(
                timedelta(seconds=rt.settings.alarm_command_expiry_seconds)
                if mode is BroadcastMode.ALARM
                else None
            ),
        )
        audit.record(
            session,
            actor,
            "broadcast.trigger",
            tenant_id=scope.tenant_id,
            target=group.id,
            mode=int(mode),
        )
    return command


async def update_options(
    rt: Runtime, actor: Actor, group_id: uuid.UUID, quorum: int | None, repetitions: int
) -> Command:
    """Stores quorum and repetitions and sends them to the agent.

    Unlike the PBX's own settings, these are Rundruf's: the central row is the
    truth and changes at once, the agent's cache follows with the command.
    """
    scope = actor.write_scope()
    if quorum is not None:
        validation.in_range(quorum, 1, QUORUM_MAX, "quorum")
    validation.in_range(repetitions, 1, REPETITIONS_MAX, "repetitions")
    async with rt.db.transaction() as session:
        group, bg = await require_broadcast_group(session, scope, group_id)
        bg.quorum = quorum
        bg.repetitions = repetitions
        command = await commands.enqueue(
            session,
            rt,
            actor,
            "updateBroadcastOptions",
            {"groupPbxId": group.pbx_id, "quorum": quorum, "repetitions": repetitions},
        )
        audit.record(
            session,
            actor,
            "broadcast.update_options",
            tenant_id=scope.tenant_id,
            target=group.id,
            quorum=quorum,
            repetitions=repetitions,
        )
    return command

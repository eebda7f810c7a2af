"""Stopping a running broadcast (issue 17, point 2): the website's request, and the stop
as the agent reports it.

The agent decides: a stop from the website is a `cancelBroadcast` command; a stop by
phone the agent takes itself (also while this service is unreachable). Either way
the history learns who stopped the broadcast, how and when from the agent's report,
with status CANCELLED; the first stop reported is kept.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.domain import validation
from api.errors import BadInput
from api.models import Broadcast, BroadcastStatus, Command, CommandStatus, TriggerSource
from api.runtime import Runtime
from api.services import audit, commands
from api.services.actor import Actor
from edge_agent.pbx import text as pbx_text

BY_MAX = 200
REASON_MAX = 500
# The refusal's machine-readable words (extensions.reason): the website words them.
NOT_RUNNING = "BROADCAST_NOT_RUNNING"


@dataclass(frozen=True)
class StopIn:
    """A stop as the agent reports it: `via` a TriggerSource name (PHONE, SIP, WEBSITE)."""

    via: str
    at: datetime
    by: str | None = None
    reason: str | None = None


def parse_via(value: str) -> TriggerSource:
    """The stop's way; an unknown name is refused (a report says one of the three)."""
    try:
        return TriggerSource[value]
    except KeyError:
        raise BadInput("PHONE, SIP or WEBSITE", field="stop.via") from None


def apply(broadcast: Broadcast, stop: StopIn | None, now: datetime) -> None:
    """Keeps the first stop reported, its texts cleaned as the mirror cleans them."""
    if stop is None or broadcast.stopped_at is not None:
        return

    def clean(value: str | None, limit: int) -> str | None:
        return None if value is None else validation.replace_unsafe(pbx_text.clean(value, limit))

    broadcast.stopped_via = parse_via(stop.via)
    broadcast.stopped_at = validation.moment(stop.at, "stop.at", now)
    broadcast.stopped_by = clean(stop.by, BY_MAX)
    broadcast.stop_reason = clean(stop.reason, REASON_MAX)


async def _open_stop(session: AsyncSession, broadcast: Broadcast, now: datetime) -> Command | None:
    """The stop of this broadcast that still waits for the agent, is being carried out, or
    was carried out while the agent's report that the broadcast ended is still on its way."""
    rows = await session.scalars(
        select(Command)
        .where(
            Command.tenant_id == broadcast.tenant_id,
            Command.type == "cancelBroadcast",
            or_(
                Command.status == CommandStatus.SUCCEEDED,
                and_(
                    Command.status.in_((CommandStatus.PENDING, CommandStatus.DELIVERED)),
                    Command.expires_at > now,
                ),
            ),
        )
        .order_by(Command.created_at)
    )
    # The payload is JSON; the few open stops of a tenant are compared here.
    return next(
        (c for c in rows if c.payload.get("broadcastId") == broadcast.agent_broadcast_id), None
    )


async def cancel(rt: Runtime, actor: Actor, broadcast_id: uuid.UUID, reason: str | None) -> Command:
    """Asks the agent to stop a running broadcast now (tenant admins).

    Refused with BAD_USER_INPUT (reason BROADCAST_NOT_RUNNING) when the history says it
    is not running; the agent checks again (it may have ended meanwhile). A second stop
    while the first still waits for the agent returns the first: no second command and no
    second audit entry (a stop that did nothing is not logged as one).
    """
    scope = actor.write_scope()
    if reason is not None:
        reason = reason.strip() or None
        if reason is not None and len(reason) > REASON_MAX:
            raise BadInput(f"at most {REASON_MAX} characters", field="reason")
    async with rt.db.transaction() as session:
        broadcast = await scope.get(session, Broadcast, broadcast_id)
        if broadcast.status is not BroadcastStatus.RUNNING:
            raise BadInput("the broadcast is not running", field="id", reason=NOT_RUNNING)
        # Two clicks at once: the row lock makes the second see the first's command.
        await session.execute(
            select(Broadcast.id).where(Broadcast.id == broadcast.id).with_for_update()
        )
        waiting = await _open_stop(session, broadcast, rt.clock())
        if waiting is not None:
            return waiting
        command = await commands.enqueue(
            session,
            rt,
            actor,
            "cancelBroadcast",
            {
                "broadcastId": broadcast.agent_broadcast_id,
                "requestedBy": await commands.requested_by(session, actor),
                "reason": reason,
            },
            # A stop is wanted for as long as the broadcast runs, also when the agent is
            # back only late (as an alarm waits); the agent ignores one for a finished one.
            expires_in=timedelta(seconds=rt.settings.alarm_command_expiry_seconds),
        )
        audit.record(
            session,
            actor,
            "broadcast.cancel",
            tenant_id=broadcast.tenant_id,
            target=broadcast.id,
            reason=reason,
        )
    return command

"""How an alarm was raised, as the history shows it next to the caller (issue 16, point 3).

The agent's report says it (`triggerSource`: PHONE, SIP or WEBSITE). It is a text, not
a GraphQL enum, so that a newer agent's name for a way this service does not know yet
costs nothing but the name: the broadcast keeps what is derived
(docs/decisions/trigger-source.md). Derived, for such a report and for an agent older
than the field: WEBSITE when a `triggerBroadcast` of the tenant names the broadcast
in its result (the command's result may come before or after the first report, so
both paths set it), PHONE otherwise (a trigger call through the job service, the
only other way an older agent knew).
"""

from __future__ import annotations

import logging
import re
import uuid

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.errors import BadInput
from api.models import Broadcast, Command, TriggerSource

log = logging.getLogger(__name__)

TRIGGER_COMMAND = "triggerBroadcast"
# What a name looks like: the upper-case names of the GraphQL enum TriggerSource.
NAME = re.compile(r"[A-Z][A-Z0-9_]{0,31}")
NAME_MAX = 32
_unknown: set[str] = set()  # logged once per process; at most a few names are kept


def parse(value: str | None) -> TriggerSource | None:
    """The reported source; None when the report says none or one this service does not
    know. A value that is no name is refused like any other bad input."""
    if value is None:
        return None
    if NAME.fullmatch(value) is None:
        raise BadInput("a trigger source is an upper-case name", field="triggerSource")
    try:
        return TriggerSource[value]
    except KeyError:
        if value not in _unknown and len(_unknown) < NAME_MAX:
            _unknown.add(value)
            log.warning(
                "broadcast reports: trigger source %r unknown to this central service "
                "(an agent newer than the service); the derived source is kept",
                value,
            )
        return None


async def derived(session: AsyncSession, tenant_id: uuid.UUID, agent_broadcast_id: str) -> str:
    """The source of a broadcast whose report does not say (an older agent's)."""
    command = await session.scalar(
        select(Command.id)
        .where(
            Command.tenant_id == tenant_id,
            Command.type == TRIGGER_COMMAND,
            Command.result["broadcastId"].as_string() == agent_broadcast_id,
        )
        .limit(1)
    )
    return TriggerSource.WEBSITE if command is not None else TriggerSource.PHONE


async def from_command(session: AsyncSession, command: Command, broadcast_id: object) -> None:
    """A `triggerBroadcast` the agent ran: its broadcast came from the website, whatever
    an older agent's report left to be derived."""
    if not isinstance(broadcast_id, str) or not broadcast_id:
        return
    await session.execute(
        update(Broadcast)
        .where(
            Broadcast.tenant_id == command.tenant_id,
            Broadcast.agent_broadcast_id == broadcast_id,
        )
        .values(trigger_source=TriggerSource.WEBSITE)
    )

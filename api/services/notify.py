"""Wake-ups after a commit: to agents, browsers and revoked connections.

Sent only after the transaction committed, so a listener that rereads the
database always finds what it was woken for.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import datetime

from api.pubsub import installation_control, tenant_commands, tenant_events
from api.runtime import Runtime


def event(kind: str, ident: object = None, **facts: object) -> str:
    """A wake-up: its kind, the id it is about, and what a listener may use instead of
    reading the database again (a health report's heartbeat, say)."""
    return json.dumps({"kind": kind, "id": str(ident) if ident else None, **facts})


def health(installation_id: uuid.UUID, heartbeat: datetime | None, poll_seconds: int) -> str:
    """A health report was stored: what the agent's connection now rests on."""
    return event(
        "health",
        installation_id,
        heartbeatAt=heartbeat.isoformat() if heartbeat else None,
        pollSeconds=poll_seconds,
    )


async def command_created(rt: Runtime, tenant_id: uuid.UUID, command_id: uuid.UUID) -> None:
    await rt.hub.publish(tenant_commands(tenant_id), str(command_id))
    await rt.hub.publish(tenant_events(tenant_id), event("command", command_id))


async def revoked(rt: Runtime, installation_ids: Iterable[uuid.UUID]) -> None:
    for installation_id in installation_ids:
        await rt.hub.publish(installation_control(installation_id), "revoked")

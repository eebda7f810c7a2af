"""A command's times in the agent's own clock, whatever the server's clock says.

`createdAt` and `expiresAt` come from the server's clock. Compared with the
agent's clock they would be off by the skew between the two (a server a minute
behind makes every command look a minute old). The server sends its clock with
each command (`serverTime`), so the command's age is measured in the server's
clock alone and only then placed on the agent's: local receipt minus that age.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

# The key the command channel adds to a command: when it arrived, in the agent's clock.
RECEIVED_AT = "_receivedAt"


@dataclass(frozen=True)
class CommandTimes:
    created_at: datetime | None  # None: unknown (the trigger counts from now)
    expires_at: datetime | None  # None: never expires here


def local_times(command: dict[str, Any]) -> CommandTimes:
    """The command's creation and expiry on the agent's clock.

    Without `serverTime` (a central service older than this) the times are taken
    as they are; a creation time ahead of the agent's clock then counts as now.
    """
    received = command.get(RECEIVED_AT)
    if not isinstance(received, datetime):
        received = datetime.now(UTC)
    created, expires = aware_time(command.get("createdAt")), aware_time(command.get("expiresAt"))
    server_now = aware_time(command.get("serverTime"))
    offset = received - server_now if server_now is not None else timedelta(0)
    return CommandTimes(
        created_at=created + offset if created is not None else None,
        expires_at=expires + offset if expires is not None else None,
    )


def aware_time(value: object) -> datetime | None:
    """An ISO time with its zone, or None (unknown: the timeout counts from now)."""
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return None
    return at if at.tzinfo is not None else None

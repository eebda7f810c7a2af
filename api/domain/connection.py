"""Whether a customer's agent (the "Rundruf Manager Service") counts as connected.

One definition for the website, the API and the watchdog: an agent is heard of
through its heartbeat (``Installation.last_heartbeat_at``, moved only by fresh
reports). Silent for more than ``OFFLINE_AFTER_POLLS`` of the tenant's poll
intervals, it is offline, and what it reported before (PBX reachable, job
service, alarm service, participants) is no longer known: it is shown as
unknown since its last report, never as the last green values.

The watchdog uses the same measure (``silent``) with its own factor, so that a
report that is just late shows on the website before anybody gets a mail.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

T = TypeVar("T")

# Issue 13: "has not reported for more than two poll intervals". The same bound
# makes a delayed report too old to move the heartbeat (api/services/agents.py).
OFFLINE_AFTER_POLLS = 2


class AgentState(enum.StrEnum):
    CONNECTED = "connected"
    # Reported before, silent for more than two poll intervals (or revoked).
    OFFLINE = "offline"
    # Enrolled, but no report has come yet.
    NEVER_REPORTED = "never_reported"
    # The tenant's installation (or its license) was revoked, and none enrolled since.
    REVOKED = "revoked"
    # The tenant has never had an installation.
    NOT_INSTALLED = "not_installed"


@dataclass(frozen=True)
class Connection:
    state: AgentState
    # OFFLINE: the last heartbeat; NEVER_REPORTED: the enrolment; REVOKED: the
    # revocation; else None.
    since: datetime | None
    # CONNECTED: the moment it becomes OFFLINE unless a report comes first.
    stale_at: datetime | None

    @property
    def connected(self) -> bool:
        return self.state is AgentState.CONNECTED

    def current(self, value: T | None) -> T | None:
        """A reported value while it is known; None (unknown) once the agent is silent."""
        return value if self.connected else None


NOT_INSTALLED = Connection(AgentState.NOT_INSTALLED, since=None, stale_at=None)


def revoked(at: datetime) -> Connection:
    """The tenant's last installation may no longer connect since `at`."""
    return Connection(AgentState.REVOKED, since=at, stale_at=None)


def silent(last_heard: datetime, now: datetime, poll_seconds: int, factor: int) -> bool:
    """Nothing heard for more than ``factor`` poll intervals."""
    return now - last_heard > timedelta(seconds=factor * poll_seconds)


def connection(
    last_heartbeat_at: datetime | None,
    enrolled_at: datetime,
    revoked_at: datetime | None,
    now: datetime,
    poll_seconds: int,
) -> Connection:
    if last_heartbeat_at is None:
        if revoked_at is not None:
            return Connection(AgentState.OFFLINE, since=enrolled_at, stale_at=None)
        return Connection(AgentState.NEVER_REPORTED, since=enrolled_at, stale_at=None)
    if revoked_at is not None or silent(last_heartbeat_at, now, poll_seconds, OFFLINE_AFTER_POLLS):
        return Connection(AgentState.OFFLINE, since=last_heartbeat_at, stale_at=None)
    stale_at = last_heartbeat_at + timedelta(seconds=OFFLINE_AFTER_POLLS * poll_seconds)
    return Connection(AgentState.CONNECTED, since=None, stale_at=stale_at)

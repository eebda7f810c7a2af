"""How a broadcast went, in one code: the list's result and its colour (issue 17, point 4).

The status says whether the broadcast still runs; the outcome says whether it reached
the people: a finished broadcast in which members never confirmed is not a success.
"""

from __future__ import annotations

import enum
from datetime import datetime

from api.models import BroadcastStatus


class BroadcastOutcome(enum.StrEnum):
    RUNNING = "running"
    ALL_CONFIRMED = "all_confirmed"  # every member confirmed
    QUORUM_REACHED = "quorum_reached"  # enough confirmed; the rest were spared or missed
    UNCONFIRMED = "unconfirmed"  # finished, members without confirmation, no quorum
    FAILED = "failed"  # the broadcast failed, or the trigger never became one
    CANCELLED = "cancelled"


def outcome_of(
    status: BroadcastStatus,
    failure_code: str | None,
    quorum_reached_at: datetime | None,
    confirmed: int,
    member_count: int,
) -> BroadcastOutcome:
    """The one rule; `history.outcome_clause` says the same in SQL for the filter."""
    if failure_code is not None or status is BroadcastStatus.FAILED:
        return BroadcastOutcome.FAILED
    if status is BroadcastStatus.CANCELLED:
        return BroadcastOutcome.CANCELLED
    if status is BroadcastStatus.RUNNING:
        return BroadcastOutcome.RUNNING
    if confirmed >= member_count:
        return BroadcastOutcome.ALL_CONFIRMED
    if quorum_reached_at is not None:
        return BroadcastOutcome.QUORUM_REACHED
    return BroadcastOutcome.UNCONFIRMED

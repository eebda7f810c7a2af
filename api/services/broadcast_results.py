"""Each broadcast's result: how many members confirmed, and its outcome (issue 17, point 4).

The count is one grouped query for a page of broadcasts (a DataLoader batches it); the
list's outcome filter says `outcome_of`'s rule in SQL, on the same count.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import ColumnElement, and_, func, not_, or_, select

from api.domain.broadcast_outcome import BroadcastOutcome
from api.models import Broadcast, BroadcastStatus, CallAttempt, CallOutcome
from api.runtime import Runtime


def _confirmed_members() -> ColumnElement[int]:
    """Members of the row's broadcast with a confirmed attempt (a correlated subquery)."""
    return (
        select(func.count(func.distinct(CallAttempt.member_pbx_id)))
        .where(
            CallAttempt.broadcast_id == Broadcast.id,
            CallAttempt.outcome == CallOutcome.CONFIRMED,
        )
        .scalar_subquery()
    )


def outcome_clause(outcome: BroadcastOutcome) -> ColumnElement[bool]:
    failed = or_(Broadcast.failure_code.is_not(None), Broadcast.status == BroadcastStatus.FAILED)
    if outcome is BroadcastOutcome.FAILED:
        return failed
    if outcome is BroadcastOutcome.CANCELLED:
        return and_(not_(failed), Broadcast.status == BroadcastStatus.CANCELLED)
    if outcome is BroadcastOutcome.RUNNING:
        return and_(not_(failed), Broadcast.status == BroadcastStatus.RUNNING)
    done = and_(not_(failed), Broadcast.status == BroadcastStatus.COMPLETED)
    all_confirmed = _confirmed_members() >= Broadcast.member_count
    if outcome is BroadcastOutcome.ALL_CONFIRMED:
        return and_(done, all_confirmed)
    quorum = Broadcast.quorum_reached_at.is_not(None)
    if outcome is BroadcastOutcome.QUORUM_REACHED:
        return and_(done, not_(all_confirmed), quorum)
    return and_(done, not_(all_confirmed), not_(quorum))


async def confirmed_counts(rt: Runtime, broadcast_ids: Sequence[uuid.UUID]) -> list[int]:
    async with rt.db.reading() as session:
        rows = await session.execute(
            select(CallAttempt.broadcast_id, func.count(func.distinct(CallAttempt.member_pbx_id)))
            .where(
                CallAttempt.broadcast_id.in_(broadcast_ids),
                CallAttempt.outcome == CallOutcome.CONFIRMED,
            )
            .group_by(CallAttempt.broadcast_id)
        )
        found = {b: int(n) for b, n in rows}
    return [found.get(i, 0) for i in broadcast_ids]

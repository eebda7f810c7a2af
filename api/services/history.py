"""The broadcast history: broadcasts with cursor pagination and their call attempts."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select

from api.domain.broadcast_outcome import BroadcastOutcome
from api.errors import BadInput
from api.models import Broadcast, BroadcastGroup, BroadcastMode, CallAttempt, PbxUser
from api.runtime import Runtime
from api.services.actor import Actor
from api.services.broadcast_results import outcome_clause
from api.services.paging import decode_cursor, encode_cursor

MAX_PAGE = 100


@dataclass(frozen=True)
class BroadcastFilter:
    tenant_id: uuid.UUID | None = None
    group_id: uuid.UUID | None = None  # the PBX group, as the website names it
    mode: BroadcastMode | None = None
    started_from: datetime | None = None
    started_to: datetime | None = None
    outcome: BroadcastOutcome | None = None


@dataclass(frozen=True)
class Page:
    items: list[Broadcast]
    next_cursor: str | None


def _cursor(b: Broadcast) -> str:
    return encode_cursor(b.started_at, b.id)


async def list_broadcasts(
    rt: Runtime, actor: Actor, flt: BroadcastFilter, first: int, after: str | None
) -> Page:
    if not 1 <= first <= MAX_PAGE:
        raise BadInput(f"between 1 and {MAX_PAGE}", field="first")
    if flt.started_from and flt.started_to and flt.started_from >= flt.started_to:
        raise BadInput("startedFrom must lie before startedTo", field="filter.startedTo")
    scope = actor.read_scope(flt.tenant_id)
    query = select(Broadcast).where(scope.where(Broadcast))
    if flt.group_id is not None:
        query = query.join(BroadcastGroup, BroadcastGroup.id == Broadcast.broadcast_group_id).where(
            BroadcastGroup.group_id == flt.group_id
        )
    if flt.mode is not None:
        query = query.where(Broadcast.mode == int(flt.mode))
    if flt.started_from is not None:
        query = query.where(Broadcast.started_at >= flt.started_from)
    if flt.started_to is not None:
        query = query.where(Broadcast.started_at < flt.started_to)
    if flt.outcome is not None:
        query = query.where(outcome_clause(flt.outcome))
    if after is not None:
        started, ident = decode_cursor(after)
        query = query.where(
            or_(
                Broadcast.started_at < started,
                and_(Broadcast.started_at == started, Broadcast.id < ident),
            )
        )
    query = query.order_by(Broadcast.started_at.desc(), Broadcast.id.desc()).limit(first + 1)
    async with rt.db.reading() as session:
        rows = list((await session.scalars(query)).all())
    more = len(rows) > first
    items = rows[:first]
    return Page(items=items, next_cursor=_cursor(items[-1]) if more and items else None)


async def get_broadcast(rt: Runtime, actor: Actor, broadcast_id: uuid.UUID) -> Broadcast:
    async with rt.db.reading() as session:
        return await actor.read_scope().get(session, Broadcast, broadcast_id)


async def attempts_of(rt: Runtime, broadcast_ids: Sequence[uuid.UUID]) -> list[list[CallAttempt]]:
    async with rt.db.reading() as session:
        rows = await session.scalars(
            select(CallAttempt)
            .where(CallAttempt.broadcast_id.in_(broadcast_ids))
            .order_by(CallAttempt.member_name, CallAttempt.attempt_no)
        )
        by_b: dict[uuid.UUID, list[CallAttempt]] = {i: [] for i in broadcast_ids}
        for attempt in rows:
            by_b[attempt.broadcast_id].append(attempt)
    return [by_b[i] for i in broadcast_ids]


async def pbx_users_by_id(rt: Runtime, ids: Sequence[uuid.UUID]) -> list[PbxUser | None]:
    async with rt.db.reading() as session:
        found = {u.id: u for u in await session.scalars(select(PbxUser).where(PbxUser.id.in_(ids)))}
    return [found.get(i) for i in ids]


async def broadcast_groups_by_id(
    rt: Runtime, ids: Sequence[uuid.UUID]
) -> list[BroadcastGroup | None]:
    async with rt.db.reading() as session:
        found = {
            g.id: g
            for g in await session.scalars(select(BroadcastGroup).where(BroadcastGroup.id.in_(ids)))
        }
    return [found.get(i) for i in ids]

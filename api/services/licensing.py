"""License rules: configuration needs a valid license, and participants fit its seats.

Alarms are never blocked here: the agent runs configured alarms from its cache
whatever the license says; only changes to the configuration are refused.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.errors import Conflict
from api.models import BroadcastGroup, License, PbxGroupMember


async def valid_license(session: AsyncSession, tenant_id: uuid.UUID, now: datetime) -> License:
    lic = await session.scalar(
        select(License)
        .where(
            License.tenant_id == tenant_id,
            License.revoked_at.is_(None),
            License.valid_until > now,
        )
        .order_by(License.seats.desc())
        .limit(1)
    )
    if lic is None:
        raise Conflict(
            "there is no valid license: configuration changes are blocked until it is renewed "
            "(configured alarms keep working)",
            reason="LICENSE",
        )
    return lic


async def participants(session: AsyncSession, tenant_id: uuid.UUID) -> set[uuid.UUID]:
    """Distinct members of the tenant's broadcast groups (agents are not members)."""
    rows = await session.scalars(
        select(func.distinct(PbxGroupMember.user_id))
        .join(BroadcastGroup, BroadcastGroup.group_id == PbxGroupMember.group_id)
        .where(BroadcastGroup.tenant_id == tenant_id)
    )
    return set(rows)


async def require_seats(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    now: datetime,
    adding: Iterable[uuid.UUID],
    field: str,
) -> None:
    """Refuses a change that would take the participants past the license's seats."""
    lic = await valid_license(session, tenant_id, now)
    total = len(await participants(session, tenant_id) | set(adding))
    if total > lic.seats:
        raise Conflict(
            f"this would make {total} participants; the license allows {lic.seats}",
            field=field,
            reason="SEATS",
            seats=lic.seats,
            participants=total,
        )

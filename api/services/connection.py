"""Installations as the website sees them: what was reported, and whether that still holds.

The rule itself is ``api.domain.connection``; this module reads the heartbeat
and the tenant's poll interval for it, always within the caller's scope.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.domain.connection import NOT_INSTALLED, Connection, connection, revoked
from api.errors import BadInput, NotFound
from api.models import Installation, License, PbxSettings, Tenant
from api.runtime import Runtime
from api.services.actor import Actor

DEFAULT_POLL_SECONDS = 60


@dataclass(frozen=True)
class Watched:
    """An installation with its connection as of the moment it was read."""

    installation: Installation
    connection: Connection


@dataclass(frozen=True)
class TenantAgent:
    """The tenant's agent: the one installation that may connect, if any."""

    connection: Connection
    poll_seconds: int
    installation: Watched | None


def watched(inst: Installation, poll_seconds: int | None, now: datetime) -> Watched:
    poll = poll_seconds or DEFAULT_POLL_SECONDS
    seen = connection(inst.last_heartbeat_at, inst.created_at, inst.revoked_at, now, poll)
    return Watched(inst, seen)


def _with_poll() -> Any:
    return select(Installation, PbxSettings.poll_interval_seconds).outerjoin(
        PbxSettings, PbxSettings.tenant_id == Installation.tenant_id
    )


async def list_installations(
    rt: Runtime, actor: Actor, tenant_id: uuid.UUID | None
) -> list[Watched]:
    scope = actor.read_scope(tenant_id)
    async with rt.db.reading() as session:
        rows = (
            await session.execute(
                _with_poll().where(scope.where(Installation)).order_by(Installation.created_at)
            )
        ).all()
    now = rt.clock()
    return [watched(inst, poll, now) for inst, poll in rows]


async def poll_seconds(session: AsyncSession, tenant_id: uuid.UUID) -> int:
    poll = await session.scalar(
        select(PbxSettings.poll_interval_seconds).where(PbxSettings.tenant_id == tenant_id)
    )
    return poll or DEFAULT_POLL_SECONDS


async def of_tenant(rt: Runtime, actor: Actor, tenant_id: uuid.UUID | None) -> TenantAgent:
    """The tenant's agent; platform admins name the tenant. One query: the tenant, its
    poll interval and its latest installation with its license's revocation."""
    scope = actor.read_scope(tenant_id)
    if scope.tenant_id is None:
        raise BadInput("name the tenant", field="tenantId")
    async with rt.db.reading() as session:
        row = (
            await session.execute(
                select(
                    Tenant.id, PbxSettings.poll_interval_seconds, Installation, License.revoked_at
                )
                .select_from(Tenant)
                .outerjoin(PbxSettings, PbxSettings.tenant_id == Tenant.id)
                .outerjoin(Installation, Installation.tenant_id == Tenant.id)
                .outerjoin(License, License.id == Installation.license_id)
                .where(Tenant.id == scope.tenant_id)
                # Enrolling a new agent revokes the old one: the latest is the one.
                .order_by(Installation.created_at.desc())
                .limit(1)
            )
        ).first()
    if row is None:
        raise NotFound("tenant not found")
    _, poll_value, inst, license_revoked = row
    poll = poll_value or DEFAULT_POLL_SECONDS
    if inst is None:
        return TenantAgent(NOT_INSTALLED, poll, None)
    ended = [at for at in (inst.revoked_at, license_revoked) if at is not None]
    if ended:
        return TenantAgent(revoked(min(ended)), poll, None)
    seen = watched(inst, poll, rt.clock())
    return TenantAgent(seen.connection, poll, seen)

"""Reading the audit log (issue 17, point 7): newest first, a page at a time.

Tenant administrators read their tenant's entries, the platform administrator every
entry (or one tenant's); viewers read none. `audit.record` writes the entries.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select

from api.errors import BadInput, Forbidden
from api.models import AuditLog, Role, Tenant, User
from api.runtime import Runtime
from api.services.actor import Actor
from api.services.paging import decode_cursor, encode_cursor

MAX_PAGE = 100
# A kind is the part of an action before its dot ("group" of "group.create"), or a
# whole action; both are short lowercase codes.
_KIND = re.compile(r"^[a-z_]{1,32}(\.[A-Za-z_]{1,40})?$")


@dataclass(frozen=True)
class AuditFilter:
    tenant_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None
    kind: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class Entry:
    row: AuditLog
    actor_email: str | None
    tenant_name: str | None


@dataclass(frozen=True)
class AuditPage:
    items: list[Entry]
    next_cursor: str | None


def _cursor(row: AuditLog) -> str:
    return encode_cursor(row.at, row.id)


def _check(flt: AuditFilter, first: int) -> None:
    if not 1 <= first <= MAX_PAGE:
        raise BadInput(f"between 1 and {MAX_PAGE}", field="first")
    if flt.kind is not None and not _KIND.match(flt.kind):
        raise BadInput("a kind such as group or group.create", field="filter.kind")
    if flt.since and flt.until and flt.since >= flt.until:
        raise BadInput("since must lie before until", field="filter.until")


async def list_entries(
    rt: Runtime, actor: Actor, flt: AuditFilter, first: int, after: str | None
) -> AuditPage:
    if actor.role is Role.TENANT_VIEWER:
        raise Forbidden("only administrators read the audit log")
    _check(flt, first)
    scope = actor.read_scope(flt.tenant_id)
    query = (
        select(AuditLog, User.email, Tenant.name)
        .outerjoin(User, User.id == AuditLog.actor_user_id)
        .outerjoin(Tenant, Tenant.id == AuditLog.tenant_id)
        .where(scope.where(AuditLog))
    )
    if flt.user_id is not None:
        query = query.where(AuditLog.actor_user_id == flt.user_id)
    if flt.kind is not None:
        kind = flt.kind
        query = query.where(
            AuditLog.action == kind if "." in kind else AuditLog.action.startswith(f"{kind}.")
        )
    if flt.since is not None:
        query = query.where(AuditLog.at >= flt.since)
    if flt.until is not None:
        query = query.where(AuditLog.at < flt.until)
    if after is not None:
        at, ident = decode_cursor(after)
        query = query.where(or_(AuditLog.at < at, and_(AuditLog.at == at, AuditLog.id < ident)))
    query = query.order_by(AuditLog.at.desc(), AuditLog.id.desc()).limit(first + 1)
    async with rt.db.reading() as session:
        rows = [Entry(row, email, name) for row, email, name in await session.execute(query)]
    more = len(rows) > first
    items = rows[:first]
    return AuditPage(items=items, next_cursor=_cursor(items[-1].row) if more and items else None)


async def actors(
    rt: Runtime, actor: Actor, tenant_id: uuid.UUID | None
) -> list[tuple[uuid.UUID, str]]:
    """Everyone with an entry in the caller's scope, by mail: the page's user filter."""
    if actor.role is Role.TENANT_VIEWER:
        raise Forbidden("only administrators read the audit log")
    scope = actor.read_scope(tenant_id)
    query = (
        select(User.id, User.email)
        .where(User.id.in_(select(AuditLog.actor_user_id).where(scope.where(AuditLog))))
        .order_by(User.email)
    )
    async with rt.db.reading() as session:
        return [(i, e) for i, e in await session.execute(query)]

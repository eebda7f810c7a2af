from __future__ import annotations

import uuid
from datetime import datetime
from typing import cast

import strawberry
from strawberry.scalars import JSON

from api.services import audit_log
from api.services.audit_log import Entry
from schema.history.types import PageInfo
from schema.info import Info
from schema.platform.types import gid


@strawberry.type
class AuditEntry:
    id: strawberry.ID
    at: datetime
    action: str = strawberry.field(
        description="What was done, as a code: kind.verb (group.create, user.update, …)."
    )
    target: str | None = strawberry.field(description="The id of what it was done to.")
    tenant_id: strawberry.ID | None
    tenant_name: str | None
    actor_id: strawberry.ID | None = strawberry.field(
        description="Who did it; null for what the agent or the service itself did."
    )
    actor_email: str | None
    details: JSON = strawberry.field(description="What changed; never secrets.")

    @classmethod
    def of(cls, e: Entry) -> AuditEntry:
        row = e.row
        return cls(
            id=gid(row.id),
            at=row.at,
            action=row.action,
            target=row.target,
            tenant_id=gid(row.tenant_id) if row.tenant_id else None,
            tenant_name=e.tenant_name,
            actor_id=gid(row.actor_user_id) if row.actor_user_id else None,
            actor_email=e.actor_email,
            details=cast(JSON, row.details or {}),
        )


@strawberry.type
class AuditActor:
    id: strawberry.ID
    email: str


@strawberry.type
class AuditConnection:
    nodes: list[AuditEntry]
    page_info: PageInfo
    _tenant_id: strawberry.Private[uuid.UUID | None]

    @strawberry.field(description="Everyone with an entry here, whatever the filter.")
    async def actors(self, info: Info) -> list[AuditActor]:
        rows = await audit_log.actors(info.context.rt, await info.context.actor(), self._tenant_id)
        return [AuditActor(id=gid(i), email=e) for i, e in rows]


@strawberry.input
class AuditFilter:
    user_id: strawberry.ID | None = None
    kind: str | None = strawberry.field(
        default=None, description="An action's kind (group) or a whole action (group.create)."
    )
    since: datetime | None = None
    until: datetime | None = strawberry.field(
        default=None, description="Exclusive; must lie after since."
    )

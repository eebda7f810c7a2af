from __future__ import annotations

import strawberry

from api.services import audit_log
from schema.audit.types import AuditConnection, AuditEntry, AuditFilter
from schema.context import optional_id
from schema.history.types import PageInfo
from schema.info import Info


@strawberry.type
class AuditQuery:
    @strawberry.field(
        description="Who changed what and when, newest first, a page at a time (at most "
        "100). Tenant administrators read their tenant's, the platform administrator "
        "every tenant's (or the one named); viewers none."
    )
    async def audit_log(
        self,
        info: Info,
        first: int = 50,
        after: str | None = None,
        filter: AuditFilter | None = None,
        tenant_id: strawberry.ID | None = None,
    ) -> AuditConnection:
        actor = await info.context.actor()
        f = filter or AuditFilter()
        tenant = optional_id(tenant_id, "tenant")
        page = await audit_log.list_entries(
            info.context.rt,
            actor,
            audit_log.AuditFilter(
                tenant_id=tenant,
                user_id=optional_id(f.user_id, "user"),
                kind=f.kind,
                since=f.since,
                until=f.until,
            ),
            first,
            after,
        )
        return AuditConnection(
            nodes=[AuditEntry.of(e) for e in page.items],
            page_info=PageInfo(
                end_cursor=page.next_cursor, has_next_page=page.next_cursor is not None
            ),
            _tenant_id=tenant,
        )

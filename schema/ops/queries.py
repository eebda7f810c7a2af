from __future__ import annotations

import strawberry

from api.services import watchdog
from schema.context import optional_id
from schema.info import Info
from schema.ops.types import Incident


@strawberry.type
class OpsQuery:
    @strawberry.field(
        description="The watchdog's incidents, newest first (at most 500); open ones "
        "unless openOnly is false. Tenant users see their own tenant's."
    )
    async def incidents(
        self, info: Info, tenant_id: strawberry.ID | None = None, open_only: bool = True
    ) -> list[Incident]:
        actor = await info.context.actor()
        rows = await watchdog.list_incidents(
            info.context.rt, actor, optional_id(tenant_id, "tenant"), open_only
        )
        return [Incident.of(incident, hostname) for incident, hostname in rows]

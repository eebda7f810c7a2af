from __future__ import annotations

import strawberry

from api import models
from api.services import history
from schema.context import optional_id, parse_id
from schema.history.types import Broadcast, BroadcastConnection, BroadcastFilter, PageInfo
from schema.info import Info


@strawberry.type
class HistoryQuery:
    @strawberry.field(description="Broadcasts, newest first, a page at a time.")
    async def broadcasts(
        self,
        info: Info,
        first: int = 20,
        after: str | None = None,
        filter: BroadcastFilter | None = None,
        tenant_id: strawberry.ID | None = None,
    ) -> BroadcastConnection:
        actor = await info.context.actor()
        f = filter or BroadcastFilter()
        page = await history.list_broadcasts(
            info.context.rt,
            actor,
            history.BroadcastFilter(
                tenant_id=optional_id(tenant_id, "tenant"),
                group_id=optional_id(f.group_id, "group"),
                mode=models.BroadcastMode(f.mode) if f.mode else None,
                started_from=f.started_from,
                started_to=f.started_to,
                outcome=f.outcome,
            ),
            first,
            after,
        )
        return BroadcastConnection(
            nodes=[Broadcast.of(b) for b in page.items],
            page_info=PageInfo(
                end_cursor=page.next_cursor, has_next_page=page.next_cursor is not None
            ),
        )

    @strawberry.field(description="One broadcast with all its call attempts.")
    async def broadcast(self, info: Info, id: strawberry.ID) -> Broadcast:
        actor = await info.context.actor()
        return Broadcast.of(
            await history.get_broadcast(info.context.rt, actor, parse_id(id, "broadcast"))
        )

from __future__ import annotations

import strawberry

from api.services import connection, platform
from schema.auth.types import User
from schema.context import optional_id, parse_id
from schema.info import Info
from schema.platform.types import AgentConnection, Installation, License, Tenant


@strawberry.type
class PlatformQuery:
    @strawberry.field(description="All tenants (platform admins).")
    async def tenants(self, info: Info) -> list[Tenant]:
        actor = await info.context.actor()
        return [Tenant.of(t) for t in await platform.list_tenants(info.context.rt, actor)]

    @strawberry.field(description="One tenant; tenant users see only their own.")
    async def tenant(self, info: Info, id: strawberry.ID) -> Tenant:
        actor = await info.context.actor()
        return Tenant.of(await platform.get_tenant(info.context.rt, actor, parse_id(id, "tenant")))

    @strawberry.field(description="Licenses; tenant users see their own tenant's.")
    async def licenses(self, info: Info, tenant_id: strawberry.ID | None = None) -> list[License]:
        actor = await info.context.actor()
        rows = await platform.list_licenses(
            info.context.rt, actor, optional_id(tenant_id, "tenant")
        )
        return [License.of(lic) for lic in rows]

    @strawberry.field(description="Users of one or all tenants (platform admins).")
    async def users(self, info: Info, tenant_id: strawberry.ID | None = None) -> list[User]:
        actor = await info.context.actor()
        rows = await platform.list_users(info.context.rt, actor, optional_id(tenant_id, "tenant"))
        return [User.of(u) for u in rows]

    @strawberry.field(description="Customer installations with what their agents last reported.")
    async def installations(
        self, info: Info, tenant_id: strawberry.ID | None = None
    ) -> list[Installation]:
        actor = await info.context.actor()
        rows = await connection.list_installations(
            info.context.rt, actor, optional_id(tenant_id, "tenant")
        )
        return [Installation.of(i) for i in rows]

    @strawberry.field(
        description="Whether the tenant's agent is connected; platform admins name the tenant."
    )
    async def agent_connection(
        self, info: Info, tenant_id: strawberry.ID | None = None
    ) -> AgentConnection:
        actor = await info.context.actor()
        agent = await connection.of_tenant(info.context.rt, actor, optional_id(tenant_id, "tenant"))
        return AgentConnection.of(agent)

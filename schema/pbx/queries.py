from __future__ import annotations

import strawberry

from api import models
from api.services import commands, directory, pbx
from schema.context import optional_id, parse_id
from schema.enums import CommandStatus
from schema.info import Info
from schema.pbx.types import Command, Group, PbxSettings, PbxUser


@strawberry.type
class PbxQuery:
    @strawberry.field(description="The tenant's PBX settings (platform admins name the tenant).")
    async def pbx_settings(self, info: Info, tenant_id: strawberry.ID | None = None) -> PbxSettings:
        actor = await info.context.actor()
        row = await pbx.get_settings(info.context.rt, actor, optional_id(tenant_id, "tenant"))
        return PbxSettings.of(row)

    @strawberry.field(description="Users on the PBX, as the agent last reported them.")
    async def pbx_users(
        self, info: Info, tenant_id: strawberry.ID | None = None, search: str | None = None
    ) -> list[PbxUser]:
        actor = await info.context.actor()
        rows = await directory.list_users(
            info.context.rt, actor, optional_id(tenant_id, "tenant"), search
        )
        return [PbxUser.of(u) for u in rows]

    @strawberry.field(description="Groups on the PBX with their members.")
    async def groups(self, info: Info, tenant_id: strawberry.ID | None = None) -> list[Group]:
        actor = await info.context.actor()
        rows = await directory.list_groups(info.context.rt, actor, optional_id(tenant_id, "tenant"))
        return [Group.of(g) for g in rows]

    @strawberry.field
    async def group(self, info: Info, id: strawberry.ID) -> Group:
        actor = await info.context.actor()
        return Group.of(await directory.get_group(info.context.rt, actor, parse_id(id, "group")))

    @strawberry.field(description="Recent commands to the agent, newest first.")
    async def commands(
        self,
        info: Info,
        tenant_id: strawberry.ID | None = None,
        status: CommandStatus | None = None,
        limit: int = 50,
    ) -> list[Command]:
        actor = await info.context.actor()
        rows = await commands.list_commands(
            info.context.rt,
            actor,
            optional_id(tenant_id, "tenant"),
            models.CommandStatus(status) if status else None,
            limit,
        )
        return [Command.of(c) for c in rows]

    @strawberry.field
    async def command(self, info: Info, id: strawberry.ID) -> Command:
        actor = await info.context.actor()
        return Command.of(
            await commands.get_command(info.context.rt, actor, parse_id(id, "command"))
        )

"""The PBX directory mirror (users, groups, members) and broadcast groups.

Reads come from the mirror; every change becomes a command for the agent, and
the mirror follows only when the agent reports what the PBX did.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.domain import validation
from api.errors import BadInput, Conflict, NotFound
from api.models import BroadcastGroup, Command, PbxGroup, PbxGroupMember, PbxUser, Role
from api.runtime import Runtime
from api.services import audit, commands, licensing
from api.services.actor import Actor, Scope
from edge_agent.pbx import text as pbx_text

MAX_MEMBERS_PER_CHANGE = 1000
AGENT_PREFIX = "Rundruf"


async def list_users(
    rt: Runtime, actor: Actor, tenant_id: uuid.UUID | None, search: str | None
) -> list[PbxUser]:
    scope = actor.read_scope(tenant_id)
    query = select(PbxUser).where(scope.where(PbxUser)).order_by(PbxUser.name)
    if search:
        query = query.where(PbxUser.name.ilike(f"%{_escape_like(search.strip())}%", escape="\\"))
    async with rt.db.reading() as session:
        return list((await session.scalars(query)).all())


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def list_groups(rt: Runtime, actor: Actor, tenant_id: uuid.UUID | None) -> list[PbxGroup]:
    scope = actor.read_scope(tenant_id)
    async with rt.db.reading() as session:
        rows = await session.scalars(
            select(PbxGroup).where(scope.where(PbxGroup)).order_by(PbxGroup.name)
        )
        return list(rows.all())


async def get_group(rt: Runtime, actor: Actor, group_id: uuid.UUID) -> PbxGroup:
    async with rt.db.reading() as session:
        return await actor.read_scope().get(session, PbxGroup, group_id)


async def members_of(rt: Runtime, group_ids: Sequence[uuid.UUID]) -> list[list[PbxUser]]:
    """Members of many groups in one query (for the per-request DataLoader)."""
    async with rt.db.reading() as session:
        rows = await session.execute(
            select(PbxGroupMember.group_id, PbxUser)
            .join(PbxUser, PbxUser.id == PbxGroupMember.user_id)
            .where(PbxGroupMember.group_id.in_(group_ids))
            .order_by(PbxUser.name)
        )
        by_group: dict[uuid.UUID, list[PbxUser]] = {gid: [] for gid in group_ids}
        for group_id, user in rows:
            by_group[group_id].append(user)
    return [by_group[gid] for gid in group_ids]


async def broadcast_groups_of(
    rt: Runtime, group_ids: Sequence[uuid.UUID]
) -> list[BroadcastGroup | None]:
    async with rt.db.reading() as session:
        rows = await session.scalars(
            select(BroadcastGroup).where(BroadcastGroup.group_id.in_(group_ids))
        )
        found = {bg.group_id: bg for bg in rows}
    return [found.get(gid) for gid in group_ids]


def reveal_pin(rt: Runtime, actor: Actor, bg: BroadcastGroup) -> str | None:
    """Tenant admins see the PIN; viewers and platform staff do not."""
    if actor.role is not Role.TENANT_ADMIN or actor.tenant_id != bg.tenant_id:
        return None
    return rt.box.open(bg.pin_sealed)


async def sync(rt: Runtime, actor: Actor) -> Command:
    """Asks the agent for the PBX's users, groups, members and states now."""
    scope = actor.write_scope()
    async with rt.db.transaction() as session:
        command = await commands.enqueue(session, rt, actor, "syncDirectory", {})
        audit.record(session, actor, "directory.sync", tenant_id=scope.tenant_id)
    return command


# What a new group's name and description may hold (the input guard refuses longer ones
# before this, schema/input_limits.py).
GROUP_NAME_MAX = 64
GROUP_DESCRIPTION_MAX = 500


async def create_group(rt: Runtime, actor: Actor, name: str, description: str | None) -> Command:
    scope = actor.write_scope()
    name = validation.name(name, "name", max_length=GROUP_NAME_MAX)
    description = description.strip() if description else None
    if description and len(description) > GROUP_DESCRIPTION_MAX:
        raise validation.too_long("description", GROUP_DESCRIPTION_MAX)
    async with rt.db.transaction() as session:
        clash = await session.scalar(
            select(PbxGroup.id).where(scope.where(PbxGroup), PbxGroup.name == name)
        )
        if clash is not None:
            raise Conflict("a group with this name exists on the PBX", field="name")
        command = await commands.enqueue(
            session, rt, actor, "createGroup", {"name": name, "description": description}
        )
        audit.record(session, actor, "group.create", tenant_id=scope.tenant_id, name=name)
    return command


async def _group_and_users(
    session: AsyncSession, scope: Scope, group_id: uuid.UUID, user_ids: Sequence[uuid.UUID]
) -> tuple[PbxGroup, list[PbxUser]]:
    if not user_ids:
        raise BadInput("name at least one member", field="userIds")
    if len(user_ids) > MAX_MEMBERS_PER_CHANGE:
        raise BadInput(f"at most {MAX_MEMBERS_PER_CHANGE} members at once", field="userIds")
    group = await scope.get(session, PbxGroup, group_id)
    wanted = set(user_ids)
    users = list(
        (
            await session.scalars(
                select(PbxUser).where(scope.where(PbxUser), PbxUser.id.in_(wanted))
            )
        ).all()
    )
    if len(users) != len(wanted):
        raise NotFound("PBX user not found", field="userIds")
    return group, users


async def change_members(
    rt: Runtime, actor: Actor, group_id: uuid.UUID, user_ids: Sequence[uuid.UUID], add: bool
) -> Command:
    scope = actor.write_scope()
    async with rt.db.transaction() as session:
        group, users = await _group_and_users(session, scope, group_id, user_ids)
        if add and await _broadcast_group(session, group.id) is not None:
            await licensing.require_seats(
                session, group.tenant_id, rt.clock(), (u.id for u in users), "userIds"
            )
        kind = "addGroupMembers" if add else "removeGroupMembers"
        command = await commands.enqueue(
            session,
            rt,
            actor,
            kind,
            {"groupPbxId": group.pbx_id, "userPbxIds": sorted(u.pbx_id for u in users)},
        )
        audit.record(
            session,
            actor,
            f"group.{kind}",
            tenant_id=scope.tenant_id,
            target=group.id,
            users=len(users),
        )
    return command


async def enable_broadcast(rt: Runtime, actor: Actor, group_id: uuid.UUID) -> Command:
    """Asks the agent to create the group's agent user with a fresh PIN."""
    scope = actor.write_scope()
    async with rt.db.transaction() as session:
        group = await scope.get(session, PbxGroup, group_id)
        if await _broadcast_group(session, group.id) is not None:
            raise Conflict("this group is a broadcast group already", field="groupId")
        members = await session.scalars(
            select(PbxGroupMember.user_id).where(PbxGroupMember.group_id == group.id)
        )
        await licensing.require_seats(session, group.tenant_id, rt.clock(), members, "groupId")
        # A PIN from the OS's CSPRNG; the admin can change it once the agent exists.
        pin = "".join(secrets.choice("0123456789") for _ in range(6))
        command = await commands.enqueue(
            session,
            rt,
            actor,
            "enableBroadcast",
            {
                "groupPbxId": group.pbx_id,
                "groupName": group.name,
                # Cut as the agent cuts the names it reads (edge_agent/pbx/text.py), so
                # that it finds its agent again by this name.
                "agentName": f"{AGENT_PREFIX} {group.name}"[: pbx_text.NAME_MAX],
            },
            secrets={"pin": pin},
        )
        audit.record(session, actor, "broadcast.enable", tenant_id=scope.tenant_id, target=group.id)
    return command


async def _broadcast_group(session: AsyncSession, group_id: uuid.UUID) -> BroadcastGroup | None:
    return await session.scalar(select(BroadcastGroup).where(BroadcastGroup.group_id == group_id))


async def require_broadcast_group(
    session: AsyncSession, scope: Scope, group_id: uuid.UUID
) -> tuple[PbxGroup, BroadcastGroup]:
    group = await scope.get(session, PbxGroup, group_id)
    bg = await _broadcast_group(session, group.id)
    if bg is None:
        raise Conflict("this group is not a broadcast group", field="groupId")
    return group, bg


async def disable_broadcast(rt: Runtime, actor: Actor, group_id: uuid.UUID) -> Command:
    scope = actor.write_scope()
    async with rt.db.transaction() as session:
        group, bg = await require_broadcast_group(session, scope, group_id)
        agent_pbx_id = None
        if bg.agent_user_id is not None:
            agent = await session.get(PbxUser, bg.agent_user_id)
            agent_pbx_id = agent.pbx_id if agent else None
        command = await commands.enqueue(
            session,
            rt,
            actor,
            "disableBroadcast",
            {"groupPbxId": group.pbx_id, "agentPbxId": agent_pbx_id},
        )
        audit.record(
            session, actor, "broadcast.disable", tenant_id=scope.tenant_id, target=group.id
        )
    return command


async def update_agent(
    rt: Runtime, actor: Actor, group_id: uuid.UUID, extension: str | None, pin: str | None
) -> Command:
    scope = actor.write_scope()
    if extension is None and pin is None:
        raise BadInput("give a new internal number, a new PIN, or both", field="extension")
    if extension is not None:
        validation.extension(extension)
    if pin is not None:
        validation.pin(pin)
    async with rt.db.transaction() as session:
        group, bg = await require_broadcast_group(session, scope, group_id)
        if extension is not None and extension != bg.agent_extension:
            taken = await session.scalar(
                select(PbxUser.id).where(scope.where(PbxUser), PbxUser.extension == extension)
            )
            if taken is not None:
                raise Conflict("this internal number is taken on the PBX", field="extension")
        command = await commands.enqueue(
            session,
            rt,
            actor,
            "updateBroadcastAgent",
            {"groupPbxId": group.pbx_id, "extension": extension},
            secrets={"pin": pin} if pin is not None else None,
        )
        audit.record(
            session,
            actor,
            "broadcast.update_agent",
            tenant_id=scope.tenant_id,
            target=group.id,
            extension_changed=extension is not None,
            pin_changed=pin is not None,
        )
    return command

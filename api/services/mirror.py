"""Replaces a tenant's PBX directory mirror with what the agent reported.

The wire shape (JSON from the agent):
``{"users": [{"id", "name", "extension", "description", "state", "callroutingOnly"}],
   "groups": [{"id", "name", "description", "memberIds": [...]}]}``
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.errors import BadInput
from api.models import PbxGroup, PbxGroupMember, PbxUser
from api.runtime import Runtime


def _text(item: dict[str, Any], key: str, limit: int, required: bool = True) -> str | None:
    value = item.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value) or len(value) > limit:
        raise BadInput(f"directory: bad {key!r}", field="result")
    return value


async def replace(rt: Runtime, session: AsyncSession, tenant_id: uuid.UUID, snapshot: Any) -> None:
    if not isinstance(snapshot, dict):
        raise BadInput("directory: not an object", field="result")
    users_in = snapshot.get("users") or []
    groups_in = snapshot.get("groups") or []
    if not isinstance(users_in, list) or not isinstance(groups_in, list):
        raise BadInput("directory: users and groups must be lists", field="result")
    now = rt.clock()
    users: dict[str, dict[str, Any]] = {}
    for item in users_in:
        pbx_id = _text(item, "id", 64)
        state = item.get("state")
        users[str(pbx_id)] = {
            "name": _text(item, "name", 200),
            "extension": _text(item, "extension", 32, required=False),
            "description": _text(item, "description", 2000, required=False),
            "state": state if isinstance(state, int) and 0 <= state <= 8 else None,
            "callrouting_only": bool(item.get("callroutingOnly", False)),
            "synced_at": now,
        }
    user_ids = await _sync(session, PbxUser, tenant_id, users)
    groups: dict[str, dict[str, Any]] = {}
    members: dict[str, list[str]] = {}
    for item in groups_in:
        pbx_id = str(_text(item, "id", 64))
        groups[pbx_id] = {
            "name": _text(item, "name", 200),
            "description": _text(item, "description", 2000, required=False),
            "synced_at": now,
        }
        members[pbx_id] = [str(m) for m in item.get("memberIds") or []]
    group_ids = await _sync(session, PbxGroup, tenant_id, groups)
    await session.execute(delete(PbxGroupMember).where(PbxGroupMember.tenant_id == tenant_id))
    rows = [
        {"group_id": group_ids[g], "user_id": user_ids[u], "tenant_id": tenant_id}
        for g, member_ids in members.items()
        for u in set(member_ids)
        if u in user_ids
    ]
    if rows:
        await session.execute(insert(PbxGroupMember), rows)


async def _sync(
    session: AsyncSession,
    model: type[PbxUser] | type[PbxGroup],
    tenant_id: uuid.UUID,
    wanted: dict[str, dict[str, Any]],
) -> dict[str, uuid.UUID]:
    """Upserts rows by PBX id and deletes the rest; returns PBX id → row id."""
    existing = {
        pbx_id: row_id
        for pbx_id, row_id in await session.execute(
            select(model.pbx_id, model.id).where(model.tenant_id == tenant_id)
        )
    }
    gone = [row_id for pbx_id, row_id in existing.items() if pbx_id not in wanted]
    if gone:
        await session.execute(delete(model).where(model.id.in_(gone)))
    for pbx_id, values in wanted.items():
        if pbx_id in existing:
            await session.execute(
                update(model).where(model.id == existing[pbx_id]).values(**values)
            )
    new = [
        {"id": uuid.uuid4(), "tenant_id": tenant_id, "pbx_id": pbx_id, **values}
        for pbx_id, values in wanted.items()
        if pbx_id not in existing
    ]
    if new:
        await session.execute(insert(model), new)
    ids = {pbx_id: row_id for pbx_id, row_id in existing.items() if pbx_id in wanted}
    ids.update({row["pbx_id"]: row["id"] for row in new})
    return ids


async def pbx_user_ids(
    session: AsyncSession, tenant_id: uuid.UUID, pbx_ids: Iterable[str]
) -> dict[str, uuid.UUID]:
    """The mirror's user ids for PBX user ids, in one query; unknown ones are left out."""
    wanted = list(set(pbx_ids))
    if not wanted:
        return {}
    rows = await session.execute(
        select(PbxUser.pbx_id, PbxUser.id).where(
            PbxUser.tenant_id == tenant_id, PbxUser.pbx_id.in_(wanted)
        )
    )
    return {pbx_id: user_id for pbx_id, user_id in rows.all()}


async def pbx_user_id(
    session: AsyncSession, tenant_id: uuid.UUID, pbx_id: str | None
) -> uuid.UUID | None:
    if pbx_id is None:
        return None
    return await session.scalar(
        select(PbxUser.id).where(PbxUser.tenant_id == tenant_id, PbxUser.pbx_id == pbx_id)
    )

"""Replaces a tenant's PBX directory mirror with what the agent reported.

The wire shape (JSON from the agent):
``{"users": [{"id", "name", "extension", "description", "state", "callroutingOnly"}],
   "groups": [{"id", "name", "description", "memberIds": [...]}]}``
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.errors import BadInput
from api.models import PbxGroup, PbxGroupMember, PbxUser
from api.runtime import Runtime
from edge_agent.pbx import text as pbx_text

log = logging.getLogger(__name__)


def _entries(value: Any, kind: str) -> list[tuple[str, dict[str, Any]]]:
    """(PBX id, entry) for each entry with an id that can be stored; any other entry is
    left out alone (logged), never the directory."""
    if not isinstance(value, list):
        raise BadInput(f"directory: {kind} must be a list", field="result")
    entries = []
    for item in value:
        pbx_id = item.get("id") if isinstance(item, dict) else None
        if isinstance(pbx_id, str) and pbx_text.usable_id(pbx_id):
            entries.append((pbx_id, item))
        else:
            log.warning("directory: left out one of the %s without a usable id", kind)
    return entries


def _text(item: dict[str, Any], key: str, limit: int) -> str | None:
    """PBX text made storable by the agent's own rule (edge_agent/pbx/text.py): an older
    agent sends it raw, and one NUL must not keep the directory out."""
    value = item.get(key)
    return pbx_text.clean(value, limit) if isinstance(value, str) else None


async def replace(rt: Runtime, session: AsyncSession, tenant_id: uuid.UUID, snapshot: Any) -> None:
    if not isinstance(snapshot, dict):
        raise BadInput("directory: not an object", field="result")
    users_in = _entries(snapshot.get("users") or [], "users")
    groups_in = _entries(snapshot.get("groups") or [], "groups")
    now = rt.clock()
    users: dict[str, dict[str, Any]] = {}
    for pbx_id, item in users_in:
        state = item.get("state")
        extension = item.get("extension")
        users[pbx_id] = {
            "name": _text(item, "name", pbx_text.NAME_MAX) or pbx_id,
            "extension": pbx_text.extension(extension) if isinstance(extension, str) else None,
            "description": _text(item, "description", pbx_text.DESCRIPTION_MAX),
            "state": state if isinstance(state, int) and 0 <= state <= 8 else None,
            "callrouting_only": bool(item.get("callroutingOnly", False)),
            "synced_at": now,
        }
    user_ids = await _sync(session, PbxUser, tenant_id, users)
    groups: dict[str, dict[str, Any]] = {}
    members: dict[str, list[str]] = {}
    for pbx_id, item in groups_in:
        groups[pbx_id] = {
            "name": _text(item, "name", pbx_text.NAME_MAX) or pbx_id,
            "description": _text(item, "description", pbx_text.DESCRIPTION_MAX),
            "synced_at": now,
        }
        member_ids = item.get("memberIds")
        members[pbx_id] = [str(m) for m in member_ids] if isinstance(member_ids, list) else []
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

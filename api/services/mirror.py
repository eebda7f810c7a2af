"""Replaces a tenant's PBX directory mirror with what the agent reported.

The wire shape (JSON from the agent):
``{"users": [{"id", "name", "extension", "description", "state", "callroutingOnly"}],
   "groups": [{"id", "name", "description", "memberIds": [...]}],
   "partial": bool, "skippedIds": [...]}``

Two rules keep the mirror from going back or losing what the PBX still has
(issue 14, point 1, review points 2 to 4, 8; docs/decisions/poison-results.md):
- A snapshot is as of its command (the command's creation: the agent runs them in
  that order). The rows carry it as `synced_at`; a snapshot older than the newest
  applied one changes nothing, however late it arrives.
- A partial snapshot (the agent could not read some entries, or one was there
  twice) deletes nothing: an entry it lacks may be one it could not read, and
  deleting a group deletes its broadcast settings (PIN, quorum, announcements).
  Only a complete snapshot that lacks an entry deletes it.
Applies are serialised per tenant (the tenant's row locked), so two results
carrying a directory at once neither collide on the unique PBX ids nor overtake
each other.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.errors import BadInput
from api.models import PbxGroup, PbxGroupMember, PbxUser, Tenant
from api.runtime import Runtime
from edge_agent.pbx import text as pbx_text

log = logging.getLogger(__name__)


@dataclass
class _Read:
    """The entries of one kind, and whether some were left out."""

    entries: list[tuple[str, dict[str, Any]]]
    partial: bool


def _entries(value: Any, kind: str) -> _Read:
    """(PBX id, entry) for each entry with an id that can be stored, the first of two
    with one id (a second would give a member another's number); any other entry is
    left out alone (logged), never the directory, and makes the snapshot partial."""
    if not isinstance(value, list):
        raise BadInput(f"directory: {kind} must be a list", field="result")
    entries: list[tuple[str, dict[str, Any]]] = []
    seen: set[str] = set()
    partial = False
    for item in value:
        pbx_id = item.get("id") if isinstance(item, dict) else None
        if not (isinstance(pbx_id, str) and pbx_text.usable_id(pbx_id)):
            log.warning("directory: left out one of the %s without a usable id", kind)
            partial = True
        elif pbx_id in seen:
            log.warning("directory: left out a second of the %s with the id %r", kind, pbx_id)
            partial = True
        else:
            seen.add(pbx_id)
            entries.append((pbx_id, item))
    return _Read(entries, partial)


def _text(item: dict[str, Any], key: str, limit: int) -> str | None:
    """PBX text made storable by the agent's own rule (edge_agent/pbx/text.py): an older
    agent sends it raw, and one NUL must not keep the directory out."""
    value = item.get(key)
    return pbx_text.clean(value, limit) if isinstance(value, str) else None


async def lock_tenant(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    """Serialises the tenant's result applies until the transaction ends (a no-op on
    SQLite, whose writers are serialised anyway). FOR NO KEY UPDATE: it does not wait
    for, or block, rows that merely reference the tenant (a new command, a history row)."""
    await session.execute(
        select(Tenant.id).where(Tenant.id == tenant_id).with_for_update(key_share=True)
    )


async def _newest(session: AsyncSession, tenant_id: uuid.UUID) -> datetime | None:
    """As of when the mirror is: the newest snapshot applied."""
    users = await session.scalar(
        select(func.max(PbxUser.synced_at)).where(PbxUser.tenant_id == tenant_id)
    )
    groups = await session.scalar(
        select(func.max(PbxGroup.synced_at)).where(PbxGroup.tenant_id == tenant_id)
    )
    found = [t for t in (users, groups) if t is not None]
    return max(found) if found else None


def _same_zone(a: datetime, b: datetime) -> tuple[datetime, datetime]:
    """SQLite gives back naive times (UTC): compared as such."""
    if (a.tzinfo is None) != (b.tzinfo is None):
        return a.replace(tzinfo=None), b.replace(tzinfo=None)
    return a, b


async def replace(
    rt: Runtime,
    session: AsyncSession,
    tenant_id: uuid.UUID,
    snapshot: Any,
    as_of: datetime | None = None,
) -> bool:
    """Applies the snapshot unless the mirror holds a newer one; returns whether applied.

    `as_of`: the creation time of the command the snapshot came with (now if None).
    """
    if not isinstance(snapshot, dict):
        raise BadInput("directory: not an object", field="result")
    users_read = _entries(snapshot.get("users") or [], "users")
    groups_read = _entries(snapshot.get("groups") or [], "groups")
    skipped = snapshot.get("skippedIds")
    partial = (
        snapshot.get("partial") is True
        or bool(skipped)
        or users_read.partial
        or groups_read.partial
    )
    as_of = as_of or rt.clock()
    await lock_tenant(session, tenant_id)
    newest = await _newest(session, tenant_id)
    if newest is not None:
        mine, theirs = _same_zone(as_of, newest)
        if mine < theirs:
            log.info("directory: a snapshot older than the mirror's is not applied")
            return False
    users: dict[str, dict[str, Any]] = {}
    for pbx_id, item in users_read.entries:
        state = item.get("state")
        extension = item.get("extension")
        users[pbx_id] = {
            "name": _text(item, "name", pbx_text.NAME_MAX) or pbx_id,
            "extension": pbx_text.extension(extension) if isinstance(extension, str) else None,
            "description": _text(item, "description", pbx_text.DESCRIPTION_MAX),
            "state": state if isinstance(state, int) and 0 <= state <= 8 else None,
            "callrouting_only": bool(item.get("callroutingOnly", False)),
            "synced_at": as_of,
        }
    user_ids = await _sync(session, PbxUser, tenant_id, users, keep_others=partial)
    groups: dict[str, dict[str, Any]] = {}
    members: dict[str, list[str]] = {}
    for pbx_id, item in groups_read.entries:
        groups[pbx_id] = {
            "name": _text(item, "name", pbx_text.NAME_MAX) or pbx_id,
            "description": _text(item, "description", pbx_text.DESCRIPTION_MAX),
            "synced_at": as_of,
        }
        member_ids = item.get("memberIds")
        members[pbx_id] = [str(m) for m in member_ids] if isinstance(member_ids, list) else []
    group_ids = await _sync(session, PbxGroup, tenant_id, groups, keep_others=partial)
    if partial:
        # Only the memberships of the groups read: the others' stay as they were.
        log.warning("directory: a partial snapshot (entries left out): nothing deleted")
        user_ids = await _all_user_ids(session, tenant_id)
        for chunk in _chunks(list(group_ids.values())):
            await session.execute(delete(PbxGroupMember).where(PbxGroupMember.group_id.in_(chunk)))
    else:
        await session.execute(delete(PbxGroupMember).where(PbxGroupMember.tenant_id == tenant_id))
    rows = [
        {"group_id": group_ids[g], "user_id": user_ids[u], "tenant_id": tenant_id}
        for g, member_ids in members.items()
        for u in set(member_ids)
        if u in user_ids
    ]
    for chunk in _chunks(rows):
        await session.execute(insert(PbxGroupMember), chunk)
    return True


async def _all_user_ids(session: AsyncSession, tenant_id: uuid.UUID) -> dict[str, uuid.UUID]:
    rows = await session.execute(
        select(PbxUser.pbx_id, PbxUser.id).where(PbxUser.tenant_id == tenant_id)
    )
    return {pbx_id: user_id for pbx_id, user_id in rows.all()}


# Ids per statement: PostgreSQL takes at most 65,535 parameters in one, and a PBX may
# have 50,000 users (issue 14, point 1, review point 5).
CHUNK = 5000


def _chunks(items: list[Any]) -> Iterable[list[Any]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


async def _sync(
    session: AsyncSession,
    model: type[PbxUser] | type[PbxGroup],
    tenant_id: uuid.UUID,
    wanted: dict[str, dict[str, Any]],
    keep_others: bool,
) -> dict[str, uuid.UUID]:
    """Upserts rows by PBX id and deletes the rest unless `keep_others`; returns PBX id
    → row id of the rows wanted. In bulk: a statement per chunk, not per row."""
    existing = {
        pbx_id: row_id
        for pbx_id, row_id in await session.execute(
            select(model.pbx_id, model.id).where(model.tenant_id == tenant_id)
        )
    }
    gone = [row_id for pbx_id, row_id in existing.items() if pbx_id not in wanted]
    if gone and not keep_others:
        for chunk in _chunks(gone):
            await session.execute(delete(model).where(model.id.in_(chunk)))
    changed = [
        {"id": existing[pbx_id], **values}
        for pbx_id, values in wanted.items()
        if pbx_id in existing
    ]
    for chunk in _chunks(changed):
        # Bulk UPDATE by primary key (one executemany per chunk).
        await session.execute(update(model), chunk)
    new = [
        {"id": uuid.uuid4(), "tenant_id": tenant_id, "pbx_id": pbx_id, **values}
        for pbx_id, values in wanted.items()
        if pbx_id not in existing
    ]
    for chunk in _chunks(new):
        await session.execute(insert(model), chunk)
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

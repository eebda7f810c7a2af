"""Commands to a tenant's agent: written in the transaction of the change they carry."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.db import after_commit
from api.models import Command, CommandStatus, User
from api.runtime import Runtime
from api.services import licensing, notify
from api.services.actor import Actor


async def enqueue(
    session: AsyncSession,
    rt: Runtime,
    actor: Actor,
    type_: str,
    payload: dict[str, Any],
    secrets: dict[str, str] | None = None,
    expires_in: timedelta | None = None,
) -> Command:
    """Adds a pending command to the caller's transaction (it commits with the change).

    Every configuration change passes here, so here it needs a valid license.
    `expires_in`: how long it waits for the agent (default: the command expiry).
    """
    return await enqueue_for(
        session, rt, actor.own_tenant_id, actor.user_id, type_, payload, secrets, expires_in
    )


async def requested_by(session: AsyncSession, actor: Actor) -> str:
    """Who asked, as a command's `requestedBy` names them: "Name <email>"."""
    name, email = (
        await session.execute(select(User.name, User.email).where(User.id == actor.user_id))
    ).one()
    return f"{name} <{email}>"


async def enqueue_for(
    session: AsyncSession,
    rt: Runtime,
    tenant_id: uuid.UUID,
    created_by: uuid.UUID | None,
    type_: str,
    payload: dict[str, Any],
    secrets: dict[str, str] | None = None,
    expires_in: timedelta | None = None,
) -> Command:
    """`enqueue` for work no user does right now (a worker finishing what one asked for)."""
    now = rt.clock()
    if expires_in is None:
        expires_in = timedelta(seconds=rt.settings.command_expiry_seconds)
    await licensing.valid_license(session, tenant_id, now)
    command = Command(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        created_by=created_by,
        type=type_,
        payload=payload,
        sealed_payload=rt.box.seal(json.dumps(secrets)) if secrets else None,
        status=CommandStatus.PENDING,
        created_at=now,
        expires_at=now + expires_in,
    )
    session.add(command)
    after_commit(session, lambda: notify.command_created(rt, tenant_id, command.id))
    return command


async def list_commands(
    rt: Runtime,
    actor: Actor,
    tenant_id: uuid.UUID | None,
    status: CommandStatus | None,
    limit: int,
) -> list[Command]:
    scope = actor.read_scope(tenant_id)
    query = select(Command).where(scope.where(Command))
    if status is not None:
        query = query.where(Command.status == status)
    query = query.order_by(Command.created_at.desc()).limit(max(1, min(limit, 200)))
    async with rt.db.reading() as session:
        return list((await session.scalars(query)).all())


async def get_command(rt: Runtime, actor: Actor, command_id: uuid.UUID) -> Command:
    async with rt.db.reading() as session:
        return await actor.read_scope().get(session, Command, command_id)

"""The tenant's PBX settings and credentials check."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from api.domain import validation
from api.errors import BadInput, NotFound
from api.models import Command, PbxSettings, Tenant, VerificationState
from api.runtime import Runtime
from api.services import audit, commands
from api.services.actor import Actor


async def _settings_row(session: AsyncSession, tenant_id: uuid.UUID, lock: bool) -> PbxSettings:
    row = await session.get(PbxSettings, tenant_id, with_for_update=lock)
    if row is None:
        row = PbxSettings(
            tenant_id=tenant_id,
            poll_interval_seconds=60,
            broadcast_timeout_seconds=300,
            verification_state=VerificationState.UNVERIFIED,
        )
        session.add(row)
        await session.flush()
    return row


async def get_settings(rt: Runtime, actor: Actor, tenant_id: uuid.UUID | None) -> PbxSettings:
    scope = actor.read_scope(tenant_id)
    if scope.tenant_id is None:
        raise BadInput("name the tenant", field="tenantId")
    async with rt.db.reading() as session:
        row = await session.get(PbxSettings, scope.tenant_id)
        if row is None and await session.get(Tenant, scope.tenant_id) is None:
            raise NotFound("tenant not found")
    return row or PbxSettings(
        tenant_id=scope.tenant_id,
        poll_interval_seconds=60,
        broadcast_timeout_seconds=300,
        verification_state=VerificationState.UNVERIFIED,
    )


@dataclass(frozen=True)
class SettingsChanges:
    host: str | None = None
    admin_user: str | None = None
    admin_password: str | None = None
    poll_interval_seconds: int | None = None
    broadcast_timeout_seconds: int | None = None


async def update_settings(
    rt: Runtime, actor: Actor, changes: SettingsChanges
) -> tuple[PbxSettings, Command | None]:
    """Saves the settings; what the agent must know travels as a command in the same commit."""
    scope = actor.write_scope()
    # Everything is checked before anything is written.
    host = validation.host(changes.host) if changes.host is not None else None
    user = validation.name(changes.admin_user, "adminUser") if changes.admin_user else None
    if changes.admin_password is not None and not 1 <= len(changes.admin_password) <= 256:
        raise BadInput("1 to 256 characters", field="adminPassword")
    poll = changes.poll_interval_seconds
    if poll is not None:
        validation.in_range(poll, validation.POLL_MIN, validation.POLL_MAX, "pollIntervalSeconds")
    timeout = changes.broadcast_timeout_seconds
    if timeout is not None:
        validation.in_range(
            timeout, validation.TIMEOUT_MIN, validation.TIMEOUT_MAX, "broadcastTimeoutSeconds"
        )
    assert scope.tenant_id is not None
    command: Command | None = None
    async with rt.db.transaction() as session:
        row = await _settings_row(session, scope.tenant_id, lock=True)
        credentials_changed = False
        if host is not None and host != row.host:
            row.host, credentials_changed = host, True
        if user is not None and user != row.admin_user:
            row.admin_user, credentials_changed = user, True
        if changes.admin_password is not None:
            row.admin_password_sealed, credentials_changed = (
                rt.box.seal(changes.admin_password),
                True,
            )
        if credentials_changed:
            row.verification_state = VerificationState.UNVERIFIED
            row.verification_error = None
        agent_changes: dict[str, int] = {}
        if poll is not None and poll != row.poll_interval_seconds:
            row.poll_interval_seconds = agent_changes["pollIntervalSeconds"] = poll
        if timeout is not None and timeout != row.broadcast_timeout_seconds:
            row.broadcast_timeout_seconds = agent_changes["broadcastTimeoutSeconds"] = timeout
        row.updated_at = rt.clock()
        if agent_changes:
            command = await commands.enqueue(session, rt, actor, "updateSettings", agent_changes)
        audit.record(
            session,
            actor,
            "pbx_settings.update",
            tenant_id=scope.tenant_id,
            credentials_changed=credentials_changed,
            **agent_changes,
        )
    return row, command


async def verify_credentials(rt: Runtime, actor: Actor) -> tuple[PbxSettings, Command]:
    """Asks the agent to sign in to the PBX with the stored credentials."""
    scope = actor.write_scope()
    assert scope.tenant_id is not None
    async with rt.db.transaction() as session:
        row = await _settings_row(session, scope.tenant_id, lock=True)
        if not row.host or not row.admin_user or not row.admin_password_sealed:
            raise BadInput("enter the PBX host, admin user and password first", field="host")
        row.verification_state = VerificationState.PENDING
        row.verification_error = None
        command = await commands.enqueue(
            session,
            rt,
            actor,
            "verifyPbxCredentials",
            {"host": row.host, "adminUser": row.admin_user},
            secrets={"adminPassword": rt.box.open(row.admin_password_sealed)},
        )
        audit.record(
            session, actor, "pbx.verify", tenant_id=scope.tenant_id, command=str(command.id)
        )
    return row, command

"""Platform administration: tenants, licenses, users and installations."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api.db import after_commit
from api.domain import validation
from api.errors import BadInput, Conflict, NotFound
from api.models import Installation, Language, License, Role, Tenant, User
from api.pubsub import tenant_events
from api.runtime import Runtime
from api.security import MIN_PASSWORD_LENGTH, hash_password, hash_token, new_token
from api.services import audit, commands, notify
from api.services.actor import Actor
from api.services.auth import revoke_sessions_of
from api.services.connection import Watched, poll_seconds, watched

# --- tenants -------------------------------------------------------------------


async def list_tenants(rt: Runtime, actor: Actor) -> list[Tenant]:
    actor.require_platform_admin()
    async with rt.db.reading() as session:
        return list((await session.scalars(select(Tenant).order_by(Tenant.name))).all())


async def get_tenant(rt: Runtime, actor: Actor, tenant_id: uuid.UUID) -> Tenant:
    scope = actor.read_scope(tenant_id)
    async with rt.db.reading() as session:
        tenant = await session.get(Tenant, tenant_id)
    if tenant is None or (scope.tenant_id is not None and tenant.id != scope.tenant_id):
        raise NotFound("tenant not found")
    return tenant


async def create_tenant(
    rt: Runtime, actor: Actor, name: str, language: Language, contact_email: str | None
) -> Tenant:
    actor.require_platform_admin()
    tenant = Tenant(
        name=validation.name(name, "name"),
        language=language,
        contact_email=validation.email(contact_email, "contactEmail") if contact_email else None,
    )
    try:
        async with rt.db.transaction() as session:
            session.add(tenant)
            await session.flush()
            audit.record(session, actor, "tenant.create", tenant_id=tenant.id, target=tenant.id)
    except IntegrityError:
        raise Conflict("a tenant with this name exists already", field="name") from None
    return tenant


@dataclass(frozen=True)
class TenantChanges:
    name: str | None = None
    language: Language | None = None
    contact_email: str | None = None
    active: bool | None = None


async def update_tenant(
    rt: Runtime, actor: Actor, tenant_id: uuid.UUID, changes: TenantChanges
) -> Tenant:
    actor.require_platform_admin()
    try:
        async with rt.db.transaction() as session:
            tenant = await session.get(Tenant, tenant_id, with_for_update=True)
            if tenant is None:
                raise NotFound("tenant not found")
            if changes.name is not None:
                tenant.name = validation.name(changes.name, "name")
            if changes.language is not None and changes.language != tenant.language:
                tenant.language = changes.language
                await _push_language(rt, session, actor, tenant)
            if changes.contact_email is not None:
                tenant.contact_email = (
                    validation.email(changes.contact_email, "contactEmail")
                    if changes.contact_email
                    else None
                )
            if changes.active is not None and changes.active != tenant.active:
                tenant.active = changes.active
                tenant.deactivated_at = None if changes.active else rt.clock()
            await session.flush()
            audit.record(
                session,
                actor,
                "tenant.update",
                tenant_id=tenant.id,
                target=tenant.id,
                fields=[k for k, v in vars(changes).items() if v is not None],
            )
    except IntegrityError:
        raise Conflict("a tenant with this name exists already", field="name") from None
    return tenant


async def _push_language(rt: Runtime, session: AsyncSession, actor: Actor, tenant: Tenant) -> None:
    """Tells the tenant's agent the new language at once: its own trigger-call line speaks
    it. Without a valid license no command goes out (configuration is blocked then); the
    heartbeat's answer brings the language all the same (agents.HealthAnswer)."""
    payload = {"language": tenant.language.value}
    with contextlib.suppress(Conflict):
        await commands.enqueue_for(session, rt, tenant.id, actor.user_id, "updateSettings", payload)


# --- licenses ------------------------------------------------------------------


async def list_licenses(rt: Runtime, actor: Actor, tenant_id: uuid.UUID | None) -> list[License]:
    scope = actor.read_scope(tenant_id)
    async with rt.db.reading() as session:
        rows = await session.scalars(
            select(License).where(scope.where(License)).order_by(License.created_at.desc())
        )
        return list(rows.all())


async def issue_license(
    rt: Runtime, actor: Actor, tenant_id: uuid.UUID, seats: int, valid_until: datetime
) -> tuple[License, str]:
    """A new license; the key is returned here once and only its hash is kept."""
    actor.require_platform_admin()
    validation.in_range(seats, 1, validation.SEATS_MAX, "seats")
    if valid_until.tzinfo is None:
        raise BadInput(
            "give the time with its zone (e.g. 2027-12-31T23:59:59Z)", field="validUntil"
        )
    if valid_until <= rt.clock():
        raise BadInput("must lie in the future", field="validUntil")
    key = new_token("rdl")
    async with rt.db.transaction() as session:
        if await session.get(Tenant, tenant_id) is None:
            raise NotFound("tenant not found")
        lic = License(
            tenant_id=tenant_id,
            key_hash=hash_token(key),
            key_prefix=key[:10],
            seats=seats,
            valid_until=valid_until,
        )
        session.add(lic)
        await session.flush()
        audit.record(
            session, actor, "license.issue", tenant_id=tenant_id, target=lic.id, seats=seats
        )
    return lic, key


async def revoke_license(rt: Runtime, actor: Actor, license_id: uuid.UUID) -> License:
    actor.require_platform_admin()
    async with rt.db.transaction() as session:
        lic = await session.get(License, license_id, with_for_update=True)
        if lic is None:
            raise NotFound("license not found")
        if lic.revoked_at is None:
            lic.revoked_at = rt.clock()
            audit.record(session, actor, "license.revoke", tenant_id=lic.tenant_id, target=lic.id)
            ids = list(
                await session.scalars(
                    select(Installation.id).where(Installation.license_id == lic.id)
                )
            )
            after_commit(session, lambda: notify.revoked(rt, ids))
            # The tenant's pages see at once that its agent may no longer connect.
            after_commit(
                session,
                lambda: rt.hub.publish(tenant_events(lic.tenant_id), notify.event("health")),
            )
    return lic


# --- users ---------------------------------------------------------------------


async def list_users(rt: Runtime, actor: Actor, tenant_id: uuid.UUID | None) -> list[User]:
    actor.require_platform_admin()
    async with rt.db.reading() as session:
        query = select(User).order_by(User.email)
        if tenant_id is not None:
            query = query.where(User.tenant_id == tenant_id)
        return list((await session.scalars(query)).all())


def _check_role_and_tenant(role: Role, tenant_id: uuid.UUID | None) -> None:
    if role is Role.PLATFORM_ADMIN and tenant_id is not None:
        raise BadInput("platform administrators belong to no tenant", field="tenantId")
    if role is not Role.PLATFORM_ADMIN and tenant_id is None:
        raise BadInput("tenant users need a tenant", field="tenantId")


async def create_user(
    rt: Runtime,
    actor: Actor | None,
    *,
    email: str,
    name: str,
    role: Role,
    password: str,
    tenant_id: uuid.UUID | None,
    language: Language = Language.DE,
) -> User:
    """Creates a user; ``actor`` is None only for the command-line bootstrap."""
    if actor is not None:
        actor.require_platform_admin()
    _check_role_and_tenant(role, tenant_id)
    validation.password(password, MIN_PASSWORD_LENGTH)
    user = User(
        email=validation.email(email),
        name=validation.name(name, "name"),
        role=role,
        password_hash=await asyncio.to_thread(hash_password, password),
        tenant_id=tenant_id,
        language=language,
    )
    try:
        async with rt.db.transaction() as session:
            if tenant_id is not None and await session.get(Tenant, tenant_id) is None:
                raise NotFound("tenant not found")
            session.add(user)
            await session.flush()
            audit.record(
                session, actor, "user.create", tenant_id=tenant_id, target=user.id, role=role.value
            )
    except IntegrityError:
        raise Conflict("a user with this e-mail address exists already", field="email") from None
    return user


@dataclass(frozen=True)
class UserChanges:
    name: str | None = None
    role: Role | None = None
    language: Language | None = None
    active: bool | None = None
    password: str | None = None


async def update_user(rt: Runtime, actor: Actor, user_id: uuid.UUID, changes: UserChanges) -> User:
    actor.require_platform_admin()
    new_hash = None
    if changes.password is not None:
        validation.password(changes.password, MIN_PASSWORD_LENGTH)
        new_hash = await asyncio.to_thread(hash_password, changes.password)
    async with rt.db.transaction() as session:
        user = await session.get(User, user_id, with_for_update=True)
        if user is None:
            raise NotFound("user not found")
        if user.id == actor.user_id and (changes.active is False or changes.role is not None):
            raise Conflict("you cannot deactivate yourself or change your own role")
        if changes.name is not None:
            user.name = validation.name(changes.name, "name")
        if changes.role is not None:
            _check_role_and_tenant(changes.role, user.tenant_id)
            user.role = changes.role
        if changes.language is not None:
            user.language = changes.language
        if new_hash is not None:
            user.password_hash = new_hash
            user.password_changed_at = rt.clock()
        if changes.active is not None:
            user.active = changes.active
        if changes.active is False or changes.password is not None or changes.role is not None:
            await revoke_sessions_of(session, user.id, rt.clock())
        audit.record(
            session,
            actor,
            "user.update",
            tenant_id=user.tenant_id,
            target=user.id,
            fields=[k for k, v in vars(changes).items() if v is not None],
        )
    return user


# --- installations ---------------------------------------------------------------


async def revoke_installation(rt: Runtime, actor: Actor, installation_id: uuid.UUID) -> Watched:
    actor.require_platform_admin()
    async with rt.db.transaction() as session:
        inst = await session.get(Installation, installation_id, with_for_update=True)
        if inst is None:
            raise NotFound("installation not found")
        if inst.revoked_at is None:
            inst.revoked_at = rt.clock()
            audit.record(
                session, actor, "installation.revoke", tenant_id=inst.tenant_id, target=inst.id
            )
            after_commit(session, lambda: notify.revoked(rt, [inst.id]))
            # The tenant's pages see at once that no agent may connect any more.
            after_commit(
                session,
                lambda: rt.hub.publish(
                    tenant_events(inst.tenant_id), notify.event("health", inst.id)
                ),
            )
        poll = await poll_seconds(session, inst.tenant_id)
    return watched(inst, poll, rt.clock())

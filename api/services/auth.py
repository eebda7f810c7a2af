"""Signing in and out, sessions, password changes, and login throttling."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.domain import validation
from api.domain.device_cookie import issue, known_nonce
from api.domain.login_throttle import account_key, client_key, keys
from api.errors import BadInput, Conflict, Unauthenticated
from api.models import Session, Tenant, User
from api.runtime import Runtime
from api.security import (
    MIN_PASSWORD_LENGTH,
    hash_password,
    hash_token,
    new_token,
    password_needs_rehash,
    verify_password,
)
from api.services import audit, login_throttle
from api.services.actor import Actor


@dataclass(frozen=True)
class SignIn:
    token: str
    expires_at: datetime
    user: User
    # The device cookie's new value, and until when the browser keeps it.
    device_cookie: str
    device_expires_at: datetime


# RFC 5321's longest address; anything longer is refused before any work is done.
MAX_EMAIL_LENGTH = 320


async def login(
    rt: Runtime, email: str, password: str, client: str, device_cookie: str | None = None
) -> SignIn:
    """Signs in, throttled (docs/decisions/login-throttle.md): an attempt with a
    device cookie this account issued passes only its device's counter; any
    other passes its pair's, account's and address's counters."""
    if len(email) > MAX_EMAIL_LENGTH:
        raise BadInput("not a valid e-mail address", field="email")
    now = rt.clock()
    secret = rt.settings.fernet_key
    email = email.strip().lower()
    account = account_key(secret, email)
    device = known_nonce(secret, account, device_cookie, now)
    claim = await login_throttle.admit(rt, keys(secret, account, client_key(client), device), now)
    async with rt.db.reading() as session:
        row = (
            await session.execute(
                select(User, Tenant.active)
                .outerjoin(Tenant, Tenant.id == User.tenant_id)
                .where(User.email == email)
            )
        ).first()
    user: User | None = row[0] if row else None
    tenant_active = row[1] if row else None
    # argon2id takes tens of milliseconds: off the event loop.
    ok = await asyncio.to_thread(verify_password, user.password_hash if user else None, password)
    if user is None or not ok or not user.active or tenant_active is False:
        await login_throttle.failed(rt, claim, rt.clock())
        # The same words for every reason, so the answer tells no account apart.
        raise Unauthenticated("wrong e-mail address or password")
    token = new_token("rds")
    expires = now + timedelta(seconds=rt.settings.session_ttl_seconds)
    rehash = password_needs_rehash(user.password_hash)
    new_hash = await asyncio.to_thread(hash_password, password) if rehash else None
    async with rt.db.transaction() as session:
        await login_throttle.succeeded(session, claim, now)
        session.add(Session(user_id=user.id, token_hash=hash_token(token), expires_at=expires))
        values: dict[str, object] = {"last_login_at": now}
        if new_hash is not None:
            values["password_hash"] = new_hash
        await session.execute(update(User).where(User.id == user.id).values(**values))
    device_expires = now + timedelta(days=rt.settings.device_cookie_days)
    return SignIn(
        token=token,
        expires_at=expires,
        user=user,
        device_cookie=issue(secret, account, device_cookie, device_expires),
        device_expires_at=device_expires,
    )


async def actor_for_token(rt: Runtime, token: str) -> Actor:
    """The signed-in user behind a session token, or UNAUTHENTICATED."""
    now = rt.clock()
    async with rt.db.reading() as session:
        row = (
            await session.execute(
                select(Session.id, User.id, User.tenant_id, User.role)
                .join(User, User.id == Session.user_id)
                .outerjoin(Tenant, Tenant.id == User.tenant_id)
                .where(
                    Session.token_hash == hash_token(token),
                    Session.revoked_at.is_(None),
                    Session.expires_at > now,
                    User.active.is_(True),
                    or_(User.tenant_id.is_(None), Tenant.active.is_(True)),
                )
            )
        ).first()
    if row is None:
        raise Unauthenticated("the session has expired or was signed out; please sign in")
    session_id, user_id, tenant_id, role = row
    return Actor(user_id=user_id, tenant_id=tenant_id, role=role, session_id=session_id)


async def logout(rt: Runtime, actor: Actor) -> None:
    async with rt.db.transaction() as session:
        await session.execute(
            update(Session).where(Session.id == actor.session_id).values(revoked_at=rt.clock())
        )


async def me(rt: Runtime, actor: Actor) -> User:
    async with rt.db.reading() as session:
        user = await session.get(User, actor.user_id)
    assert user is not None
    return user


async def change_password(rt: Runtime, actor: Actor, current: str, new: str) -> None:
    validation.password(new, MIN_PASSWORD_LENGTH, field="newPassword")
    if new == current:
        raise BadInput("the new password must differ from the current one", field="newPassword")
    async with rt.db.reading() as session:
        known = await session.scalar(select(User.password_hash).where(User.id == actor.user_id))
    if not await asyncio.to_thread(verify_password, known, current):
        raise BadInput("the current password is wrong", field="currentPassword")
    new_hash = await asyncio.to_thread(hash_password, new)
    async with rt.db.transaction() as session:
        user = await session.get(User, actor.user_id, with_for_update=True)
        assert user is not None
        if user.password_hash != known:
            raise Conflict("the password was changed meanwhile; sign in again")
        user.password_hash = new_hash
        user.password_changed_at = rt.clock()
        # Other sessions end: whoever knew the old password is signed out.
        await session.execute(
            update(Session)
            .where(Session.user_id == user.id, Session.id != actor.session_id)
            .where(Session.revoked_at.is_(None))
            .values(revoked_at=rt.clock())
        )
        audit.record(session, actor, "password.change", tenant_id=user.tenant_id, target=user.id)


async def revoke_sessions_of(session: AsyncSession, user_id: uuid.UUID, now: datetime) -> None:
    await session.execute(
        update(Session)
        .where(Session.user_id == user_id, Session.revoked_at.is_(None))
        .values(revoked_at=now)
    )

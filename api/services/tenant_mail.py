"""Mails to a tenant's contact and administrators, written to the outbox in the caller's
transaction and sent by the mail worker (woken after the commit)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api import tasks
from api.domain.notices import Mail
from api.models import Email, EmailStatus, Language, Role, Tenant, User
from api.runtime import Runtime


async def recipients(session: AsyncSession, tenant: Tenant) -> dict[str, Language]:
    """The tenant's contact and active administrators, in the tenant's language; the
    contact address is often an admin's too: one mail per address."""
    admins = await session.scalars(
        select(User.email).where(
            User.tenant_id == tenant.id,
            User.role == Role.TENANT_ADMIN,
            User.active.is_(True),
        )
    )
    addresses: dict[str, Language] = {}
    for address in [*([tenant.contact_email] if tenant.contact_email else []), *admins]:
        addresses.setdefault(address.lower(), tenant.language)
    return addresses


def queue(
    rt: Runtime,
    tenant_id: uuid.UUID,
    addresses: dict[str, Language],
    mail: Callable[[Language], Mail],
) -> list[Email]:
    """One outbox row per address, its text in the address's language."""
    now = rt.clock()
    texts = {language: mail(language) for language in set(addresses.values())}
    return [
        Email(
            tenant_id=tenant_id,
            to_address=address,
            subject=texts[language].subject,
            body=texts[language].body,
            language=language,
            status=EmailStatus.QUEUED,
            next_attempt_at=now,
            created_at=now,
        )
        for address, language in addresses.items()
    ]


async def wake_mailer(rt: Runtime, mail_ids: list[str]) -> None:
    # Sooner than the next mail sweep, which would find them anyway.
    for mail_id in mail_ids:
        await rt.tasks.wake(tasks.SEND_MAIL, mail_id)

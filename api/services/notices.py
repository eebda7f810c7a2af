"""Notices the agent forwards from the PBX host: mails to the tenant.

Wrong PINs mail the tenant; a damaged job file (an accepted alarm that never ran)
mails the tenant and support and leaves a failed trigger in the history
(damaged_jobs.py, which shares the recipients and the outbox rows made here).

The job service may forward a notice more than once (a retry after a lost
answer); its id makes the repeat a no-op. A wrong-PIN notice's id is kept in its
audit entry, and the installation's row lock makes a repeat racing the first one
wait and then find it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import partial

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api import tasks
from api.db import after_commit
from api.domain import notices
from api.domain.notices import Notice
from api.models import (
    AuditLog,
    BroadcastGroup,
    Email,
    EmailStatus,
    Installation,
    Language,
    PbxGroup,
    Role,
    Tenant,
    User,
)
from api.runtime import Runtime
from api.services import audit, damaged_jobs
from api.services.agents import Agent

ACTION = "notice.report"


async def report(rt: Runtime, agent: Agent, notice: Notice) -> bool:
    """Writes the notice's mails once; True when it was new, False for a repeat."""
    if notice.kind == notices.JOB_FILE_DAMAGED:
        return await damaged_jobs.report(rt, agent, notice)
    notice = notices.checked(notice, rt.clock())
    async with rt.db.transaction() as session:
        # Not scrubbed: a notice holds identifiers and numbers only (its id, the agent's
        # and the caller's number, a file name), no free text; they are used as they came
        # (docs/decisions/secrets-in-errors.md).
        await session.execute(
            select(Installation.id)
            .where(Installation.id == agent.installation_id)
            .with_for_update()
        )
        seen = await session.scalar(
            select(AuditLog.id)
            .where(
                AuditLog.tenant_id == agent.tenant_id,
                AuditLog.action == ACTION,
                AuditLog.target == str(agent.installation_id),
                AuditLog.details["notice_id"].as_string() == notice.notice_id,
            )
            .limit(1)
        )
        if seen is not None:
            return False
        tenant = await session.get(Tenant, agent.tenant_id)
        assert tenant is not None  # the agent's token was checked against an active tenant
        _, group_name = await group_of(session, agent, notice.agent_number)
        addresses = await recipients(session, tenant)
        mail = partial(notices.wrong_pins_mail, notice=notice, group_name=group_name)
        rows = queue(rt, agent, addresses, mail)
        session.add_all(rows)
        await session.flush()
        after_commit(session, partial(wake_mailer, rt, [str(row.id) for row in rows]))
        audit.record(
            session,
            None,
            ACTION,
            tenant_id=agent.tenant_id,
            target=agent.installation_id,
            notice_id=notice.notice_id,
            kind=notice.kind,
            agent_number=notice.agent_number,
            caller_number=notice.caller_number,
            count=notice.count,
            at=notice.at.isoformat(),
            file_name=notice.file_name,
            mails=len(addresses),
        )
    return True


async def group_of(
    session: AsyncSession, agent: Agent, agent_number: str | None
) -> tuple[uuid.UUID | None, str | None]:
    """The broadcast group that has this number, and its PBX group's name."""
    if not agent_number:
        return None, None
    row = (
        await session.execute(
            select(BroadcastGroup.id, PbxGroup.name)
            .join(PbxGroup, BroadcastGroup.group_id == PbxGroup.id)
            .where(
                BroadcastGroup.tenant_id == agent.tenant_id,
                BroadcastGroup.agent_extension == agent_number,
            )
            .limit(1)
        )
    ).first()
    return (row.id, row.name) if row else (None, None)


def queue(
    rt: Runtime,
    agent: Agent,
    addresses: dict[str, Language],
    mail: Callable[[Language], notices.Mail],
) -> list[Email]:
    """One outbox row per address, its text in the address's language."""
    now = rt.clock()
    texts = {language: mail(language) for language in set(addresses.values())}
    return [
        Email(
            tenant_id=agent.tenant_id,
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


async def wake_mailer(rt: Runtime, mail_ids: list[str]) -> None:
    # Sooner than the next mail sweep, which would find them anyway.
    for mail_id in mail_ids:
        await rt.tasks.wake(tasks.SEND_MAIL, mail_id)

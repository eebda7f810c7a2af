"""Notices the agent forwards from the PBX (10 wrong PINs, say): mails to the tenant.

The job service may forward a notice more than once (a retry after a lost
answer); its id makes the repeat a no-op. The id is kept in the notice's audit
entry, and the installation's row lock makes a repeat racing the first one wait
and then find it.
"""

from __future__ import annotations

from functools import partial

from sqlalchemy import select

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
    PbxGroup,
    Role,
    Tenant,
    User,
)
from api.runtime import Runtime
from api.services import audit, known_secrets
from api.services.agents import Agent

ACTION = "notice.report"


async def report(rt: Runtime, agent: Agent, notice: Notice) -> bool:
    """Writes the notice's mails once; True when it was new, False for a repeat."""
    notice = notices.checked(notice, rt.clock())
    async with rt.db.transaction() as session:
        # Its texts go into mails and the audit log: none with a secret of the tenant.
        notice = (await known_secrets.for_tenant(rt, session, agent.tenant_id)).fields(notice)
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
        group_name = (
            await session.scalar(
                select(PbxGroup.name)
                .join(BroadcastGroup, BroadcastGroup.group_id == PbxGroup.id)
                .where(
                    BroadcastGroup.tenant_id == agent.tenant_id,
                    BroadcastGroup.agent_extension == notice.agent_number,
                )
                .limit(1)
            )
            if notice.agent_number
            else None
        )
        mail = notices.wrong_pins_mail(tenant.language, notice, group_name)
        admins = await session.scalars(
            select(User.email).where(
                User.tenant_id == agent.tenant_id,
                User.role == Role.TENANT_ADMIN,
                User.active.is_(True),
            )
        )
        # The contact address is often an admin's too: one mail per address.
        recipients = dict.fromkeys(
            a.lower() for a in [*([tenant.contact_email] if tenant.contact_email else []), *admins]
        )
        now = rt.clock()
        rows = [
            Email(
                tenant_id=agent.tenant_id,
                to_address=address,
                subject=mail.subject,
                body=mail.body,
                language=tenant.language,
                status=EmailStatus.QUEUED,
                next_attempt_at=now,
                created_at=now,
            )
            for address in recipients
        ]
        session.add_all(rows)
        await session.flush()
        after_commit(session, partial(_wake_mailer, rt, [str(row.id) for row in rows]))
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
            mails=len(recipients),
        )
    return True


async def _wake_mailer(rt: Runtime, mail_ids: list[str]) -> None:
    # Sooner than the next mail sweep, which would find them anyway.
    for mail_id in mail_ids:
        await rt.tasks.wake(tasks.SEND_MAIL, mail_id)

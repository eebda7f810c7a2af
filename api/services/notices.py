"""Notices the agent forwards from the PBX host: mails to the tenant.

Wrong PINs mail the tenant; a damaged job file (an accepted alarm that never ran)
mails the tenant and support and leaves a failed trigger in the history
(damaged_jobs.py, which shares the PBX group lookup and the audit entry made here;
both mail through tenant_mail.py).

The job service may forward a notice more than once (a retry after a lost
answer); its id makes the repeat a no-op. A wrong-PIN notice's id is kept in its
audit entry, and the installation's row lock makes a repeat racing the first one
wait and then find it.
"""

from __future__ import annotations

import uuid
from functools import partial

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.db import after_commit
from api.domain import notices
from api.domain.notices import Notice
from api.models import AuditLog, BroadcastGroup, Installation, PbxGroup, Tenant
from api.runtime import Runtime
from api.services import audit, damaged_jobs, tenant_mail
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
        addresses = await tenant_mail.recipients(session, tenant)
        mail = partial(notices.wrong_pins_mail, notice=notice, group_name=group_name)
        rows = tenant_mail.queue(rt, agent.tenant_id, addresses, mail)
        session.add_all(rows)
        await session.flush()
        after_commit(session, partial(tenant_mail.wake_mailer, rt, [str(row.id) for row in rows]))
        record(session, agent, notice, mails=len(addresses))
    return True


def record(
    session: AsyncSession, agent: Agent, notice: Notice, *, mails: int, **extra: object
) -> None:
    """The audit entry that keeps the notice's id (the repeat check reads it) and what
    was mailed; ``extra`` details stand before the file name."""
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
        **extra,
        file_name=notice.file_name,
        mails=mails,
    )


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

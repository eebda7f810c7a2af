"""A damaged job file the agent reports (``jobFileDamaged``): a failed trigger in the
history, mails to the tenant and support, once per file and tenant.

The key is the history row's own unique key, (tenant, agent id = the notice's key):
the repeat check reads it through its index, and the insert runs in a savepoint, so
a second installation of the same tenant reporting the same file (a re-enrolled
host) finds the first row or loses the race to it and gets "not stored", never a
server error. Mails are bounded per installation and hour (MAILS_PER_HOUR, then one
summary, then the history only), so no agent token can flood support.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from functools import partial

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api.db import after_commit
from api.domain import damaged_jobs, notices
from api.domain.damaged_jobs import MAILS_PER_HOUR, Place
from api.domain.notices import Notice
from api.models import (
    AuditLog,
    Broadcast,
    BroadcastMode,
    BroadcastStatus,
    Installation,
    Language,
    Tenant,
)
from api.pubsub import tenant_events
from api.runtime import Runtime
from api.services import notices as notice_mails
from api.services import notify, tenant_mail
from api.services.agents import Agent

MAIL_WINDOW = timedelta(hours=1)


async def report(rt: Runtime, agent: Agent, notice: Notice) -> bool:
    """Writes the failed trigger and its mails once; True when new, False for a repeat."""
    now = rt.clock()
    notice = damaged_jobs.checked(notice, now)
    async with rt.db.transaction() as session:
        await session.execute(
            select(Installation.id)
            .where(Installation.id == agent.installation_id)
            .with_for_update()
        )
        if await _known(session, agent, notice.notice_id):
            return False
        tenant = await session.get(Tenant, agent.tenant_id)
        assert tenant is not None  # the agent's token was checked against an active tenant
        group_id, group_name = await notice_mails.group_of(session, agent, notice.agent_number)
        broadcast_id = await _failed_trigger(session, agent, notice, group_id, group_name)
        if broadcast_id is None:
            return False  # the same file, stored meanwhile by another installation
        after_commit(
            session,
            lambda: rt.hub.publish(
                tenant_events(agent.tenant_id), notify.event("broadcast", broadcast_id)
            ),
        )
        sent = await _mails_this_hour(session, agent, now - MAIL_WINDOW)
        addresses: dict[str, Language] = {}
        if sent <= MAILS_PER_HOUR:
            addresses = await tenant_mail.recipients(session, tenant)
            if rt.settings.support_email:
                support = Language(rt.settings.support_language)
                addresses.setdefault(rt.settings.support_email.lower(), support)
        hostname = await session.scalar(
            select(Installation.hostname).where(Installation.id == agent.installation_id)
        )
        place = Place(tenant_name=tenant.name, hostname=hostname, group_name=group_name)
        text = damaged_jobs.mail if sent < MAILS_PER_HOUR else damaged_jobs.summary_mail
        mail = partial(text, notice=notice, place=place)
        rows = tenant_mail.queue(rt, agent.tenant_id, addresses, mail)
        session.add_all(rows)
        await session.flush()
        after_commit(session, partial(tenant_mail.wake_mailer, rt, [str(row.id) for row in rows]))
        notice_mails.record(session, agent, notice, mails=len(addresses), at_known=notice.at_known)
    return True


async def _known(session: AsyncSession, agent: Agent, key: str) -> bool:
    found = await session.scalar(
        select(Broadcast.id)
        .where(Broadcast.tenant_id == agent.tenant_id, Broadcast.agent_broadcast_id == key)
        .limit(1)
    )
    return found is not None


async def _mails_this_hour(session: AsyncSession, agent: Agent, since: object) -> int:
    """Damaged-job reports of this installation within the window (ix_audit_log_tenant_at)."""
    count = await session.scalar(
        select(func.count())
        .select_from(AuditLog)
        .where(
            AuditLog.tenant_id == agent.tenant_id,
            AuditLog.at >= since,
            AuditLog.action == notice_mails.ACTION,
            AuditLog.target == str(agent.installation_id),
            AuditLog.details["kind"].as_string() == notices.JOB_FILE_DAMAGED,
        )
    )
    return int(count or 0)


async def _failed_trigger(
    session: AsyncSession,
    agent: Agent,
    notice: Notice,
    group_id: uuid.UUID | None,
    group_name: str | None,
) -> uuid.UUID | None:
    """The history's row for an alarm that was accepted but never ran: failed, no
    members, at the time it was triggered; the website words its failure code. None
    when the tenant has it already (a race with another installation)."""
    row = Broadcast(
        id=uuid.uuid4(),
        tenant_id=agent.tenant_id,
        installation_id=agent.installation_id,
        broadcast_group_id=group_id,
        # The notice's key: unique per tenant like the agent's own broadcast ids.
        agent_broadcast_id=notice.notice_id,
        group_name=group_name or notice.agent_number or "?",
        # A damaged file may not show its mode any more: an alarm is the one to assume.
        mode=int(BroadcastMode(notice.mode or BroadcastMode.ALARM)),
        trigger_caller_number=notice.caller_number,
        status=BroadcastStatus.FAILED,
        started_at=notice.at,
        finished_at=notice.at,
        member_count=0,
        note=notice.file_name,
        failure_code=notices.FAILURE_JOB_FILE_DAMAGED,
    )
    try:
        async with session.begin_nested():
            session.add(row)
            await session.flush()
    except IntegrityError:
        return None
    return row.id

"""A `triggerBroadcast` with no outcome by its expiry: never lost silently.

The expiry sweep (a trigger still pending, never delivered: AGENT_UNREACHABLE) and an
agent that refuses a trigger as expired (AGENT_UNREACHABLE) leave a failed trigger in
the history, worded by the website from its code with the agent's last heartbeat, and
mail the tenant's contact and administrators. A trigger handed to the agent (DELIVERED)
with no outcome by its expiry gets OUTCOME_UNKNOWN: the agent's machine may have died
with it (a power cut), or it ran and its outcome is late (docs/decisions/late-broadcasts.md).
Should the agent report success for a trigger recorded lost all the same, the failed
row gives way to the broadcast that ran.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from functools import partial

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.db import after_commit
from api.domain import lost_triggers
from api.models import (
    Broadcast,
    BroadcastGroup,
    BroadcastMode,
    BroadcastStatus,
    Command,
    Installation,
    PbxGroup,
    Tenant,
    TriggerSource,
)
from api.pubsub import tenant_events
from api.runtime import Runtime
from api.services import audit, notify, tenant_mail

TYPE = "triggerBroadcast"


def _key(command: Command) -> str:
    # The command's id: unique like the agent's ids, and one row per command.
    return f"command:{command.id}"


async def record(
    rt: Runtime,
    session: AsyncSession,
    command: Command,
    now: datetime,
    failure_code: str = lost_triggers.FAILURE_AGENT_UNREACHABLE,
) -> uuid.UUID | None:
    """The failed trigger in the history and the mails, in the caller's transaction;
    None if it is recorded already (an agent resends a refusal it is not sure of).
    OUTCOME_UNKNOWN: delivered, no outcome by the expiry (whether anyone was called is
    unknown); the agent's later refusal as expired makes that row AGENT_UNREACHABLE."""
    known = await session.scalar(
        select(Broadcast).where(
            Broadcast.tenant_id == command.tenant_id, Broadcast.agent_broadcast_id == _key(command)
        )
    )
    if known is not None:
        if known.failure_code == lost_triggers.FAILURE_OUTCOME_UNKNOWN != failure_code:
            # Now known: not run. The history says so; the mail sent stays (no second one).
            known.failure_code = failure_code
            after_commit(
                session,
                lambda: rt.hub.publish(
                    tenant_events(command.tenant_id), notify.event("broadcast", known.id)
                ),
            )
        return None
    unknown = failure_code == lost_triggers.FAILURE_OUTCOME_UNKNOWN
    payload = command.payload or {}
    group_id, group_name = await _group(session, command.tenant_id, payload.get("groupPbxId"))
    last_seen = await _last_heartbeat(session, command.tenant_id)
    mode = BroadcastMode(int(payload.get("mode") or BroadcastMode.ALARM))
    requested_by = payload.get("requestedBy") or None
    row = Broadcast(
        id=uuid.uuid4(),
        tenant_id=command.tenant_id,
        installation_id=command.installation_id,
        broadcast_group_id=group_id,
        agent_broadcast_id=_key(command),
        group_name=group_name,
        mode=int(mode),
        trigger_caller_name=requested_by,
        triggered_by_user_id=command.created_by,
        trigger_source=TriggerSource.WEBSITE,
        status=BroadcastStatus.FAILED,
        started_at=command.created_at,
        finished_at=now,
        member_count=0,
        # The website says "not reachable since" this (ISO time); empty: never reported.
        note=last_seen.isoformat() if last_seen is not None else None,
        failure_code=failure_code,
    )
    session.add(row)
    tenant = await session.get(Tenant, command.tenant_id)
    addresses = await tenant_mail.recipients(session, tenant) if tenant is not None else {}
    mail = partial(
        lost_triggers.unknown_outcome_mail if unknown else lost_triggers.lost_trigger_mail,
        group_name=group_name,
        alarm=mode is not BroadcastMode.TEST,
        requested_at=command.created_at,
        requested_by=requested_by,
        last_seen=last_seen,
    )
    mails = tenant_mail.queue(rt, command.tenant_id, addresses, mail)
    session.add_all(mails)
    await session.flush()
    after_commit(session, partial(tenant_mail.wake_mailer, rt, [str(m.id) for m in mails]))
    after_commit(
        session,
        lambda: rt.hub.publish(tenant_events(command.tenant_id), notify.event("broadcast", row.id)),
    )
    audit.record(
        session,
        None,
        "broadcast.trigger_lost",
        tenant_id=command.tenant_id,
        target=command.id,
        mode=int(mode),
        failure_code=failure_code,
        mails=len(addresses),
    )
    return row.id


async def withdraw(rt: Runtime, session: AsyncSession, command: Command) -> bool:
    """The agent ran the trigger after all: its failed row goes, the broadcast's own row
    (from the agent's report) is the history. The mail sent cannot be taken back."""
    gone = (
        await session.execute(
            delete(Broadcast)
            .where(
                Broadcast.tenant_id == command.tenant_id,
                Broadcast.agent_broadcast_id == _key(command),
                Broadcast.failure_code.in_(
                    [lost_triggers.FAILURE_AGENT_UNREACHABLE, lost_triggers.FAILURE_OUTCOME_UNKNOWN]
                ),
            )
            .returning(Broadcast.id)
        )
    ).scalar_one_or_none()
    if gone is None:
        return False
    after_commit(
        session,
        lambda: rt.hub.publish(tenant_events(command.tenant_id), notify.event("broadcast", gone)),
    )
    audit.record(
        session,
        None,
        "broadcast.trigger_lost_withdrawn",
        tenant_id=command.tenant_id,
        target=command.id,
    )
    return True


async def _group(
    session: AsyncSession, tenant_id: uuid.UUID, group_pbx_id: object
) -> tuple[uuid.UUID | None, str]:
    row = (
        await session.execute(
            select(BroadcastGroup.id, PbxGroup.name)
            .join(PbxGroup, BroadcastGroup.group_id == PbxGroup.id)
            .where(PbxGroup.tenant_id == tenant_id, PbxGroup.pbx_id == str(group_pbx_id))
            .limit(1)
        )
    ).first()
    return (row.id, row.name) if row else (None, str(group_pbx_id or "?"))


async def _last_heartbeat(session: AsyncSession, tenant_id: uuid.UUID) -> datetime | None:
    """The tenant's latest agent's last sign of life (enrolling a new one retires the old)."""
    return await session.scalar(
        select(Installation.last_heartbeat_at)
        .where(Installation.tenant_id == tenant_id)
        .order_by(Installation.created_at.desc())
        .limit(1)
    )

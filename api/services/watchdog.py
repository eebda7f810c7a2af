"""The watchdog's sweep: incidents per installation, license notices, and their mails.

Exactly one mail per incident opening and one per closing, also with two
workers sweeping at once or a sweep repeated after a crash, because a mail is
written only by the statement that changed the incident, in its transaction:

- opening is ``INSERT … ON CONFLICT DO NOTHING RETURNING`` against the unique
  index on open incidents per (installation, kind): of two sweeps racing, the
  second waits for the first's commit, then conflicts and gets no row;
- closing is ``UPDATE … WHERE closed_at IS NULL RETURNING``: the second
  sweep's update re-checks the row after the first commits and matches nothing;
- a license notice is an incident row keyed (license, kind, stage), inserted
  the same way as an opening.

On top of that, a sweep locks the installation's row while it judges it, so a
second sweep waits and then sees what the first one wrote.

Each installation and license is its own transaction, so one that fails (and
is logged) does not hold back the others; the next sweep tries it again.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from api.domain import watchdog as rules
from api.domain.health import SipError
from api.domain.notices import Mail
from api.models import (
    DialerKind,
    Email,
    EmailStatus,
    IncidentKind,
    Installation,
    Language,
    License,
    PbxAdapter,
    PbxSettings,
    Role,
    Tenant,
    User,
    WatchdogIncident,
)
from api.runtime import Runtime
from api.services.actor import Actor

log = logging.getLogger(__name__)
DEFAULT_POLL_SECONDS = 60


@dataclass
class SweepResult:
    """What one sweep changed; ``mail_ids`` are the outbox rows it queued."""

    opened: list[uuid.UUID] = field(default_factory=list)
    closed: list[uuid.UUID] = field(default_factory=list)
    license_notices: list[uuid.UUID] = field(default_factory=list)
    mail_ids: list[uuid.UUID] = field(default_factory=list)
    failed: int = 0


async def sweep(rt: Runtime, now: datetime | None = None) -> SweepResult:
    """Judges every installation and license once; safe to run in many workers at once."""
    now = now or rt.clock()
    result = SweepResult()
    async with rt.db.reading() as session:
        # Revoked ones only while they still have something open to close.
        open_here = (
            select(WatchdogIncident.id)
            .where(
                WatchdogIncident.installation_id == Installation.id,
                WatchdogIncident.closed_at.is_(None),
            )
            .exists()
        )
        installations = list(
            await session.scalars(
                select(Installation.id)
                .where(Installation.revoked_at.is_(None) | open_here)
                .order_by(Installation.id)
            )
        )
        licenses = list(await session.scalars(_licenses_near_end(rt, now)))
    for installation_id in installations:
        try:
            await _check_installation(rt, installation_id, now, result)
        except Exception:
            result.failed += 1
            log.exception("watchdog: checking installation %s failed", installation_id)
    for license_id in licenses:
        try:
            await _check_license(rt, license_id, now, result)
        except Exception:
            result.failed += 1
            log.exception("watchdog: checking license %s failed", license_id)
    return result


# --- installations ------------------------------------------------------------------


@dataclass(frozen=True)
class _OpenIncident:
    id: uuid.UUID
    opened_at: datetime
    notified: bool  # False while its grace runs (rules.NOTICE_GRACE): nobody told yet


async def _check_installation(
    rt: Runtime, installation_id: uuid.UUID, now: datetime, result: SweepResult
) -> None:
    async with rt.db.transaction() as session:
        # The row lock makes a second sweep wait and then judge what the first
        # left (the unique index alone would already stop a double mail).
        row = (
            await session.execute(
                select(Installation, Tenant, PbxSettings.poll_interval_seconds)
                .join(Tenant, Tenant.id == Installation.tenant_id)
                .outerjoin(PbxSettings, PbxSettings.tenant_id == Installation.tenant_id)
                .where(Installation.id == installation_id)
                .with_for_update(of=Installation)
            )
        ).one_or_none()
        if row is None:
            return
        inst, tenant, poll = row
        open_now = {
            i.kind: _OpenIncident(i.id, i.opened_at, i.notified_at is not None)
            for i in await session.scalars(
                select(WatchdogIncident).where(
                    WatchdogIncident.installation_id == inst.id,
                    WatchdogIncident.closed_at.is_(None),
                )
            )
        }
        if inst.revoked_at is not None or not tenant.active:
            # Nobody is to be told about a site that was switched off on purpose.
            for kind in open_now:
                await _close(session, inst.id, kind, now, notified=False)
            return
        verdict = rules.judge(
            _reported(inst),
            now,
            poll or DEFAULT_POLL_SECONDS,
            rt.settings.watchdog_heartbeat_factor,
        )
        site = rules.Site(tenant.name, inst.hostname, simulated=_simulated(inst))
        # A fixed order, so two sweeps on one installation take its keys alike.
        for kind in rules.INSTALLATION_KINDS:
            incident = open_now.get(kind)
            if kind in verdict.failing:
                mail = await _failing(session, inst, kind, incident, now, result)
            elif incident is not None and (kind in verdict.judged or kind in verdict.moot):
                moot = kind in verdict.moot
                mail = await _ended(session, inst, kind, incident, moot, now, result)
            else:
                continue
            if mail is not None:
                result.mail_ids += await _queue(rt, session, tenant, now, partial(mail, site=site))


def _reported(inst: Installation) -> rules.Reported:
    return rules.Reported(
        last_heartbeat_at=inst.last_heartbeat_at,
        enrolled_at=inst.created_at,
        pbx_reachable=inst.pbx_reachable,
        jobservice_reachable=inst.jobservice_reachable,
        alarm_service_ok=inst.alarm_service_ok,
        journal_writable=inst.journal_writable,
        sip_registration=inst.sip_registration,
        dialer=inst.dialer,
    )


def _simulated(inst: Installation) -> bool:
    return inst.pbx_adapter is PbxAdapter.SIM or inst.dialer is DialerKind.SIM


async def _failing(
    session: AsyncSession,
    inst: Installation,
    kind: IncidentKind,
    incident: _OpenIncident | None,
    now: datetime,
    result: SweepResult,
) -> Callable[..., Mail] | None:
    """Opens the incident (told at once, or after its grace) or tells it once its grace
    is over; the opening mail's maker when it is to be told now."""
    if incident is None:
        due = rules.notice_due(kind, now, now)
        opened = await _open(session, inst, kind, now, notified=due)
        if opened is None:
            return None
        result.opened.append(opened)
        if not due:
            return None
    elif incident.notified or not rules.notice_due(kind, incident.opened_at, now):
        return None
    elif not await _mark_notified(session, incident.id, now):
        return None  # another sweep told it first
    return partial(rules.incident_opened, kind=kind, **_told(inst, kind, now))


async def _ended(
    session: AsyncSession,
    inst: Installation,
    kind: IncidentKind,
    incident: _OpenIncident,
    moot: bool,
    now: datetime,
    result: SweepResult,
) -> Callable[..., Mail] | None:
    """Closes the incident; its closing mail's maker, or None when nobody was told of it
    (then nobody is told of its end) or another sweep closed it first."""
    closed = await _close(session, inst.id, kind, now, notified=incident.notified)
    if closed is None:
        return None
    result.closed.append(closed[0])
    if not incident.notified:
        return None
    if moot:  # no longer judged: never "resolved" (a simulated dialer, an older agent)
        return partial(
            rules.incident_moot,
            kind=kind,
            opened_at=closed[1],
            closed_at=now,
            simulated_calls=inst.dialer is DialerKind.SIM,
        )
    return partial(rules.incident_closed, kind=kind, opened_at=closed[1], closed_at=now)


def _told(inst: Installation, kind: IncidentKind, now: datetime) -> dict[str, Any]:
    """Since when, and (SIP) why: what an opening mail says beyond the kind."""
    if kind is IncidentKind.HEARTBEAT_MISSED:
        return {"since": inst.last_heartbeat_at or inst.created_at}
    if kind is not IncidentKind.SIP_REGISTRATION_FAILED:
        return {"since": now}
    error = None
    if inst.sip_error_code is not None and inst.sip_error_at is not None:
        error = SipError(
            code=inst.sip_error_code,
            at=inst.sip_error_at,
            params=dict(inst.sip_error_params or {}),
            detail=inst.sip_error_detail,
        )
    return {"since": inst.sip_registration_since or now, "error": error}


def _insert(session: AsyncSession) -> Any:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


async def _open(
    session: AsyncSession, inst: Installation, kind: IncidentKind, now: datetime, *, notified: bool
) -> uuid.UUID | None:
    """The new incident's id, or None when another sweep opened it first."""
    statement = (
        _insert(session)(WatchdogIncident)
        .values(
            id=uuid.uuid4(),
            tenant_id=inst.tenant_id,
            installation_id=inst.id,
            kind=kind,
            opened_at=now,
            notified_at=now if notified else None,
        )
        .on_conflict_do_nothing(
            index_elements=[WatchdogIncident.installation_id, WatchdogIncident.kind],
            index_where=WatchdogIncident.closed_at.is_(None),
        )
        .returning(WatchdogIncident.id)
    )
    opened: uuid.UUID | None = (await session.execute(statement)).scalar_one_or_none()
    return opened


async def _mark_notified(session: AsyncSession, incident_id: uuid.UUID, now: datetime) -> bool:
    """Claims the telling of an open incident: True for exactly one sweep."""
    told = await session.scalar(
        update(WatchdogIncident)
        .where(
            WatchdogIncident.id == incident_id,
            WatchdogIncident.notified_at.is_(None),
            WatchdogIncident.closed_at.is_(None),
        )
        .values(notified_at=now)
        .returning(WatchdogIncident.id)
    )
    return told is not None


async def _close(
    session: AsyncSession,
    installation_id: uuid.UUID,
    kind: IncidentKind,
    now: datetime,
    *,
    notified: bool,
) -> tuple[uuid.UUID, datetime] | None:
    """Closes the open incident; None when another sweep closed it first."""
    row = (
        await session.execute(
            update(WatchdogIncident)
            .where(
                WatchdogIncident.installation_id == installation_id,
                WatchdogIncident.kind == kind,
                WatchdogIncident.closed_at.is_(None),
            )
            .values(closed_at=now, close_notified_at=now if notified else None)
            .returning(WatchdogIncident.id, WatchdogIncident.opened_at)
        )
    ).one_or_none()
    return (row[0], row[1]) if row is not None else None


# --- licenses -------------------------------------------------------------------------


def _licenses_near_end(rt: Runtime, now: datetime) -> Any:
    """Licenses of active tenants within the first warning, not revoked and not
    superseded (a later-ending license of the same tenant makes its end moot)."""
    horizon = now + timedelta(days=max([0, *rt.settings.license_warning_days]))
    later = aliased(License)
    return (
        select(License.id)
        .join(Tenant, Tenant.id == License.tenant_id)
        .where(
            Tenant.active.is_(True),
            License.revoked_at.is_(None),
            License.valid_until <= horizon,
            ~select(later.id)
            .where(
                later.tenant_id == License.tenant_id,
                later.revoked_at.is_(None),
                later.valid_until > License.valid_until,
            )
            .exists(),
        )
    )


async def _check_license(
    rt: Runtime, license_id: uuid.UUID, now: datetime, result: SweepResult
) -> None:
    async with rt.db.transaction() as session:
        row = (
            await session.execute(
                select(License, Tenant)
                .join(Tenant, Tenant.id == License.tenant_id)
                .where(License.id == license_id)
            )
        ).one_or_none()
        if row is None:
            return
        lic, tenant = row
        stage = rules.license_stage(lic.valid_until, now, rt.settings.license_warning_days)
        if stage is None:
            return
        kind = IncidentKind.LICENSE_EXPIRED if stage == 0 else IncidentKind.LICENSE_EXPIRING
        statement = (
            _insert(session)(WatchdogIncident)
            .values(
                id=uuid.uuid4(),
                tenant_id=lic.tenant_id,
                license_id=lic.id,
                kind=kind,
                stage_days=stage,
                detail=f"valid until {lic.valid_until.isoformat()}",
                # A notice, not a condition: it is over once told.
                opened_at=now,
                notified_at=now,
                closed_at=now,
            )
            .on_conflict_do_nothing(
                index_elements=[
                    WatchdogIncident.license_id,
                    WatchdogIncident.kind,
                    WatchdogIncident.stage_days,
                ]
            )
            .returning(WatchdogIncident.id)
        )
        notice = (await session.execute(statement)).scalar_one_or_none()
        if notice is None:
            return
        result.license_notices.append(notice)
        texts = partial(
            rules.license_notice,
            tenant_name=tenant.name,
            key_prefix=lic.key_prefix,
            valid_until=lic.valid_until,
            now=now,
        )
        result.mail_ids += await _queue(rt, session, tenant, now, texts)


# --- mails ------------------------------------------------------------------------------


async def _queue(
    rt: Runtime,
    session: AsyncSession,
    tenant: Tenant,
    now: datetime,
    mail: Callable[[Language], Mail],
) -> list[uuid.UUID]:
    """One outbox row per address: the tenant's contact and administrators in the
    tenant's language, and support in its own. ``mail`` makes the text per language."""
    admins = await session.scalars(
        select(User.email).where(
            User.tenant_id == tenant.id, User.role == Role.TENANT_ADMIN, User.active.is_(True)
        )
    )
    addresses: dict[str, Language] = {}
    for address in [*([tenant.contact_email] if tenant.contact_email else []), *admins]:
        addresses.setdefault(address.lower(), tenant.language)
    if rt.settings.support_email:
        support = Language(rt.settings.support_language)
        addresses.setdefault(rt.settings.support_email.lower(), support)
    texts: dict[Language, Mail] = {}
    ids: list[uuid.UUID] = []
    for address, language in addresses.items():
        text = texts.get(language) or texts.setdefault(language, mail(language))
        row = Email(
            id=uuid.uuid4(),
            tenant_id=tenant.id,
            to_address=address,
            subject=text.subject,
            body=text.body,
            language=language,
            status=EmailStatus.QUEUED,
            next_attempt_at=now,
            created_at=now,
        )
        session.add(row)
        ids.append(row.id)
    await session.flush()
    return ids


# --- reads ------------------------------------------------------------------------------


async def list_incidents(
    rt: Runtime, actor: Actor, tenant_id: uuid.UUID | None, open_only: bool = True
) -> list[tuple[WatchdogIncident, str | None]]:
    """Incidents newest first with their installation's hostname; tenant users see
    their own tenant's only, platform admins every tenant's or the one they name."""
    scope = actor.read_scope(tenant_id)
    async with rt.db.reading() as session:
        query = (
            select(WatchdogIncident, Installation.hostname)
            .outerjoin(Installation, Installation.id == WatchdogIncident.installation_id)
            .where(scope.where(WatchdogIncident))
            .order_by(WatchdogIncident.opened_at.desc(), WatchdogIncident.id)
            .limit(500)
        )
        if open_only:
            query = query.where(WatchdogIncident.closed_at.is_(None))
        return [(incident, hostname) for incident, hostname in await session.execute(query)]


async def open_incidents_of(
    rt: Runtime, installation_ids: list[uuid.UUID]
) -> list[list[WatchdogIncident]]:
    """For a DataLoader: the open incidents of installations the caller already may see."""
    async with rt.db.reading() as session:
        rows = await session.scalars(
            select(WatchdogIncident)
            .where(
                WatchdogIncident.installation_id.in_(installation_ids),
                WatchdogIncident.closed_at.is_(None),
            )
            .order_by(WatchdogIncident.opened_at)
        )
        found: dict[uuid.UUID, list[WatchdogIncident]] = {i: [] for i in installation_ids}
        for incident in rows:
            assert incident.installation_id is not None
            found[incident.installation_id].append(incident)
    return [found[i] for i in installation_ids]

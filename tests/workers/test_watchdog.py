"""The watchdog's sweep on real PostgreSQL with a clock moved by hand.

The world's two tenants each have one installation that reported just now
(poll interval 60 s, so overdue after 180 s) and a license valid for a year.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from api.bootstrap import bootstrap
from api.models import (
    Email,
    EmailStatus,
    IncidentKind,
    Installation,
    Language,
    License,
    Tenant,
    WatchdogIncident,
)
from api.runtime import Runtime
from api.security import hash_token
from api.services.watchdog import sweep
from tests.conftest import Clock, make_settings

SUPPORT = "support@rundruf.example"
OWNER_ADDRESSES = ["admin@owner.example", "it@owner.example", SUPPORT]


@pytest.fixture
def wrt(rt: Runtime) -> Runtime:
    """The test runtime with a support address, as production would have."""
    return dataclasses.replace(
        rt, settings=rt.settings.model_copy(update={"support_email": SUPPORT})
    )


async def _beat(rt: Runtime, installation_id: uuid.UUID, **flags: Any) -> None:
    """What a health report does: a fresh heartbeat, and the flags it carried."""
    async with rt.db.transaction() as s:
        await s.execute(
            update(Installation)
            .where(Installation.id == installation_id)
            .values(last_heartbeat_at=rt.clock(), **flags)
        )


async def _incidents(rt: Runtime, tenant_id: uuid.UUID) -> list[WatchdogIncident]:
    async with rt.db.reading() as s:
        rows = await s.scalars(
            select(WatchdogIncident)
            .where(WatchdogIncident.tenant_id == tenant_id)
            .order_by(WatchdogIncident.opened_at, WatchdogIncident.kind)
        )
        return list(rows.all())


async def _mails(rt: Runtime, ids: list[uuid.UUID] | None = None) -> list[Email]:
    query = select(Email).order_by(Email.created_at, Email.to_address)
    if ids is not None:
        query = query.where(Email.id.in_(ids))
    async with rt.db.reading() as s:
        return list((await s.scalars(query)).all())


async def _count(rt: Runtime, model: Any) -> int:
    async with rt.db.reading() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


async def test_a_missed_heartbeat_opens_one_incident_and_its_recovery_closes_it(
    wrt, world, clock: Clock
):
    a, b = world.a, world.b
    clock.advance(seconds=180)
    quiet = await sweep(wrt)
    assert quiet.opened == [] and quiet.mail_ids == [], "exactly 3 intervals is not overdue"

    clock.advance(seconds=1)
    first = await sweep(wrt)
    assert len(first.opened) == 2 and first.failed == 0  # both tenants' installations
    [incident] = await _incidents(wrt, a.tenant_id)
    assert incident.kind is IncidentKind.HEARTBEAT_MISSED
    assert incident.installation_id == a.installation_id
    assert incident.opened_at == clock.now and incident.notified_at == clock.now
    assert incident.closed_at is None
    mails = [m for m in await _mails(wrt, first.mail_ids) if m.tenant_id == a.tenant_id]
    assert sorted(m.to_address for m in mails) == OWNER_ADDRESSES
    assert all(m.status is EmailStatus.QUEUED and m.language is Language.DE for m in mails)
    assert mails[0].subject == (
        "Rundruf-Störung: Rundruf Manager Service meldet sich nicht (Owner AG)"
    )
    assert "swyx.owner.example" in mails[0].body and "Owner AG" in mails[0].body
    assert len(await _mails(wrt)) == 6  # three addresses per tenant, support in each

    # Still overdue, sweep after sweep: nothing new.
    for _ in range(3):
        clock.advance(seconds=60)
        again = await sweep(wrt)
        assert again.opened == [] and again.closed == [] and again.mail_ids == []
    assert len(await _mails(wrt)) == 6

    # Tenant A's agent is back: its incident closes with one mail per address.
    await _beat(wrt, a.installation_id)
    back = await sweep(wrt)
    assert back.closed == [incident.id] and back.opened == []
    [closed] = await _incidents(wrt, a.tenant_id)
    assert closed.closed_at == clock.now and closed.close_notified_at == clock.now
    resolved = await _mails(wrt, back.mail_ids)
    assert sorted(m.to_address for m in resolved) == OWNER_ADDRESSES
    assert resolved[0].subject == (
        "Rundruf: behoben: Rundruf Manager Service meldet sich nicht (Owner AG)"
    )
    # Tenant B's stays open; another sweep changes nothing.
    assert [i.closed_at for i in await _incidents(wrt, b.tenant_id)] == [None]
    assert (await sweep(wrt)).mail_ids == []
    assert len(await _mails(wrt)) == 9


async def test_it_opens_a_new_incident_when_the_heartbeat_stops_again(wrt, world, clock):
    a = world.a
    clock.advance(seconds=181)
    await sweep(wrt)
    await _beat(wrt, a.installation_id)
    await sweep(wrt)
    clock.advance(seconds=181)
    await sweep(wrt)
    kinds = [(i.kind, i.closed_at is None) for i in await _incidents(wrt, a.tenant_id)]
    assert kinds == [
        (IncidentKind.HEARTBEAT_MISSED, False),
        (IncidentKind.HEARTBEAT_MISSED, True),
    ]


async def test_a_failing_health_flag_opens_an_incident_until_it_is_fine_again(wrt, world, clock):
    a = world.a
    await _beat(wrt, a.installation_id, pbx_reachable=False, jobservice_reachable=None)
    opened = await sweep(wrt)
    [incident] = await _incidents(wrt, a.tenant_id)
    assert incident.kind is IncidentKind.PBX_UNREACHABLE
    mails = await _mails(wrt, opened.mail_ids)
    assert sorted(m.to_address for m in mails) == OWNER_ADDRESSES
    assert mails[0].subject == "Rundruf-Störung: Telefonanlage nicht erreichbar (Owner AG)"
    assert (await sweep(wrt)).mail_ids == []

    # Unknown (None) is no failure; the job service's and alarm service's flags count.
    await _beat(wrt, a.installation_id, alarm_service_ok=False)
    await sweep(wrt)
    open_kinds = {i.kind for i in await _incidents(wrt, a.tenant_id) if i.closed_at is None}
    assert open_kinds == {IncidentKind.PBX_UNREACHABLE, IncidentKind.ALARM_SERVICE_FAILED}

    await _beat(wrt, a.installation_id, pbx_reachable=True, alarm_service_ok=True)
    closed = await sweep(wrt)
    assert len(closed.closed) == 2 and len(closed.mail_ids) == 6
    assert all(i.closed_at == clock.now for i in await _incidents(wrt, a.tenant_id))


async def test_a_flag_no_longer_reported_closes_its_incident_but_never_as_resolved(
    wrt, world, clock
):
    a = world.a
    await _beat(wrt, a.installation_id, jobservice_reachable=False)
    await sweep(wrt)
    # The job service is no longer set up at the agent: unknown, which is no recovery.
    await _beat(wrt, a.installation_id, jobservice_reachable=None)
    ended = await sweep(wrt)
    assert len(ended.closed) == 1
    mails = await _mails(wrt, ended.mail_ids)
    assert sorted(m.to_address for m in mails) == OWNER_ADDRESSES
    german = next(m for m in mails if m.language is Language.DE)
    assert german.subject == (
        "Rundruf: nicht mehr überwacht: Rundruf-Jobdienst nicht erreichbar (Owner AG)"
    )
    assert "meldet diesen Wert nicht mehr" in german.body and "ist behoben" not in german.body


async def test_stale_flags_neither_open_nor_close_incidents(wrt, world, clock):
    a = world.a
    await _beat(wrt, a.installation_id, pbx_reachable=False)
    await sweep(wrt)
    # The agent goes silent while the PBX is still down; then reports the PBX fine.
    clock.advance(seconds=181)
    await sweep(wrt)
    open_kinds = {i.kind for i in await _incidents(wrt, a.tenant_id) if i.closed_at is None}
    assert open_kinds == {IncidentKind.PBX_UNREACHABLE, IncidentKind.HEARTBEAT_MISSED}
    await _beat(wrt, a.installation_id, pbx_reachable=True)
    result = await sweep(wrt)
    assert len(result.closed) == 2
    assert all(i.closed_at is not None for i in await _incidents(wrt, a.tenant_id))


async def test_a_revoked_installation_closes_its_incidents_without_mail(wrt, world, clock):
    a = world.a
    clock.advance(seconds=181)
    await sweep(wrt)
    async with wrt.db.transaction() as s:
        await s.execute(
            update(Installation)
            .where(Installation.id == a.installation_id)
            .values(revoked_at=clock.now)
        )
    result = await sweep(wrt)
    assert result.mail_ids == []
    [incident] = await _incidents(wrt, a.tenant_id)
    assert incident.closed_at == clock.now and incident.close_notified_at is None


async def test_english_tenants_get_english_mails_and_support_its_own_language(wrt, world, clock):
    async with wrt.db.transaction() as s:
        await s.execute(
            update(Tenant).where(Tenant.id == world.a.tenant_id).values(language=Language.EN)
        )
    await _beat(wrt, world.a.installation_id, jobservice_reachable=False)
    result = await sweep(wrt)
    by_address = {m.to_address: m for m in await _mails(wrt, result.mail_ids)}
    assert by_address["it@owner.example"].language is Language.EN
    assert by_address["it@owner.example"].subject == (
        "Rundruf incident: Rundruf job service unreachable (Owner AG)"
    )
    assert by_address[SUPPORT].language is Language.DE
    assert by_address[SUPPORT].subject == (
        "Rundruf-Störung: Rundruf-Jobdienst nicht erreichbar (Owner AG)"
    )


# --- licenses -------------------------------------------------------------------------


async def _license_ends_in(rt: Runtime, license_id: uuid.UUID, delta: timedelta) -> None:
    async with rt.db.transaction() as s:
        await s.execute(
            update(License).where(License.id == license_id).values(valid_until=rt.clock() + delta)
        )


async def _notice_mails(rt: Runtime, tenant_id: uuid.UUID) -> list[str]:
    async with rt.db.reading() as s:
        rows = await s.scalars(
            select(Email.subject)
            .where(
                Email.tenant_id == tenant_id,
                Email.to_address == "it@owner.example",
                Email.subject.contains("Lizenz"),
            )
            .order_by(Email.created_at)
        )
        return list(rows.all())


async def test_a_license_is_announced_30_7_and_1_days_before_its_end_and_once_expired(
    wrt, world, clock
):
    a = world.a
    await _license_ends_in(wrt, a.license_id, timedelta(days=40))
    steps = [
        (timedelta(days=10, seconds=1), "Rundruf: Ihre Lizenz läuft in 30 Tagen ab (Owner AG)"),
        (timedelta(days=23), "Rundruf: Ihre Lizenz läuft in 7 Tagen ab (Owner AG)"),
        (timedelta(days=6), "Rundruf: Ihre Lizenz läuft in einem Tag ab (Owner AG)"),
        (timedelta(days=1), "Rundruf: Ihre Lizenz ist abgelaufen (Owner AG)"),
    ]
    assert (await sweep(wrt)).license_notices == []
    expected: list[str] = []
    for step, subject in steps:
        clock.advance(seconds=step.total_seconds())
        result = await sweep(wrt)
        assert len(result.license_notices) == 1, subject
        expected.append(subject)
        assert await _notice_mails(wrt, a.tenant_id) == expected
        # Each stage once, however often the sweep runs.
        assert (await sweep(wrt)).license_notices == []
    notices = [
        (i.kind, i.stage_days)
        for i in await _incidents(wrt, a.tenant_id)
        if i.license_id == a.license_id
    ]
    assert notices == [
        (IncidentKind.LICENSE_EXPIRING, 30),
        (IncidentKind.LICENSE_EXPIRING, 7),
        (IncidentKind.LICENSE_EXPIRING, 1),
        (IncidentKind.LICENSE_EXPIRED, 0),
    ]
    clock.advance(days=30)
    assert (await sweep(wrt)).license_notices == []


async def test_a_license_first_seen_late_gets_only_the_notice_due(wrt, world, clock):
    await _license_ends_in(wrt, world.a.license_id, timedelta(days=5))
    result = await sweep(wrt)
    assert len(result.license_notices) == 1
    assert await _notice_mails(wrt, world.a.tenant_id) == [
        "Rundruf: Ihre Lizenz läuft in 5 Tagen ab (Owner AG)"
    ]


async def test_a_renewed_license_silences_the_old_ones_end(wrt, world, clock):
    await _license_ends_in(wrt, world.a.license_id, timedelta(days=5))
    async with wrt.db.transaction() as s:
        s.add(
            License(
                tenant_id=world.a.tenant_id,
                key_hash=hash_token("renewal"),
                key_prefix="rdl_r",
                seats=50,
                valid_until=clock.now + timedelta(days=365),
            )
        )
    assert (await sweep(wrt)).license_notices == []


# --- two workers at once ----------------------------------------------------------------


@pytest.fixture
async def second_rt(wrt: Runtime) -> AsyncIterator[Runtime]:
    """Another worker process's runtime: its own engine and connections, the same clock."""
    other = bootstrap(make_settings(support_email=SUPPORT))
    runtime = dataclasses.replace(wrt, db=other.db)
    yield runtime
    await other.db.dispose()


async def _more_installations(rt: Runtime, tenant_id: uuid.UUID, license_id: uuid.UUID) -> None:
    async with rt.db.transaction() as s:
        for n in range(15):
            s.add(
                Installation(
                    tenant_id=tenant_id,
                    license_id=license_id,
                    hostname=f"site-{n}.owner.example",
                    token_hash=hash_token(f"extra-{n}"),
                    last_heartbeat_at=rt.clock(),
                    created_at=rt.clock(),
                    pbx_reachable=True,
                    jobservice_reachable=True,
                    alarm_service_ok=True,
                )
            )


async def test_two_workers_sweeping_at_once_queue_each_mail_once(wrt, second_rt, world, clock):
    a = world.a
    await _more_installations(wrt, a.tenant_id, a.license_id)
    await _license_ends_in(wrt, a.license_id, timedelta(days=3))
    clock.advance(seconds=181)  # 17 installations overdue, the license at its 7-day stage

    one, two = await asyncio.gather(sweep(wrt), sweep(second_rt))
    assert one.failed == two.failed == 0
    assert len(one.opened) + len(two.opened) == 17
    assert len(one.license_notices) + len(two.license_notices) == 1
    # 16 of tenant A's installations and its license notice, 3 addresses each; tenant B's 1.
    assert len(one.mail_ids) + len(two.mail_ids) == (16 + 1) * 3 + 3
    assert await _count(wrt, Email) == (16 + 1) * 3 + 3

    async with wrt.db.transaction() as s:
        await s.execute(update(Installation).values(last_heartbeat_at=clock.now))
    one, two = await asyncio.gather(sweep(wrt), sweep(second_rt))
    assert len(one.closed) + len(two.closed) == 17
    assert await _count(wrt, Email) == (16 + 1) * 3 + 3 + 17 * 3

    # Every address got each subject once per installation: no doubles anywhere.
    async with wrt.db.reading() as s:
        doubles = (
            await s.execute(
                select(Email.to_address, Email.body, func.count())
                .group_by(Email.to_address, Email.body)
                .having(func.count() > 1)
            )
        ).all()
    assert doubles == []


async def test_the_unique_key_alone_lets_only_one_of_two_openings_through(wrt, second_rt, world):
    """Without the row lock: two transactions insert the same open incident at once."""
    from api.services.watchdog import _open

    async with wrt.db.reading() as s:
        inst = await s.get(Installation, world.a.installation_id)
    assert inst is not None
    started = asyncio.Event()

    async def opening(rt: Runtime, wait: bool) -> uuid.UUID | None:
        async with rt.db.transaction() as s:
            opened = await _open(s, inst, IncidentKind.PBX_UNREACHABLE, rt.clock(), notified=True)
            if wait:
                started.set()
                await asyncio.sleep(0.2)  # hold the transaction open while the other inserts
            return opened

    async def second() -> uuid.UUID | None:
        await started.wait()
        return await opening(second_rt, wait=False)

    first_id, second_id = await asyncio.gather(opening(wrt, wait=True), second())
    assert first_id is not None and second_id is None
    assert len(await _incidents(wrt, world.a.tenant_id)) == 1

"""A failed SIP registration, as the agent reports it, through the watchdog to the mails
the tenant and support receive (aiosmtpd), and back when it registers again."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from api.app import create_app
from api.domain import watchdog as rules
from api.domain.health import SipError
from api.models import IncidentKind, Installation, Language, WatchdogIncident
from api.runtime import Runtime
from api.services.watchdog import sweep
from tests.conftest import Clock, GraphQL
from tests.workers.smtp_sink import SmtpServer
from workers.delivery_log import DeliveryLog
from workers.mail import Mailer

SUPPORT = "support@rundruf.example"
TENANT = ["admin@owner.example", "it@owner.example"]
HEALTH = "mutation($input: HealthInput!) { reportHealth(input: $input) { pollIntervalSeconds } }"


@pytest.fixture
def sip_rt(mail_rt: Runtime) -> Runtime:
    settings = mail_rt.settings.model_copy(update={"support_email": SUPPORT})
    return dataclasses.replace(mail_rt, settings=settings)


@pytest.fixture
async def agent(sip_rt: Runtime, world: Any) -> AsyncIterator[GraphQL]:
    # Only tenant A's installation is watched here: B's (a silent agent) is revoked, or
    # its missed heartbeat would mail as soon as the clock moves on.
    async with sip_rt.db.transaction() as s:
        await s.execute(
            update(Installation)
            .where(Installation.id == world.b.installation_id)
            .values(revoked_at=sip_rt.clock())
        )
    transport = httpx.ASGITransport(app=create_app(sip_rt), client=("198.51.100.7", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        yield GraphQL(c).as_(world.tokens["agent_a"])


def _report(now: datetime, state: str, since: datetime, error: bool = True) -> dict[str, Any]:
    registration: dict[str, Any] = {"state": state, "since": since.isoformat()}
    if error:
        registration["lastError"] = {
            "code": "refused",
            "params": {"status": 403, "reason": "Forbidden"},
            "detail": "REGISTER refused: 403 Forbidden",
            "at": since.isoformat(),
        }
    return {
        "input": {
            "agentVersion": "0.2.0",
            "pbxReachable": True,
            "jobserviceReachable": None,
            "alarmServiceOk": True,
            "participantCount": 3,
            "reportedAt": now.isoformat(),
            "pbxAdapter": "swyx",
            "dialer": "sip",
            "sipRegistration": registration,
        }
    }


async def _deliver(rt: Runtime, tmp_path: Path) -> None:
    log = DeliveryLog(tmp_path / "delivery")
    try:
        await Mailer(rt, log).sweep()
    finally:
        log.close()


async def _kinds(rt: Runtime, world: Any) -> list[tuple[IncidentKind, bool]]:
    """Tenant A's incidents."""
    async with rt.db.reading() as s:
        rows = await s.scalars(
            select(WatchdogIncident)
            .where(WatchdogIncident.tenant_id == world.a.tenant_id)
            .order_by(WatchdogIncident.opened_at)
        )
        return [(i.kind, i.closed_at is None) for i in rows]


async def test_a_refused_registration_mails_tenant_and_support_once_and_again_when_fixed(
    sip_rt: Runtime, agent: GraphQL, smtp: SmtpServer, clock: Clock, tmp_path: Path, world: Any
) -> None:
    failed_since = clock.now - timedelta(seconds=20)
    await agent.ok(HEALTH, **_report(clock.now, "failed", failed_since))
    seen = await sweep(sip_rt)
    # Seen, not told yet: the failure must last two minutes on the server's clock.
    assert len(seen.opened) == 1 and seen.mail_ids == []
    assert await _kinds(sip_rt, world) == [(IncidentKind.SIP_REGISTRATION_FAILED, True)]
    clock.advance(seconds=119)
    assert (await sweep(sip_rt)).mail_ids == []
    clock.advance(seconds=1)
    told = await sweep(sip_rt)
    assert told.opened == [] and len(told.mail_ids) == 3
    await _deliver(sip_rt, tmp_path)
    received = {r.to[0]: r.message for r in smtp.sink.received}
    assert sorted(received) == sorted([*TENANT, SUPPORT])
    german = received["it@owner.example"]
    assert german["Subject"] == (
        "Rundruf-Störung: SIP-Anmeldung an der Telefonanlage fehlgeschlagen (Owner AG)"
    )
    body = german.get_content()
    assert "Die Telefonanlage lehnt die Anmeldung ab (403 Forbidden)." in body
    assert "Technische Meldung: REGISTER refused: 403 Forbidden" in body
    assert "swyx.owner.example" in body

    # Still refused, report after report and sweep after sweep: no second mail.
    for _ in range(2):
        clock.advance(seconds=60)
        await agent.ok(HEALTH, **_report(clock.now, "failed", failed_since))
        assert (await sweep(sip_rt)).mail_ids == []
    await _deliver(sip_rt, tmp_path)
    assert len(smtp.sink.received) == 3

    # Registered again (the old error is still reported as the last one): one more mail each.
    clock.advance(seconds=30)
    await agent.ok(HEALTH, **_report(clock.now, "registered", clock.now))
    back = await sweep(sip_rt)
    assert len(back.closed) == 1 and back.opened == []
    assert (await sweep(sip_rt)).mail_ids == []
    await _deliver(sip_rt, tmp_path)
    resolved = smtp.sink.received[3:]
    assert sorted(r.to[0] for r in resolved) == sorted([*TENANT, SUPPORT])
    assert {r.message["Subject"] for r in resolved} == {
        "Rundruf: behoben: SIP-Anmeldung an der Telefonanlage fehlgeschlagen (Owner AG)"
    }
    assert await _kinds(sip_rt, world) == [(IncidentKind.SIP_REGISTRATION_FAILED, False)]


async def test_a_simulated_dialer_or_an_older_agent_opens_no_sip_incident(
    sip_rt: Runtime, agent: GraphQL, clock: Clock, world: Any
) -> None:
    report = _report(clock.now, "failed", clock.now)
    report["input"].update(dialer="sim", sipRegistration=None, pbxAdapter="sim")
    await agent.ok(HEALTH, **report)
    assert (await sweep(sip_rt)).opened == []
    clock.advance(seconds=5)
    for key in ("dialer", "sipRegistration", "pbxAdapter"):
        del report["input"][key]
    report["input"]["reportedAt"] = clock.now.isoformat()
    await agent.ok(HEALTH, **report)
    assert (await sweep(sip_rt)).opened == []
    assert await _kinds(sip_rt, world) == []


async def test_a_failure_shorter_than_two_minutes_mails_nobody(
    sip_rt: Runtime, agent: GraphQL, clock: Clock, world: Any
) -> None:
    # A boot whose DNS is not ready yet, then three blips of the network: no mail at all.
    for _ in range(4):
        await agent.ok(HEALTH, **_report(clock.now, "failed", clock.now))
        assert (await sweep(sip_rt)).mail_ids == []
        clock.advance(seconds=60)
        await agent.ok(HEALTH, **_report(clock.now, "registered", clock.now))
        assert (await sweep(sip_rt)).mail_ids == []
        clock.advance(seconds=60)
    kinds = await _kinds(sip_rt, world)
    assert kinds == [(IncidentKind.SIP_REGISTRATION_FAILED, False)] * 4  # seen, all closed
    async with sip_rt.db.reading() as s:
        rows = (await s.scalars(select(WatchdogIncident))).all()
    assert all(i.notified_at is None and i.close_notified_at is None for i in rows)


async def _told_failure(rt: Runtime, agent: GraphQL, clock: Clock) -> None:
    await agent.ok(HEALTH, **_report(clock.now, "failed", clock.now))
    told = (await sweep(rt)).mail_ids
    clock.advance(seconds=120)
    told += (await sweep(rt)).mail_ids
    assert len(told) == 3  # the tenant's two addresses and support, once


@pytest.mark.parametrize("now_reports", ["simulated calls", "an older agent"])
async def test_an_incident_that_can_no_longer_be_judged_is_never_called_resolved(
    sip_rt: Runtime,
    agent: GraphQL,
    smtp: SmtpServer,
    clock: Clock,
    tmp_path: Path,
    world: Any,
    now_reports: str,
) -> None:
    await _told_failure(sip_rt, agent, clock)
    clock.advance(seconds=30)
    report = _report(clock.now, "failed", clock.now)
    if now_reports == "simulated calls":
        report["input"].update(dialer="sim", sipRegistration=None)
    else:
        for key in ("dialer", "sipRegistration", "pbxAdapter"):
            del report["input"][key]
    await agent.ok(HEALTH, **report)
    ended = await sweep(sip_rt)
    assert len(ended.closed) == 1 and len(ended.mail_ids) == 3
    await _deliver(sip_rt, tmp_path)
    [german, *_] = [r.message for r in smtp.sink.received[3:] if r.to[0] == TENANT[1]]
    assert german["Subject"] == (
        "Rundruf: nicht mehr überwacht: SIP-Anmeldung an der Telefonanlage fehlgeschlagen "
        + ("(Owner AG, Simulator)" if now_reports == "simulated calls" else "(Owner AG)")
    )
    body = german.get_content()
    assert "behoben" not in german["Subject"] and "ist behoben" not in body
    assert "nicht mehr überwacht; behoben ist sie damit nicht" in body
    if now_reports == "simulated calls":
        assert "Bei einem Alarm wird niemand wirklich angerufen." in body
    else:
        assert "meldet diesen Wert nicht mehr" in body
    assert (await sweep(sip_rt)).mail_ids == []


def test_the_english_mail_names_the_error_in_english() -> None:
    error = SipError("timeout", datetime(2025, 1, 15, 13, 3, tzinfo=UTC), {"seconds": 32})
    mail = rules.incident_opened(
        Language.EN,
        IncidentKind.SIP_REGISTRATION_FAILED,
        rules.Site("Owner AG", "swyx.owner.example"),
        datetime(2025, 1, 15, 13, 3, tzinfo=UTC),
        error,
    )
    assert (
        mail.subject == "Rundruf incident: SIP registration at the phone system failed (Owner AG)"
    )
    assert "The phone system does not answer (no answer within 32 s)." in mail.body
    assert "cannot call anybody in an alarm" in mail.body

"""An agent whose broadcast journal cannot be written (issue 14, point 10): the health
report's `journalWritable: false` is stored, shown on the installation, and the watchdog
mails it like any failed flag (aiosmtpd), and again when the journal is written."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from api.models import IncidentKind
from api.runtime import Runtime
from api.services.watchdog import sweep
from tests.conftest import Clock, GraphQL
from tests.workers.smtp_sink import SmtpServer
from tests.workers.test_watchdog_sip import (
    HEALTH,
    SUPPORT,
    TENANT,
    _deliver,
    _kinds,
    agent,  # noqa: F401 - the fixture
    sip_rt,  # noqa: F401 - the fixture
)

SHOWN = "query($t: ID) { installations(tenantId: $t) { id journalWritable alarmServiceOk } }"


def _report(now: datetime, journal_writable: bool | None) -> dict[str, Any]:
    values: dict[str, Any] = {
        "agentVersion": "0.3.0",
        "pbxReachable": True,
        "jobserviceReachable": True,
        "alarmServiceOk": True,
        "participantCount": 3,
        "reportedAt": now.isoformat(),
    }
    if journal_writable is not None:
        values["journalWritable"] = journal_writable
    return {"input": values}


async def _shown(gql: GraphQL, world: Any) -> dict[str, Any]:
    data = await gql.as_(world.tokens["platform"]).ok(SHOWN, t=str(world.a.tenant_id))
    [found] = [i for i in data["installations"] if i["id"] == str(world.a.installation_id)]
    return found


async def test_a_journal_that_cannot_be_written_is_shown_and_mailed_once_and_when_fixed(
    sip_rt: Runtime,  # noqa: F811
    agent: GraphQL,  # noqa: F811
    gql: GraphQL,
    smtp: SmtpServer,
    clock: Clock,
    tmp_path: Path,
    world: Any,
) -> None:
    await agent.ok(HEALTH, **_report(clock.now, False))
    assert await _shown(gql, world) == {
        "id": str(world.a.installation_id),
        "journalWritable": False,
        "alarmServiceOk": True,
    }
    told = await sweep(sip_rt)
    assert len(told.opened) == 1 and len(told.mail_ids) == 3
    assert await _kinds(sip_rt, world) == [(IncidentKind.JOURNAL_NOT_WRITABLE, True)]
    await _deliver(sip_rt, tmp_path)
    received = {r.to[0]: r.message for r in smtp.sink.received}
    assert sorted(received) == sorted([*TENANT, SUPPORT])
    german = received["it@owner.example"]
    assert german["Subject"] == "Rundruf-Störung: Rundruf-Journal nicht beschreibbar (Owner AG)"
    assert "kann sein Journal nicht schreiben" in german.get_content()
    # What a stop now really costs (review point 10): not every running alarm again.
    content = " ".join(german.get_content().split())
    assert "womöglich erneut angerufen" in content
    assert "wiederholt er laufende Alarme" not in content

    # Still full on the next report: no second mail.
    clock.advance(seconds=60)
    await agent.ok(HEALTH, **_report(clock.now, False))
    assert (await sweep(sip_rt)).mail_ids == []

    # The journal caught up: the incident closes, with one more mail each.
    clock.advance(seconds=60)
    await agent.ok(HEALTH, **_report(clock.now, True))
    back = await sweep(sip_rt)
    assert len(back.closed) == 1 and back.opened == []
    await _deliver(sip_rt, tmp_path)
    assert {r.message["Subject"] for r in smtp.sink.received[3:]} == {
        "Rundruf: behoben: Rundruf-Journal nicht beschreibbar (Owner AG)"
    }
    assert (await _shown(gql, world))["journalWritable"] is True


async def test_an_older_agent_that_does_not_say_opens_no_journal_incident(
    sip_rt: Runtime,  # noqa: F811
    agent: GraphQL,  # noqa: F811
    gql: GraphQL,
    clock: Clock,
    world: Any,
) -> None:
    await agent.ok(HEALTH, **_report(clock.now, None))
    assert (await _shown(gql, world))["journalWritable"] is None
    assert (await sweep(sip_rt)).opened == []
    assert await _kinds(sip_rt, world) == []

"""The Verlauf shows an accepted alarm whose job file was damaged as a failed trigger,
in words, with its time and the file kept (issue 14, point 8)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

from playwright.sync_api import Browser, expect
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from api.models import Broadcast, BroadcastStatus
from tests.web.browsing import (
    WebStack,
    nav,
    shot,
)
from tests.web.customers import new_customer

NOTICE = "mutation($input: NoticeInput!) { reportNotice(input: $input) { stored } }"
FILE = "20261207T060102Z-6f1c2e0a-3b7d-4c9e-8a21-5d0f4e6b7c88.json"


def test_a_damaged_job_file_shows_in_the_history_as_a_failed_trigger(
    browser: Browser, stack: WebStack, artifacts: Path
) -> None:
    defekt = new_customer(stack, "Defekt GmbH", "defekt")
    assert defekt.agent is not None
    defekt.agent(
        NOTICE,
        input={
            "noticeId": FILE,
            "kind": "jobFileDamaged",
            "agentNumber": "231",
            "callerNumber": "0711 4711",
            "count": 1,
            "at": "2026-12-07T06:01:02+00:00",  # when the alarm was triggered
            "fileName": FILE,
            "mode": 2,
        },
    )
    page = defekt.signed_in(browser, stack)
    nav(page, "Verlauf")
    row = page.locator("tbody tr").first
    expect(row).to_contain_text("fehlgeschlagen")
    expect(row).to_contain_text("Auftrag beschädigt, nicht ausgeführt")
    expect(row).to_contain_text("07.12.26, 06:01:02")  # the browser here keeps UTC
    expect(row).to_contain_text("0711 4711")
    shot(page, artifacts, "history-failed-trigger")
    row.get_by_role("link").click()
    failure = page.locator("[data-failure=JOB_FILE_DAMAGED]")
    expect(failure).to_contain_text("NICHT durchgeführt")
    expect(failure).to_contain_text("Niemand wurde angerufen")
    expect(failure).to_contain_text(f"quarantine/reported/{FILE}")
    expect(page.get_by_text("Noch keine Anrufe.")).to_have_count(0)
    shot(page, artifacts, "history-failed-trigger-detail")


def _lost_trigger(stack: WebStack, tenant_id: str, failure_code: str) -> None:
    """The row as the expiry sweep writes it (tests/test_trigger_broadcast.py drives that)."""
    engine = create_engine(stack.env["RUNDRUF_DATABASE_URL"])
    with Session(engine) as session, session.begin():
        session.add(
            Broadcast(
                tenant_id=uuid.UUID(tenant_id),
                agent_broadcast_id=f"command:{uuid.uuid4()}",
                group_name="Brandschutz",
                mode=2,
                trigger_caller_name="Admin <admin@fern.example>",
                status=BroadcastStatus.FAILED,
                started_at=datetime(2026, 12, 6, 7, 0, tzinfo=UTC),
                finished_at=datetime(2026, 12, 7, 7, 0, tzinfo=UTC),
                member_count=0,
                note="2026-12-06T06:45:30+00:00",
                failure_code=failure_code,
            )
        )
    engine.dispose()


def test_a_trigger_that_expired_for_an_unreachable_agent_shows_as_a_failed_trigger(
    browser: Browser, stack: WebStack, artifacts: Path
) -> None:
    """An alarm asked for while the agent was offline until it expired (issue 14,
    point 11): worded from its code, with the agent's last report (in note)."""
    fern = new_customer(stack, "Fern GmbH", "fern", agent_version=None)
    _lost_trigger(stack, fern.tenant_id, "AGENT_UNREACHABLE")
    page = fern.signed_in(browser, stack)
    nav(page, "Verlauf")
    row = page.locator("tbody tr").first
    expect(row).to_contain_text("Dienst nicht erreichbar, nicht ausgeführt")
    row.get_by_role("link").click()
    failure = page.locator("[data-failure=AGENT_UNREACHABLE]")
    expect(failure).to_contain_text("NICHT durchgeführt")
    expect(failure).to_contain_text("zuletzt gemeldet: 06.12.26, 06:45:30")
    expect(failure).to_contain_text("Niemand wurde angerufen")
    shot(page, artifacts, "history-agent-unreachable")


def test_a_delivered_trigger_without_an_outcome_shows_that_the_outcome_is_unknown(
    browser: Browser, stack: WebStack, artifacts: Path
) -> None:
    """An alarm handed to the agent whose machine then died past the expiry: the page
    says it was handed over and that whether anyone was called is unknown, not "not run"."""
    still = new_customer(stack, "Still GmbH", "still", agent_version=None)
    _lost_trigger(stack, still.tenant_id, "OUTCOME_UNKNOWN")
    page = still.signed_in(browser, stack)
    nav(page, "Verlauf")
    row = page.locator("tbody tr").first
    expect(row).to_contain_text("übergeben, keine Rückmeldung")
    row.get_by_role("link").click()
    failure = page.locator("[data-failure=OUTCOME_UNKNOWN]")
    expect(failure).to_contain_text("an den Rundruf Manager Service beim Kunden übergeben")
    expect(failure).to_contain_text("zuletzt gemeldet: 06.12.26, 06:45:30")
    expect(failure).to_contain_text("Ob angerufen wurde, ist unbekannt")
    expect(failure).not_to_contain_text("NICHT durchgeführt")
    shot(page, artifacts, "history-outcome-unknown")

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
from tests.processes import Client
from tests.web.browsing import (
    PLATFORM_EMAIL,
    PLATFORM_PASSWORD,
    WebStack,
    nav,
    open_page,
    shot,
    sign_in,
)

NOTICE = "mutation($input: NoticeInput!) { reportNotice(input: $input) { stored } }"
FILE = "20261207T060102Z-6f1c2e0a-3b7d-4c9e-8a21-5d0f4e6b7c88.json"


def test_a_damaged_job_file_shows_in_the_history_as_a_failed_trigger(
    browser: Browser, stack: WebStack, artifacts: Path
) -> None:
    ops = Client(stack.url).login(PLATFORM_EMAIL, PLATFORM_PASSWORD)
    tenant = ops('mutation { createTenant(input: {name: "Defekt GmbH"}) { id } }')["createTenant"]
    key = ops(
        "mutation($t: ID!, $v: DateTime!) { issueLicense(tenantId: $t, seats: 5, validUntil: $v) "
        "{ key } }",
        t=tenant["id"],
        v="2099-01-01T00:00:00+00:00",
    )["issueLicense"]["key"]
    ops(
        'mutation($t: ID!) { createUser(input: {tenantId: $t, email: "it@defekt.example", '
        'name: "IT", role: TENANT_VIEWER, password: "defekt passwort 1"}) { id } }',
        t=tenant["id"],
    )
    enrolled = Client(stack.url)(
        "mutation($k: String!) { registerInstallation(licenseKey: $k, hostname: "
        '"swyx.defekt.local", agentVersion: "0.2.0") { token } }',
        k=key,
    )["registerInstallation"]
    Client(stack.url, enrolled["token"])(
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
    page = open_page(browser, stack.url)
    sign_in(page, "it@defekt.example", "defekt passwort 1")
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


def test_a_trigger_that_expired_for_an_unreachable_agent_shows_as_a_failed_trigger(
    browser: Browser, stack: WebStack, artifacts: Path
) -> None:
    """An alarm asked for while the agent was offline until it expired (issue 14,
    point 11): worded from its code, with the agent's last report (in note)."""
    ops = Client(stack.url).login(PLATFORM_EMAIL, PLATFORM_PASSWORD)
    tenant = ops('mutation { createTenant(input: {name: "Fern GmbH"}) { id } }')["createTenant"]
    ops(
        'mutation($t: ID!) { createUser(input: {tenantId: $t, email: "it@fern.example", '
        'name: "IT", role: TENANT_VIEWER, password: "fern passwort 1"}) { id } }',
        t=tenant["id"],
    )
    # The row as the expiry sweep writes it (tests/test_trigger_broadcast.py drives that).
    engine = create_engine(stack.env["RUNDRUF_DATABASE_URL"])
    with Session(engine) as session, session.begin():
        session.add(
            Broadcast(
                tenant_id=uuid.UUID(tenant["id"]),
                agent_broadcast_id=f"command:{uuid.uuid4()}",
                group_name="Brandschutz",
                mode=2,
                trigger_caller_name="Admin <admin@fern.example>",
                status=BroadcastStatus.FAILED,
                started_at=datetime(2026, 12, 6, 7, 0, tzinfo=UTC),
                finished_at=datetime(2026, 12, 7, 7, 0, tzinfo=UTC),
                member_count=0,
                note="2026-12-06T06:45:30+00:00",
                failure_code="AGENT_UNREACHABLE",
            )
        )
    engine.dispose()
    page = open_page(browser, stack.url)
    sign_in(page, "it@fern.example", "fern passwort 1")
    nav(page, "Verlauf")
    row = page.locator("tbody tr").first
    expect(row).to_contain_text("Dienst nicht erreichbar, nicht ausgeführt")
    row.get_by_role("link").click()
    failure = page.locator("[data-failure=AGENT_UNREACHABLE]")
    expect(failure).to_contain_text("NICHT durchgeführt")
    expect(failure).to_contain_text("zuletzt gemeldet: 06.12.26, 06:45:30")
    expect(failure).to_contain_text("Niemand wurde angerufen")
    shot(page, artifacts, "history-agent-unreachable")

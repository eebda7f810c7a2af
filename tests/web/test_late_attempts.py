"""The Verlauf says which attempts were late and why, and which members were not
called, in words built from the codes (issue 14, point 11)."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, expect

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

REPORT = "mutation($input: BroadcastReportInput!) { reportBroadcast(input: $input) { lastSeq } }"
DOWN, BACK = "2026-12-07T09:00:00+00:00", "2026-12-07T09:40:00+00:00"
LATE = {"lateReason": "AGENT_DOWN", "lateFrom": DOWN, "lateUntil": BACK}


def _event(seq: int, member: str, kind: str, at: str, **fields: object) -> dict[str, object]:
    return {
        "seq": seq,
        "memberPbxId": member,
        "memberName": member,
        "memberExtension": None,
        "attemptNo": 1,
        "kind": kind,
        "at": at,
        **fields,
    }


def test_the_history_shows_late_attempts_and_members_not_called_with_the_outage(
    browser: Browser, stack: WebStack, artifacts: Path
) -> None:
    ops = Client(stack.url).login(PLATFORM_EMAIL, PLATFORM_PASSWORD)
    tenant = ops('mutation { createTenant(input: {name: "Spät GmbH"}) { id } }')["createTenant"]
    key = ops(
        "mutation($t: ID!, $v: DateTime!) { issueLicense(tenantId: $t, seats: 5, validUntil: $v) "
        "{ key } }",
        t=tenant["id"],
        v="2099-01-01T00:00:00+00:00",
    )["issueLicense"]["key"]
    ops(
        'mutation($t: ID!) { createUser(input: {tenantId: $t, email: "it@spaet.example", '
        'name: "IT", role: TENANT_VIEWER, password: "spaet passwort 1"}) { id } }',
        t=tenant["id"],
    )
    enrolled = Client(stack.url)(
        "mutation($k: String!) { registerInstallation(licenseKey: $k, hostname: "
        '"swyx.spaet.local", agentVersion: "0.2.0") { token } }',
        k=key,
    )["registerInstallation"]
    events = [
        _event(1, "Anna", "started", "2026-12-07T08:58:00+00:00"),
        _event(2, "Anna", "ended", "2026-12-07T08:59:00+00:00", outcome="BUSY"),
        _event(3, "Bernd", "started", BACK, **LATE),
        _event(4, "Bernd", "ended", BACK, outcome="CONFIRMED"),
    ]
    Client(stack.url, enrolled["token"])(
        REPORT,
        input={
            "broadcastId": "late-1",
            "groupPbxId": "g-late",
            "mode": "ALARM",
            "startedAt": "2026-12-07T08:57:00+00:00",
            "memberCount": 2,
            "status": "COMPLETED",
            "finishedAt": BACK,
            "events": events,
        },
    )
    Client(stack.url, enrolled["token"])(
        REPORT,
        input={
            "broadcastId": "late-test-1",
            "groupPbxId": "g-late",
            "mode": "TEST",
            "startedAt": "2026-12-07T08:00:00+00:00",
            "memberCount": 1,
            "status": "COMPLETED",
            "finishedAt": BACK,
            "events": [
                _event(1, "Carla", "ended", BACK, outcome="NOT_CALLED", detail="not called", **LATE)
            ],
        },
    )
    page = open_page(browser, stack.url)
    sign_in(page, "it@spaet.example", "spaet passwort 1")
    nav(page, "Verlauf")
    page.locator("tbody tr").first.get_by_role("link").click()
    late = page.locator("[data-member=Bernd] [data-late=AGENT_DOWN]")
    # The browser here keeps UTC.
    expect(late).to_have_text(
        "verspätet: der Dienst war nicht erreichbar von 07.12.26, 09:00:00 bis 07.12.26, 09:40:00"
    )
    expect(page.locator("[data-member=Anna] [data-late]")).to_have_count(0)
    shot(page, artifacts, "history-late-attempt")
    nav(page, "Verlauf")
    page.locator("tbody tr").nth(1).get_by_role("link").click()
    carla = page.locator("[data-member=Carla]")
    expect(carla).to_contain_text("nicht angerufen")
    expect(carla).to_contain_text("kein Anruf")
    expect(carla.locator("[data-late=AGENT_DOWN]")).to_contain_text(
        "nicht angerufen: die Zeitgrenze des Probealarms lief ab, während der Dienst nicht "
        "erreichbar war (von 07.12.26, 09:00:00 bis 07.12.26, 09:40:00)"
    )
    shot(page, artifacts, "history-not-called")

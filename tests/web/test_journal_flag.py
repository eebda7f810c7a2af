"""An agent whose broadcast journal cannot be written (issue 14, point 10): Überwachung
shows the warning and the watchdog's incident, the customer's Einstellungen say
"Journal beschreibbar: nein" (the "agent" is a GraphQL client with an installation's
token)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from playwright.sync_api import Browser, expect

from tests.web.broadcast_reports import REPORT
from tests.web.browsing import (
    PLATFORM_EMAIL,
    PLATFORM_PASSWORD,
    WebStack,
    nav,
    open_page,
    shot,
    sign_in,
)
from tests.web.customers import new_customer

HEALTH = "mutation($input: HealthInput!) { reportHealth(input: $input) { pollIntervalSeconds } }"


def test_a_journal_that_cannot_be_written_shows_on_monitoring_and_einstellungen(
    browser: Browser, stack: WebStack, artifacts: Path
) -> None:
    voll = new_customer(stack, "Voll GmbH", "voll", agent_version="0.3.0")
    assert voll.agent is not None
    agent = voll.agent
    report = {
        "agentVersion": "0.3.0",
        "pbxReachable": True,
        "alarmServiceOk": True,
        "journalWritable": False,
        "participantCount": 0,
        "reportedAt": datetime.now(UTC).isoformat(),
    }
    agent(HEALTH, input=report)

    page = open_page(browser, stack.url)
    sign_in(page, PLATFORM_EMAIL, PLATFORM_PASSWORD)
    row = page.get_by_role("row").filter(has_text="Voll GmbH")
    expect(row.get_by_test_id("journal")).to_have_text(
        "Journal nicht beschreibbar: Rundrufe laufen aus dem Speicher"
    )
    # The watchdog (sweeping every second here) opens its incident.
    expect(row.get_by_role("cell").last).to_have_text("Journal nicht beschreibbar")
    shot(page, artifacts, "platform-monitoring-journal-not-writable")

    customer = voll.signed_in(browser, stack)
    expect(customer.get_by_role("heading", level=1)).to_have_text("Einstellungen")
    facts = customer.locator(".facts")
    expect(facts.get_by_test_id("journal")).to_have_text("nein")
    shot(customer, artifacts, "customer-settings-journal-not-writable")

    # Written again: the warning goes, the incident closes.
    agent(HEALTH, input={**report, "journalWritable": True, "reportedAt": _now()})
    expect(row.get_by_test_id("journal")).to_have_count(0)
    expect(row.get_by_role("cell").last).not_to_have_text("Journal nicht beschreibbar")
    customer.reload()
    expect(customer.locator(".facts").get_by_test_id("journal")).to_have_text("ja")


def test_the_journals_note_is_worded_by_the_website_from_its_code(
    browser: Browser, stack: WebStack, artifacts: Path
) -> None:
    # The agent sends the code journalNotWritable (review point 9): the Verlauf words it.
    notiz = new_customer(stack, "Notiz GmbH", "notiz", agent_version="0.3.0")
    assert notiz.agent is not None
    at = "2026-12-07T09:00:00+00:00"
    notiz.agent(
        REPORT,
        input={
            "broadcastId": "full-1",
            "groupPbxId": "g-full",
            "mode": "ALARM",
            "startedAt": at,
            "memberCount": 1,
            "status": "COMPLETED",
            "finishedAt": at,
            "note": "1 of 1 called members confirmed; journalNotWritable",
            "events": [
                {
                    "seq": 1,
                    "memberPbxId": "Anna",
                    "memberName": "Anna",
                    "attemptNo": 1,
                    "kind": "started",
                    "at": at,
                },
                {
                    "seq": 2,
                    "memberPbxId": "Anna",
                    "memberName": "Anna",
                    "attemptNo": 1,
                    "kind": "ended",
                    "at": at,
                    "outcome": "CONFIRMED",
                },
            ],
        },
    )
    page = notiz.signed_in(browser, stack)
    nav(page, "Verlauf")
    page.locator("tbody tr").first.get_by_role("link").click()
    expect(
        page.get_by_text(
            "Das Journal konnte nicht geschrieben werden (Datenträger voll oder nicht "
            "beschreibbar); der Rundruf lief aus dem Speicher weiter, ohne Anruf abzubrechen"
        )
    ).to_have_count(1)
    expect(page.get_by_text("journalNotWritable")).to_have_count(0)
    shot(page, artifacts, "history-journal-note")


def _now() -> str:
    return datetime.now(UTC).isoformat()

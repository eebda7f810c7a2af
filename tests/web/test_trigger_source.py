"""The Verlauf says how each alarm was raised, worded from the code next to the caller:
"per Telefon (SIP)" with the caller's number for a call the agent answered itself,
"über die Website" with who asked, "per Telefon" for a trigger call through the call
routing and for an older agent's report that does not say (issue 16, point 3)."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, expect

from tests.web.broadcast_reports import REPORT, report_event
from tests.web.browsing import WebStack, nav, shot
from tests.web.customers import new_customer


def _report(broadcast_id: str, minute: int, **fields: object) -> dict[str, object]:
    at = f"2026-12-08T09:{minute:02d}:00+00:00"
    return {
        "broadcastId": broadcast_id,
        "groupPbxId": "g-source",
        "mode": "ALARM",
        "startedAt": at,
        "memberCount": 1,
        "status": "COMPLETED",
        "finishedAt": f"2026-12-08T09:{minute:02d}:30+00:00",
        "events": [
            report_event(1, "Anna", "started", at),
            report_event(2, "Anna", "ended", at, outcome="CONFIRMED"),
        ],
        **fields,
    }


def test_the_history_says_how_each_alarm_was_raised(
    browser: Browser, stack: WebStack, artifacts: Path
) -> None:
    quelle = new_customer(stack, "Quelle GmbH", "quelle")
    assert quelle.agent is not None
    quelle.agent(REPORT, input=_report("old-1", 1, triggerCallerNumber="0301111"))
    quelle.agent(
        REPORT,
        input=_report(
            "web-1",
            2,
            triggerSource="WEBSITE",
            triggerCallerName="Anna Admin <anna@quelle.example>",
        ),
    )
    quelle.agent(
        REPORT, input=_report("sip-1", 3, triggerSource="SIP", triggerCallerNumber="+49301234567")
    )
    page = quelle.signed_in(browser, stack)
    nav(page, "Verlauf")
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(3)
    sources = page.locator("tbody [data-trigger-source]")
    expect(sources).to_have_text(["per Telefon (SIP)", "über die Website", "per Telefon"])
    expect(rows.nth(0)).to_contain_text("per Telefon (SIP) · +49301234567")
    expect(rows.nth(1)).to_contain_text("über die Website · Anna Admin <anna@quelle.example>")
    expect(rows.nth(2)).to_contain_text("per Telefon · 0301111")
    shot(page, artifacts, "history-trigger-source")
    rows.nth(0).get_by_role("link").click()
    facts = page.locator("dl.facts")
    expect(facts.locator("[data-trigger-source=SIP]")).to_have_text("per Telefon (SIP)")
    expect(facts).to_contain_text("per Telefon (SIP) · +49301234567")
    page.get_by_role("button", name="English").click()
    expect(facts.locator("[data-trigger-source=SIP]")).to_have_text("by phone (SIP)")
    nav(page, "History")
    expect(page.locator("tbody [data-trigger-source]")).to_have_text(
        ["by phone (SIP)", "from the website", "by phone"]
    )
    page.get_by_role("button", name="Deutsch").click()

"""The Verlauf words a call the agent ended because the member's side refused the SRTP the
installation requires (issue 15, point 9): the agent sends the code `srtpRequired`."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, expect

from tests.web.broadcast_reports import REPORT
from tests.web.browsing import WebStack, nav, shot
from tests.web.customers import new_customer


def test_the_history_words_a_call_refused_for_want_of_srtp(
    browser: Browser, stack: WebStack, artifacts: Path
) -> None:
    customer = new_customer(stack, "Verschlüsselt GmbH", "srtp")
    assert customer.agent is not None
    base = {"memberPbxId": "Carla", "memberName": "Carla", "memberExtension": "210"}
    events = [
        {**base, "seq": 1, "attemptNo": 1, "kind": "started", "at": "2026-12-08T09:00:00+00:00"},
        {
            **base,
            "seq": 2,
            "attemptNo": 1,
            "kind": "ended",
            "at": "2026-12-08T09:00:02+00:00",
            "outcome": "FAILED",
            "detail": "srtpRequired",
        },
    ]
    customer.agent(
        REPORT,
        input={
            "broadcastId": "srtp-1",
            "groupPbxId": "g-srtp",
            "mode": "ALARM",
            "startedAt": "2026-12-08T09:00:00+00:00",
            "memberCount": 1,
            "status": "COMPLETED",
            "finishedAt": "2026-12-08T09:00:03+00:00",
            "events": events,
        },
    )
    page = customer.signed_in(browser, stack)
    nav(page, "Verlauf")
    page.locator("tbody tr").first.get_by_role("link").click()
    detail = page.locator("[data-member=Carla] [data-detail=srtpRequired]")
    expect(detail).to_have_text(
        "Die Gegenstelle hat die verlangte Verschlüsselung (SRTP) nicht angenommen; "
        "der Dienst hat aufgelegt, ohne unverschlüsselt zu senden."
    )
    shot(page, artifacts, "history-srtp-required")
    page.get_by_role("button", name="English").click()
    expect(detail).to_have_text(
        "The other end did not accept the required encryption (SRTP); "
        "the service hung up without sending anything unencrypted."
    )
    page.get_by_role("button", name="Deutsch").click()

"""The Verlauf says which attempts were late and why, and which members were not
called, in words built from the codes (issue 14, point 11)."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, expect

from tests.web.broadcast_reports import REPORT, report_event
from tests.web.browsing import (
    WebStack,
    nav,
    shot,
)
from tests.web.customers import new_customer

DOWN, BACK = "2026-12-07T09:00:00+00:00", "2026-12-07T09:40:00+00:00"
LATE = {"lateReason": "AGENT_DOWN", "lateFrom": DOWN, "lateUntil": BACK}


def test_the_history_shows_late_attempts_and_members_not_called_with_the_outage(
    browser: Browser, stack: WebStack, artifacts: Path
) -> None:
    spaet = new_customer(stack, "Spät GmbH", "spaet")
    assert spaet.agent is not None
    deadline = {"lateReason": "DEADLINE_PASSED", "lateFrom": "2026-12-07T09:02:00+00:00"}
    events = [
        report_event(1, "Anna", "started", "2026-12-07T08:58:00+00:00"),
        report_event(2, "Anna", "ended", "2026-12-07T08:59:00+00:00", outcome="BUSY"),
        report_event(3, "Bernd", "started", BACK, **LATE),
        report_event(4, "Bernd", "ended", BACK, outcome="CONFIRMED"),
        report_event(5, "Emil", "started", "2026-12-07T09:03:00+00:00", **deadline),
        report_event(6, "Emil", "ended", "2026-12-07T09:04:00+00:00", outcome="CONFIRMED"),
        # The quorum made Dora's call unnecessary: a row, worded from its code.
        report_event(7, "Dora", "ended", BACK, outcome="NOT_CALLED", detail="quorumReached"),
    ]
    spaet.agent(
        REPORT,
        input={
            "broadcastId": "late-1",
            "groupPbxId": "g-late",
            "mode": "ALARM",
            "startedAt": "2026-12-07T08:57:00+00:00",
            "memberCount": 4,
            "quorum": 2,
            "quorumReachedAt": BACK,
            "status": "COMPLETED",
            "finishedAt": BACK,
            # An agent's own English summary is not shown: the page words its own.
            "note": "2 of 3 called members confirmed; quorum of 2 reached, 1 members not called",
            "events": events,
        },
    )
    spaet.agent(
        REPORT,
        input={
            "broadcastId": "late-test-1",
            "groupPbxId": "g-late",
            "mode": "TEST",
            "startedAt": "2026-12-07T08:00:00+00:00",
            "memberCount": 1,
            "status": "COMPLETED",
            "finishedAt": BACK,
            "note": "0 of 0 called members confirmed; 1 not called (the timeout had passed)",
            "events": [
                # An older agent's English detail: not shown, the late reason says why.
                report_event(
                    1, "Carla", "ended", BACK, outcome="NOT_CALLED", detail="not called", **LATE
                )
            ],
        },
    )
    page = spaet.signed_in(browser, stack)
    nav(page, "Verlauf")
    page.locator("tbody tr").first.get_by_role("link").click()
    late = page.locator("[data-member=Bernd] [data-late=AGENT_DOWN]")
    # The browser here keeps UTC.
    expect(late).to_have_text(
        "verspätet: der Dienst war nicht erreichbar von 07.12.26, 09:00:00 bis 07.12.26, 09:40:00"
    )
    expect(page.locator("[data-member=Anna] [data-late]")).to_have_count(0)
    # DEADLINE_PASSED says what is true whatever kept the call back (busy lines or not).
    expect(page.locator("[data-member=Emil] [data-late=DEADLINE_PASSED]")).to_have_text(
        "verspätet: die Zeitgrenze des Rundrufs war um 07.12.26, 09:02:00 abgelaufen, "
        "bevor ein Anruf diesen Teilnehmer erreicht hatte"
    )
    dora = page.locator("[data-member=Dora]")
    expect(dora.locator("[data-late=quorumReached]")).to_have_text(
        "Nicht mehr nötig: das Quorum war erreicht."
    )
    expect(page.get_by_test_id("broadcast-result")).to_have_text(
        "2 von 3 angerufenen Teilnehmern haben bestätigt; "
        "Quorum von 2 erreicht, 1 nicht mehr angerufen"
    )
    expect(page.get_by_text("called members confirmed")).to_have_count(0)
    shot(page, artifacts, "history-late-attempt")
    nav(page, "Verlauf")
    page.locator("tbody tr").nth(1).get_by_role("link").click()
    carla = page.locator("[data-member=Carla]")
    expect(carla.locator("[data-late=AGENT_DOWN]")).to_have_text(
        "Die Zeitgrenze des Rundrufs lief ab, während der Dienst nicht erreichbar war "
        "(von 07.12.26, 09:00:00 bis 07.12.26, 09:40:00)."
    )
    # "nicht angerufen" once, in the member's heading; no English on the page.
    assert carla.inner_text().count("nicht angerufen") == 1
    expect(page.get_by_test_id("broadcast-result")).to_have_text(
        "0 von 0 angerufenen Teilnehmern haben bestätigt; 1 nicht angerufen (Zeitgrenze abgelaufen)"
    )
    main = page.locator("main").inner_text()
    assert "not called" not in main and "timeout" not in main, main
    shot(page, artifacts, "history-not-called")

"""The Verlauf shows when a member put the call on hold and took it back, in the order it
happened, and words a call that ended on hold (at the timeout, or as the quorum was
reached) from its code (issue 15, point 7)."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, expect

from tests.web.broadcast_reports import REPORT, report_event
from tests.web.browsing import WebStack, nav, shot
from tests.web.customers import new_customer


def _event(seq: int, member: str, kind: str, at: str, **fields: object) -> dict[str, object]:
    return report_event(seq, member, kind, f"2026-12-08T08:{at}+00:00", **fields)


def test_the_history_shows_hold_and_resume_and_a_call_ended_on_hold(
    browser: Browser, stack: WebStack, artifacts: Path
) -> None:
    halten = new_customer(stack, "Halten GmbH", "halten")
    assert halten.agent is not None
    events = [
        # Anna holds, comes back, hears the message again and confirms.
        _event(1, "Anna", "started", "00:00"),
        _event(2, "Anna", "answered", "00:05"),
        _event(3, "Anna", "held", "00:10"),
        _event(4, "Anna", "resumed", "00:40"),
        _event(5, "Anna", "confirmed", "00:50"),
        _event(6, "Anna", "ended", "00:51", outcome="CONFIRMED"),
        # Bernd holds, comes back, holds again and is still away at the timeout.
        _event(7, "Bernd", "started", "00:00"),
        _event(8, "Bernd", "answered", "00:06"),
        _event(9, "Bernd", "held", "00:20"),
        _event(10, "Bernd", "resumed", "00:30"),
        _event(11, "Bernd", "held", "01:00"),
        _event(12, "Bernd", "ended", "05:00", outcome="ANSWERED", detail="endedOnHold"),
        # Carla holds and is still away when Anna's confirmation reaches the quorum.
        _event(13, "Carla", "started", "00:00"),
        _event(14, "Carla", "answered", "00:04"),
        _event(15, "Carla", "held", "00:30"),
        _event(16, "Carla", "ended", "00:50", outcome="ANSWERED", detail="endedOnHoldQuorum"),
    ]
    halten.agent(
        REPORT,
        input={
            "broadcastId": "hold-1",
            "groupPbxId": "g-hold",
            "mode": "ALARM",
            "startedAt": "2026-12-08T08:00:00+00:00",
            "memberCount": 3,
            "status": "COMPLETED",
            "finishedAt": "2026-12-08T08:05:00+00:00",
            "events": events,
        },
    )
    page = halten.signed_in(browser, stack)
    nav(page, "Verlauf")
    page.locator("tbody tr").first.get_by_role("link").click()
    anna = page.locator("[data-member=Anna] .steps li")
    expect(anna).to_have_text(
        [
            "08:00:00 wird angerufen",
            "08:00:05 angenommen",
            "08:00:10 gehalten",
            "08:00:40 fortgesetzt",
            "08:00:50 bestätigt (Taste 1)",
            "08:00:51 beendet: bestätigt",
        ]
    )
    bernd = page.locator("[data-member=Bernd]")
    # The latest hold came after the latest return: the steps say so in their order.
    expect(bernd.locator(".steps li")).to_have_text(
        [
            "08:00:00 wird angerufen",
            "08:00:06 angenommen",
            "08:00:30 fortgesetzt",
            "08:01:00 gehalten",
            "08:05:00 beendet: angenommen, nicht bestätigt",
        ]
    )
    expect(bernd.locator("[data-detail=endedOnHold]")).to_have_text(
        "Der Teilnehmer hielt den Anruf noch, als die Zeitgrenze des Rundrufs ablief; "
        "der Dienst hat aufgelegt."
    )
    expect(page.locator("[data-member=Carla] [data-detail=endedOnHoldQuorum]")).to_have_text(
        "Der Teilnehmer hielt den Anruf noch, als das Quorum erreicht war; "
        "der Dienst hat aufgelegt."
    )
    shot(page, artifacts, "history-hold")
    page.get_by_role("button", name="English").click()
    expect(page.locator("[data-member=Anna] .steps li").nth(2)).to_have_text("08:00:10 on hold")
    expect(page.locator("[data-member=Anna] .steps li").nth(3)).to_have_text("08:00:40 resumed")
    expect(page.locator("[data-member=Bernd] [data-detail=endedOnHold]")).to_have_text(
        "The member still had the call on hold when the broadcast timeout passed; "
        "the service hung up."
    )
    expect(page.locator("[data-member=Carla] [data-detail=endedOnHoldQuorum]")).to_have_text(
        "The member still had the call on hold when the quorum was reached; the service hung up."
    )
    page.get_by_role("button", name="Deutsch").click()

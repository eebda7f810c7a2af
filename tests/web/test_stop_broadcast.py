"""Stopping a running broadcast from the website (issue 17, point 2): a tenant admin
presses "Rundruf beenden" on the broadcast's page, confirms, and the history says who
stopped it, how and when ("beendet von …"), live. Viewers get no button.

The agent is a GraphQL client with the installation's token, as in test_run_alarm.py;
tests/test_stop_e2e.py stops a broadcast of the real agent."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, expect

from tests.web.broadcast_reports import REPORT
from tests.web.browsing import WebStack, nav, open_page, shot, sign_in
from tests.web.test_run_alarm import (
    ADMIN_PASSWORD,
    _admin_email,
    _at,
    _complete_next,
    _customer_with_admin,
    _event,
    _report,
)


def test_an_admin_stops_a_running_broadcast_and_the_history_says_by_whom(
    browser: Browser, stack: WebStack, artifacts: Path
) -> None:
    halt = _customer_with_admin(stack, "halt")
    assert halt.agent is not None
    running = [
        _event(1, "Anna", "started", 1),
        _event(2, "Anna", "ringing", 2),
        _event(3, "Bernd", "started", 1),
    ]
    halt.agent(REPORT, input=_report("RUNNING", running))

    page = open_page(browser, stack.url)
    sign_in(page, _admin_email("halt"), ADMIN_PASSWORD)
    nav(page, "Verlauf")
    page.locator("tbody tr").first.get_by_role("link").click()
    expect(page.get_by_test_id("broadcast-status")).to_have_text("läuft")
    page.evaluate("window.__sameDocument = true")

    # The confirmation says what a stop does; letting it run is the safe choice.
    page.get_by_role("button", name="Rundruf beenden").click()
    dialog = page.get_by_role("dialog", name="Rundruf beenden?")
    expect(dialog.get_by_test_id("stop-what")).to_contain_text(
        "Der laufende Rundruf der Gruppe Brandschutz wird beendet"
    )
    expect(dialog.get_by_role("button", name="Weiterlaufen lassen")).to_be_focused()
    dialog.get_by_label("Grund (freiwillig)").fill("Fehlalarm")
    shot(page, artifacts, "stop-broadcast-confirmation")
    dialog.get_by_role("button", name="Rundruf beenden").click()

    command = _complete_next(halt, "cancelBroadcast", {"stopped": ["web-test-1"]})
    assert command["payload"] == {
        "broadcastId": "web-test-1",
        "requestedBy": "Chef <chef@halt.example>",
        "reason": "Fehlalarm",
    }
    done = page.locator("main [role=status]").filter(has_text="Der Rundruf wurde beendet.")
    expect(done).to_have_count(1)

    # The agent's report: the stop, the calls it ended, the member it left out.
    stop = {"via": "WEBSITE", "at": _at(5), "by": "Chef <chef@halt.example>", "reason": "Fehlalarm"}
    stopped = [
        _event(4, "Anna", "ended", 5, outcome="NO_ANSWER", detail="broadcastStopped"),
        _event(5, "Bernd", "ended", 5, outcome="NOT_CALLED", detail="broadcastStopped"),
    ]
    halt.agent(REPORT, input=_report("CANCELLED", running + stopped, finishedAt=_at(6), stop=stop))
    stopped_by = page.get_by_test_id("stopped-by")
    expect(stopped_by).to_contain_text("beendet von Chef <chef@halt.example> (über die Website)")
    expect(stopped_by).to_contain_text("Grund: Fehlalarm")
    # "beendet" as in the list, the report and the CSV (review of issue 17, L3).
    expect(page.get_by_test_id("broadcast-status")).to_have_text("beendet")
    expect(page.get_by_role("button", name="Rundruf beenden")).to_have_count(0)
    assert page.evaluate("window.__sameDocument") is True  # live, no reload
    shot(page, artifacts, "stopped-broadcast")


def test_a_viewer_sees_no_stop_button(browser: Browser, stack: WebStack) -> None:
    ansicht = _customer_with_admin(stack, "ansicht")
    assert ansicht.agent is not None
    ansicht.agent(REPORT, input=_report("RUNNING", [_event(1, "Anna", "started", 1)]))
    page = ansicht.signed_in(browser, stack)  # the viewer
    nav(page, "Verlauf")
    page.locator("tbody tr").first.get_by_role("link").click()
    expect(page.get_by_test_id("broadcast-status")).to_have_text("läuft")
    expect(page.get_by_role("button", name="Rundruf beenden")).to_have_count(0)


def test_a_stop_while_the_agent_is_away_names_the_phone_route_and_goes_when_it_ended(
    browser: Browser, stack: WebStack
) -> None:
    # Review of issue 17, M1: the page said only "Gespeichert; wartet auf den Rundruf
    # Manager Service …", and that stayed after the broadcast had ended.
    # Not "fern": test_failed_trigger.py makes "Fern GmbH" in the same web stack.
    fern = _customer_with_admin(stack, "abwesend")
    assert fern.agent is not None  # a GraphQL client that never sends a heartbeat: away
    running = [_event(1, "Anna", "started", 1), _event(2, "Anna", "ringing", 2)]
    fern.agent(REPORT, input=_report("RUNNING", running))
    page = open_page(browser, stack.url)
    sign_in(page, _admin_email("abwesend"), ADMIN_PASSWORD)
    nav(page, "Verlauf")
    page.locator("tbody tr").first.get_by_role("link").click()
    expect(page.get_by_test_id("broadcast-status")).to_have_text("läuft")
    page.get_by_role("button", name="Rundruf beenden").click()
    dialog = page.get_by_role("dialog", name="Rundruf beenden?")
    dialog.get_by_role("button", name="Rundruf beenden").click()
    waiting = page.locator("main [role=status]").filter(
        has_text="Der Rundruf läuft weiter, bis der Agent erreichbar ist"
    )
    expect(waiting).to_contain_text("sofort beenden per Telefon: 299 anrufen, PIN eingeben, 0")
    expect(page.get_by_text("Gespeichert; wartet")).to_have_count(0)
    # The broadcast ends (by phone): the waiting message goes, live.
    stop = {"via": "PHONE", "at": _at(5), "by": "+4930123"}
    ended = [_event(3, "Anna", "ended", 5, outcome="NO_ANSWER", detail="broadcastStopped")]
    fern.agent(REPORT, input=_report("CANCELLED", running + ended, finishedAt=_at(6), stop=stop))
    expect(page.get_by_test_id("stopped-by")).to_contain_text("per Telefon")
    expect(waiting).to_have_count(0)
    expect(page.locator("main .error")).to_have_count(0)

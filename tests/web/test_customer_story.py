"""One customer's story in a real browser against the real system, from the platform
admin's first click to a live alarm history: `rundruf serve` and `rundruf worker` on
PostgreSQL and Redis, the job service, the agent with the SwyxWare simulator and
simulated calls."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from edge_agent.dialer.sim import Behaviour, SimDialerControl
from edge_agent.pbx.port import UserState
from edge_agent.pbx.sim import SimControl
from edge_agent.pbx.sim_trigger import Outcome, place_trigger_call
from tests.jobservice.support import AGENT, ROUTING
from tests.jobservice.test_process import JobService
from tests.processes import Agent, agent_env
from tests.web.browsing import (
    PHONE_WIDTH,
    PLATFORM_EMAIL,
    PLATFORM_PASSWORD,
    WebStack,
    assert_fits,
    nav,
    open_page,
    shot,
    sign_in,
)
from tests.world import wav_bytes

CUSTOMER = "it@musterfirma.example"
CUSTOMER_PASSWORD = "musterfirma passwort 1"
SIM_HOST, SIM_ADMIN, SIM_PASSWORD = "swyx.musterfirma.local", "admin", "swyx-pass"
GROUP = "Brandschutzhelfer"


@dataclass
class Site:
    state: Path
    sim: SimControl
    jobs: JobService
    agent: Agent | None = None


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """The customer's PBX host: simulated SwyxWare and the job service; the agent comes later."""
    state = tmp_path / "site"
    state.mkdir()
    sim = SimControl(state / "swyx-sim.json")
    sim.create(host=SIM_HOST, admin_user=SIM_ADMIN, admin_password=SIM_PASSWORD)
    sim.seed_demo(n_members=5)
    (tmp_path / "jobs").mkdir()
    jobs = JobService(tmp_path / "jobs").start()
    site = Site(state, sim, jobs)
    try:
        yield site
    finally:
        if site.agent is not None:
            site.agent.stop()
        jobs.kill()


def platform_creates_the_customer(page: Page, artifacts: Path) -> str:
    """Tenant, license and the customer's admin through the website; returns the license key."""
    nav(page, "Mandanten")
    page.get_by_label("Name").fill("Musterfirma GmbH")
    page.get_by_label("Kontakt-E-Mail").fill("it@musterfirma.example")
    page.get_by_role("button", name="Mandant anlegen").click()
    expect(page.get_by_role("cell", name="Musterfirma GmbH", exact=True)).to_be_visible()
    shot(page, artifacts, "platform-tenants")

    nav(page, "Lizenzen")
    page.get_by_label("Mandant").select_option(label="Musterfirma GmbH")
    page.get_by_label("Teilnehmer (Plätze)").fill("25")
    page.get_by_role("button", name="Lizenz ausstellen").click()
    key_box = page.get_by_test_id("license-key")
    expect(key_box).to_have_text(re.compile(r"^rdl_\S+$"))
    key = key_box.inner_text().strip()
    expect(page.get_by_text("nur jetzt sichtbar")).to_be_visible()
    shot(page, artifacts, "platform-licenses")
    # Shown once: after a reload only its prefix is listed.
    page.reload()
    expect(page.get_by_role("cell", name="Musterfirma GmbH", exact=True)).to_be_visible()
    expect(page.get_by_test_id("license-key")).to_have_count(0)
    assert key not in page.content()

    nav(page, "Benutzer")
    page.get_by_label("E-Mail-Adresse").fill(CUSTOMER)
    page.get_by_label("Name", exact=True).fill("IT Musterfirma")
    page.get_by_label("Rolle").select_option("TENANT_ADMIN")
    page.get_by_label("Mandant").select_option(label="Musterfirma GmbH")
    page.get_by_label("Anfangspasswort").fill(CUSTOMER_PASSWORD)
    page.get_by_role("button", name="Benutzer anlegen").click()
    expect(page.get_by_role("cell", name=CUSTOMER, exact=True)).to_be_visible()
    shot(page, artifacts, "platform-users")
    return key


def start_agent(stack: WebStack, site: Site, license_key: str) -> None:
    agent = Agent(
        agent_env(
            site.state,
            RUNDRUF_AGENT_JOBSERVICE_URL=site.jobs.url,
            RUNDRUF_AGENT_JOBSERVICE_TOKEN=AGENT,
            RUNDRUF_AGENT_SIM_TIME_SCALE="0.05",
            RUNDRUF_AGENT_RETRY_PAUSE_SECONDS="0.5",
            RUNDRUF_AGENT_RING_TIMEOUT_SECONDS="300",
        ),
        site.state,
    )
    agent.enroll(stack.url, license_key)
    site.agent = agent.start()


def trigger_alarm(site: Site, extension: str, pin: str) -> None:
    """A caller dials the agent number on the simulated PBX: PIN, 2 (alarm), 1 (confirm).

    In a thread of its own: Playwright's sync API keeps an event loop on this one.
    """
    call = place_trigger_call(
        site.sim.state_path,
        site.jobs.url,
        ROUTING,
        extension,
        [pin, "2", "1"],
        caller_number="100",
        caller_name="Pforte",
        time_scale=0.01,
    )
    with ThreadPoolExecutor(1) as pool:
        result = pool.submit(asyncio.run, call).result(timeout=60)
    assert result.outcome is Outcome.POSTED, result


def test_a_customer_is_set_up_converts_a_group_and_watches_an_alarm_live(
    browser: Browser, stack: WebStack, site: Site, artifacts: Path
) -> None:
    ops = open_page(browser, stack.url)
    sign_in(ops, PLATFORM_EMAIL, PLATFORM_PASSWORD)
    expect(ops.get_by_role("heading", level=1)).to_have_text("Überwachung der Anwendungen")
    key = platform_creates_the_customer(ops, artifacts)

    start_agent(stack, site, key)
    # The monitoring table reads again by itself: the agent's first heartbeat shows up.
    nav(ops, "Überwachung")
    row = ops.get_by_role("row").filter(has_text="Musterfirma GmbH")
    expect(row.get_by_test_id("heartbeat")).to_have_text(re.compile(r"vor \d+ s"))
    expect(row.get_by_role("cell", name="ja").first).to_be_visible()
    # It runs on the simulator and the table says so: the label, the adapter and dialer.
    expect(row.get_by_test_id("simulator")).to_have_text("Simulator")
    expect(row.get_by_test_id("runs-on")).to_have_text("SwyxWare-Simulator · simulierte Anrufe")
    expect(row.get_by_test_id("sip-registration")).to_have_text("entfällt (simulierte Anrufe)")
    shot(ops, artifacts, "platform-monitoring")

    # First sign-in: Einstellungen, "anmelden" until the agent answers, then Gruppen.
    page = open_page(browser, stack.url)
    sign_in(page, CUSTOMER, CUSTOMER_PASSWORD)
    expect(page.get_by_role("heading", level=1)).to_have_text("Einstellungen")
    page.get_by_label("Swyx-Server (Host)").fill(SIM_HOST)
    page.get_by_label("Administrator").fill(SIM_ADMIN)
    page.get_by_label("Passwort").fill("falsch")
    page.get_by_role("button", name="anmelden").click()
    # What the agent met on the PBX, in words.
    expect(page.get_by_role("alert")).to_contain_text("Der Agent meldet einen Fehler")
    expect(page.get_by_role("alert")).to_contain_text("wrong user name or password")
    shot(page, artifacts, "customer-settings-refused")
    # A slow PBX: the page shows progress until the agent answers.
    site.sim.set_fault(delay_seconds=1.0)
    page.get_by_label("Passwort").fill(SIM_PASSWORD)
    page.get_by_role("button", name="anmelden").click()
    expect(page.get_by_role("status").filter(has_text="Der Agent meldet sich")).to_be_visible()
    expect(page.get_by_role("button", name="anmelden")).to_be_disabled()
    shot(page, artifacts, "customer-settings-progress")
    expect(page.get_by_role("heading", level=1)).to_have_text("Gruppen")
    site.sim.clear_faults()
    expect(page.get_by_role("link", name=GROUP)).to_be_visible()
    shot(page, artifacts, "customer-groups")

    create_convert_and_convert_back(page)
    page.get_by_role("link", name=GROUP).click()
    convert_the_group(page, artifacts)
    pin = edit_the_agent(page)
    extension = page.get_by_test_id("agent-number").inner_text()
    change_members(page)
    upload_an_announcement(page, artifacts)
    speak_an_announcement(page)

    # Everyone answers after 10 s of ringing: the broadcast runs long enough to watch it.
    script = SimDialerControl(site.sim.state_path)
    for user in site.sim.snapshot().users:
        site.sim.set_state(user.name, UserState.LOGGED_ON)
        if user.extension:
            script.script(str(user.extension), Behaviour.CONFIRM, after_s=200)
    watch_the_alarm_live(page, site, extension, pin, artifacts)

    # Meanwhile the monitoring table, never reloaded, shows the group's 5 participants.
    participants = row.get_by_role("cell").nth(3)
    expect(participants).to_have_text("5", timeout=90_000)
    shot(ops, artifacts, "platform-monitoring-later")
    change_the_timing(page, artifacts)
    see_an_incident_come_and_go(ops, site, artifacts)
    see_the_agent_go_away_and_come_back(page, ops, site, artifacts)
    ops.set_viewport_size({"width": PHONE_WIDTH, "height": 800})
    assert_fits(ops)
    shot(ops, artifacts, "phone-monitoring")


def create_convert_and_convert_back(page: Page) -> None:
    page.get_by_label("Name").fill("Krisenstab")
    page.get_by_label("Beschreibung").fill("Geschäftsleitung und IT")
    page.get_by_role("button", name="Gruppe anlegen").click()
    # Created on the PBX by the agent; the list follows the directory live.
    page.get_by_role("link", name="Krisenstab").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Krisenstab")
    expect(page.get_by_text("Diese Gruppe hat noch keine Teilnehmer.")).to_be_visible()
    page.get_by_role("button", name="in Rundrufgruppe umwandeln").click()
    expect(page.get_by_test_id("agent-number")).to_have_text(re.compile(r"^\d+$"))
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Rundruf-Funktion entfernen").click()
    expect(page.get_by_text("Diese Gruppe ist keine Rundrufgruppe.")).to_be_visible()
    expect(page.get_by_test_id("agent-number")).to_have_count(0)
    page.get_by_role("link", name="Alle Gruppen").click()


def convert_the_group(page: Page, artifacts: Path) -> None:
    expect(page.get_by_role("heading", level=1)).to_have_text(GROUP)
    page.get_by_role("button", name="in Rundrufgruppe umwandeln").click()
    # Progress while the agent creates the agent user, then its number and PIN.
    expect(page.get_by_test_id("agent-number")).to_have_text(re.compile(r"^\d+$"))
    expect(page.get_by_test_id("agent-pin")).to_have_text(re.compile(r"^\d{4,8}$"))
    shot(page, artifacts, "customer-group-converted")


def edit_the_agent(page: Page) -> str:
    page.get_by_role("button", name="bearbeiten").click()
    pin_field = page.get_by_label("PIN", exact=True)
    pin_field.fill("12")
    page.get_by_role("button", name="Speichern").click()
    # A refused input, in plain words, naming the field.
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Bitte prüfen Sie das Feld „PIN“")
    pin_field.fill("4321")
    page.get_by_role("button", name="Speichern").click()
    expect(page.get_by_test_id("agent-pin")).to_have_text("4321")
    return "4321"


def change_members(page: Page) -> None:
    members = page.get_by_role("region", name="Teilnehmer")
    first = members.get_by_role("cell").first.inner_text()
    members.get_by_role("button", name=f"{first} entfernen").click()
    expect(members.get_by_role("cell", name=first, exact=True)).to_have_count(0)
    choice = members.get_by_label("Teilnehmer hinzufügen")
    option = choice.locator("option").filter(has_text=re.compile(rf"^{re.escape(first)}( \(|$)"))
    choice.select_option(option.get_attribute("value"))
    members.get_by_role("button", name="hinzufügen").click()
    expect(members.get_by_role("cell", name=first, exact=True)).to_be_visible()


def upload_an_announcement(page: Page, artifacts: Path) -> None:
    alarm = page.get_by_role("article", name="Ansage für Alarmrufe")
    expect(alarm).to_contain_text("Noch keine Ansage hinterlegt.")
    alarm.get_by_label("Audiodatei (WAV)").set_input_files(
        files=[{"name": "alarm.wav", "mimeType": "audio/wav", "buffer": wav_bytes(1.0)}]
    )
    alarm.get_by_role("button", name="hochladen").click()
    expect(alarm.locator("[data-status]")).to_contain_text("bereit")
    player = alarm.get_by_label("Ansage anhören")
    expect(player).to_have_attribute("src", re.compile(r"^/api/audio/"))
    # The browser loads and decodes it (cookie session): a one-second recording.
    duration = player.evaluate(
        """el => new Promise((resolve, reject) => {
            el.onloadedmetadata = () => resolve(el.duration);
            el.onerror = () => reject(new Error("audio error " + el.error.code));
            el.preload = "metadata";
            el.load();
        })"""
    )
    assert abs(duration - 1.0) < 0.05, duration
    shot(page, artifacts, "customer-announcements")


def speak_an_announcement(page: Page) -> None:
    test = page.get_by_role("article", name="Ansage für Testrufe")
    test.get_by_label("Text für die Sprachausgabe").fill("Dies ist ein Test des Rundrufs.")
    test.get_by_role("button", name="in Sprache umwandeln").click()
    # Pending while the worker speaks it (espeak-ng), then ready to play.
    status = page.get_by_role("article", name="Ansage für Testrufe").locator("[data-status]")
    expect(status).to_contain_text("aus Text")
    expect(status).to_contain_text("bereit", timeout=60_000)
    player = page.get_by_role("article", name="Ansage für Testrufe").get_by_label("Ansage anhören")
    expect(player).to_have_attribute("src", re.compile(r"^/api/audio/"))


def watch_the_alarm_live(page: Page, site: Site, extension: str, pin: str, artifacts: Path) -> None:
    nav(page, "Verlauf")
    expect(page.get_by_text("Noch keine Rundrufe.")).to_be_visible()
    page.evaluate("window.notReloaded = true")
    trigger_alarm(site, extension, pin)
    # The broadcast appears without a reload (broadcastUpdated over graphql-transport-ws).
    row = page.get_by_role("row").filter(has_text=GROUP)
    expect(row).to_contain_text("Alarm (hinterlegte Nachricht)")
    shot(page, artifacts, "customer-history-list")
    row.get_by_role("link").click()
    status = page.get_by_test_id("broadcast-status")
    expect(status).to_have_text("läuft")
    expect(page.locator(".member").first).to_contain_text("klingelt")
    shot(page, artifacts, "customer-history-running")
    expect(status).to_have_text("abgeschlossen", timeout=90_000)
    members = page.locator(".member")
    expect(members).to_have_count(5)
    for i in range(5):
        expect(members.nth(i)).to_contain_text("bestätigt (Taste 1)")
    assert page.evaluate("window.notReloaded") is True
    shot(page, artifacts, "customer-history-finished")

    # The same page on a phone: nothing wider than the screen.
    page.set_viewport_size({"width": PHONE_WIDTH, "height": 800})
    assert_fits(page)
    shot(page, artifacts, "phone-history")
    nav(page, "Gruppen")
    assert_fits(page)
    shot(page, artifacts, "phone-groups")


def see_an_incident_come_and_go(ops: Page, site: Site, artifacts: Path) -> None:
    """The PBX goes down and comes back; the monitoring table, never reloaded, follows."""
    row = ops.get_by_role("row").filter(has_text="Musterfirma GmbH")
    site.sim.set_fault(unreachable=True)
    expect(row).to_contain_text("Swyx-Server nicht erreichbar", timeout=60_000)
    shot(ops, artifacts, "platform-monitoring-incident")
    site.sim.clear_faults()
    expect(row).not_to_contain_text("Swyx-Server nicht erreichbar", timeout=60_000)
    expect(row.get_by_role("cell").last).to_have_text("keine")


def change_the_timing(page: Page, artifacts: Path) -> None:
    page.set_viewport_size({"width": 1280, "height": 900})
    nav(page, "Einstellungen")
    expect(page.get_by_text("Status: angemeldet")).to_be_visible()
    # The customer sees what their installation runs on, labelled as the simulator it is.
    facts = page.locator(".facts")
    expect(facts.get_by_test_id("simulator")).to_have_text("Simulator")
    expect(facts.get_by_test_id("runs-on")).to_have_text("SwyxWare-Simulator · simulierte Anrufe")
    expect(facts.get_by_test_id("sip-registration")).to_have_text("entfällt (simulierte Anrufe)")
    # The shortest interval: the agent reports every 5 s, the watchdog sees it soon.
    page.get_by_label("Abfrageintervall (Sekunden)").fill("5")
    page.get_by_label("Timeout für Rundrufe (Sekunden)").fill("120")
    page.get_by_role("button", name="Speichern").click()
    # Saved once the agent has the new values.
    expect(page.get_by_role("status").filter(has_text="Gespeichert.")).to_be_visible()
    shot(page, artifacts, "customer-settings-saved")
    page.reload()
    expect(page.get_by_label("Abfrageintervall (Sekunden)")).to_have_value("5")
    expect(page.get_by_label("Timeout für Rundrufe (Sekunden)")).to_have_value("120")


def see_the_agent_go_away_and_come_back(page: Page, ops: Page, site: Site, artifacts: Path) -> None:
    """The agent stops: with a 5 s poll interval the customer's pages say so within about
    10 s, without a reload; a change waits for it at once; its values turn unknown; and all
    of it goes away when the agent reports again."""
    assert site.agent is not None
    banner = page.locator("#agent")
    expect(banner).to_be_hidden()
    expect(page.get_by_test_id("agent-state")).to_have_text("Rundruf Manager Service verbunden.")
    site.agent.stop()
    expect(banner).to_contain_text("Rundruf Manager Service nicht verbunden seit")
    # The customer's own view (Einstellungen): no last green values.
    state = page.get_by_test_id("agent-state")
    expect(state).to_contain_text("nicht verbunden seit")
    for label in ("Swyx-Server erreichbar", "Alarmruf-Dienst", "Teilnehmer", "SIP-Anmeldung"):
        fact = page.locator("dt", has_text=label).locator("xpath=following-sibling::dd[1]")
        expect(fact).to_contain_text("unbekannt seit")
    shot(page, artifacts, "customer-agent-away")
    # The monitoring table, never reloaded, says the same.
    row = ops.get_by_role("row").filter(has_text="Musterfirma GmbH")
    expect(row.get_by_role("cell").nth(4)).to_contain_text("unbekannt seit")
    expect(row.get_by_role("cell").nth(3)).to_contain_text("unbekannt seit")
    shot(ops, artifacts, "platform-monitoring-agent-away")

    # Every customer page shows it; a change is queued and says at once that it waits.
    nav(page, "Gruppen")
    expect(banner).to_contain_text("nicht verbunden seit")
    page.get_by_label("Name").fill("Notfallteam")
    page.get_by_role("button", name="Gruppe anlegen").click()
    waiting = page.get_by_role("status").filter(has_text="wartet auf den Rundruf Manager Service")
    expect(waiting).to_contain_text("(nicht verbunden seit", timeout=5_000)
    shot(page, artifacts, "customer-change-waits-for-agent")

    site.agent = site.agent.start()
    expect(banner).to_be_hidden()
    # The queued change ran once the agent was back.
    expect(page.get_by_role("link", name="Notfallteam")).to_be_visible()
    expect(waiting).to_have_count(0)
    expect(row.get_by_role("cell").nth(4)).to_have_text("ja")
    expect(row).not_to_contain_text("unbekannt seit")

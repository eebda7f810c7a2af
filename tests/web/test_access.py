"""The website without an agent: plain-word errors, English, what a viewer may do."""

from __future__ import annotations

import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, WebSocketRoute, expect

from tests.processes import RUNDRUF, Client
from tests.web.browsing import (
    PHONE_WIDTH,
    PLATFORM_EMAIL,
    PLATFORM_PASSWORD,
    WebStack,
    assert_fits,
    forgive,
    nav,
    open_page,
    shot,
    sign_in,
)
from tests.web.customers import new_customer

HEALTH = "mutation($input: HealthInput!) { reportHealth(input: $input) { pollIntervalSeconds } }"


def test_a_wrong_password_is_explained_in_plain_words(
    browser: Browser, stack: WebStack, artifacts: Path
) -> None:
    page = open_page(browser, stack.url, width=PHONE_WIDTH)
    sign_in(page, PLATFORM_EMAIL, "not the password")
    expect(page.get_by_role("alert")).to_have_text("E-Mail-Adresse oder Passwort ist falsch.")
    assert_fits(page)
    shot(page, artifacts, "phone-login-error")


def test_repeated_wrong_passwords_are_told_a_short_wait_in_plain_words(
    browser: Browser, stack: WebStack
) -> None:
    # An account nobody uses elsewhere: its failures slow no other test's sign-in.
    page = open_page(browser, stack.url)
    alert = page.get_by_role("alert")
    for _ in range(3):
        sign_in(page, "nobody@web-throttle.example", "not the password")
        expect(alert).to_have_text("E-Mail-Adresse oder Passwort ist falsch.")
        page.evaluate("document.querySelector('[role=alert]').textContent = ''")
    wait = re.compile(r"Zu viele Versuche\. Bitte warten Sie (1 Sekunde|\d+ Sekunden)\.")
    for _ in range(5):  # a slow machine may let a retry through after a second
        sign_in(page, "nobody@web-throttle.example", "not the password")
        expect(alert).not_to_have_text("")
        if wait.search(alert.inner_text()):
            break
        page.evaluate("document.querySelector('[role=alert]').textContent = ''")
    expect(alert).to_contain_text(wait)
    # Seconds, never the quarter of an hour of a lock-out; in German only, built
    # from the code, without the server's English words after it.
    assert wait.fullmatch(alert.inner_text().strip()), alert.inner_text()
    match = re.search(r"\d+", alert.inner_text())
    assert match is not None and int(match.group()) <= 60


def test_a_browser_that_signed_in_before_gets_in_while_its_account_is_attacked(
    browser: Browser, stack: WebStack
) -> None:
    email, password = "known-browser@web-throttle.example", "a known browser 2026"
    subprocess.run(
        [*RUNDRUF, "admin", "create-platform-admin", "--email", email, "--password", password],
        env=stack.env,
        check=True,
        timeout=60,
        capture_output=True,
    )
    page = open_page(browser, stack.url)
    sign_in(page, email, password)
    page.get_by_role("button", name="Abmelden").click()
    stranger = open_page(browser, stack.url)
    # A spread attack on the account from many addresses: each address gets one
    # guess at once, any further one waits for the account's rationed openings
    # (one per opening, a second and more apart; a minute after forty failures)...
    assert _guess_from_many_addresses(stack.url, email, 40) == ["UNAUTHENTICATED"] * 40
    assert set(_guess_from_many_addresses(stack.url, email, 40)) == {"TOO_MANY_ATTEMPTS"}
    # ...a browser that never signed in to it, at an address that has just failed
    # on it too, is told to wait, in German...
    sign_in(stranger, email, "a typo")
    expect(stranger.get_by_role("alert")).to_have_text("E-Mail-Adresse oder Passwort ist falsch.")
    stranger.evaluate("document.querySelector('[role=alert]').textContent = ''")
    sign_in(stranger, email, password)
    expect(stranger.get_by_role("alert")).to_contain_text("Zu viele Versuche. Bitte warten Sie")
    # ...but this browser, known to the account by its device cookie, gets in at once.
    sign_in(page, email, password)
    expect(page.get_by_role("button", name="Abmelden")).to_be_visible()


def _guess_from_many_addresses(url: str, email: str, count: int) -> list[str]:
    """Wrong passwords for the account from 127.0.5.1, .2, ... at the same time
    (threads: Playwright's sync API holds this thread's event loop)."""
    query = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }"

    def guess(i: int) -> str:
        transport = httpx.HTTPTransport(local_address=f"127.0.5.{i + 1}")
        with httpx.Client(transport=transport, timeout=30) as client:
            variables = {"e": email, "p": "x"}
            body = client.post(f"{url}/graphql", json={"query": query, "variables": variables})
        return str(body.json()["errors"][0]["extensions"]["code"])

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(guess, range(count)))


def test_english_can_be_chosen_and_is_kept(
    browser: Browser, stack: WebStack, artifacts: Path
) -> None:
    page = open_page(browser, stack.url)
    shot(page, artifacts, "login")
    page.get_by_role("button", name="English").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    page.reload()
    page.get_by_label("E-mail address").fill(PLATFORM_EMAIL)
    page.get_by_label("Password").fill(PLATFORM_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Monitoring the installations")
    page.get_by_role("button", name="Deutsch").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Überwachung der Anwendungen")


def test_a_viewer_sees_the_pages_without_the_controls_that_change_things(
    browser: Browser, stack: WebStack, artifacts: Path
) -> None:
    ops = Client(stack.url).login(PLATFORM_EMAIL, PLATFORM_PASSWORD)
    tenant = ops(
        'mutation { createTenant(input: {name: "Nur Lesen AG"}) { id } }',
    )["createTenant"]["id"]
    ops(
        "mutation($t: ID!, $e: String!, $p: String!) { createUser(input: {tenantId: $t, "
        'email: $e, name: "Leser", role: TENANT_VIEWER, password: $p}) { id } }',
        t=tenant,
        e="leser@nurlesen.example",
        p="leser passwort 1",
    )
    page = open_page(browser, stack.url)
    sign_in(page, "leser@nurlesen.example", "leser passwort 1")
    expect(page.get_by_role("heading", level=1)).to_have_text("Einstellungen")
    # No agent has enrolled for this tenant: every page says so.
    expect(page.locator("#agent")).to_contain_text("Rundruf Manager Service nicht eingerichtet")
    expect(page.get_by_role("button", name="anmelden")).to_be_disabled()
    expect(page.get_by_role("button", name="Speichern")).to_be_disabled()
    nav(page, "Gruppen")
    expect(page.get_by_text("Noch keine Gruppen.")).to_be_visible()
    expect(page.get_by_role("button", name="Gruppe anlegen")).to_have_count(0)
    nav(page, "Verlauf")
    expect(page.get_by_text("Noch keine Rundrufe.")).to_be_visible()
    expect(page.locator("#agent")).to_contain_text("nicht eingerichtet")
    shot(page, artifacts, "viewer-history")
    page.get_by_role("button", name="Abmelden").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Anmelden")


def test_the_live_connection_says_when_it_is_down_and_comes_back(
    browser: Browser, stack: WebStack, artifacts: Path
) -> None:
    page = open_page(browser, stack.url)
    sign_in(page, PLATFORM_EMAIL, PLATFORM_PASSWORD)
    ops = Client(stack.url).login(PLATFORM_EMAIL, PLATFORM_PASSWORD)
    tenant = ops('mutation { createTenant(input: {name: "Neustart KG"}) { id } }')
    ops(
        "mutation($t: ID!, $e: String!, $p: String!) { createUser(input: {tenantId: $t, "
        'email: $e, name: "IT", role: TENANT_ADMIN, password: $p}) { id } }',
        t=tenant["createTenant"]["id"],
        e="it@neustart.example",
        p="neustart passwort 1",
    )
    page.get_by_role("button", name="Abmelden").click()
    sign_in(page, "it@neustart.example", "neustart passwort 1")
    nav(page, "Verlauf")  # subscribes to broadcastUpdated
    banner = page.locator("#connection")
    expect(banner).to_be_hidden()
    stack.server.stop()
    try:
        expect(banner).to_have_text("Live-Verbindung unterbrochen; neuer Versuch läuft.")
        shot(page, artifacts, "live-connection-down")
    finally:
        stack.server.start(stack.logs)
    expect(banner).to_be_hidden()
    expect(page.get_by_text("Noch keine Rundrufe.")).to_be_visible()
    # The browser itself logs each refused reconnection attempt.
    forgive(page, "ERR_CONNECTION_REFUSED")


def test_a_platform_admin_revokes_a_license_and_deactivates_a_user_and_a_tenant(
    browser: Browser, stack: WebStack
) -> None:
    ops = Client(stack.url).login(PLATFORM_EMAIL, PLATFORM_PASSWORD)
    tenant = ops('mutation { createTenant(input: {name: "Alt GmbH"}) { id } }')["createTenant"]
    ops(
        "mutation($t: ID!, $v: DateTime!) { issueLicense(tenantId: $t, seats: 5, validUntil: $v) "
        "{ key } }",
        t=tenant["id"],
        v="2099-01-01T00:00:00+00:00",
    )
    ops(
        'mutation($t: ID!) { createUser(input: {tenantId: $t, email: "alt@alt.example", '
        'name: "Alt", role: TENANT_ADMIN, password: "alt passwort 12"}) { id } }',
        t=tenant["id"],
    )
    page = open_page(browser, stack.url)
    sign_in(page, PLATFORM_EMAIL, PLATFORM_PASSWORD)
    page.on("dialog", lambda dialog: dialog.accept())

    nav(page, "Lizenzen")
    row = page.get_by_role("row").filter(has_text="Alt GmbH")
    row.get_by_role("button", name=re.compile("^Lizenz .* widerrufen$")).click()
    expect(row).to_contain_text("widerrufen")
    expect(row.get_by_role("button")).to_have_count(0)

    nav(page, "Benutzer")
    row = page.get_by_role("row").filter(has_text="alt@alt.example")
    row.get_by_role("button", name="alt@alt.example deaktivieren").click()
    expect(row.get_by_role("cell", name="nein", exact=True)).to_be_visible()

    nav(page, "Mandanten")
    row = page.get_by_role("row").filter(has_text="Alt GmbH")
    row.get_by_role("button", name="Alt GmbH deaktivieren").click()
    expect(row.get_by_role("cell", name="nein", exact=True)).to_be_visible()


def test_the_website_is_served_at_the_root_and_revalidated_on_every_load(
    stack: WebStack,
) -> None:
    for path in ("/", "/js/app.js", "/styles.css"):
        response = httpx.get(stack.url + path)
        assert response.status_code == 200, path
        assert response.headers["cache-control"] == "no-cache", path
    etag = httpx.get(stack.url + "/js/app.js").headers["etag"]
    again = httpx.get(stack.url + "/js/app.js", headers={"If-None-Match": etag})
    assert again.status_code == 304


def test_a_refused_sip_registration_shows_on_monitoring_and_einstellungen_with_its_incident(
    browser: Browser, stack: WebStack, artifacts: Path
) -> None:
    """An agent on SwyxWare with the SIP dialer whose registration is refused: no
    simulator label, the refusal in words, and the watchdog's incident (the "agent" here
    is a GraphQL client with an enrolled installation's token)."""
    sipecht = new_customer(stack, "SIP Echt AG", "sipecht")
    ops = sipecht.ops
    assert sipecht.agent is not None
    agent = sipecht.agent
    failed_since = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    report: dict[str, Any] = {
        "agentVersion": "0.2.0",
        "pbxReachable": True,
        "alarmServiceOk": True,
        "participantCount": 0,
        "reportedAt": datetime.now(UTC).isoformat(),
        "pbxAdapter": "swyx",
        "dialer": "sip",
        "sipRegistration": {
            "state": "failed",
            "since": failed_since,
            "lastError": {
                "code": "refused",
                "params": {"status": 403, "reason": "Forbidden"},
                "detail": "REGISTER refused: 403 Forbidden",
                "at": failed_since,
            },
        },
    }
    agent(HEALTH, input=report)
    refused = "Die Telefonanlage lehnt die Anmeldung ab (403 Forbidden)."

    page = open_page(browser, stack.url)
    sign_in(page, PLATFORM_EMAIL, PLATFORM_PASSWORD)
    row = page.get_by_role("row").filter(has_text="SIP Echt AG")
    expect(row.get_by_test_id("runs-on")).to_have_text("SwyxWare · SIP")
    expect(row.get_by_test_id("sip-registration")).to_contain_text("fehlgeschlagen seit")
    expect(row.get_by_test_id("sip-registration")).to_contain_text(refused)
    expect(row.get_by_test_id("simulator")).to_have_count(0)
    # The watchdog (sweeping every second here) opens its incident.
    expect(row.get_by_role("cell").last).to_have_text("SIP-Anmeldung fehlgeschlagen")
    shot(page, artifacts, "platform-monitoring-sip-refused")

    customer = sipecht.signed_in(browser, stack)
    expect(customer.get_by_role("heading", level=1)).to_have_text("Einstellungen")
    facts = customer.locator(".facts")
    expect(facts.get_by_test_id("runs-on")).to_have_text("SwyxWare · SIP")
    expect(facts.get_by_test_id("sip-registration")).to_contain_text(refused)
    expect(facts.get_by_test_id("simulator")).to_have_count(0)
    shot(customer, artifacts, "customer-settings-sip-refused")

    # Registered again: the refusal stays as the last error, "um" its time of day.
    report["sipRegistration"] = {
        **report["sipRegistration"],
        "state": "registered",
        "since": datetime.now(UTC).isoformat(),
    }
    report["reportedAt"] = datetime.now(UTC).isoformat()
    agent(HEALTH, input=report)
    customer.reload()
    registration = customer.locator(".facts").get_by_test_id("sip-registration")
    expect(registration).to_contain_text("angemeldet seit")
    expect(registration).to_contain_text(re.compile(r"\(letzter Fehler um \d{2}:\d{2}"))
    expect(registration).to_contain_text(refused)

    # Revoked: not "no installation yet", but since when it may no longer connect.
    installation = ops("query($t: ID) { installations(tenantId: $t) { id } }", t=sipecht.tenant_id)[
        "installations"
    ][0]["id"]
    ops("mutation($id: ID!) { revokeInstallation(id: $id) { id } }", id=installation)
    expect(customer.locator("#agent")).to_contain_text(
        re.compile(r"nicht verbunden: seine Anmeldung wurde um \d{2}:\d{2}(:\d{2})? widerrufen")
    )
    expect(customer.locator("#agent")).not_to_contain_text("noch keine Installation")
    shot(customer, artifacts, "customer-agent-revoked")


def test_a_socket_closed_for_an_ended_session_shows_the_sign_in_page(
    browser: Browser, stack: WebStack
) -> None:
    """The server closes a signed-out session's socket with 4401 (4403 when its
    session was never valid): the website shows the sign-in page and does not
    open the socket again, which would only be refused again (review point 17)."""
    ops = Client(stack.url).login(PLATFORM_EMAIL, PLATFORM_PASSWORD)
    tenant = ops('mutation { createTenant(input: {name: "Abgemeldet GmbH"}) { id } }')
    ops(
        "mutation($t: ID!, $e: String!, $p: String!) { createUser(input: {tenantId: $t, "
        'email: $e, name: "IT", role: TENANT_ADMIN, password: $p}) { id } }',
        t=tenant["createTenant"]["id"],
        e="it@abgemeldet.example",
        p="abgemeldet passwort 1",
    )
    page = open_page(browser, stack.url)
    sockets: list[WebSocketRoute] = []

    def through(ws: WebSocketRoute) -> None:
        sockets.append(ws)
        ws.connect_to_server()

    page.route_web_socket(re.compile(r"/graphql$"), through)
    sign_in(page, "it@abgemeldet.example", "abgemeldet passwort 1")
    nav(page, "Verlauf")  # subscribes to broadcastUpdated
    expect(page.get_by_text("Noch keine Rundrufe.")).to_be_visible()
    assert len(sockets) == 1
    sockets[0].close(code=4401, reason="signed out")
    expect(page.get_by_role("heading", level=1)).to_have_text("Anmelden")
    expect(page.locator("#connection")).to_be_hidden()
    # A reconnect would follow within half a second; none comes.
    page.wait_for_timeout(2000)
    assert len(sockets) == 1
    page.context.close()

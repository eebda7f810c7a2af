"""The Verlauf as a report (issue 17, points 4, 5, 7): the list's result and outcome
colour, its filters, the CSV of the filtered list and of one broadcast checked against
the API, the print view, and the audit log page with the changes this test made."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from api.models import BroadcastGroup, PbxGroup, PbxUser
from tests.processes import Client
from tests.web.broadcast_reports import REPORT
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
from tests.web.customers import Customer, new_customer

GREEN = "rgb(30, 123, 52)"  # --good
# Names a spreadsheet would run as formulas, or that need quoting.
HOSTILE = ['=HYPERLINK("http://x.example")', "Meier; Hans", 'Der "Chef"', "+49 30 1234", "@SUM(A1)"]


def _day(days_ago: int, hour: int = 9) -> datetime:
    today = datetime.now(UTC).replace(hour=hour, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days_ago)


def _seed_groups(stack: WebStack, tenant_id: str, groups: dict[str, str]) -> None:
    """Broadcast groups as the agent's directory sync leaves them: PBX id -> name."""
    tenant = uuid.UUID(tenant_id)
    box = Fernet(stack.env["RUNDRUF_SECRET_KEY"].encode())
    engine = create_engine(stack.env["RUNDRUF_DATABASE_URL"])
    with Session(engine) as session, session.begin():
        for i, (pbx_id, name) in enumerate(groups.items()):
            agent = PbxUser(
                tenant_id=tenant,
                pbx_id=f"agent-{pbx_id}",
                name=f"Rundruf {name}",
                extension=f"29{i}",
                callrouting_only=True,
            )
            group = PbxGroup(tenant_id=tenant, pbx_id=pbx_id, name=name)
            session.add_all([agent, group])
            session.flush()
            session.add(
                BroadcastGroup(
                    tenant_id=tenant,
                    group_id=group.id,
                    agent_user_id=agent.id,
                    agent_name=agent.name,
                    agent_extension=f"29{i}",
                    pin_sealed=box.encrypt(b"4711").decode(),
                )
            )
    engine.dispose()


def _events(start: datetime, outcomes: list[str], names: list[str]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for i, (name, outcome) in enumerate(zip(names, outcomes, strict=True)):
        common = {"memberPbxId": f"p{i}", "memberName": name, "memberExtension": f"2{i:02d}"}
        started = (start + timedelta(seconds=i)).isoformat()
        ended = (start + timedelta(seconds=30 + i)).isoformat()
        events.append(
            {**common, "seq": 2 * i + 1, "attemptNo": 1, "kind": "started", "at": started}
        )
        events.append(
            {
                **common,
                "seq": 2 * i + 2,
                "attemptNo": 1,
                "kind": "ended",
                "at": ended,
                "outcome": outcome,
            }
        )
    return events


def _report(
    agent: Client,
    ident: str,
    mode: str,
    start: datetime,
    outcomes: list[str],
    names: list[str],
    group: str = "g-report",
) -> None:
    agent(
        REPORT,
        input={
            "broadcastId": ident,
            "groupPbxId": group,
            "mode": mode,
            "startedAt": start.isoformat(),
            "memberCount": len(outcomes),
            "status": "COMPLETED",
            "finishedAt": (start + timedelta(minutes=2)).isoformat(),
            "events": _events(start, outcomes, names),
        },
    )


def _admin(stack: WebStack, customer: Customer, slug: str) -> tuple[str, str, Client]:
    email, password = f"admin@{slug}.example", f"{slug} admin passwort"
    customer.ops(
        "mutation($t: ID!, $e: String!, $p: String!) { createUser(input: {tenantId: $t, "
        'email: $e, name: "Admin", role: TENANT_ADMIN, password: $p}) { id } }',
        t=customer.tenant_id,
        e=email,
        p=password,
    )
    return email, password, Client(stack.url).login(email, password)


def _csv(page: Page, button: str) -> tuple[bytes, list[list[str]]]:
    with page.expect_download() as info:
        page.get_by_role("button", name=button).click()
    raw = Path(info.value.path()).read_bytes()
    return raw, list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline=""), delimiter=";"))


def _api_list(client: Client, filter: dict[str, Any]) -> list[dict[str, Any]]:
    query = (
        "query($f: BroadcastFilter) { broadcasts(first: 100, filter: $f) "
        "{ nodes { id confirmedCount memberCount outcome } } }"
    )
    nodes: list[dict[str, Any]] = client(query, f=filter)["broadcasts"]["nodes"]
    return nodes


def test_the_list_reports_results_filters_and_exports(
    browser: Browser, stack: WebStack, artifacts: Path
) -> None:
    customer = new_customer(stack, "Bericht AG", "bericht")
    assert customer.agent is not None
    fifteen = ["CONFIRMED"] * 15 + ["NO_ANSWER"] * 5
    names = HOSTILE + [f"Mitglied {i:02d}" for i in range(len(HOSTILE), 20)]
    _seed_groups(stack, customer.tenant_id, {"g-report": "Brandschutz", "g-san": "Sanitäter"})
    _report(customer.agent, "alarm-15", "ALARM", _day(2), fifteen, names)
    _report(customer.agent, "test-3", "TEST", _day(4), ["CONFIRMED"] * 3, ["A", "B", "C"], "g-san")
    email, password, admin = _admin(stack, customer, "bericht")
    page = open_page(browser, stack.url)
    sign_in(page, email, password)
    nav(page, "Verlauf")

    rows = page.locator("tbody tr")
    expect(rows).to_have_count(2)
    alarm = page.locator("tbody tr[data-outcome=UNCONFIRMED]")
    expect(alarm.get_by_test_id("result")).to_have_text("15/20 bestätigt")
    state = alarm.locator(".state")
    expect(state).to_have_text("abgeschlossen, nicht alle bestätigt")
    assert state.evaluate("e => getComputedStyle(e).color") != GREEN
    good = page.locator("tbody tr[data-outcome=ALL_CONFIRMED] .state")
    expect(good).to_have_text("alle bestätigt")
    assert good.evaluate("e => getComputedStyle(e).color") == GREEN
    shot(page, artifacts, "history-list-results")

    # Filters: group, outcome, mode, date range (the browser keeps UTC, as the reports).
    page.get_by_label("Gruppe").select_option(label="Sanitäter")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Sanitäter")
    page.get_by_role("button", name="Filter zurücksetzen").click()
    expect(rows).to_have_count(2)

    page.get_by_label("Ergebnis").select_option("ALL_CONFIRMED")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-outcome", "ALL_CONFIRMED")
    page.get_by_role("button", name="Filter zurücksetzen").click()
    expect(rows).to_have_count(2)
    page.get_by_label("Modus").select_option("ALARM")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-outcome", "UNCONFIRMED")

    # The CSV of the filtered list, checked against the API with the same filter.
    raw, table = _csv(page, "Als CSV herunterladen")
    assert raw.startswith(b"\xef\xbb\xbf")
    header, *lines = table
    assert header[0] == "Beginn" and header[-1] == "Kennung"
    api = _api_list(admin, {"mode": "ALARM"})
    assert [line[-1] for line in lines] == [b["id"] for b in api]
    confirmed = header.index("Bestätigt")
    assert [(int(x[confirmed]), int(x[confirmed + 1])) for x in lines] == [
        (b["confirmedCount"], b["memberCount"]) for b in api
    ]

    page.get_by_role("button", name="Filter zurücksetzen").click()
    expect(rows).to_have_count(2)
    day = _day(4).date().isoformat()
    page.get_by_label("von (Tag)").fill(day)
    page.get_by_label("bis (Tag)").fill(day)
    page.get_by_label("bis (Tag)").dispatch_event("change")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-outcome", "ALL_CONFIRMED")

    # One broadcast: every attempt as CSV, neutralised and quoted, as the API has them.
    page.get_by_role("button", name="Filter zurücksetzen").click()
    alarm.get_by_role("link").click()
    raw, table = _csv(page, "Alle Anrufe als CSV")
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw
    header, *lines = table
    lines = lines[: lines.index([])]  # the summary follows after a blank line
    attempts = admin(
        "query($id: ID!) { broadcast(id: $id) { attempts { memberName outcome } } }",
        id=api[0]["id"],
    )["broadcast"]["attempts"]
    assert len(lines) == len(attempts) == 20
    by_name = {line[0]: line for line in lines}
    assert '\'=HYPERLINK("http://x.example")' in by_name
    assert "Meier; Hans" in by_name and 'Der "Chef"' in by_name
    assert "'+49 30 1234" in by_name and "'@SUM(A1)" in by_name
    assert not any(cell[:1] in "=+-@" for line in lines for cell in line if cell)
    outcome = header.index("Ergebnis")
    assert sum(line[outcome] == "bestätigt" for line in lines) == 15

    # The detail's status says "abgeschlossen", but not in green.
    status = page.get_by_test_id("broadcast-status")
    expect(status).to_have_text("abgeschlossen")
    assert status.evaluate("e => getComputedStyle(e).color") != GREEN

    # The print view: the report alone, with the summary, timeline and every member.
    page.emulate_media(media="print")
    report = page.get_by_test_id("print-report")
    expect(report).to_be_visible()
    expect(report.get_by_role("heading", level=1)).to_contain_text("Rundruf-Bericht")
    expect(report.get_by_test_id("report-result")).to_have_text("15/20 bestätigt")
    expect(report.locator(".report-members tbody tr")).to_have_count(20)
    expect(report.locator(".report-timeline tbody tr")).to_have_count(40)
    expect(page.get_by_role("navigation")).to_be_hidden()
    expect(page.get_by_role("button", name="Bericht drucken")).to_be_hidden()
    shot(page, artifacts, "history-print-report")
    page.pdf(path=str(artifacts / "history-print-report.pdf"))
    page.emulate_media(media="screen")
    expect(report).to_be_hidden()

    # On a phone the filters and the list fit the screen.
    phone = open_page(browser, stack.url, PHONE_WIDTH)
    sign_in(phone, email, password)
    nav(phone, "Verlauf")
    expect(phone.locator("tbody tr")).to_have_count(2)
    assert_fits(phone)
    shot(phone, artifacts, "history-list-phone")


def test_csv_cells_are_quoted_and_neutralised(browser: Browser, stack: WebStack) -> None:
    page = open_page(browser, stack.url)
    result = page.evaluate(
        """async () => {
          const csv = await import("/js/csv.js");
          const cells = ["a;b", 'x"y', "one\\ntwo", "=1+2", "+1", "-1", "@A1", "\\tx",
                         "plain", 5, null, " =1+2", "\\n-1"];
          return { cells: cells.map((c) => csv.cell(c, ";")), comma: csv.cell("a,b", ","),
                   file: csv.toCsv(["h1", "h2"], [["a;b", "=x"]], ";") };
        }"""
    )
    assert result["cells"] == [
        '"a;b"',
        '"x""y"',
        '"one\ntwo"',
        "'=1+2",
        "'+1",
        "'-1",
        "'@A1",
        "'\tx",
        "plain",
        "5",
        "",
        # A leading space or line break does not hide a formula (review of issue 17, L4).
        "' =1+2",
        '"\'\n-1"',
    ]
    assert result["comma"] == '"a,b"'
    assert result["file"] == '\ufeffh1;h2\r\n"a;b";\'=x\r\n'


def test_the_audit_page_shows_the_changes_made_here(
    browser: Browser, stack: WebStack, artifacts: Path
) -> None:
    customer = new_customer(stack, "Protokoll KG", "protokoll")
    email, password, admin = _admin(stack, customer, "protokoll")
    admin('mutation { createGroup(name: "Werkfeuerwehr") { id } }')
    admin(
        "mutation($c: String!, $n: String!) { changePassword(currentPassword: $c, "
        "newPassword: $n) }",
        c=password,
        n=password + " neu",
    )
    page = open_page(browser, stack.url)
    sign_in(page, email, password + " neu")
    nav(page, "Protokoll")
    rows = page.locator("tbody tr")
    expect(page.locator("tbody tr[data-action='group.create']")).to_contain_text("Gruppe angelegt")
    expect(page.locator("tbody tr[data-action='group.create']")).to_contain_text(email)
    expect(page.locator("tbody tr[data-action='group.create']")).to_contain_text(
        "Name: Werkfeuerwehr"
    )
    expect(page.locator("tbody tr[data-action='password.change']")).to_contain_text(
        "Passwort geändert"
    )
    # The platform's own changes in this tenant (the users it created) are there too.
    expect(page.locator("tbody tr[data-action='user.create']")).to_have_count(2)
    expect(page.locator("tbody tr[data-action='user.create']").first).to_contain_text(
        "Rolle: Administrator"
    )
    page.get_by_label("Art").select_option("group")
    expect(rows).to_have_count(1)
    page.get_by_role("button", name="Filter zurücksetzen").click()
    page.get_by_label("Benutzer").select_option(label=email)
    expect(page.locator("tbody tr[data-action='user.create']")).to_have_count(0)
    expect(page.locator("tbody tr[data-action='group.create']")).to_have_count(1)
    shot(page, artifacts, "audit-log")
    phone = open_page(browser, stack.url, PHONE_WIDTH)
    sign_in(phone, email, password + " neu")
    nav(phone, "Protokoll")
    expect(phone.locator("tbody tr[data-action='group.create']")).to_have_count(1)
    assert_fits(phone)
    shot(phone, artifacts, "audit-log-phone")

    # A viewer has no Protokoll; the platform admin sees every tenant's, with its name.
    viewer = customer.signed_in(browser, stack)
    expect(viewer.get_by_role("navigation").get_by_role("link", name="Verlauf")).to_be_visible()
    expect(viewer.get_by_role("navigation").get_by_role("link", name="Protokoll")).to_have_count(0)
    ops = open_page(browser, stack.url)
    sign_in(ops, PLATFORM_EMAIL, PLATFORM_PASSWORD)
    nav(ops, "Protokoll")
    expect(ops.locator("tbody tr[data-action='group.create']").first).to_contain_text(
        "Protokoll KG"
    )


def test_the_printed_report_says_who_stopped_the_broadcast(
    browser: Browser, stack: WebStack, artifacts: Path
) -> None:
    # Not "Halt GmbH": test_stop_broadcast.py makes that tenant in the same web stack.
    customer = new_customer(stack, "Stopp GmbH", "stopp")
    assert customer.agent is not None
    start = _day(1)
    stopped = start + timedelta(seconds=40)
    customer.agent(
        REPORT,
        input={
            "broadcastId": "stopped-1",
            "groupPbxId": "g-halt",
            "mode": "ALARM",
            "startedAt": start.isoformat(),
            "memberCount": 2,
            "status": "CANCELLED",
            "finishedAt": stopped.isoformat(),
            "events": _events(start, ["CONFIRMED", "NO_ANSWER"], ["Anna", "Bernd"]),
            "stop": {"via": "PHONE", "at": stopped.isoformat(), "by": "+49 170 1234567"},
        },
    )
    page = customer.signed_in(browser, stack)
    nav(page, "Verlauf")
    row = page.locator("tbody tr[data-outcome=CANCELLED]")
    expect(row.get_by_test_id("result")).to_have_text("1/2 bestätigt")
    # One set of words (review of issue 17, L3): the list, its CSV with who stopped it,
    # how, when and why, the detail, the printed report and the broadcast's CSV.
    expect(row.locator(".state")).to_have_text("beendet")
    _, table = _csv(page, "Als CSV herunterladen")
    header, line = table
    assert header[-5:] == [
        "beendet von",
        "beendet wie",
        "beendet am",
        "Grund des Beendens",
        "Kennung",
    ]
    assert line[-5:-2] == ["'+49 170 1234567", "per Telefon", _csv_time(page, stopped.isoformat())]
    assert line[header.index("Zustand")] == "beendet"
    row.get_by_role("link").click()
    expect(page.get_by_test_id("broadcast-status")).to_have_text("beendet")
    bernd = page.locator("[data-member='Bernd']")
    expect(bernd.first).to_contain_text("nicht erreicht")
    _, table = _csv(page, "Alle Anrufe als CSV")
    header, *lines = table
    blank = lines.index([])
    attempts, summary = lines[:blank], {r[0]: r[1:] for r in lines[blank + 1 :]}
    outcome = header.index("Ergebnis")
    assert sorted(line[outcome] for line in attempts) == ["bestätigt", "nicht erreicht"]
    assert summary["Zustand"] == ["beendet"] and summary["Ergebnis"] == ["1/2 bestätigt"]
    assert summary["beendet von"] == ["'+49 170 1234567"]
    assert summary["beendet wie"] == ["per Telefon"]
    page.emulate_media(media="print")
    report = page.get_by_test_id("print-report")
    expect(report).to_contain_text("beendet von +49 170 1234567 (per Telefon)")
    members = report.locator(".report-members tbody tr[data-report-member='Bernd']")
    expect(members).to_contain_text("nicht erreicht")
    shot(page, artifacts, "history-print-stopped")


def _csv_time(page: Page, iso: str) -> str:
    """The CSV's local time of `iso`, as the browser writes it."""
    return str(page.evaluate("async (iso) => (await import('/js/csv.js')).csvTime(iso)", iso))


def test_audit_details_are_worded_with_modes_and_local_times(
    browser: Browser, stack: WebStack
) -> None:
    # Review of issue 17, L2: "Modus: 2", and notice.report's caller_number, count and
    # at (as ISO text) stood on the German page as they are stored.
    page = open_page(browser, stack.url)
    result = page.evaluate(
        """async () => {
          const audit = await import("/js/pages/audit.js");
          const ui = await import("/js/ui.js");
          return {
            trigger: audit.detailsText({ mode: 2 }),
            notice: audit.detailsText({ caller_number: "+4930123", count: 3,
                                        at: "2026-12-07T10:00:05+00:00" }),
            local: ui.dateTime("2026-12-07T10:00:05+00:00"),
          };
        }"""
    )
    assert result["trigger"] == "Modus: Alarm (hinterlegte Nachricht)"
    assert result["notice"] == f"Anrufer: +4930123, Anzahl: 3, Zeitpunkt: {result['local']}"
    assert "T10:00:05" not in result["local"]

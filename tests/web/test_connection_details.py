"""The Verlauf words a call the agent could not place, or had to give up, because of its
connection to the PBX (issue 15 point 9, the outside review's point 8): the agent sends
a code (`tlsCertificate`, `connectionLost`, ...) as the attempt's detail, never its
English log sentence."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, expect

from tests.web.browsing import WebStack, nav, shot
from tests.web.customers import new_customer

REPORT = "mutation($input: BroadcastReportInput!) { reportBroadcast(input: $input) { lastSeq } }"
WORDS = {
    "tlsCertificate": (
        "Das TLS-Zertifikat der Telefonanlage wurde nicht anerkannt; der Anruf ging nicht "
        "hinaus, unverschlüsselt wurde nichts gesendet (Näheres im Zustand des Rundruf "
        "Manager Service).",
        "The phone system's TLS certificate was not accepted; the call was not placed and "
        "nothing was sent unencrypted (details in the Rundruf Manager Service's status).",
    ),
    "connectionLost": (
        "Die Verbindung zur Telefonanlage brach ab, während der Anruf klingelte; der Dienst "
        "hat ihn über eine neue Verbindung abgebrochen.",
        "The connection to the phone system broke while the call was ringing; the service "
        "cancelled it over a new connection.",
    ),
}


def test_the_history_words_the_codes_of_a_broken_or_refused_pbx_connection(
    browser: Browser, stack: WebStack, artifacts: Path
) -> None:
    customer = new_customer(stack, "Verbindung GmbH", "tls")
    assert customer.agent is not None
    events: list[dict[str, object]] = []
    for n, (member, code) in enumerate((("Carla", "tlsCertificate"), ("Dora", "connectionLost"))):
        base = {"memberPbxId": member, "memberName": member, "memberExtension": f"21{n}"}
        events += [
            {
                **base,
                "seq": 2 * n + 1,
                "attemptNo": 1,
                "kind": "started",
                "at": "2026-12-08T09:00:00+00:00",
            },
            {
                **base,
                "seq": 2 * n + 2,
                "attemptNo": 1,
                "kind": "ended",
                "at": "2026-12-08T09:00:02+00:00",
                "outcome": "FAILED",
                "detail": code,
            },
        ]
    customer.agent(
        REPORT,
        input={
            "broadcastId": "tls-1",
            "groupPbxId": "g-tls",
            "mode": "ALARM",
            "startedAt": "2026-12-08T09:00:00+00:00",
            "memberCount": 2,
            "status": "COMPLETED",
            "finishedAt": "2026-12-08T09:00:03+00:00",
            "events": events,
        },
    )
    page = customer.signed_in(browser, stack)
    nav(page, "Verlauf")
    page.locator("tbody tr").first.get_by_role("link").click()
    shown = {
        code: page.locator(f"[data-member={member}] [data-detail={code}]")
        for member, code in (("Carla", "tlsCertificate"), ("Dora", "connectionLost"))
    }
    for code, detail in shown.items():
        expect(detail).to_have_text(WORDS[code][0])
    shot(page, artifacts, "history-connection-codes")
    page.get_by_role("button", name="English").click()
    for code, detail in shown.items():
        expect(detail).to_have_text(WORDS[code][1])
    page.get_by_role("button", name="Deutsch").click()

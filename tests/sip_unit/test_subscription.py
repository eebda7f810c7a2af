"""The one-shot dialog subscription's answers to what comes in its dialog (no I/O)."""

from __future__ import annotations

import asyncio

import pytest

from edge_agent.sip.message import Request, parse
from edge_agent.sip.subscription import DialogFetch
from tests.sip_unit.test_dialog_info import ASTERISK_IDLE, ASTERISK_IN_USE, RFC_CONFIRMED_PARTIAL

TAG = "8c2f0e5b1d3a7f64"
SOURCE = ("127.0.0.1", 5060)


def notify(
    body: bytes = ASTERISK_IN_USE,
    *,
    event: str = "dialog",
    state: str = "terminated;reason=timeout",
    content_type: str | None = "application/dialog-info+xml",
    to_tag: str = TAG,
    method: str = "NOTIFY",
) -> Request:
    """A NOTIFY as Asterisk's res_pjsip_pubsub sends it for Expires: 0."""
    lines = [
        f"{method} sip:Rundruf@192.0.2.10:5062;transport=udp SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.1:5060;rport;branch=z9hG4bKPj4f0b7c1e",
        "From: <sip:201@pbx.example.com>;tag=7f3c9e2a-1b4d-4c8e-9a61-0d2b5e8f1c37",
        f'To: "Rundruf" <sip:Rundruf@pbx.example.com>;tag={to_tag}',
        "Contact: <sip:192.0.2.1:5060>",
        "Call-ID: 5d1e9c0a2b7f4e3d8a6c@192.0.2.10",
        f"CSeq: 35091 {method}",
        f"Event: {event}",
        f"Subscription-State: {state}",
        "Allow-Events: presence, dialog, message-summary, refer",
        "Max-Forwards: 70",
        "User-Agent: Asterisk PBX 20.5.0",
    ]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body)}")
    message = parse(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    assert isinstance(message, Request)
    return message


@pytest.fixture
async def fetch() -> DialogFetch:
    return DialogFetch(TAG, asyncio.get_running_loop().create_future())


async def test_the_notify_is_answered_200_and_gives_the_state(fetch: DialogFetch) -> None:
    answer = fetch.handle(notify(), SOURCE)
    assert answer is not None and (answer.status, answer.reason) == (200, "OK")
    assert answer.headers.get("CSeq") == "35091 NOTIFY"
    assert fetch.result.result() is True


async def test_an_idle_member_is_not_busy(fetch: DialogFetch) -> None:
    fetch.handle(notify(ASTERISK_IDLE), SOURCE)
    assert fetch.result.result() is False


async def test_only_the_first_state_counts(fetch: DialogFetch) -> None:
    fetch.handle(notify(ASTERISK_IDLE), SOURCE)
    answer = fetch.handle(notify(ASTERISK_IN_USE), SOURCE)
    assert answer is not None and answer.status == 200
    assert fetch.result.result() is False


async def test_a_pending_notify_without_state_waits_for_the_next(fetch: DialogFetch) -> None:
    answer = fetch.handle(notify(b"", state="pending;expires=0", content_type=None), SOURCE)
    assert answer is not None and answer.status == 200
    assert not fetch.result.done()
    fetch.handle(notify(), SOURCE)
    assert fetch.result.result() is True


async def test_a_terminated_notify_without_state_means_unknown(fetch: DialogFetch) -> None:
    fetch.handle(notify(b"", state="terminated;reason=rejected", content_type=None), SOURCE)
    assert fetch.result.result() is None


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"<dialog-info", "application/dialog-info+xml"),
        (ASTERISK_IN_USE, "application/pidf+xml"),
        (ASTERISK_IN_USE, None),
    ],
    ids=["malformed", "pidf", "untyped"],
)
async def test_an_unusable_body_means_unknown(
    fetch: DialogFetch, body: bytes, content_type: str | None
) -> None:
    answer = fetch.handle(notify(body, content_type=content_type), SOURCE)
    assert answer is not None and answer.status == 200
    assert fetch.result.result() is None


async def test_a_partial_document_with_a_call_is_busy(fetch: DialogFetch) -> None:
    fetch.handle(notify(RFC_CONFIRMED_PARTIAL), SOURCE)
    assert fetch.result.result() is True


async def test_another_event_package_is_refused_489(fetch: DialogFetch) -> None:
    answer = fetch.handle(notify(event="presence"), SOURCE)
    assert answer is not None and (answer.status, answer.reason) == (489, "Bad Event")
    assert answer.headers.get("Allow-Events") == "dialog"
    assert not fetch.result.done()


async def test_a_notify_for_another_subscription_is_refused_481(fetch: DialogFetch) -> None:
    answer = fetch.handle(notify(to_tag="0000"), SOURCE)
    assert answer is not None and answer.status == 481
    assert not fetch.result.done()


async def test_other_methods_are_not_allowed(fetch: DialogFetch) -> None:
    answer = fetch.handle(notify(method="INFO"), SOURCE)
    assert answer is not None and answer.status == 405
    assert answer.headers.get("Allow") == "NOTIFY"


async def test_a_late_notify_after_the_fetch_gave_up_is_still_answered(fetch: DialogFetch) -> None:
    fetch.result.cancel()
    answer = fetch.handle(notify(), SOURCE)
    assert answer is not None and answer.status == 200

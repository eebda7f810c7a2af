"""Malformed requests after the outside review of issue 15 (points 5, 7 and 8):

- a request that parses but that the user agent cannot read (an empty `Via: `, a
  `Require` with an odd quote) made `UserAgent.receive` raise, and the transport
  logged a traceback for each, unlimited (2,000 requests: 2,000 tracebacks). Both are
  now refused when parsed (400 where the answer's fields are there, else dropped),
  and what a handler still raises is answered 400 and logged through a limiter;
- a control character outside quotes was accepted when the quote before it was
  opened on an earlier (folded) line of the field, and a quoted-pair on a folded line
  inside a quote was refused: the whole unfolded field is looked at now;
- a BYE with a `Require` got 420, and the agent played on into the dead call.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator

import pytest

from edge_agent.sip import transport as transport_module
from edge_agent.sip import uas_checks
from edge_agent.sip.errors import SipParseError
from edge_agent.sip.headers import Headers
from edge_agent.sip.message import Request, Response, parse, parse_stream
from edge_agent.sip.transport import Transport, UdpTransport
from tests.sip_unit.loopback_ua import loopback_ua

HOST = "127.0.0.1"


def request(extra: str = "", *, via: str = "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKq1") -> bytes:
    return (
        f"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nVia: {via}\r\nFrom: <sip:b@x>;tag=1\r\n"
        f"To: <sip:a@x>\r\nCall-ID: c1@x\r\nCSeq: 1 OPTIONS\r\n{extra}Content-Length: 0\r\n\r\n"
    ).encode()


def both(data: bytes) -> list[Request | Response | str]:
    """What parse (UDP) and parse_stream (TCP) make of `data`: the message or the error."""
    out: list[Request | Response | str] = []
    for call in (parse, lambda d: parse_stream(d)[0]):
        try:
            message = call(data)
        except SipParseError as exc:
            out.append(str(exc))
        else:
            assert message is not None
            out.append(message)
    return out


# ---------------------------------------------------------------- point 7: folded fields


@pytest.mark.parametrize(
    ("extra", "error"),
    (
        ('X-Foo: "\r\n x" \\\x1b[2J\r\n', "control character '\\x1b' in line 8"),
        ('X-Foo: "\r\n x" \\\x00\r\n', "NUL byte in the header"),
        ('X-Foo: "a\r\n b"\r\n \x07\r\n', "control character '\\x07' in line 9"),
        ('X-Foo: a\r\n "b\r\n \\\r\n \x01"\r\n', "control character '\\x01' in line 10"),
    ),
    ids=("esc-after-a-quote-closed-on-a-fold", "nul", "bel-on-a-later-fold", "no-pair-across"),
)
def test_a_control_character_outside_quotes_after_a_fold_is_refused(extra: str, error: str) -> None:
    assert both(request(extra)) == [error, error]


def test_a_quoted_pair_on_a_folded_line_inside_a_quote_is_accepted() -> None:
    """RFC 3261 25.1: a quoted-pair may carry %x00-09 and %x0B-0C; the quote that holds
    it here was opened on the field's first line (refused before: the check began at
    the folded line, outside any quote as far as it knew)."""
    for message in both(request('X-Foo: "a\r\n \\\x01b"\r\n')):
        assert isinstance(message, Request)
        assert message.headers.get("X-Foo") == '"a \\\x01b"'


# ---------------------------------------------------------------- point 5: refused early


def test_an_empty_via_is_refused_when_parsed() -> None:
    assert both(request(via="")) == ["missing Via", "missing Via"]
    assert both(request(via=" , ")) == ["missing Via", "missing Via"]


@pytest.mark.parametrize("name", ("Require", "Proxy-Require", "Supported", "Allow"))
def test_a_request_with_a_list_that_cannot_be_cut_is_refused(name: str) -> None:
    errors = both(request(f'{name}: "odd\r\n'))
    assert all(isinstance(e, str) and e.startswith(f"bad {name}: unterminated") for e in errors)


def test_a_response_with_such_a_list_still_parses() -> None:
    """Deliberately: the agent reads no such list of a response, and dropping a 200 to
    our INVITE for an Allow it never looks at would cost the call."""
    answer = (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKq1\r\n"
        b"From: <sip:b@x>;tag=1\r\nTo: <sip:a@x>;tag=2\r\nCall-ID: c1@x\r\nCSeq: 1 INVITE\r\n"
        b'Allow: "odd\r\nContent-Length: 0\r\n\r\n'
    )
    assert isinstance(parse(answer), Response)


def _built(method: str, require: str) -> Request:
    headers = Headers(
        [
            ("Via", "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKq1"),
            ("From", "<sip:b@x>;tag=1"),
            ("To", "<sip:a@x>;tag=2"),
            ("Call-ID", "c1@x"),
            ("CSeq", f"2 {method}"),
            ("Require", require),
        ]
    )
    return Request(method, "sip:a@127.0.0.1", headers)


def test_uas_checks_answer_400_to_a_require_they_cannot_read() -> None:
    """A request built past the parser (not from the wire) gets 400, no exception."""
    answer = uas_checks.check(_built("INFO", '"odd'), allow="INVITE", in_dialog=True)
    assert answer is not None and answer.status == 400


# ---------------------------------------------------------------- point 8: Require


@pytest.mark.parametrize("method", ("BYE", "ACK", "CANCEL"))
def test_a_request_that_ends_or_answers_is_not_refused_for_its_require(method: str) -> None:
    assert uas_checks.check(_built(method, "x-foo"), allow="INVITE", in_dialog=True) is None


@pytest.mark.parametrize("method", ("INVITE", "UPDATE", "INFO"))
def test_other_in_dialog_requests_still_get_420(method: str) -> None:
    """A session refresh with `Require: timer` included (RFC 3261 8.2.2.3, RFC 4028 9;
    docs/decisions/sip-torture-messages.md says why)."""
    answer = uas_checks.check(_built(method, "timer"), allow="INVITE", in_dialog=True)
    assert answer is not None and answer.status == 420
    assert answer.headers.get("Unsupported") == "timer"


# ---------------------------------------------------------------- the transport's last net


class Sent(Transport):
    """A transport that keeps what it is asked to send."""

    def __init__(self) -> None:
        self.sent: list[tuple[Request | Response, tuple[str, int]]] = []

    def send(self, message: Request | Response, address: tuple[str, int]) -> None:
        self.sent.append((message, address))


def _raising(error: Exception) -> transport_module.Receiver:
    def receiver(message: Request | Response, source: tuple[str, int], via: Transport) -> None:
        raise error

    return receiver


def test_a_request_the_user_agent_cannot_read_is_answered_400_and_logged_a_few_times(
    caplog: pytest.LogCaptureFixture,
) -> None:
    via = Sent()
    message = parse(request())
    receiver = _raising(SipParseError("missing Via"))
    with caplog.at_level(logging.WARNING, logger=transport_module.log.name):
        for _ in range(100):
            transport_module._deliver(receiver, message, ("10.0.0.1", 5060), via)
    assert len(via.sent) == 100
    answer, address = via.sent[0]
    assert isinstance(answer, Response) and answer.status == 400 and address == ("10.0.0.1", 5060)
    assert answer.reason == "Bad Request (missing Via)" and answer.to_tag
    assert not [r for r in caplog.records if r.exc_info]
    assert len(caplog.records) == 5  # log_limit.LINES_PER_INTERVAL, the rest counted


def test_an_ack_or_a_response_the_user_agent_cannot_read_gets_no_answer() -> None:
    via = Sent()
    receiver = _raising(SipParseError("bad"))
    ack = parse(request().replace(b"OPTIONS", b"ACK"))
    response = parse(b"SIP/2.0 200 OK\r\n" + request().split(b"\r\n", 1)[1])
    for message in (ack, response):
        transport_module._deliver(receiver, message, ("10.0.0.1", 5060), via)
    assert via.sent == []


def test_a_bug_in_handling_logs_a_few_tracebacks_not_one_per_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    via = Sent()
    message = parse(request())
    with caplog.at_level(logging.WARNING, logger=transport_module.log.name):
        for _ in range(100):
            transport_module._deliver(_raising(RuntimeError("bug")), message, (HOST, 1), via)
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 5 and via.sent == []


# ---------------------------------------------------------------- a real transport and UA


@pytest.fixture
async def agent() -> AsyncIterator[UdpTransport]:
    ua, transport = await loopback_ua((HOST, 9))
    yield transport
    await ua.close(grace_s=1.0)


async def test_the_reviewers_flood_gets_no_traceback(
    agent: UdpTransport, caplog: pytest.LogCaptureFixture
) -> None:
    """attack/traceback_flood.py's two kinds, 50 each: the odd Require answered 400, the
    empty Via dropped (nothing to answer in), not one ERROR record."""
    loop = asyncio.get_running_loop()
    with (
        caplog.at_level(logging.WARNING),
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
    ):
        sock.setblocking(False)
        sock.bind((HOST, 0))
        for n in range(50):
            odd = request('Require: "odd\r\n').replace(b"c1@x", f"odd-{n}@x".encode())
            sock.sendto(request(via="").replace(b"c1@x", f"via-{n}@x".encode()), agent.local)
            sock.sendto(odd, agent.local)
        answers = []
        for _ in range(50):
            answers.append(parse(await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)))
        await asyncio.sleep(0.2)
        with pytest.raises(BlockingIOError):
            sock.recv(65536)  # nothing for the empty Vias
    assert {a.status for a in answers if isinstance(a, Response)} == {400}
    assert {a.call_id.partition("-")[0] for a in answers} == {"odd"}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]

"""The called number and the caller of an incoming INVITE (sip/called_number.py, issue 16):
the headers PBXs write, each mode of RUNDRUF_AGENT_SIP_CALLED_NUMBER, and hostile input,
which makes an unknown number and never an exception."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from edge_agent.sip.called_number import (
    MAX_NAME,
    MODES,
    called_candidates,
    caller_identity,
    diversion_original,
    history_original,
    number_of,
)
from edge_agent.sip.message import Headers, Request, parse

set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "rundruf-hypothesis")
PLAUSIBLE = re.compile(r"\+?[0-9A-Za-z*#_]{1,32}")


def invite(uri: str = "sip:Rundruf@10.0.0.5", *extra: str, to: str | None = None) -> Request:
    lines = [
        f"INVITE {uri} SIP/2.0",
        "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1",
        'From: "Pforte" <sip:100@pbx.example>;tag=a1',
        f"To: {to or '<sip:Rundruf@pbx.example>'}",
        "Call-ID: c1@pbx",
        "CSeq: 1 INVITE",
        "Contact: <sip:100@10.0.0.1:5060>",
        *extra,
        "Content-Length: 0",
    ]
    message = parse(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(message, Request)
    return message


@pytest.mark.parametrize(
    ("uri", "number"),
    [
        ("sip:299@pbx", "299"),
        ("sips:299@pbx:5061;transport=tls", "299"),
        ("sip:+49301234@pbx;user=phone", "+49301234"),
        ("sip:+49-30-1234@pbx;user=phone", "+49301234"),
        ("tel:+49-(30)-1234.56", "+4930123456"),
        ("tel:299;phone-context=example.com", "299"),
        ("sip:%2B4930%20123@pbx", "+4930123"),
        ("sip:299;phone-context=+4930@pbx;user=phone", "299"),
        ("sip:alice:secret@pbx", "alice"),
        ("sip:*21#@pbx", "*21#"),
        ("sip:Rundruf@pbx", "Rundruf"),
        ("sip:pbx.example", ""),  # no user part
        ("http://pbx/299", ""),
        ("sip:2\x0099@pbx", ""),
        ("sip:%00299@pbx", ""),
        ("sip:%ff%fe@pbx", ""),
        ("sip:29'9@pbx", ""),
        ("sip:" + "9" * 33 + "@pbx", ""),
        ("sip:" + "9" * 32 + "@pbx", "9" * 32),
        ("sip:++299@pbx", ""),
        ("sip:@pbx", ""),
        ("", ""),
        ("sip:" + "1" * 5000 + "@pbx", ""),
    ],
)
def test_number_of_a_uri(uri: str, number: str) -> None:
    assert number_of(uri) == number


def test_request_uri_and_to() -> None:
    request = invite("sip:2000@10.0.0.5;user=phone", to='"Alarm" <sip:2001@pbx.example>')
    assert called_candidates(request, "request-uri") == ("2000",)
    assert called_candidates(request, "to") == ("2001",)
    assert called_candidates(request, "auto") == ("2000", "2001")


def test_the_original_diversion_is_the_bottom_most() -> None:
    """RFC 5806: each diversion puts its entry on top; the first diverting number, the
    one the caller dialled, is the last entry (also within one comma-separated line)."""
    request = invite(
        "sip:Rundruf@10.0.0.5",
        "Diversion: <sip:2002@pbx>;reason=no-answer;counter=1",
        "Diversion: <tel:2001>;reason=unconditional;counter=1, <sip:2000@pbx>;reason=user-busy",
    )
    assert diversion_original(request) == "2000"
    assert called_candidates(request, "diversion") == ("2000",)
    assert called_candidates(request, "auto") == ("2000", "Rundruf")


def test_history_info_original_is_the_lowest_index_not_retargeted() -> None:
    """RFC 7044: index=1 is the first target; an entry with rc or mp was made by
    retargeting, whatever its order in the header."""
    request = invite(
        "sip:Rundruf@10.0.0.5",
        "History-Info: <sip:Rundruf@pbx?Reason=SIP%3Bcause%3D302>;index=1.1;mp=1",
        "History-Info: <sip:2000@pbx>;index=1, <sip:3000@pbx>;index=1.1.1;rc=1.1",
    )
    assert history_original(request) == "2000"
    assert called_candidates(request, "history-info") == ("2000",)


def test_history_info_by_index_not_by_order() -> None:
    request = invite(
        "sip:Rundruf@10.0.0.5",
        "History-Info: <sip:2002@pbx>;index=1.2",
        "History-Info: <sip:2001@pbx>;index=1",
        "History-Info: <sip:2003@pbx>;index=1.10",
    )
    assert history_original(request) == "2001"


def test_auto_order_and_no_duplicates() -> None:
    request = invite(
        "sip:2000@10.0.0.5",
        "Diversion: <sip:2001@pbx>",
        "History-Info: <sip:2002@pbx>;index=1",
        to="<sip:2000@pbx>",
    )
    assert called_candidates(request) == ("2002", "2001", "2000")


@pytest.mark.parametrize(
    "header",
    [
        "Diversion: garbage",
        "Diversion: <sip:2000@pbx",
        'Diversion: "unterminated <sip:2000@pbx>',
        "Diversion: <>",
        "History-Info: <sip:2000@pbx>",  # no index
        "History-Info: <sip:2000@pbx>;index=x.1",
        "History-Info: <sip:2000@pbx>;index=1;mp=0",  # a retarget only
        "History-Info: <sip:2000@pbx>;index=" + ".".join(["1"] * 40),
        "Diversion: <sip:" + "2" * 3000 + "@pbx>",
        "Diversion: " + ", ".join(f"<sip:{n}@pbx>" for n in range(500)),
        "History-Info: " + ", ".join(f"<sip:{n}@pbx>;index=1.{n}" for n in range(500)),
    ],
)
def test_hostile_headers_make_no_number(header: str) -> None:
    """Whatever a stranger writes: no exception, and no number from that header."""
    request = invite("sip:Rundruf@10.0.0.5", header)
    found = called_candidates(request, "diversion") + called_candidates(request, "history-info")
    assert all(n.isdigit() and len(n) <= 32 for n in found)
    assert called_candidates(request, "auto")[-1] == "Rundruf"


def test_too_many_diversions_name_none() -> None:
    """A list too long to read whole names no original: its first part would name a
    later diversion as the number the caller dialled."""
    many = [f"Diversion: <sip:{n}@pbx>" for n in range(100, 140)]
    request = invite("sip:Rundruf@10.0.0.5", *many)
    assert diversion_original(request) == ""
    few = invite("sip:Rundruf@10.0.0.5", *many[:32])
    assert diversion_original(few) == "131"


def test_nothing_known() -> None:
    request = invite("sip:pbx.example", to="<sip:pbx.example>")
    assert called_candidates(request) == ()


@pytest.mark.parametrize(
    ("headers", "number", "name"),
    [
        ((), "100", "Pforte"),
        (('P-Asserted-Identity: "Empfang" <sip:+4930100@pbx>',), "+4930100", "Empfang"),
        (("P-Asserted-Identity: <tel:+4930100>, <sip:100@pbx>",), "+4930100", None),
        (("Privacy: id",), "", None),
        (("Privacy: header;id",), "", None),
        (("Privacy: none",), "100", "Pforte"),
        (("P-Asserted-Identity: <sip:anonymous@anonymous.invalid>",), "", None),
    ],
)
def test_caller(headers: tuple[str, ...], number: str, name: str | None) -> None:
    assert caller_identity(invite("sip:299@pbx", *headers)) == (number, name)


def test_anonymous_from() -> None:
    request = invite("sip:299@pbx")
    request.headers.set("From", '"Anonymous" <sip:anonymous@anonymous.invalid>;tag=x')
    assert caller_identity(request) == ("", None)


def test_a_display_name_is_bounded_and_without_controls() -> None:
    request = invite("sip:299@pbx")
    request.headers.set("From", '"Pf\\"or\tte ' + "x" * 200 + '" <sip:100@pbx>;tag=x')
    number, name = caller_identity(request)
    assert number == "100"
    assert name is not None and len(name) <= MAX_NAME
    assert name.startswith('Pf"orte x')
    assert all(ord(c) >= 32 for c in name)


_TEXT = st.text(
    alphabet=st.sampled_from(list('<>";=,.:@+-()%?&\\ \t\x00\x7fsiptel0123456789abcAZ*#')),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(
    uri=_TEXT,
    to=_TEXT,
    diversion=_TEXT,
    history=_TEXT,
    asserted=_TEXT,
    sender=_TEXT,
    privacy=_TEXT,
)
def test_anything_gives_plausible_numbers_or_none(
    uri: str, to: str, diversion: str, history: str, asserted: str, sender: str, privacy: str
) -> None:
    """Whatever the headers hold (built without the parser, which would refuse most):
    no exception, and every number found is a plausible one."""
    headers = Headers()
    for header, value in (
        ("To", to),
        ("From", sender),
        ("Diversion", diversion),
        ("History-Info", history),
        ("P-Asserted-Identity", asserted),
        ("Privacy", privacy),
    ):
        headers.add(header, value)
    request = Request("INVITE", uri, headers)
    for mode in MODES:
        for called in called_candidates(request, mode):
            assert PLAUSIBLE.fullmatch(called), called
    number, name = caller_identity(request)
    assert number == "" or PLAUSIBLE.fullmatch(number)
    assert name is None or (len(name) <= MAX_NAME and name.isprintable())

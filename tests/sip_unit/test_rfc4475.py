"""RFC 4475, the SIP torture test messages (issue 15, point 8): every message the RFC
calls valid parses, every one it calls invalid is refused for its fault, and none makes
anything crash; what cannot be parsed is answered 400 (505 for another version) where
a response can be built. `test_rfc4475_agent.py` sends each through a real transport
and user agent and checks the answer listed here.

The messages are the RFC's own bytes (corpus/rfc4475/README.md says where from).
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import pytest

from edge_agent.sip.errors import SipParseError
from edge_agent.sip.message import (
    Request,
    Response,
    parse,
    parse_name_addr,
    parse_stream,
    parse_uri,
    parse_via,
)
from edge_agent.sip.refusal import refusal

CORPUS = Path(__file__).parent / "corpus" / "rfc4475"

# Valid messages: RFC section, and the status the agent answers with (None: not answered,
# a response matching no transaction of ours). We only call out: an INVITE outside a
# dialog is declined (603) once it passed RFC 3261 8.2's checks; REGISTER, MESSAGE and
# the like are methods we know but do not take (405); OPTIONS is answered 200.
VALID: dict[str, tuple[str, int | None]] = {
    "wsinv": ("3.1.1.1", 603),
    "intmeth": ("3.1.1.2", 501),  # "Endpoints will generate a 501"
    "esc01": ("3.1.1.3", 603),
    "escnull": ("3.1.1.4", 405),
    "esc02": ("3.1.1.5", 501),  # "An endpoint would reject this message with a 501"
    "lwsdisp": ("3.1.1.6", 200),
    "longreq": ("3.1.1.7", 603),
    "dblreq": ("3.1.1.8", 405),  # the REGISTER; the INVITE after it is noise
    "semiuri": ("3.1.1.9", 200),
    "transports": ("3.1.1.10", 200),
    "mpart01": ("3.1.1.11", 405),
    "unreason": ("3.1.1.12", None),
    "noreason": ("3.1.1.13", None),
    "badbranch": ("3.2.1", 200),  # RFC 2543-style matching, not a 400
    "unkscm": ("3.3.2", 416),
    "novelsc": ("3.3.3", 416),
    "unksm2": ("3.3.4", 405),  # parsed; we are no registrar
    "bext01": ("3.3.5", 420),
    "invut": ("3.3.6", 415),
    "regaut01": ("3.3.7", 405),  # "A 405 Method Not Allowed is appropriate"
    "bcast": ("3.3.10", None),
    "zeromf": ("3.3.11", 200),  # an endpoint ignores Max-Forwards: 0
    "cparam01": ("3.3.12", 405),
    "cparam02": ("3.3.13", 405),
    "regescrt": ("3.3.14", 405),
    "sdp01": ("3.3.15", 603),  # 603 has no body, so "Accept: text/nobodyKnowsThis" holds
    "inv2543": ("3.4.1", 603),
}

# Invalid messages: RFC section, the parser's error, the answer (None: dropped).
INVALID: dict[str, tuple[str, str, int | None]] = {
    "badinv01": ("3.1.2.1", "bad Via 'SIP/2.0/UDP 192.0.2.15;;': bad parameter ''", 400),
    "clerr": ("3.1.2.2", "Content-Length 9999 but 154 bytes of body", 400),
    "ncl": ("3.1.2.3", "bad Content-Length '-999'", 400),
    "scalar02": ("3.1.2.4", "bad CSeq '36893488147419103232 REGISTER'", 400),
    "scalarlg": ("3.1.2.5", "bad CSeq '9292394834772304023312 OPTIONS'", None),  # a response
    "quotbal": (
        "3.1.2.6",
        "bad To: unterminated quoted string in '\"Mr. J. User <sip:j.user@example.com>'",
        400,
    ),
    "ltgtruri": ("3.1.2.7", "bad Request-URI '<sip:user@example.com>'", 400),
    "lwsruri": ("3.1.2.8", "bad request line 'INVITE sip:user@example.com; lr SIP/2.0'", 400),
    "lwsstart": ("3.1.2.9", "bad request line 'INVITE  sip:user@example.com  SIP/2.0'", 400),
    "trws": (
        "3.1.2.10",
        "bad request line 'OPTIONS sip:remote-target@example.com SIP/2.0  '",
        400,
    ),
    "escruri": (
        "3.1.2.11",
        "bad Request-URI 'sip:user@example.com?Route=%3Csip:example.com%3E': it has headers",
        400,
    ),
    "baddate": ("3.1.2.12", "bad Date 'Fri, 01 Jan 2010 16:00:00 EST'", 400),
    "regbadct": (
        "3.1.2.13",
        "bad Contact: bad address 'sip:user@example.com?Route=%3Csip:sip.example.com%3E': "
        "needs <> around the URI",
        400,
    ),
    "badaspec": (
        "3.1.2.14",
        "bad To: bad address '\"Watson, Thomas\" < sip:t.watson@example.org >': space inside '<>'",
        400,
    ),
    # The archive's baddn.dat ends without the empty line (see the README); with it the
    # display name is what is refused (test_baddn_is_refused_for_its_display_name).
    "baddn": ("3.1.2.15", "no empty line after the header", 400),
    "badvers": ("3.1.2.16", "bad request line 'OPTIONS sip:t.watson@example.org SIP/7.0'", 505),
    "mismatch01": ("3.1.2.17", "CSeq method INVITE does not match OPTIONS", 400),
    "mismatch02": ("3.1.2.18", "CSeq method INVITE does not match NEWMETHOD", 400),  # or 501
    "bigcode": (
        "3.1.2.19",
        "bad status line 'SIP/2.0 4294967301 better not break the receiver'",
        None,
    ),
    "insuf": ("3.3.1", "missing From", None),  # no From, To, Call-ID to answer with
    "multi01": ("3.3.8", "more than one From", 400),
    "mcl01": ("3.3.9", "more than one Content-Length", 400),
}

# SHA-256 of the 3.1.1 messages as an independent decode of the RFC's archive gives them.
PUBLISHED_SHA256 = {
    "wsinv": "d6f6cdee99cd0a1f8e3d9a0fdd67c877700e19ab86d8186dada06f61260e3e61",
    "intmeth": "b957a8292c1c0a9851fe94705b90f94320738f43aacde64998e401f742ef688d",
    "esc01": "be3a316d4ce5f69cad474646191e390dd4b50fc8371e44b5197fe1237781973e",
    "escnull": "263fe2ecd12a5ccbb6c67b3174e9211d11da9b600e7d69666a86d2ee42873e90",
    "esc02": "9a9c59449f00327b02071feafc8e5c2a261c98c818044167894cc17809a12199",
    "lwsdisp": "d1b36b6316c12824f6f04bf6b1fd1f021cade9b74871693b9c3474cd9fa7f4e6",
    "longreq": "185739292bc676760e5b1cca77c87705aa570240171c506ad76f8c35af0ecdaa",
    "dblreq": "a6be48426565c2a705389c4ce2ea17e57b891cb13f80490a2cb9392c797b46ef",
    "semiuri": "87bbaed6b4b354dbd3c5c7a20e66686303c63e43a0aa19b89de1ac75231611a2",
    "transports": "33b4553a3b9418121b099ff07882535151edd6a1e81898c63a916aad2cbf90bc",
    "mpart01": "92147c8e24997bac59629e1b163767697d0d6d499af87f89e325d69968bec3ba",
    "unreason": "4f939d6ebf4817eea70f011d3209e83732872ffc20ffd304b244084dc392f4d7",
    "noreason": "07e11e470a69fffa3674de805e5165d1351a9439a91045ee70c9570ea24ab4fe",
}


def valid(name: str) -> bytes:
    return (CORPUS / "valid" / f"{name}.dat").read_bytes()


def invalid(name: str) -> bytes:
    return (CORPUS / "invalid" / f"{name}.dat").read_bytes()


def request(name: str) -> Request:
    message = parse(valid(name))
    assert isinstance(message, Request)
    return message


# ---------------------------------------------------------------- the corpus


def test_the_corpus_holds_all_49_messages_of_the_rfc() -> None:
    assert {p.stem for p in (CORPUS / "valid").glob("*.dat")} == set(VALID)
    assert {p.stem for p in (CORPUS / "invalid").glob("*.dat")} == set(INVALID)
    assert len(VALID) + len(INVALID) == 49


@pytest.mark.parametrize(("name", "digest"), sorted(PUBLISHED_SHA256.items()))
def test_the_valid_messages_are_the_rfcs_bytes(name: str, digest: str) -> None:
    assert hashlib.sha256(valid(name)).hexdigest() == digest


# ---------------------------------------------------------------- the parser


@pytest.mark.parametrize("name", sorted(VALID))
def test_a_valid_message_parses_and_writes_back(name: str) -> None:
    message = parse(valid(name))
    assert parse(bytes(message)) == message


@pytest.mark.parametrize(("name", "error"), sorted((n, e) for n, (_, e, _) in INVALID.items()))
def test_an_invalid_message_is_refused_for_its_fault(name: str, error: str) -> None:
    with pytest.raises(SipParseError) as caught:
        parse(invalid(name))
    assert str(caught.value) == error


def test_baddn_is_refused_for_its_display_name() -> None:
    with pytest.raises(SipParseError) as caught:
        parse(invalid("baddn") + b"\r\n")
    assert str(caught.value) == "bad From: bad display name 'Bell, Alexander'"


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*/*.dat")), ids=lambda p: p.stem)
def test_no_message_breaks_the_stream_parser(path: Path) -> None:
    data = path.read_bytes()
    for cut in (len(data), len(data) // 2):  # whole, and the first half still coming
        with contextlib.suppress(SipParseError):  # refused is fine; anything else is not
            parse_stream(data[:cut])


def test_wsinv_folding_whitespace_and_escapes() -> None:
    invite = request("wsinv")
    assert invite.to_tag == "1918181833n" and invite.from_tag == "98asjd8"
    assert parse_name_addr(invite.headers.get("From") or "").display == 'J Rosenberg \\"'
    assert invite.headers.get("Max-Forwards") == "0068" and invite.cseq == (9, "INVITE")
    vias = [parse_via(v) for v in invite.headers.get_all("Via")]
    assert [(v.transport, v.host, v.branch) for v in vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert invite.headers.get("Subject") == ""
    assert invite.headers.get("NewFangledHeader") == ("newfangled value continued newfangled value")
    contact = parse_name_addr(invite.headers.get("Contact") or "")
    assert contact.display == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert len(invite.body) == 150


def test_intmeth_odd_characters_and_quoted_controls() -> None:
    message = request("intmeth")
    assert message.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert message.cseq == (139122385, message.method)
    user = "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    uri = parse_uri(message.uri)
    assert (uri.user, uri.password) == (user, "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
    assert message.branch == "z9hG4bK-.!%66*_+`'~"
    to = parse_name_addr(message.headers.get("To") or "")
    assert to.display == "BEL:\x07 NUL:\x00 DEL:\x7f" and to.uri.user == user
    sender = parse_name_addr(message.headers.get("From") or "")
    assert sender.display == "token1~` token2'+_ token3*%!.-"
    assert sender.params == {"fromparam''~+*_!.-%": '"работающий"', "tag": "_token~1'+`*%!-."}
    assert message.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    # Written back, the controls are quoted-pairs again: the header stays one line.
    assert parse_name_addr(str(to)) == to


def test_escaped_characters_are_kept_as_written() -> None:
    # RFC 4475 3.1.1.3 to 3.1.1.5: % HEX HEX only in URIs, never unescaped recursively,
    # and % is no escape in a method, a display name or a header name.
    esc01 = request("esc01")
    assert parse_uri(esc01.uri).user == "sips%3Auser%40example.com"
    assert parse_name_addr(esc01.headers.get("To") or "").uri.user == "%75se%72"
    contact = parse_name_addr(esc01.headers.get("Contact") or "").uri
    assert contact.params == {"%6c%72": None, "n%61me": "v%61lue%25%34%31"}
    escnull = request("escnull")
    users = [parse_name_addr(c).uri.user for c in escnull.headers.get_all("Contact")]
    assert users == ["%00", "%00%00"]
    esc02 = request("esc02")
    assert esc02.method == "RE%47IST%45R"
    assert parse_name_addr(esc02.headers.get("To") or "").display == "%Z%45"
    assert len(esc02.headers.get_all("Contact")) == 2  # C%6Fntact is another header
    assert parse_uri(request("semiuri").uri).user == "user;par=u%40example.net"


def test_other_valid_shapes() -> None:
    assert parse_name_addr(request("lwsdisp").headers.get("From") or "").display == "caller"
    assert len(request("longreq").headers.get_all("Via")) == 34
    dblreq = request("dblreq")
    assert (dblreq.method, dblreq.body) == ("REGISTER", b"")
    transports = [parse_via(v).transport for v in request("transports").headers.get_all("Via")]
    assert transports == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    mpart = request("mpart01")
    assert len(mpart.body) == 553 and b"\x00" in mpart.body
    unknown = request("unksm2")
    assert [str(parse_name_addr(unknown.headers.get(h) or "").uri) for h in ("To", "From")] == [
        "isbn:2983792873",
        "http://www.example.com",
    ]
    assert parse_name_addr(unknown.headers.get("From") or "").tag == "3234233"
    reasons = [parse(valid(n)) for n in ("unreason", "noreason")]
    assert [(r.status, r.reason) for r in reasons if isinstance(r, Response)] == [
        (200, "= 2**3 * 5**2 но сто девяносто девять - простое"),
        (100, ""),
    ]


# ---------------------------------------------------------------- answers to what does not parse


def test_another_version_is_answered_505() -> None:
    refused = refusal(invalid("badvers"), "x")
    assert refused is not None
    answer = bytes(refused)
    assert answer.startswith(b"SIP/2.0 505 Version Not Supported\r\n")
    assert b"\r\nCall-ID: badvers.31417@c.example.com\r\n" in answer


def test_a_refusal_copies_folded_and_compact_headers() -> None:
    broken = valid("wsinv").replace(b"0068", b"sixty-eight")
    refused = refusal(broken, "bad Max-Forwards")
    assert refused is not None
    response = parse(bytes(refused))
    assert isinstance(response, Response) and response.status == 400
    assert len(response.headers.get_all("Via")) == 3
    assert response.cseq == (9, "INVITE") and response.to_tag == "1918181833n"


@pytest.mark.parametrize("name", ["scalarlg", "bigcode", "insuf"])
def test_what_cannot_be_answered_is_not(name: str) -> None:
    assert refusal(invalid(name), "x") is None

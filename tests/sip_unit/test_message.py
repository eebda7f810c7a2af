"""SIP messages on captured and hand-written real-world messages: round trips and exact errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.sip.errors import SipError, SipParseError
from edge_agent.sip.message import (
    Headers,
    NameAddr,
    Request,
    Response,
    SipUri,
    Via,
    new_branch,
    new_call_id,
    new_tag,
    parse,
    parse_name_addr,
    parse_stream,
    parse_uri,
    parse_via,
    response_to,
)

CORPUS = Path(__file__).parent / "corpus"
MESSAGES = sorted(CORPUS.glob("*.sip"))
# Written back byte for byte: canonical names, one space after the colon.
BYTE_EXACT = {
    "baresip_ack.sip",
    "baresip_bye.sip",
    "baresip_invite.sip",
    "baresip_register.sip",
    "baresip_register_auth.sip",
    "pbx_407_two_algorithms.sip",
    "sipp_180_ringing.sip",
    "sipp_200_bye.sip",
    "sipp_ack.sip",
    "sipp_bye.sip",
    "swyx_info_dtmf.sip",
}

MALFORMED = {
    "bad_cseq_number.sip": "bad CSeq 'two BYE'",
    "bad_header_name.sip": "bad header name 'Max Forwards' in line 8",
    "bad_max_forwards.sip": "bad Max-Forwards 'seventy'",
    "bad_status_code.sip": "bad status line 'SIP/2.0 2000 OK'",
    "bad_version.sip": "bad request line 'BYE sip:service@127.0.0.1:5080 SIP/3.0'",
    "bare_lf_in_header.sip": "control character '\\n' in line 9",
    "binary_junk.sip": "header is not UTF-8 (at byte 0)",
    "call_id_with_space.sip": "bad Call-ID '1-31180 @127.0.0.1'",
    "content_length_beyond_body.sip": "Content-Length 300 but 129 bytes of body",
    "cseq_method_mismatch.sip": "CSeq method INVITE does not match BYE",
    "cseq_too_large.sip": "bad CSeq '4294967296 BYE'",
    "empty.sip": "no CRLF: not a SIP message",
    "folding_before_any_header.sip": "line 2 continues no header",
    "from_unterminated_quote.sip": (
        "bad From: unterminated quoted string in "
        "'\"sipp <sip:sipp@127.0.0.1:5091>;tag=31180SIPpTag001'"
    ),
    "from_without_host.sip": "bad From: bad URI 'sip:': no host",
    "header_without_colon.sip": "no colon in header line 8: 'Max-Forwards 70'",
    "http_request.sip": "bad request line 'GET / HTTP/1.1'",
    "huge_content_length.sip": "Content-Length 99999999999 is larger than 64 KiB",
    "keepalive_only.sip": "bad request line ''",
    "larger_than_64k.sip": "message of 72193 bytes is larger than 64 KiB",
    "latin1_header.sip": "header is not UTF-8 (at byte 105)",
    "missing_call_id.sip": "missing Call-ID",
    "missing_cseq.sip": "missing CSeq",
    "missing_from.sip": "missing From",
    "missing_to.sip": "missing To",
    "missing_via.sip": "missing Via",
    "negative_content_length.sip": "bad Content-Length '-5'",
    "no_blank_line.sip": "no empty line after the header",
    "no_crlf.sip": "no CRLF: not a SIP message",
    "nul_byte_in_header.sip": "NUL byte in the header",
    "request_line_double_space.sip": ("bad request line 'BYE  sip:service@127.0.0.1:5080 SIP/2.0'"),
    "request_uri_bad_port.sip": (
        "bad Request-URI: port 99999 out of range in 'sip:service@127.0.0.1:99999'"
    ),
    "request_uri_no_scheme.sip": "bad Request-URI 'service@127.0.0.1:5080'",
    "status_code_700.sip": "bad status line 'SIP/2.0 700 Beyond'",
    "status_code_below_100.sip": "bad status line 'SIP/2.0 099 Early'",
    "status_without_reason.sip": "bad status line 'SIP/2.0 200'",
    "two_call_ids.sip": "more than one Call-ID",
    "two_content_lengths.sip": "more than one Content-Length",
    "via_bad_port.sip": (
        "bad Via 'SIP/2.0/UDP 127.0.0.1:5091:77;branch=z9hG4bK-31180-1-7': "
        "bad port in '127.0.0.1:5091:77'"
    ),
    "via_without_transport.sip": "bad Via 'SIP/2.0 127.0.0.1:5091;branch=z9hG4bK-31180-1-7'",
}


def load(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def request(name: str) -> Request:
    return request_of(load(name))


def request_of(raw: bytes) -> Request:
    message = parse(raw)
    assert isinstance(message, Request)
    return message


def response(name: str) -> Response:
    message = parse(load(name))
    assert isinstance(message, Response)
    return message


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("path", MESSAGES, ids=lambda p: p.name)
def test_it_round_trips_every_captured_message(path: Path) -> None:
    raw = path.read_bytes()
    message = parse(raw)
    assert parse(bytes(message)) == message
    if path.name in BYTE_EXACT:
        assert bytes(message) == raw


def test_the_corpus_has_the_messages_of_a_call() -> None:
    kinds = {
        m.method if isinstance(m, Request) else str(m.status)
        for m in (parse(p.read_bytes()) for p in MESSAGES)
    }
    assert {"INVITE", "ACK", "BYE", "REGISTER", "INFO", "OPTIONS"} <= kinds
    assert {"180", "200", "401", "407"} <= kinds


def test_it_reads_a_sipp_invite() -> None:
    invite = request("sipp_invite.sip")
    assert (invite.method, invite.uri) == ("INVITE", "sip:service@127.0.0.1:5080")
    assert invite.call_id == "1-31180@127.0.0.1"
    assert invite.cseq == (1, "INVITE")
    assert invite.branch == "z9hG4bK-31180-1-0"
    assert (invite.from_tag, invite.to_tag) == ("31180SIPpTag001", None)
    assert invite.headers.get("Content-Length") == "129"  # SIPp pads it: "Content-Length:   129"
    assert invite.body.startswith(b"v=0\r\n") and len(invite.body) == 129
    # A bare URI in Contact: SIPp writes "Contact: sip:sipp@127.0.0.1:5091".
    assert str(parse_name_addr(invite.headers.get("Contact") or "").uri) == (
        "sip:sipp@127.0.0.1:5091"
    )


def test_it_reads_a_sipp_answer_and_its_tags() -> None:
    ok = response("sipp_200_invite.sip")
    assert (ok.status, ok.reason) == (200, "OK")
    assert ok.to_tag == "31179SIPpTag011" and ok.from_tag == "31180SIPpTag001"
    assert ok.cseq == (1, "INVITE")
    contact = parse_name_addr(ok.headers.get("Contact") or "")
    assert contact.uri == SipUri("sip", None, "127.0.0.1", 5090, {"transport": "UDP"})


def test_it_reads_baresips_register_with_a_quoted_instance() -> None:
    register = request("baresip_register.sip")
    (contact,) = register.headers.get_all("Contact")
    parsed = parse_name_addr(contact)
    assert parsed.params == {
        "expires": "60",
        "+sip.instance": '"<urn:uuid:403db124-3988-4623-38af-486869c7edd0>"',
    }
    assert parsed.uri.user == "alice-0x55b3222d4430"
    assert register.headers.get_all("Allow") == [
        *("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS"),
        *("NOTIFY", "SUBSCRIBE", "INFO", "MESSAGE", "REFER"),
    ]
    assert parse_via(register.headers.get("Via") or "").params == {
        "branch": "z9hG4bKf0c3be623dca1626",
        "rport": None,
    }


def test_it_keeps_authentication_headers_whole() -> None:
    challenge = response("asterisk_401_register.sip").headers.get_all("WWW-Authenticate")
    assert challenge == [
        'Digest realm="asterisk",nonce="1732693200/6d0a1f3c9b2e8d4a7c5f0e1b3d2a9c8f",'
        'opaque="4b7e2f1a6c9d3e08",algorithm=md5,qop="auth"'
    ]
    proxy = response("pbx_407_two_algorithms.sip").headers.get_all("Proxy-Authenticate")
    assert [p.split("algorithm=")[1].split(",")[0] for p in proxy] == ["SHA-256", "MD5"]


def test_it_reads_the_dtmf_relay_info_of_swyxware() -> None:
    info = request("swyx_info_dtmf.sip")
    assert info.method == "INFO" and info.cseq == (3, "INFO")
    assert info.headers.get("Content-Type") == "application/dtmf-relay"
    assert info.body == b"Signal=1\r\nDuration=160"
    assert info.to_tag == "a3c9f1e07b2d4e68"


def test_it_gives_compact_forms_their_names_and_unfolds_lines() -> None:
    invite = request("compact_folded_invite.sip")
    assert [name for name, _ in invite.headers.items()] == [
        *("Via", "Via", "Max-Forwards", "From", "To", "Call-ID", "CSeq", "Contact"),
        *("Subject", "Supported", "Content-Type", "Content-Length"),
    ]
    assert invite.headers.get("Subject") == "a folded subject line"
    assert invite.headers.get("Max-Forwards") == "69"
    assert invite.cseq == (10, "INVITE")  # written "CSeq  :  10 INVITE"
    assert invite.branch == "z9hG4bKpr0xy"
    assert [parse_via(v).host for v in invite.headers.get_all("v")] == [
        "198.51.100.1",
        "198.51.100.7",
    ]
    assert parse_name_addr(invite.headers.get("f") or "").display == "Jürgen Müller"
    assert invite.headers.get_all("Supported") == ["timer", "100rel"]
    written = bytes(invite)
    assert b"\r\nContent-Length: 113\r\n" in written and b"\r\nl:" not in written


# ---------------------------------------------------------------- bodies and Content-Length


def test_it_drops_bytes_past_content_length() -> None:
    # RFC 3261 18.3: on UDP, bytes beyond Content-Length are discarded.
    raw = load("swyx_info_dtmf.sip") + b"\r\n\r\ntrailing junk"
    assert parse(raw).body == b"Signal=1\r\nDuration=160"


def test_it_takes_the_rest_of_a_datagram_when_content_length_is_missing() -> None:
    raw = load("swyx_info_dtmf.sip").replace(b"Content-Length: 22\r\n", b"")
    message = parse(raw)
    assert message.body == b"Signal=1\r\nDuration=160"
    assert b"Content-Length: 22\r\n\r\n" in bytes(message)


def test_it_allows_a_utf8_body() -> None:
    body = "Alarm: Gebäude räumen ✓".encode()
    message = request("sipp_bye.sip")
    message.body = body
    assert parse(bytes(message)).body == body


def test_it_always_writes_the_right_content_length() -> None:
    message = request("sipp_invite.sip")
    message.body = b"v=0\r\n"
    message.headers.add("Content-Length", "77")  # a second, wrong one
    written = bytes(message)
    assert written.count(b"Content-Length") == 1
    assert b"\r\nContent-Length: 5\r\n\r\nv=0\r\n" in written
    message.headers.remove("Content-Length")
    assert bytes(message).endswith(b"Content-Length: 5\r\n\r\nv=0\r\n")


def test_it_refuses_to_write_a_header_with_a_line_break() -> None:
    message = request("sipp_bye.sip")
    message.headers.set("Subject", "hi\r\nVia: SIP/2.0/UDP evil")
    with pytest.raises(SipError) as caught:
        bytes(message)
    assert str(caught.value) == "line break in 'Subject: hi\\r\\nVia: SIP/2.0/UDP evil'"


# ---------------------------------------------------------------- errors


def test_the_malformed_corpus_is_complete() -> None:
    files = {p.name for p in (CORPUS / "malformed").glob("*.sip")}
    assert files == set(MALFORMED)
    assert len(files) >= 25


@pytest.mark.parametrize(("name", "error"), sorted(MALFORMED.items()))
def test_it_rejects_a_malformed_message(name: str, error: str) -> None:
    with pytest.raises(SipParseError) as caught:
        parse((CORPUS / "malformed" / name).read_bytes())
    assert str(caught.value) == error


@pytest.mark.parametrize(
    ("header", "error"),
    [
        ("Contact: <sip:a@b", "bad Contact: unclosed '<' in '<sip:a@b'"),
        ("Route: <mailto:x@y>", "bad Route: bad URI 'mailto:x@y': unsupported scheme 'mailto'"),
        (
            "Via: SIP/2.0/UDP host;branch=a b",
            "bad Via 'SIP/2.0/UDP host;branch=a b': bad parameter value 'branch=a b'",
        ),
        ("To: sip:a@b;tag=1", "more than one To"),
    ],
)
def test_it_rejects_bad_address_headers(header: str, error: str) -> None:
    raw = load("sipp_bye.sip").replace(b"Max-Forwards: 70", header.encode())
    with pytest.raises(SipParseError) as caught:
        parse(raw)
    assert str(caught.value) == error


@pytest.mark.parametrize(
    ("start", "error"),
    [
        ("BYE sip:jürgen@example.org SIP/2.0", "bad Request-URI 'sip:jürgen@example.org'"),
        ("BYE tel:;x SIP/2.0", "bad Request-URI: bad URI 'tel:;x': no number"),
        ("BYE sip:a@b\x01 SIP/2.0", "bad request line 'BYE sip:a@b\\x01 SIP/2.0'"),
        ("bye sip:a@b sip/2.0", "bad request line 'bye sip:a@b sip/2.0'"),
        ("SIP/2.0 200 OK\x7f", "bad status line 'SIP/2.0 200 OK\\x7f'"),
    ],
)
def test_it_is_strict_on_the_start_line(start: str, error: str) -> None:
    raw = load("sipp_bye.sip").replace(b"BYE sip:service@127.0.0.1:5080 SIP/2.0", start.encode())
    with pytest.raises(SipParseError) as caught:
        parse(raw)
    assert str(caught.value) == error


def test_it_accepts_any_absolute_request_uri() -> None:
    raw = load("sipp_bye.sip").replace(b"BYE sip:service@127.0.0.1:5080", b"BYE urn:service:sos")
    assert request_of(raw).uri == "urn:service:sos"


def test_it_accepts_a_contact_star() -> None:
    raw = load("baresip_register.sip")
    start = raw.index(b"Contact: ")
    end = raw.index(b"\r\n", start)
    message = parse(raw[:start] + b"Contact: *" + raw[end:])
    assert message.headers.get_all("Contact") == ["*"]


# ---------------------------------------------------------------- streams


def test_it_frames_messages_on_a_stream_fed_byte_by_byte() -> None:
    names = ["sipp_invite.sip", "sipp_180_ringing.sip", "swyx_info_dtmf.sip", "sipp_bye.sip"]
    expected = [parse(load(n)) for n in names]
    # Keep-alives (RFC 5626: CRLFCRLF ping, CRLF pong) before and between messages.
    stream = b"\r\n\r\n" + b"\r\n".join(load(n) for n in names)
    got: list[Request | Response] = []
    buffer = b""
    for byte in stream:
        buffer += bytes([byte])
        message, buffer = parse_stream(buffer)
        if message is not None:
            got.append(message)
    assert got == expected and buffer == b""


def test_it_returns_what_follows_a_message_on_a_stream() -> None:
    raw = load("sipp_bye.sip")
    assert parse_stream(raw + b"BYE sip:x") == (parse(raw), b"BYE sip:x")
    assert parse_stream(raw[:-1]) == (None, raw[:-1])
    assert parse_stream(b"\r\n\r\n" + raw[:40]) == (None, raw[:40])


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (
            b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n",
            "missing Content-Length (required on a stream)",
        ),
        (b"OPTIONS sip:a@b SIP/2.0\r\nl: ten\r\n\r\n", "bad Content-Length 'ten'"),
        (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n",
            "bad request line '\\x16\\x03\\x01\\x02\\x00\\x01\\x00\\x01�\\x03\\x03'",
        ),
        (b"SIP/2.0 200 OK\r\nX: " + b"y" * 70_000, "no end of the header within 64 KiB"),
        (b"SIP/2.0 200 OK\r\nl: 65530\r\n\r\n", "message of 65558 bytes is larger than 64 KiB"),
    ],
)
def test_it_rejects_a_stream_it_cannot_frame(data: bytes, error: str) -> None:
    with pytest.raises(SipParseError) as caught:
        parse_stream(data)
    assert str(caught.value) == error


# ---------------------------------------------------------------- headers


def test_headers_are_case_insensitive_and_know_compact_forms() -> None:
    headers = Headers([("i", "abc@host"), ("CALL-ID", "second"), ("x-custom", "1")])
    assert headers.get("call-id") == "abc@host"
    assert headers.get_all("Call-ID") == ["abc@host", "second"]
    assert headers.items() == [("Call-ID", "abc@host"), ("Call-ID", "second"), ("x-custom", "1")]
    assert "X-Custom" in headers and "i" in headers and "Via" not in headers
    assert headers.get("Subject") is None and headers.get_all("Subject") == []


def test_headers_set_replaces_all_where_the_first_was() -> None:
    headers = Headers([("Via", "a"), ("To", "t"), ("v", "b"), ("From", "f")])
    headers.set("VIA", "c")
    assert headers.items() == [("Via", "c"), ("To", "t"), ("From", "f")]
    headers.set("Subject", "new")
    assert headers.items()[-1] == ("Subject", "new")
    headers.remove("to")
    assert [n for n, _ in headers.items()] == ["Via", "From", "Subject"]


def test_headers_copy_is_independent() -> None:
    headers = Headers([("To", "t")])
    copy = headers.copy()
    copy.add("From", "f")
    assert headers.items() == [("To", "t")] and copy == Headers([("to", "t"), ("f", "f")])


def test_get_all_cuts_list_headers_outside_quotes_and_angles() -> None:
    headers = Headers(
        [
            ("Contact", '"Doe, John" <sip:j@a;x=1,2>;q=0.5, <sip:k@b>'),
            ("m", "sip:l@c"),
            ("Route", "<sip:p1@a;lr>,<sip:p2@b;lr>"),
            ("Subject", "not, a, list"),
        ]
    )
    assert headers.get_all("Contact") == [
        '"Doe, John" <sip:j@a;x=1,2>;q=0.5',
        "<sip:k@b>",
        "sip:l@c",
    ]
    assert headers.get("Route") == "<sip:p1@a;lr>"
    assert headers.get_all("Subject") == ["not, a, list"]


# ---------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    ("text", "uri"),
    [
        ("sip:alice@atlanta.example.com", SipUri("sip", "alice", "atlanta.example.com")),
        (
            "sips:alice:secret@[2001:db8::1]:5061;transport=tcp;lr",
            SipUri(
                "sips",
                "alice",
                "2001:db8::1",
                5061,
                {"transport": "tcp", "lr": None},
                password="secret",
            ),
        ),
        ("sip:10.0.0.1", SipUri("sip", None, "10.0.0.1")),
        (
            "sip:+4930123;phone-context=x@pbx.example.org;user=phone?Subject=alarm&Priority=urgent",
            SipUri(
                "sip",
                "+4930123;phone-context=x",
                "pbx.example.org",
                None,
                {"user": "phone"},
                {"Subject": "alarm", "Priority": "urgent"},
            ),
        ),
        (
            "tel:+49-30-1234567;phone-context=example.org",
            SipUri("tel", "+49-30-1234567", "", None, {"phone-context": "example.org"}),
        ),
    ],
)
def test_it_parses_and_writes_uris(text: str, uri: SipUri) -> None:
    assert parse_uri(text) == uri
    assert str(uri) == text


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("alice@example.com", "bad URI 'alice@example.com': no scheme"),
        ("http://example.com", "bad URI 'http://example.com': unsupported scheme 'http'"),
        ("sip:alice@", "bad URI 'sip:alice@': no host"),
        ("sip:a b@host", "bad URI 'sip:a b@host': bad user part"),
        ("sip:host:0", "port 0 out of range in 'sip:host:0'"),
        ("sip:host:²", "bad port in 'sip:host:²'"),  # str.isdigit() takes it, int() does not
        ("sip:[::1", "bad IPv6 reference in 'sip:[::1'"),
        ("sip:ho_st", "bad host 'ho_st' in 'sip:ho_st'"),
        ('sip:host;a="q"', "bad URI 'sip:host;a=\"q\"': bad parameter value 'a=\"q\"'"),
    ],
)
def test_it_rejects_bad_uris(text: str, error: str) -> None:
    with pytest.raises(SipParseError) as caught:
        parse_uri(text)
    assert str(caught.value) == error


def test_name_addr_forms() -> None:
    quoted = parse_name_addr('"Alice \\"Al\\" Smith" <sip:alice@a.example>;tag=88sja8x')
    assert quoted == NameAddr(
        'Alice "Al" Smith', parse_uri("sip:alice@a.example"), {"tag": "88sja8x"}
    )
    assert str(quoted) == '"Alice \\"Al\\" Smith" <sip:alice@a.example>;tag=88sja8x'
    assert parse_name_addr("Bob  Jones <sip:bob@b>").display == "Bob Jones"
    # Parameters after a bare URI belong to the header, not to the URI (RFC 3261 20.10).
    bare = parse_name_addr("sip:bob@b.example;tag=x;user=phone")
    assert bare.uri.params == {} and bare.params == {"tag": "x", "user": "phone"}
    assert str(bare) == "<sip:bob@b.example>;tag=x;user=phone"
    inside = parse_name_addr("<sip:bob@b.example;user=phone>;tag=x")
    assert inside.uri.params == {"user": "phone"} and inside.tag == "x"
    assert parse_name_addr(str(quoted)) == quoted


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("sip:a@b, sip:c@d", "bad address 'sip:a@b, sip:c@d': needs <> around the URI"),
        ("Alice <sip:a@b", "bad address 'Alice <sip:a@b': no closing '>'"),
        ("Al@ce <sip:a@b>", "bad display name 'Al@ce'"),
        ("<sip:a@b> junk", "bad address '<sip:a@b> junk': junk before parameters: 'junk'"),
        ("<sip:a@b>;=x", "bad address '<sip:a@b>;=x': bad parameter '=x'"),
    ],
)
def test_it_rejects_bad_name_addrs(text: str, error: str) -> None:
    with pytest.raises(SipParseError) as caught:
        parse_name_addr(text)
    assert str(caught.value) == error


def test_via_values() -> None:
    via = parse_via(
        "SIP / 2.0 / tcp [2001:db8::9]:5061 ;branch=z9hG4bK77;rport=5061;received=2001:db8::1"
    )
    assert via == Via(
        "TCP",
        "2001:db8::9",
        5061,
        {"branch": "z9hG4bK77", "rport": "5061", "received": "2001:db8::1"},
    )
    assert via.branch == "z9hG4bK77"
    assert (
        str(via)
        == "SIP/2.0/TCP [2001:db8::9]:5061;branch=z9hG4bK77;rport=5061;received=2001:db8::1"
    )
    assert parse_via(str(via)) == via
    assert parse_via("SIP/2.0/UDP host").params == {}
    with pytest.raises(SipParseError) as caught:
        parse_via("SIP/1.0/UDP host")
    assert str(caught.value) == "bad Via 'SIP/1.0/UDP host'"


# ---------------------------------------------------------------- responses and identifiers


def test_a_response_copies_what_rfc_3261_says() -> None:
    invite = request("compact_folded_invite.sip")
    ringing = response_to(invite, 180, "Ringing", to_tag="bb77")
    assert ringing.headers.items() == [
        ("Via", "SIP/2.0/UDP 198.51.100.1;branch=z9hG4bKpr0xy;received=198.51.100.1"),
        ("Via", "SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bKc0mp4ct;rport"),
        ("From", '"Jürgen Müller" <sip:jm@example.org>;tag=8f2e'),
        ("To", "<sip:201@pbx.example.org>;tag=bb77"),
        ("Call-ID", "c0mp4ct-f0lded@198.51.100.7"),
        ("CSeq", "10 INVITE"),
    ]
    assert parse(bytes(ringing)) == ringing
    assert (ringing.branch, ringing.to_tag) == ("z9hG4bKpr0xy", "bb77")


def test_a_response_inside_a_dialog_keeps_the_to_tag() -> None:
    bye = request("baresip_bye.sip")
    ok = response_to(bye, 200, "OK", to_tag=new_tag())
    assert ok.to_tag == "69ecb0e1c5206408"
    assert "Timestamp" not in ok.headers


def test_a_100_trying_copies_the_timestamp() -> None:
    invite = request("sipp_invite.sip")
    invite.headers.add("Timestamp", "54")
    assert response_to(invite, 100, "Trying").headers.get("Timestamp") == "54"
    assert response_to(invite, 180, "Ringing").headers.get("Timestamp") is None


def test_new_identifiers_are_unique_and_well_formed() -> None:
    branches = {new_branch() for _ in range(100)}
    assert len(branches) == 100 and all(b.startswith("z9hG4bK") for b in branches)
    assert len({new_tag() for _ in range(100)}) == 100
    call_id = new_call_id("192.0.2.10")
    assert call_id.endswith("@192.0.2.10") and " " not in call_id

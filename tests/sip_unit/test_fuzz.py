"""Property tests: whatever arrives, the parsers raise only their own errors; what they
accept they write back unchanged; generated valid messages survive bytes() and parse()."""

from __future__ import annotations

import contextlib
import string
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from edge_agent.sip import digest, sdp
from edge_agent.sip.errors import DigestError, SdpError, SipParseError
from edge_agent.sip.message import (
    Headers,
    NameAddr,
    Request,
    Response,
    SipUri,
    Via,
    parse,
    parse_stream,
)

# No example database, and Hypothesis' own cache outside the work tree.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "rundruf-hypothesis")

CORPUS = Path(__file__).parent / "corpus"
MESSAGES = [p.read_bytes() for p in sorted(CORPUS.glob("*.sip"))]
MALFORMED = [p.read_bytes() for p in sorted((CORPUS / "malformed").glob("*.sip"))]
SDP_BODIES = [m.split(b"\r\n\r\n", 1)[1] for m in MESSAGES if b"\r\n\r\nv=0" in m]
CHALLENGES = [
    'Digest realm="asterisk",nonce="1732693200/6d0a",opaque="4b7e",algorithm=md5,qop="auth"',
    'Digest realm="pbx.example.org", nonce="ZTg1", qop="auth", algorithm=SHA-256, opaque="c2f1"',
    'Digest username="alice", realm="rundruf.test", nonce="5f2c", uri="sip:127.0.0.1:5082", '
    'response="950051c8a8d7ed392908bf2746a99acc", cnonce="6225", qop=auth, nc=00000001',
]
# Bytes that matter to the grammar, more likely to reach deep code than random ones.
SPECIAL = [
    *(b"\r\n", b"\r\n ", b"\r\n\r\n", b"\n", b"\r", b"\x00", b"\xff", b"\xc3"),
    *(b":", b";", b",", b"=", b"<", b">", b'"', b"\\", b"@", b"[", b"]", b"?", b"&", b"/"),
    *(b" ", b"\t", b"%", b"SIP/2.0", b"sip:", b"z9hG4bK", b"tag=", b"0", b"99999999999"),
]

FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

mutation = st.tuples(
    st.sampled_from(["insert", "replace", "delete", "truncate", "duplicate"]),
    st.integers(min_value=0, max_value=80_000),
    st.sampled_from(SPECIAL) | st.binary(min_size=1, max_size=6),
)


def mutate(data: bytes, mutations: list[tuple[str, int, bytes]]) -> bytes:
    for kind, at, piece in mutations:
        at = at % (len(data) + 1)
        if kind == "insert":
            data = data[:at] + piece + data[at:]
        elif kind == "replace":
            data = data[:at] + piece + data[at + len(piece) :]
        elif kind == "delete":
            data = data[:at] + data[at + len(piece) :]
        elif kind == "truncate":
            data = data[:at]
        else:
            data = data[:at] + data[at : at + 40] + data[at:]
    return data


def assert_parses_or_refuses(data: bytes) -> None:
    """parse() either refuses with SipParseError or gives a message that writes back as is."""
    try:
        message = parse(data)
    except SipParseError:
        return
    # What parse accepts is complete: the properties work and a round trip changes nothing.
    assert message.call_id and message.cseq[0] >= 0
    assert isinstance(message.branch, str)
    _ = (message.from_tag, message.to_tag)
    assert parse(bytes(message)) == message


def assert_frames_or_refuses(data: bytes) -> None:
    try:
        message, rest = parse_stream(data)
    except SipParseError:
        return
    assert len(rest) <= len(data)
    if message is not None:
        assert parse(bytes(message)) == message


@FUZZ
@given(st.binary(max_size=2_000))
def test_random_bytes_give_only_sip_parse_errors(data: bytes) -> None:
    assert_parses_or_refuses(data)
    assert_frames_or_refuses(data)


@FUZZ
@given(st.sampled_from(MESSAGES + MALFORMED), st.lists(mutation, min_size=1, max_size=6))
def test_mutated_messages_give_only_sip_parse_errors(
    data: bytes, mutations: list[tuple[str, int, bytes]]
) -> None:
    mutated = mutate(data, mutations)
    assert_parses_or_refuses(mutated)
    assert_frames_or_refuses(mutated)


@FUZZ
@given(st.sampled_from(SDP_BODIES), st.lists(mutation, min_size=1, max_size=6))
def test_mutated_sdp_gives_only_sdp_errors(
    data: bytes, mutations: list[tuple[str, int, bytes]]
) -> None:
    try:
        description = sdp.parse(mutate(data, mutations))
    except SdpError:
        return
    with contextlib.suppress(SdpError):
        sdp.negotiate(description)
    sdp.answer(description, "192.0.2.1", 4000, 1)


@FUZZ
@given(st.sampled_from(CHALLENGES), st.lists(mutation, min_size=1, max_size=4))
def test_mutated_digest_values_give_only_digest_errors(
    text: str, mutations: list[tuple[str, int, bytes]]
) -> None:
    value = mutate(text.encode(), mutations).decode("utf-8", "replace")
    for check in (digest.parse_challenge, digest.parse_credentials):
        with contextlib.suppress(DigestError):
            check(value)
    with contextlib.suppress(DigestError):
        digest.verify(value, method="REGISTER", password="secret", realm="rundruf.test")


# ---------------------------------------------------------------- generated valid messages

TOKEN = string.ascii_letters + string.digits + "-.!%*_+`'~"
token = st.text(TOKEN, min_size=1, max_size=10)
label = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(string.ascii_lowercase),
    st.text(string.ascii_lowercase + string.digits, max_size=7),
)
hostname = st.lists(label, min_size=1, max_size=3).map(".".join)
ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
ipv6 = st.sampled_from(["::1", "2001:db8::7", "fe80::1:2:3"])
host = hostname | ipv4 | ipv6
port = st.none() | st.integers(1, 65535)
param_text = st.text(string.ascii_letters + string.digits + "-_.!~*'()", min_size=1, max_size=8)
params = st.dictionaries(param_text.map(str.lower), st.none() | param_text, max_size=3)
user = st.text(string.ascii_letters + string.digits + "-_.!~*'()&=+$,?/", min_size=1, max_size=10)
uri = st.builds(
    SipUri,
    scheme=st.sampled_from(["sip", "sips"]),
    user=st.none() | user,
    host=host,
    port=port,
    params=params,
)
display = st.none() | st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=16)
tag = st.text(string.ascii_letters + string.digits + "-", min_size=1, max_size=12)
name_addr = st.builds(NameAddr, display=display, uri=uri, params=params)
via = st.builds(
    Via,
    transport=st.sampled_from(["UDP", "TCP", "TLS", "WS"]),
    host=host,
    port=port,
    params=tag.map(lambda t: {"branch": "z9hG4bK" + t}),
)
visible = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=30)
header_value = visible.map(lambda v: v.strip(" \t"))
call_id = st.text(TOKEN + '()<>:\\"/[]?{}@', min_size=1, max_size=24)
methods = st.sampled_from(["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "INFO"])


@st.composite
def messages(draw: st.DrawFn) -> Request | Response:
    headers = Headers()
    for value in draw(st.lists(via, min_size=1, max_size=3)):
        headers.add("Via", str(value))
    sender = draw(name_addr)
    sender.params["tag"] = draw(tag)
    headers.add("From", str(sender))
    headers.add("To", str(draw(name_addr)))
    headers.add(draw(st.sampled_from(["Call-ID", "i"])), draw(call_id))
    method = draw(methods | token)
    headers.add("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {method}")
    for name, value in draw(st.lists(st.tuples(token, header_value), max_size=4)):
        headers.add("X-" + name, value)
    body = draw(st.binary(max_size=300))
    if draw(st.booleans()):
        return Request(method, str(draw(uri)), headers, body)
    return Response(draw(st.integers(100, 699)), draw(visible), headers, body)


@settings(max_examples=300, deadline=None, database=None)
@given(messages())
def test_generated_messages_survive_bytes_and_parse(message: Request | Response) -> None:
    written = bytes(message)
    assert parse(written) == message
    assert parse_stream(b"\r\n" + written + b"\r\n") == (message, b"\r\n")
    assert bytes(parse(written)) == written


@settings(max_examples=200, deadline=None, database=None)
@given(
    st.builds(
        sdp.SessionDescription,
        address=ipv4 | ipv6,
        port=st.integers(0, 65535),
        payloads=st.dictionaries(
            st.integers(0, 127),
            st.sampled_from(["PCMA/8000", "PCMU/8000", "telephone-event/8000", "opus/48000/2"]),
            min_size=1,
            max_size=5,
        ),
        direction=st.sampled_from(sdp.DIRECTIONS),
        ptime=st.none() | st.integers(1, 200),
        session_id=st.integers(0, 2**63),
        session_version=st.integers(0, 2**63),
    )
)
def test_generated_session_descriptions_survive_bytes_and_parse(
    description: sdp.SessionDescription,
) -> None:
    assert sdp.parse(bytes(description)) == description

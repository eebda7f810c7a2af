"""SIP messages (RFC 3261 7): `parse` bytes into a Request or Response, `bytes()` back.

Strict on the start line and on the headers every message needs (Via, From, To,
Call-ID, CSeq, 8.1.1); liberal on whitespace around header names and values.
Obsolete line folding is unfolded (7.3.1), compact forms get their full names
(7.3.3). `bytes()` always writes the right Content-Length.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

from edge_agent.sip import header_lines
from edge_agent.sip.addresses import (
    NameAddr,
    SipUri,
    Via,
    parse_name_addr,
    parse_uri,
    parse_via,
)
from edge_agent.sip.errors import SipError, SipParseError, SipVersionError
from edge_agent.sip.headers import COMPACT, LIST_HEADERS, Headers, canonical_name
from edge_agent.sip.quoted_pairs import CONTROL as _CONTROL

__all__ = [
    "COMPACT",
    "LIST_HEADERS",
    "Headers",
    "NameAddr",
    "Request",
    "Response",
    "SipUri",
    "Via",
    "canonical_name",
    "new_branch",
    "new_call_id",
    "new_tag",
    "parse",
    "parse_name_addr",
    "parse_stream",
    "parse_stream_head",
    "parse_uri",
    "parse_via",
    "response_to",
]

MAX_MESSAGE = 64 * 1024  # the largest UDP datagram, and what we buffer on TCP for one message
MAGIC_COOKIE = "z9hG4bK"  # RFC 3261 8.1.1.7

_SINGLE = ("From", "To", "Call-ID", "CSeq", "Content-Length", "Max-Forwards")
_REQUIRED = ("Via", "From", "To", "Call-ID", "CSeq")
_ADDRESSES = ("Via", "From", "To", "Contact", "Route", "Record-Route")  # each value parsed
_ADDRESS_SET = frozenset(_ADDRESSES)

_REQUEST_LINE = re.compile(r"([A-Za-z0-9\-.!%*_+`'~]+) (\S+) SIP/2\.0")
_STATUS_LINE = re.compile(r"SIP/2\.0 ([1-6][0-9][0-9]) (.*)")
_ABSOLUTE_URI = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*:\S+")
_CSEQ = re.compile(r"([0-9]{1,10})[ \t]+([A-Za-z0-9\-.!%*_+`'~]+)")
_DIGITS = re.compile(r"[0-9]+")
_MAX_FORWARDS = re.compile(r"[0-9]{1,10}")  # leading zeros are allowed (RFC 4475 3.1.1.1)
# A request line of another SIP version: answered 505, not 400 (RFC 4475 3.1.2.16).
_OTHER_VERSION = re.compile(
    r"[A-Za-z0-9\-.!%*_+`'~]+ [\x21-\x7e]+ SIP/(?!2\.0$)[0-9]{1,3}\.[0-9]{1,3}"
)
# SIP-date (RFC 3261 25.1): rfc1123-date, and GMT the only zone (RFC 4475 3.1.2.12).
_DATE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} "
    r"[0-9]{2}:[0-9]{2}:[0-9]{2} GMT",
    re.IGNORECASE,
)


class _Message:
    """What requests and responses share: the dialog and transaction identifiers."""

    headers: Headers
    body: bytes
    # (top Via line, its branch): the branch is asked for at every transaction step.
    _branch_memo: tuple[str, str] | None = None

    def _start(self) -> tuple[object, ...]:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        """The same message on the wire: Content-Length, which `bytes()` derives, aside."""
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _Message)
        mine, theirs = self.headers.copy(), other.headers.copy()
        mine.remove("Content-Length")
        theirs.remove("Content-Length")
        return (self._start(), mine, self.body) == (other._start(), theirs, other.body)

    __hash__ = None  # type: ignore[assignment]  # mutable

    @property
    def call_id(self) -> str:
        value = self.headers.get("Call-ID")
        if value is None:
            raise SipParseError("missing Call-ID")
        return value

    @property
    def cseq(self) -> tuple[int, str]:
        value = self.headers.get("CSeq")
        if value is None:
            raise SipParseError("missing CSeq")
        return _parse_cseq(value)

    @property
    def branch(self) -> str:
        """The top Via's branch parameter ("" when it has none)."""
        top = self.headers.first_line("Via")
        remembered = self._branch_memo
        if remembered is not None and remembered[0] == top:  # asked per transaction step
            return remembered[1]
        vias = self.headers.get_all("Via")
        if not vias:
            raise SipParseError("missing Via")
        branch = parse_via(vias[0]).branch or ""
        self._branch_memo = (top or "", branch)
        return branch

    def remember_branch(self, branch: str) -> None:
        """Tells the message the branch its (just written) top Via carries: no parse."""
        self._branch_memo = (self.headers.first_line("Via") or "", branch)

    @property
    def from_tag(self) -> str | None:
        value = self.headers.get("From")
        return None if value is None else parse_name_addr(value).tag

    @property
    def to_tag(self) -> str | None:
        value = self.headers.get("To")
        return None if value is None else parse_name_addr(value).tag


@dataclass(eq=False)
class Request(_Message):
    method: str
    uri: str
    headers: Headers
    body: bytes = b""
    # Whether sending it makes its destination a known peer (the intake's rate limit
    # spares what comes back from there). Not for requests in an incoming call's dialog:
    # their destination is whoever called (review of issue 16, finding 10).
    learn_peer: bool = field(default=True, compare=False, repr=False)

    def _start(self) -> tuple[object, ...]:
        return (self.method, self.uri)

    def __bytes__(self) -> bytes:
        return _serialise(f"{self.method} {self.uri} SIP/2.0", self.headers, self.body)


@dataclass(eq=False)
class Response(_Message):
    status: int
    reason: str
    headers: Headers
    body: bytes = b""

    def _start(self) -> tuple[object, ...]:
        return (self.status, self.reason)

    def __bytes__(self) -> bytes:
        return _serialise(f"SIP/2.0 {self.status} {self.reason}", self.headers, self.body)


def _serialise(start: str, headers: Headers, body: bytes) -> bytes:
    lines = [start]
    length_written = False
    for name, value in headers:
        if name == "Content-Length":
            if length_written:
                continue
            value, length_written = str(len(body)), True
        lines.append(f"{name}: {value}")
    if not length_written:
        lines.append(f"Content-Length: {len(body)}")
    for line in lines:
        if "\r" in line or "\n" in line:  # would smuggle a header (or end the head early)
            raise SipError(f"line break in {line[:40]!r}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _cut(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


def _parse_cseq(value: str) -> tuple[int, str]:
    match = _CSEQ.fullmatch(value.strip())
    if match is None or int(match.group(1)) >= 2**31:  # RFC 3261 8.1.1.5
        raise SipParseError(f"bad CSeq {_cut(value)}")
    return int(match.group(1)), match.group(2)


def _parse_start(line: str) -> Request | Response:
    """The start line as a message without headers yet."""
    if line.startswith("SIP/"):
        match = _STATUS_LINE.fullmatch(line)
        if match is None or _CONTROL.search(line):
            raise SipParseError(f"bad status line {_cut(line)}")
        return Response(int(match.group(1)), match.group(2), Headers())
    match = _REQUEST_LINE.fullmatch(line)
    if match is None or _CONTROL.search(line):
        if _OTHER_VERSION.fullmatch(line):
            raise SipVersionError(f"bad request line {_cut(line)}")
        raise SipParseError(f"bad request line {_cut(line)}")
    method, uri = match.groups()
    if not uri.isascii() or not _ABSOLUTE_URI.fullmatch(uri):
        raise SipParseError(f"bad Request-URI {_cut(uri)}")
    if uri.partition(":")[0].lower() in ("sip", "sips", "tel"):
        try:
            parsed = parse_uri(uri)
        except SipParseError as exc:
            raise SipParseError(f"bad Request-URI: {exc}") from None
        if parsed.headers:  # RFC 3261 19.1.1: not in a Request-URI (RFC 4475 3.1.2.11)
            raise SipParseError(f"bad Request-URI {_cut(uri)}: it has headers")
    return Request(method, uri, Headers())


def _parse_head(head: bytes) -> Request | Response:
    """Start line and header fields (everything before the empty line)."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if b"\x00" in head:
            raise SipParseError("NUL byte in the header") from None
        raise SipParseError(f"header is not UTF-8 (at byte {exc.start})") from None
    lines = text.split("\r\n")
    message = _parse_start(lines[0])
    message.headers = Headers(header_lines.fields(lines[1:]))
    return message


def _content_length(headers: Headers) -> int | None:
    if headers.count("Content-Length") > 1:
        raise SipParseError("more than one Content-Length")
    value = headers.get("Content-Length")
    if value is None:
        return None
    if not _DIGITS.fullmatch(value):
        raise SipParseError(f"bad Content-Length {_cut(value)}")
    if len(value) > 6 or int(value) > MAX_MESSAGE:
        raise SipParseError(f"Content-Length {value[:20]} is larger than 64 KiB")
    return int(value)


def _validate(message: Request | Response) -> None:
    """The checks on headers that every well-formed message passes (RFC 3261 8.1.1)."""
    headers = message.headers
    for name in _REQUIRED:
        if name not in headers:
            raise SipParseError(f"missing {name}")
    for name in _SINGLE:
        if headers.count(name) > 1:
            raise SipParseError(f"more than one {name}")
    if isinstance(message, Request):
        # Every list a request carries cuts cleanly: a Require with an odd quote made
        # the user agent raise (and log a traceback) for each such request. (The
        # addresses are cut, and read, just below.)
        for name in sorted({name for name, _ in headers} & LIST_HEADERS - _ADDRESS_SET):
            try:
                headers.get_all(name)
            except SipParseError as exc:
                raise SipParseError(f"bad {name}: {exc}") from None
    for name in _ADDRESSES:
        try:
            for value in headers.get_all(name):
                if name == "Via":
                    parse_via(value)
                elif not (name == "Contact" and value == "*"):
                    parse_name_addr(value, any_scheme=name in ("From", "To", "Contact"))
        except SipParseError as exc:
            # parse_via names the header itself
            text = str(exc) if str(exc).startswith("bad Via") else f"bad {name}: {exc}"
            raise SipParseError(text) from None
    if not headers.get_all("Via"):  # "Via: " alone: no transaction, no branch to ask
        raise SipParseError("missing Via")
    call_id = headers.get("Call-ID") or ""
    if not call_id or any(c.isspace() for c in call_id) or _CONTROL.search(call_id):
        raise SipParseError(f"bad Call-ID {_cut(call_id)}")
    _, method = _parse_cseq(headers.get("CSeq") or "")
    if isinstance(message, Request) and method != message.method:
        raise SipParseError(f"CSeq method {method} does not match {message.method}")
    max_forwards = headers.get("Max-Forwards")
    if max_forwards is not None and not _MAX_FORWARDS.fullmatch(max_forwards):
        raise SipParseError(f"bad Max-Forwards {_cut(max_forwards)}")
    date = headers.get("Date")
    # A response's Date is not looked at: dropping an answer for it would stall a call.
    if isinstance(message, Request) and date is not None and not _DATE.fullmatch(date):
        raise SipParseError(f"bad Date {_cut(date)}")


def parse(data: bytes) -> Request | Response:
    """One message from a datagram; raises SipParseError saying what is wrong."""
    if len(data) > MAX_MESSAGE:
        raise SipParseError(f"message of {len(data)} bytes is larger than 64 KiB")
    if b"\r\n" not in data:
        raise SipParseError("no CRLF: not a SIP message")
    head, blank, body = data.partition(b"\r\n\r\n")
    if not blank:
        raise SipParseError("no empty line after the header")
    message = _parse_head(head)
    length = _content_length(message.headers)
    if length is not None:
        if length > len(body):
            raise SipParseError(f"Content-Length {length} but {len(body)} bytes of body")
        body = body[:length]  # RFC 3261 18.3: bytes past Content-Length are dropped
    message.body = body
    _validate(message)
    return message


def parse_stream(buffer: bytes) -> tuple[Request | Response | None, bytes]:
    """The first message of a TCP stream buffer and what follows it.

    Keep-alive CRLFs before a message are skipped (RFC 5626 3.5.1). Returns
    (None, the buffer without them) while the message is incomplete; raises
    SipParseError when the header cannot be a SIP header or has no valid
    Content-Length (required on streams, RFC 3261 18.3).
    """
    start = 0
    while buffer.startswith(b"\r\n", start):
        start += 2
    data = buffer[start:]
    first_end = data.find(b"\r\n")
    if first_end >= 0:  # reject a wrong start line at once instead of waiting for more
        _parse_start(data[:first_end].decode("utf-8", "replace"))
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if len(data) > MAX_MESSAGE:
            raise SipParseError("no end of the header within 64 KiB")
        return None, data
    message, length = parse_stream_head(data[:end])
    total = end + 4 + length
    if len(data) < total:
        return None, data
    message.body = data[end + 4 : total]
    return message, data[total:]


def parse_stream_head(head: bytes) -> tuple[Request | Response, int]:
    """A stream message's head (start line and header fields, without the empty line
    after them): the message without its body, and the body's length.

    A stream parses each head once with it and waits for the body by that length
    (`stream.SipStream`); raises SipParseError as `parse_stream` does.
    """
    message = _parse_head(head)
    length = _content_length(message.headers)
    if length is None:
        raise SipParseError("missing Content-Length (required on a stream)")
    total = len(head) + 4 + length
    if total > MAX_MESSAGE:
        raise SipParseError(f"message of {total} bytes is larger than 64 KiB")
    _validate(message)
    return message, length


def response_to(request: Request, status: int, reason: str, to_tag: str | None = None) -> Response:
    """A response with the request's Via, From, To, Call-ID and CSeq (RFC 3261 8.2.6.2).

    `to_tag` is added to To unless it has a tag already (a request inside a dialog).
    """
    headers = Headers()
    for name, value in request.headers:
        if name == "Via":
            headers.add(name, value)
    for name in ("From", "To", "Call-ID", "CSeq"):
        found = request.headers.get(name)
        if found is None:
            raise SipParseError(f"missing {name}")
        value = found
        if name == "To" and to_tag is not None and parse_name_addr(value).tag is None:
            value = f"{value};tag={to_tag}"
        headers.add(name, value)
    timestamp = request.headers.get("Timestamp")
    if status == 100 and timestamp is not None:  # 8.2.6.1
        headers.add("Timestamp", timestamp)
    return Response(status, reason, headers)


def new_branch() -> str:
    """A branch unique in space and time, with RFC 3261's magic cookie."""
    return MAGIC_COOKIE + secrets.token_hex(10)


def new_tag() -> str:
    return secrets.token_hex(8)


def new_call_id(host: str) -> str:
    return f"{secrets.token_hex(16)}@{host}"

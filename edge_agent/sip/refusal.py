"""The answer to a request that does not parse (RFC 3261 21.4.1, 21.5.6).

`refusal(data, reason)` reads just enough of the bytes to answer them: a start line
that looks like a request (any token as the method, LWS tolerated, so that RFC 4475's
`lwsruri`, `lwsstart` and `trws` are answered too) and the five header fields a
response copies (Via, From, To, Call-ID, CSeq; compact forms and folded lines
understood). A request of another SIP version gets 505 Version Not Supported, every
other one 400 Bad Request with the reason. Responses, ACKs and bytes without those
five fields get nothing (None): there is no one to answer.

Everything here is linear in the bytes: the start line is cut with `str` methods, not
with a pattern that can backtrack (the lazy one it had, method, LWS, anything, LWS,
`SIP/`, took 1.8 s for a 60 KB line of spaces: the outside review of issue 15); a
start line longer than `MAX_LINE` is not answered at all; folded lines are joined
once per field.
"""

from __future__ import annotations

import re

from edge_agent.sip.headers import Headers
from edge_agent.sip.message import Response, new_tag

__all__ = ["MAX_LINE", "bad_request_phrase", "refusal", "request_like"]

MAX_LINE = 8 * 1024  # a longer start line is not answered (intake.MAX_LINE on UDP too)
_VERSION = re.compile(r"SIP/([0-9]{1,3}\.[0-9]{1,3})")
_LWS = " \t"
_ECHOED = ("Via", "From", "To", "Call-ID", "CSeq")
_NAME = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_HAS_TAG = re.compile(r";[ \t]*tag[ \t]*=", re.IGNORECASE)
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")


def refusal(data: bytes, reason: str) -> Response | None:
    """The 400 (or 505) for `data`, a request that did not parse; None when nothing can
    be answered. Never raises. The transport stamps its Via for the request's source
    (`transport.bad_request`)."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    lines = head.split("\r\n")
    start = request_like(lines[0])
    if start is None or start[0] == "ACK":
        return None  # responses and ACKs are never answered
    headers = _echoed(lines[1:])
    if headers is None:
        return None
    if start[1] != "2.0":
        return Response(505, "Version Not Supported", headers)
    return Response(400, bad_request_phrase(reason), headers)


def bad_request_phrase(reason: str) -> str:
    """A 400's reason phrase naming `reason`: printable ASCII, at most 80 of it."""
    return "Bad Request (" + _UNPRINTABLE.sub("?", reason[:80]) + ")"


def request_like(line: str) -> tuple[str, str] | None:
    """(method, SIP version) of a start line shaped `method LWS uri LWS SIP/x.y [LWS]`
    (LWS: spaces and tabs, the URI anything from a non-space on), else None. Cut with
    `str` methods, each a pass over the line at most, so that no input backtracks."""
    if len(line) > MAX_LINE or "\n" in line:
        return None
    stripped = line.rstrip(_LWS)
    cut = max(stripped.rfind(" "), stripped.rfind("\t"))
    version = _VERSION.fullmatch(stripped, cut + 1)
    method = _NAME.match(stripped)
    if cut < 0 or version is None or method is None:
        return None
    rest = stripped[method.end() : cut]
    uri = rest.lstrip(_LWS)
    if len(uri) == len(rest) or not uri or uri[0].isspace():
        return None  # no LWS after the method, or no URI
    return method.group(), version.group(1)


def _echoed(lines: list[str]) -> Headers | None:
    """Via, From, To, Call-ID and CSeq as the request has them (unfolded, full names),
    the To with a tag of ours (RFC 3261 8.2.6.2); None unless all five are there."""
    fields: list[tuple[str, list[str]]] = []  # a field's pieces, joined once at the end
    for line in lines:
        if line[:1] in (" ", "\t"):
            if fields:
                fields[-1][1].append(line.strip(_LWS))
            continue
        name, colon, value = line.partition(":")
        name = name.rstrip(_LWS)
        if colon and _NAME.fullmatch(name):
            fields.append((name, [value.strip(_LWS)]))
    found = Headers((name, " ".join(p for p in pieces if p)) for name, pieces in fields)
    headers = Headers()
    for name in _ECHOED:
        values = [v for n, v in found.items() if n == name]
        if not values or not all(values) or any(_CONTROL.search(v) for v in values):
            return None
        for value in values:
            if name == "To" and not _HAS_TAG.search(value):
                value = f"{value};tag={new_tag()}"
            headers.add(name, value)
    return headers

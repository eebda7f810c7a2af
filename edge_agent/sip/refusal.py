"""The answer to a request that does not parse (RFC 3261 21.4.1, 21.5.6).

`refusal(data, reason)` reads just enough of the bytes to answer them: a start line
that looks like a request (any token as the method, LWS tolerated, so that RFC 4475's
`lwsruri`, `lwsstart` and `trws` are answered too) and the five header fields a
response copies (Via, From, To, Call-ID, CSeq; compact forms and folded lines
understood). A request of another SIP version gets 505 Version Not Supported, every
other one 400 Bad Request with the reason. Responses, ACKs and bytes without those
five fields get nothing (None): there is no one to answer.
"""

from __future__ import annotations

import re

from edge_agent.sip.headers import Headers
from edge_agent.sip.message import Response, new_tag

__all__ = ["refusal"]

_REQUEST_LIKE = re.compile(
    r"([A-Za-z0-9\-.!%*_+`'~]+)[ \t]+\S.*?[ \t]+SIP/([0-9]{1,3}\.[0-9]{1,3})[ \t]*"
)
_ECHOED = ("Via", "From", "To", "Call-ID", "CSeq")
_NAME = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_HAS_TAG = re.compile(r";[ \t]*tag[ \t]*=", re.IGNORECASE)


def refusal(data: bytes, reason: str) -> Response | None:
    """The 400 (or 505) for `data`, a request that did not parse; None when nothing can
    be answered. Never raises. The transport stamps its Via for the request's source
    (`transport.bad_request`)."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    lines = head.split("\r\n")
    start = _REQUEST_LIKE.fullmatch(lines[0])
    if start is None or start.group(1) == "ACK":
        return None  # responses and ACKs are never answered
    headers = _echoed(lines[1:])
    if headers is None:
        return None
    if start.group(2) != "2.0":
        return Response(505, "Version Not Supported", headers)
    phrase = "Bad Request (" + re.sub(r"[^\x20-\x7e]", "?", reason)[:80] + ")"
    return Response(400, phrase, headers)


def _echoed(lines: list[str]) -> Headers | None:
    """Via, From, To, Call-ID and CSeq as the request has them (unfolded, full names),
    the To with a tag of ours (RFC 3261 8.2.6.2); None unless all five are there."""
    fields: list[tuple[str, str]] = []
    for line in lines:
        if line[:1] in (" ", "\t"):
            if fields:
                name, value = fields[-1]
                fields[-1] = (name, (value + " " + line.strip(" \t")).strip(" "))
            continue
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if colon and _NAME.fullmatch(name):
            fields.append((name, value.strip(" \t")))
    found = Headers(fields)
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

"""What the agent checks of a request before it looks at what is asked (RFC 3261 8.2).

In RFC 3261's order, each with the answer RFC 4475 expects of an endpoint:

1. the method (8.2.1): one nobody defined gets 501 Not Implemented with our Allow
   (RFC 4475 3.1.1.2 `intmeth`, 3.1.1.5 `esc02`; a defined one we do not take gets
   405 from the user agent, as before);
2. the Request-URI's scheme (8.2.2.1): not SIP, SIPS or tel gets 416 Unsupported URI
   Scheme (3.3.2 `unkscm`, 3.3.3 `novelsc`);
3. Require (8.2.2.3): we support no extension, so any option tag gets 420 Bad
   Extension naming it in Unsupported (3.3.5 `bext01`); ACK and CANCEL are exempt
   (8.2.2.3 says to ignore it there), and so is BYE: its sender has ended the
   session as it sent it (15.1.1), and a 420 would only keep us playing into a
   call nobody listens to (`docs/decisions/sip-torture-messages.md`); a Require
   that cannot be read (an odd quote) gets 400;
4. the body of an INVITE outside a dialog (8.2.3): a type other than SDP gets 415
   Unsupported Media Type with Accept (3.3.6 `invut`).

`check` returns that answer, or None when the request goes on to its dialog or to the
user agent's own answers.
"""

from __future__ import annotations

from edge_agent.sip.errors import SipParseError
from edge_agent.sip.message import Request, Response, new_tag, response_to

__all__ = ["KNOWN_METHODS", "check"]

# The methods of RFC 3261 and its extensions (IANA's SIP methods registry).
KNOWN_METHODS = frozenset(
    (
        *("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER", "INFO", "NOTIFY"),
        *("SUBSCRIBE", "PRACK", "UPDATE", "MESSAGE", "REFER", "PUBLISH"),
    )
)
_SCHEMES = ("sip", "sips", "tel")  # what parse_uri understands
_SDP = "application/sdp"
_REQUIRE_EXEMPT = ("ACK", "CANCEL", "BYE")


def check(request: Request, *, allow: str, in_dialog: bool) -> Response | None:
    """The answer RFC 3261 8.2.1 to 8.2.3 give `request` (never an ACK), or None."""
    if request.method not in KNOWN_METHODS:
        answer = response_to(request, 501, "Not Implemented", new_tag())
        answer.headers.add("Allow", allow)
        return answer
    if request.uri.partition(":")[0].lower() not in _SCHEMES:
        return response_to(request, 416, "Unsupported URI Scheme", new_tag())
    if request.method in _REQUIRE_EXEMPT:
        required = []
    else:
        try:
            required = [tag for tag in request.headers.get_all("Require") if tag]
        except SipParseError:  # parse() refuses it already; a request built otherwise
            return response_to(request, 400, "Bad Request (Require)", new_tag())
    if required:
        answer = response_to(request, 420, "Bad Extension", new_tag())
        answer.headers.add("Unsupported", ", ".join(required))
        return answer
    kind = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if request.method == "INVITE" and not in_dialog and request.body and kind != _SDP:
        answer = response_to(request, 415, "Unsupported Media Type", new_tag())
        answer.headers.add("Accept", _SDP)
        return answer
    return None

"""A key pressed on the member's phone, sent as SIP INFO (RFC 2976): application/dtmf-relay
("Signal=1") or application/dtmf ("1"), what SwyxWare sends."""

from __future__ import annotations

from edge_agent.sip.message import Request

__all__ = ["dtmf_from_info"]

_INFO_DIGITS = {str(n): str(n) for n in range(10)} | {"10": "*", "11": "#", "*": "*", "#": "#"}
_INFO_DIGITS |= {letter: letter for letter in "ABCD"} | {"12": "A", "13": "B", "14": "C", "15": "D"}


def dtmf_from_info(request: Request) -> str | None:
    """The key of a SIP INFO: application/dtmf-relay ("Signal=1") or application/dtmf ("1").

    The whole value counts: "10" and "11" are * and # (RFC 4733 event numbers), never "1".
    """
    kind = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    text = request.body.decode("utf-8", "replace").strip()
    value = None
    if kind == "application/dtmf-relay":
        for line in text.splitlines():
            name, _, found = line.partition("=")
            if name.strip().lower() == "signal":
                value = found.strip()
                break
    elif kind == "application/dtmf":
        value = text
    return None if value is None else _INFO_DIGITS.get(value.upper())

"""Control characters in a header field: refused, but for the quoted-pairs of RFC 3261
25.1 (a backslash and any character but CR and LF, inside a quoted string), which RFC
4475 3.1.1.2 (`intmeth`) sends a NUL, a BEL and a DEL in."""

from __future__ import annotations

import re

from edge_agent.sip.errors import SipParseError

__all__ = ["CONTROL", "check_quoted_pairs", "control_error"]

CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # everything below SP but HT, and DEL


def control_error(char: str, number: int) -> SipParseError:
    if char == "\x00":
        return SipParseError("NUL byte in the header")
    return SipParseError(f"control character {char!r} in line {number}")


def check_quoted_pairs(lines: list[tuple[int, str]]) -> None:
    """Raises for the first control character of a field's `lines` that is not a
    quoted-pair inside a quoted string (RFC 3261 25.1: %x00-09, %x0B-0C, %x0E-7F after
    a backslash; RFC 4475 3.1.1.2 has a NUL, a BEL and a DEL so)."""
    quoted = escaped = False
    for number, line in lines:
        for char in line:
            if escaped:
                escaped = False
                if char not in "\r\n":
                    continue
            if char == '"':
                quoted = not quoted
            elif char == "\\" and quoted:
                escaped = True
            elif CONTROL.match(char):
                raise control_error(char, number)

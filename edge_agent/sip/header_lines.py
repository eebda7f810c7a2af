"""The header lines of a SIP message's head (RFC 3261 7.3): named, unfolded, checked.

`fields(lines)` gives (name, value) for each header field of the lines after the start
line. A line starting with SP or HT continues the field above (obsolete line folding,
7.3.1): the field's lines are kept and joined once, with one SP for each fold, when
the field is done (joined line by line, 15,000 folds of a 60 KB field cost a
quadratic 15 ms, the outside review of issue 15). A control character is refused in
a header name and anywhere in a value but as a quoted-pair inside a quoted string
(`quoted_pairs.py`), which is decided over the whole unfolded value: a quote opened
on a field's first line may close on a folded one, and what follows it is outside
(accepted before when the control character came after such a fold).
"""

from __future__ import annotations

import re

from edge_agent.sip.errors import SipParseError
from edge_agent.sip.quoted_pairs import CONTROL, check_quoted_pairs, control_error

__all__ = ["fields"]

_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")


def fields(lines: list[str], first_number: int = 2) -> list[tuple[str, str]]:
    """(name as written, value without its LWS) for each field of `lines`, the first of
    them numbered `first_number` in error messages; raises SipParseError."""
    read: list[tuple[str, list[tuple[int, str]]]] = []  # name, [(line number, text)]
    suspect: list[int] = []  # indexes in `read` of fields with a control character
    for number, line in enumerate(lines, first_number):
        bad = CONTROL.search(line)
        if line[:1] in (" ", "\t"):  # continues the field above
            if not read:
                if bad is not None:
                    raise control_error(bad.group(), number)
                raise SipParseError(f"line {number} continues no header")
            read[-1][1].append((number, line))
            if bad is not None and (not suspect or suspect[-1] != len(read) - 1):
                suspect.append(len(read) - 1)
            continue
        name, colon, value = line.partition(":")
        if bad is not None and (not colon or bad.start() < len(name)):
            raise control_error(bad.group(), number)
        if not colon:
            raise SipParseError(f"no colon in header line {number}: {_cut(line)}")
        name = name.rstrip(" \t")
        if not _TOKEN.fullmatch(name):
            raise SipParseError(f"bad header name {_cut(name)} in line {number}")
        if bad is not None:
            suspect.append(len(read))
        read.append((name, [(number, value)]))
    for index in suspect:
        check_quoted_pairs(read[index][1])
    return [(name, _unfolded(pieces)) for name, pieces in read]


def _unfolded(pieces: list[tuple[int, str]]) -> str:
    """A field's value from its lines: each without its LWS, joined by one space."""
    if len(pieces) == 1:
        return pieces[0][1].strip(" \t")
    return " ".join(text for _, line in pieces if (text := line.strip(" \t")))


def _cut(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")

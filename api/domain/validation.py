"""Checks of user input, in plain Python. Each raises BadInput naming the field, with a
`reason` code (and its parameters) that the website words in German or English."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime, timedelta

from api.errors import BadInput

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
_DIGITS = re.compile(r"^[0-9]+$")
# Host names and IPv4/IPv6 literals; no scheme, path or spaces.
_HOST = re.compile(
    r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9]([A-Za-z0-9\-.]{0,251}[A-Za-z0-9])?)(:\d{1,5})?$"
)

PIN_MIN, PIN_MAX = 4, 8
POLL_MIN, POLL_MAX = 5, 3600
TIMEOUT_MIN, TIMEOUT_MAX = 30, 3600
SEATS_MAX = 100_000


def email(value: str, field: str = "email") -> str:
    value = value.strip().lower()
    if len(value) > 320 or not _EMAIL.match(value):
        raise BadInput("not a valid e-mail address", field=field, reason="notAnEmail")
    return value


def too_long(field: str, max_length: int) -> BadInput:
    return BadInput(
        f"at most {max_length} characters", field=field, reason="tooLong", max=max_length
    )


def name(value: str, field: str, max_length: int = 200, lines: bool = False) -> str:
    """A name or text a person typed: trimmed, not empty, one safe line (`safe_line`;
    several with `lines`)."""
    value = value.strip()
    if not value:
        raise BadInput("must not be empty", field=field, reason="empty")
    if len(value) > max_length:
        raise too_long(field, max_length)
    return safe_line(value, field, lines)


# Unsafe anywhere a text goes (a mail, a page, the database, the PBX), refused in every
# text from outside (`input_text`, which schema/input_guard.py applies to every argument)
# and in names (`safe_line`), one set for both:
# - controls (C0, DEL, C1 such as U+0085): PostgreSQL refuses NUL, a mail breaks on CR;
# - lone surrogates: no UTF-8 at all, the database refuses them;
# - the line and paragraph separators U+2028/9: line breaks to a mail or a script;
# - the bidirectional controls (U+202A-E, U+2066-9, U+200E/F, U+061C) and the BOM U+FEFF,
#   which make a text read otherwise than it is written ("Detail\u202etxt.exe");
# - noncharacters (U+FDD0-FDEF and the last two of every plane) and tag characters
#   (U+E0000-E007F): never text, only ways to hide something in it.
# Other spaces, the soft hyphen, zero-width joiners and emoji stay: people paste them
# from documents, and emoji sequences need the joiner.
LINE_BREAKS = frozenset("\t\n\r")  # allowed where a field takes several lines
_SEPARATORS = "\u2028\u2029"
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff"
_NONCHARACTERS = "\ufdd0-\ufdef" + "".join(
    chr(plane * 0x10000 + 0xFFFE) + chr(plane * 0x10000 + 0xFFFF) for plane in range(17)
)
_CONTROLS = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
_REFUSED = f"{_CONTROLS}{_SEPARATORS}{_BIDI}{_NONCHARACTERS}\U000e0000-\U000e007f\ud800-\udfff"
_UNSAFE = re.compile(f"[\t\n\r{_REFUSED}]")
_UNSAFE_BUT_LINE_BREAKS = re.compile(f"[{_REFUSED}]")

CHARACTER_REASONS = {
    "lineBreak": "must not contain line breaks",
    "loneSurrogate": "not valid Unicode (a lone surrogate)",
    "controlCharacter": "must not contain control characters",
    "invisibleCharacter": "must not contain invisible or direction-changing characters",
}


def _reason(c: str, lines: bool) -> str:
    """Why the character `c` is refused: the code the website words."""
    if c in LINE_BREAKS or (c in _SEPARATORS and not lines):
        return "lineBreak"
    if "\ud800" <= c <= "\udfff":
        return "loneSurrogate"
    if unicodedata.category(c) == "Cc":
        return "controlCharacter"
    return "invisibleCharacter"  # bidi controls, the BOM, noncharacters, tags


def safe_text(value: str, field: str, lines: bool = False) -> str:
    """Refuses the first unsafe character (see above; tab and line breaks pass with
    `lines`), naming it: `reason` and `character` ("U+202E") in the error."""
    found = (_UNSAFE_BUT_LINE_BREAKS if lines else _UNSAFE).search(value)
    if found is None:
        return value
    c = found.group()
    reason = _reason(c, lines)
    character = f"U+{ord(c):04X}"
    raise BadInput(
        f"{CHARACTER_REASONS[reason]} ({character})",
        field=field,
        reason=reason,
        character=character,
    )


def replace_unsafe(value: str, by: str = "\ufffd") -> str:
    """`value` with every unsafe character (tab and line breaks too) replaced: for a text
    from the PBX, which is cleaned, never refused (see broadcast_reports)."""
    return _UNSAFE.sub(by, value)


def safe_line(value: str, field: str, lines: bool = False) -> str:
    """`lines`: tabs and line breaks are allowed (a text typed into a text area)."""
    return safe_text(value, field, lines)


def input_text(value: str, field: str, max_length: int, lines: bool = False) -> str:
    """Any text from outside: at most `max_length` characters, none of the unsafe ones
    (tab and line breaks only with `lines`). A text that would fail only when stored
    (NUL on PostgreSQL), or later in the agent, is refused before anything runs."""
    if len(value) > max_length:
        raise too_long(field, max_length)
    return safe_text(value, field, lines)


def aware(value: datetime, field: str) -> datetime:
    """A time from outside carries its zone (a naive one cannot be compared or stored)
    and exists in UTC, as every time is stored (not year 1 at +14:00)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise BadInput(
            "give the time with its zone (e.g. 2027-12-31T23:59:59Z)",
            field=field,
            reason="noTimeZone",
        )
    try:
        value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise BadInput(
            "a time between the years 1 and 9999 in UTC", field=field, reason="outOfRange"
        ) from None
    return value


def printable(value: str, field: str, max_length: int) -> str:
    """A text a machine made (an agent's report, a notice): at most `max_length`
    characters, every one printable (`str.isprintable`: no controls, separators, format
    characters or surrogates). The agent sends its texts made so (`printable` in
    edge_agent/sip/registration.py); anything else is refused, never stored."""
    if len(value) > max_length:
        raise too_long(field, max_length)
    if not value.isprintable():
        raise BadInput(
            "only printable characters on one line", field=field, reason="invisibleCharacter"
        )
    return value


# Times an agent reports: from this century, and not further ahead of the server's clock
# than a badly set machine may be (its reports must still count; see report_health).
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
CLOCK_AHEAD_MAX = timedelta(days=1)


def moment(value: datetime, field: str, now: datetime) -> datetime:
    """A reported time with its zone, in UTC, between EARLIEST and now + CLOCK_AHEAD_MAX."""
    if value.tzinfo is None:
        raise BadInput("give the time with its zone", field=field, reason="noTimeZone")
    try:
        utc = value.astimezone(UTC)
    except (OverflowError, ValueError):  # year 1 at +14:00, year 9999 at -05:00
        utc = None
    if utc is None or not EARLIEST <= utc <= now + CLOCK_AHEAD_MAX:
        raise BadInput(
            "a time from the year 2000 up to a day from now", field=field, reason="outOfRange"
        )
    return utc


def password(value: str, min_length: int, field: str = "password") -> str:
    if len(value) < min_length:
        raise BadInput(
            f"at least {min_length} characters", field=field, reason="tooShort", min=min_length
        )
    if len(value) > 1024:
        raise too_long(field, 1024)
    return value


def pin(value: str, field: str = "pin") -> str:
    if not _DIGITS.match(value) or not PIN_MIN <= len(value) <= PIN_MAX:
        raise BadInput(
            f"the PIN must be {PIN_MIN} to {PIN_MAX} digits",
            field=field,
            reason="digits",
            min=PIN_MIN,
            max=PIN_MAX,
        )
    return value


def extension(value: str, field: str = "extension") -> str:
    if not _DIGITS.match(value) or not 2 <= len(value) <= 15:
        raise BadInput(
            "an internal number is 2 to 15 digits", field=field, reason="digits", min=2, max=15
        )
    return value


def host(value: str, field: str = "host") -> str:
    value = value.strip()
    if not _HOST.match(value):
        raise BadInput(
            "a host name or IP address, without scheme or path", field=field, reason="notAHost"
        )
    return value


def in_range(value: int, low: int, high: int, field: str) -> int:
    if not low <= value <= high:
        raise BadInput(
            f"must be between {low} and {high}",
            field=field,
            reason="outOfRange",
            min=low,
            max=high,
        )
    return value

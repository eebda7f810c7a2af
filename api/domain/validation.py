"""Checks of user input, in plain Python. Each raises BadInput naming the field."""

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
        raise BadInput("not a valid e-mail address", field=field)
    return value


def name(value: str, field: str, max_length: int = 200, lines: bool = False) -> str:
    """A name or text a person typed: trimmed, not empty, one safe line (`safe_line`;
    several with `lines`)."""
    value = value.strip()
    if not value:
        raise BadInput("must not be empty", field=field)
    if len(value) > max_length:
        raise BadInput(f"at most {max_length} characters", field=field)
    return safe_line(value, field, lines)


# Unsafe anywhere a text goes (a mail, a page, the database): controls (C0, DEL, C1 such
# as U+0085), lone surrogates (not UTF-8: the database refuses them), line and paragraph
# separators (U+2028/9 break a mail's lines), and the bidirectional controls that make a
# text read otherwise than it is written (U+202A-E, U+2066-9). Other spaces, the soft
# hyphen and emoji stay: people paste them from documents.
_UNSAFE_CATEGORIES = {"Cc", "Cs", "Zl", "Zp"}
LINE_BREAKS = frozenset("\t\n\r")  # allowed where a field takes several lines
_BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")


def safe_line(value: str, field: str, lines: bool = False) -> str:
    """`lines`: tabs and line breaks are allowed (a text typed into a text area)."""
    if any(
        (unicodedata.category(c) in _UNSAFE_CATEGORIES or c in _BIDI_CONTROLS)
        and not (lines and c in LINE_BREAKS)
        for c in value
    ):
        raise BadInput("must not contain control characters or line breaks", field=field)
    return value


# What every text from outside must be before anything looks at it (schema/input_guard.py
# applies it to every GraphQL argument): PostgreSQL refuses NUL in text and lone surrogates
# are no UTF-8 at all, so either would fail only when stored, as "Unexpected error" — or
# later, in the agent. Tab and line breaks only where a field allows them.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")
_CONTROLS_BUT_LINE_BREAKS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SURROGATES = re.compile("[\ud800-\udfff]")


def input_text(value: str, field: str, max_length: int, lines: bool = False) -> str:
    """Any text from outside: at most `max_length` characters, no control characters (C0,
    DEL, C1; tab and line breaks only with `lines`), no lone surrogates."""
    if len(value) > max_length:
        raise BadInput(f"at most {max_length} characters", field=field)
    if (_CONTROLS_BUT_LINE_BREAKS if lines else _CONTROLS).search(value):
        if lines:
            raise BadInput("must not contain control characters", field=field)
        raise BadInput("must not contain control characters or line breaks", field=field)
    if _SURROGATES.search(value):
        raise BadInput("not valid Unicode (a lone surrogate)", field=field)
    return value


def aware(value: datetime, field: str) -> datetime:
    """A time from outside carries its zone (a naive one cannot be compared or stored)
    and exists in UTC, as every time is stored (not year 1 at +14:00)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise BadInput("give the time with its zone (e.g. 2027-12-31T23:59:59Z)", field=field)
    try:
        value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise BadInput("a time between the years 1 and 9999 in UTC", field=field) from None
    return value


def printable(value: str, field: str, max_length: int) -> str:
    """A text a machine made (an agent's report, a notice): at most `max_length`
    characters, every one printable (`str.isprintable`: no controls, separators, format
    characters or surrogates). The agent sends its texts made so (`printable` in
    edge_agent/sip/registration.py); anything else is refused, never stored."""
    if len(value) > max_length:
        raise BadInput(f"at most {max_length} characters", field=field)
    if not value.isprintable():
        raise BadInput("only printable characters on one line", field=field)
    return value


# Times an agent reports: from this century, and not further ahead of the server's clock
# than a badly set machine may be (its reports must still count; see report_health).
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
CLOCK_AHEAD_MAX = timedelta(days=1)


def moment(value: datetime, field: str, now: datetime) -> datetime:
    """A reported time with its zone, in UTC, between EARLIEST and now + CLOCK_AHEAD_MAX."""
    if value.tzinfo is None:
        raise BadInput("give the time with its zone", field=field)
    try:
        utc = value.astimezone(UTC)
    except (OverflowError, ValueError):  # year 1 at +14:00, year 9999 at -05:00
        utc = None
    if utc is None or not EARLIEST <= utc <= now + CLOCK_AHEAD_MAX:
        raise BadInput("a time from the year 2000 up to a day from now", field=field)
    return utc


def password(value: str, min_length: int, field: str = "password") -> str:
    if len(value) < min_length:
        raise BadInput(f"at least {min_length} characters", field=field)
    if len(value) > 1024:
        raise BadInput("at most 1024 characters", field=field)
    return value


def pin(value: str, field: str = "pin") -> str:
    if not _DIGITS.match(value) or not PIN_MIN <= len(value) <= PIN_MAX:
        raise BadInput(f"the PIN must be {PIN_MIN} to {PIN_MAX} digits", field=field)
    return value


def extension(value: str, field: str = "extension") -> str:
    if not _DIGITS.match(value) or not 2 <= len(value) <= 15:
        raise BadInput("an internal number is 2 to 15 digits", field=field)
    return value


def host(value: str, field: str = "host") -> str:
    value = value.strip()
    if not _HOST.match(value):
        raise BadInput("a host name or IP address, without scheme or path", field=field)
    return value


def in_range(value: int, low: int, high: int, field: str) -> int:
    if not low <= value <= high:
        raise BadInput(f"must be between {low} and {high}", field=field)
    return value

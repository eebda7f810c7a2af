"""Checks of user input, in plain Python. Each raises BadInput naming the field."""

from __future__ import annotations

import re

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


def name(value: str, field: str, max_length: int = 200) -> str:
    value = value.strip()
    if not value:
        raise BadInput("must not be empty", field=field)
    if len(value) > max_length:
        raise BadInput(f"at most {max_length} characters", field=field)
    if any(ord(c) < 32 for c in value):
        raise BadInput("must not contain control characters", field=field)
    return value


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

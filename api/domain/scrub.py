"""Scrubbing texts from agents before they are stored: no secret is kept or shown.

Command errors, broadcast notes, call details, SIP details and notices come from
software at the customer; viewers read them. Two nets (issue 14, point 5,
docs/decisions/secrets-in-errors.md):

- the secret values the server holds for the tenant (PBX password, PINs, a
  command's secrets), compared as they are and as JSON or a repr would write them;
- what looks like a secret wherever it comes from: ``password=…``,
  ``"password": "…"``, ``-Password …``, ``Authorization: Bearer …``, our tokens
  (``rda_…``), a URL's login.

Plain Python: the services hand in the values they decrypted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

HIDDEN = "***"
# Shorter values are not compared: "pw" would blank out every "pw" in a sentence. The
# PINs (4 to 8 digits) are long enough; a PBX password that short has no secret to keep.
MIN_SECRET = 4

_KEYS = r"password|passwort|passwd|pwd|kennwort|secret|token|api[_-]?key|pin|pincode"
_QUOTED = r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\''
# password=x, password: x, "password": "x", 'pin': '1234' (a repr), token = "x".
_KEY_VALUE = re.compile(
    rf"""(?ix)
    (?P<key>\b(?:{_KEYS})\b["']?\s*[:=]\s*)
    (?P<value>{_QUOTED}|[^\s,;&"'}}\]]+)
    """
)
# PowerShell's and command lines' -Password x, --pin 1234.
_OPTION = re.compile(rf"(?i)(?P<key>(?<![\w-])--?(?:{_KEYS})\s+)(?P<value>{_QUOTED}|[^\s,;]+)")
_AUTHORIZATION = re.compile(r"(?i)\b(?P<key>bearer|basic|digest)\s+[A-Za-z0-9._~+/=-]{8,}")
_TOKEN = re.compile(r"\brd[asl]_[A-Za-z0-9_-]{16,}")
_URL_LOGIN = re.compile(r"(?i)\b(?P<key>[a-z][a-z0-9+.-]*://[^/\s:@]*:)[^/\s@]+@")


def scrub(text: str, secrets: Iterable[object] = ()) -> str:
    """`text` with every known secret value and every secret-looking value as ``***``."""
    for form in _forms(secrets):
        text = re.sub(_bounded(form), HIDDEN, text)
    text = _KEY_VALUE.sub(_keep_key, text)
    text = _OPTION.sub(_keep_key, text)
    text = _AUTHORIZATION.sub(lambda m: f"{m['key']} {HIDDEN}", text)
    text = _TOKEN.sub(HIDDEN, text)
    return _URL_LOGIN.sub(lambda m: f"{m['key']}{HIDDEN}@", text)


def scrub_optional(text: str | None, secrets: Iterable[object] = ()) -> str | None:
    return None if text is None else scrub(text, secrets)


def _forms(secrets: Iterable[object]) -> list[str]:
    """Each value as it is and as JSON or repr() writes it, longest first (a PIN inside
    a password must not leave the rest of the password standing)."""
    forms: set[str] = set()
    for secret in secrets:
        if secret is None:
            continue
        value = str(secret)
        if len(value) >= MIN_SECRET:
            forms |= {value, json.dumps(value)[1:-1], repr(value)[1:-1]}
    return sorted(forms, key=len, reverse=True)


def _bounded(value: str) -> str:
    # A number is hidden where it stands alone: PIN 4711 leaves extension 247110 alone.
    pattern = re.escape(value)
    return rf"(?<!\d){pattern}(?!\d)" if value.isdigit() else pattern


def _keep_key(match: re.Match[str]) -> str:
    value = match["value"]
    quote = value[0] if value[:1] in "\"'" and len(value) > 1 else ""
    return f"{match['key']}{quote}{HIDDEN}{quote}"

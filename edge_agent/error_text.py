"""Error texts that leave the agent: built from an exception's fields, never its repr.

A repr can hold the data an exception was raised on: a `UnicodeDecodeError`'s
repr holds the whole input (the simulator's state file, with the PBX password and
the PINs), a pydantic error the values it checked. Texts built here go to the
server, whose viewers read them (issue 14, point 5; docs/decisions/secrets-in-errors.md).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

MAX = 300
HIDDEN = "***"
# A key (KeyError) is shown only when short and printable: a name, not data.
_KEY_MAX = 120


def describe(exc: BaseException, hide: Iterable[object] = ()) -> str:
    """``TypeName: message`` from fields that cannot carry the input; `hide` values are
    replaced by ``***`` (the secrets the caller holds)."""
    text = f"{type(exc).__name__}: {_message(exc)}"
    return redact(text, hide, MAX)


def _message(exc: BaseException) -> str:
    if isinstance(exc, UnicodeDecodeError | UnicodeEncodeError | UnicodeTranslateError):
        # `.object` is the whole text or file: never part of the message.
        return f"{exc.reason} at position {exc.start}"
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    if isinstance(exc, KeyError):
        key = exc.args[0] if exc.args else None
        if isinstance(key, str) and key.isprintable() and len(key) <= _KEY_MAX:
            return key
        return "a key is missing"
    errors = getattr(exc, "errors", None)
    if callable(errors) and type(exc).__module__.startswith("pydantic"):
        # pydantic's str() shows input_value=…; its error list without inputs does not.
        items = errors(include_input=False, include_url=False)
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in items)
    return str(exc)


def redact(text: str, hide: Iterable[object], limit: int | None = None) -> str:
    """`text` with every value of `hide` (as text, at least 3 characters) replaced, also
    as JSON (once or twice, ASCII or not) or a repr writes it; then cut to `limit`.
    Always in that order: a cut could split a value, and its rest would show."""
    forms = sorted({f for v in hide if v is not None for f in _forms(str(v))}, key=len)
    if forms:
        # One pattern, longest first: a PIN inside a password leaves none of it standing.
        # Ignoring case: JSON's \u00e4 may come back as \u00E4.
        pattern = "|".join(_bounded(f) for f in reversed(forms))
        text = re.sub(pattern, HIDDEN, text, flags=re.IGNORECASE)
    return text if limit is None else text[:limit]


def _forms(value: str) -> set[str]:
    if len(value) < 3:
        return set()
    once = {json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    # Windows PowerShell's ConvertTo-Json writes ' < > & as \u0027 \u003c \u003e \u0026.
    once |= {v.translate(_POWERSHELL_JSON) for v in once}
    twice = {json.dumps(v, ensure_ascii=a)[1:-1] for v in once for a in (True, False)}
    return {value, *once, *twice, repr(value)[1:-1]}


_POWERSHELL_JSON = str.maketrans({c: f"\\u{ord(c):04x}" for c in "'<>&"})


def _bounded(value: str) -> str:
    # A number is hidden where it stands alone: PIN 4711 leaves extension 247110 alone.
    pattern = re.escape(value)
    return rf"(?<!\d){pattern}(?!\d)" if value.isdigit() else pattern


def safe_url(url: str) -> str:
    """`url` without user, password, query and fragment: what an error may name."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(an unusable URL)"
    if ":" in host:
        host = f"[{host}]"
    return urlunsplit((parts.scheme, host + port, parts.path, "", ""))

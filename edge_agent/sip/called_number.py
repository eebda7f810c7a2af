"""Who was called and who calls, read from an incoming INVITE (issue 16).

The called number decides the broadcast group. Where it stands depends on how the
PBX brings the call (the setting RUNDRUF_AGENT_SIP_CALLED_NUMBER,
docs/decisions/sip-incoming-calls.md):

- ``request-uri``: the Request-URI's user (a PBX that routes the agent number to us);
- ``to``: the To header's user (what the caller dialled, kept by most PBXs);
- ``diversion``: the original target in `Diversion` (RFC 5806), when the PBX forwarded
  the agent number to the "Rundruf" account. Each diversion adds its entry on top
  (the most recent first), so the original target is the bottom-most entry;
- ``history-info``: the original target in `History-Info` (RFC 7044): of the entries
  (``index=1``, ``1.1``, ...) the one with the lowest index that is no retarget
  itself (an entry with ``rc`` or ``mp`` was made by retargeting);
- ``auto``: every one of them, in the order History-Info, Diversion, Request-URI,
  To; the router takes the first it knows.

The number must equal the agent number exactly. A PBX that sends it with a prefix
("+4930123 990", "0990") needs RUNDRUF_AGENT_SIP_NUMBER_PREFIXES: each number found is
followed by itself without the longest of those prefixes it starts with (review of
issue 16, finding 8); what the prefix would leave empty stays as it is.

A number is the user part of a sip:/sips:/tel: URI without parameters, %-escapes
decoded, visual separators (RFC 3966: ``-``, ``.``, ``(``, ``)``, space) removed:
"+49 (30) 1234-56" is "+4930123456". What is not a plausible number or name
(controls, odd characters, longer than MAX_NUMBER) is no number at all (""):
hostile input makes an unknown number (404), never an exception.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable
from typing import Literal

from edge_agent.sip.addresses import split_quoted
from edge_agent.sip.errors import SipError
from edge_agent.sip.message import Request

__all__ = [
    "MAX_NAME",
    "MAX_NUMBER",
    "MODES",
    "CalledNumber",
    "called_candidates",
    "caller_identity",
    "number_of",
    "parse_prefixes",
]

CalledNumber = Literal["auto", "request-uri", "to", "diversion", "history-info"]
MODES: tuple[CalledNumber, ...] = ("auto", "request-uri", "to", "diversion", "history-info")
MAX_NUMBER = 32  # characters of a number (E.164 has 15 digits; extensions, names fewer)
MAX_NAME = 64  # characters of a caller's display name
MAX_HEADER = 2048  # a header value longer than this is not looked at
MAX_ENTRIES = 32  # Diversion and History-Info entries looked at, each

_SEPARATORS = str.maketrans("", "", "-.() \t")
_NUMBER = re.compile(r"\+?[0-9A-Za-z*#_]{1,32}")
_SCHEME = re.compile(r"(sips?|tel):", re.IGNORECASE)
_INDEX = re.compile(r"[0-9]{1,5}(?:\.[0-9]{1,5}){0,15}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PREFIX = re.compile(r"\+?[0-9]{1,16}")
MAX_PREFIXES = 8


def parse_prefixes(text: str) -> tuple[str, ...]:
    """RUNDRUF_AGENT_SIP_NUMBER_PREFIXES: comma-separated prefixes ("+4930123,0"), each
    `+` and digits (visual separators removed), longest first; raises ValueError."""
    found: list[str] = []
    for entry in text.split(","):
        prefix = entry.strip().translate(_SEPARATORS)
        if not prefix:
            continue
        if not _PREFIX.fullmatch(prefix):
            raise ValueError(f"{entry.strip()[:40]!r} is no number prefix (+ and digits)")
        if prefix not in found:
            found.append(prefix)
    if len(found) > MAX_PREFIXES:
        raise ValueError(f"{len(found)} prefixes; at most {MAX_PREFIXES}")
    return tuple(sorted(found, key=len, reverse=True))


def number_of(uri: str) -> str:
    """The number (user part, cleaned) of a sip:, sips: or tel: URI; "" when none."""
    if len(uri) > MAX_HEADER:
        return ""
    text = uri.strip()
    match = _SCHEME.match(text)
    if match is None:
        return ""
    rest = text[match.end() :]
    if match.group(1).lower() == "tel":
        user = rest
    else:
        user, at, _ = rest.partition("@")
        if not at:
            return ""
        user = user.partition(":")[0]  # no password
    user = user.partition("?")[0].partition(";")[0]  # RFC 3966 params, user=phone
    try:
        user = urllib.parse.unquote(user, errors="strict")
    except UnicodeDecodeError:
        return ""
    cleaned = user.translate(_SEPARATORS)
    return cleaned if _NUMBER.fullmatch(cleaned) else ""


def _entries(request: Request, name: str) -> list[str]:
    """The entries of every `name` header, in order (a line may hold several, by commas);
    none at all when a line is too long or there are more than MAX_ENTRIES: a list cut
    short would name a later target as the original one."""
    entries: list[str] = []
    for line in request.headers.get_all(name):
        if len(line) > MAX_HEADER:
            return []
        try:
            parts = split_quoted(line, ",", angles=True)
        except SipError:  # an odd quote or "<": the list cannot be read
            return []
        entries += [part.strip() for part in parts if part.strip()]
        if len(entries) > MAX_ENTRIES:
            return []
    return entries


def _split_display(entry: str) -> tuple[str, str] | None:
    """(display name as written, the rest from the "<" on) of a name-addr; None for an
    addr-spec without angle brackets, or an entry that does not parse."""
    try:
        parts = split_quoted(entry, "<")
    except SipError:
        return None
    if len(parts) == 1:
        return None
    return parts[0], entry[len(parts[0]) :]


def _uri_and_params(entry: str) -> tuple[str, dict[str, str]]:
    """`<uri>;a=b;c` or `uri;a=b`: the URI and the header parameters (lower-case names)."""
    if "<" in entry:
        split = _split_display(entry)
        if split is None:
            return "", {}
        uri, closing, params = split[1][1:].partition(">")
        if not closing:
            return "", {}
    else:
        uri, _, params = entry.partition(";")
        params = ";" + params
    found: dict[str, str] = {}
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip():
            found[key.strip().lower()] = value.strip().strip('"')
    return uri.strip(), found


def diversion_original(request: Request) -> str:
    """The original target of RFC 5806 diversions: the bottom-most entry's number."""
    for entry in reversed(_entries(request, "Diversion")):
        number = number_of(_uri_and_params(entry)[0])
        if number:
            return number
        break  # the original is the last entry; a bad one is no fallback to a later one
    return ""


def history_original(request: Request) -> str:
    """The originally dialled target of RFC 7044 History-Info: of the entries with an
    index, the lowest one that was not itself made by retargeting (`rc`, `mp`)."""
    indexed: list[tuple[tuple[int, ...], str]] = []
    for entry in _entries(request, "History-Info"):
        uri, params = _uri_and_params(entry)
        index = params.get("index", "")
        if not _INDEX.fullmatch(index) or "rc" in params or "mp" in params:
            continue
        indexed.append((tuple(int(part) for part in index.split(".")), uri))
    if not indexed:
        return ""
    return number_of(min(indexed)[1])


def _user_of(request: Request, header: str) -> str:
    value = request.headers.get(header) or ""
    return number_of(_uri_and_params(value)[0]) if value else ""


def called_candidates(
    request: Request, mode: CalledNumber = "auto", prefixes: tuple[str, ...] = ()
) -> tuple[str, ...]:
    """The called numbers `mode` finds in `request`, most original first, each followed
    by itself without the longest of `prefixes` it starts with, without duplicates or
    empties; () when there is none (an unknown number)."""
    readers = {
        "history-info": lambda: history_original(request),
        "diversion": lambda: diversion_original(request),
        "request-uri": lambda: number_of(request.uri),
        "to": lambda: _user_of(request, "To"),
    }
    order: Iterable[str] = readers if mode == "auto" else (mode,)
    found: list[str] = []
    for name in order:
        reader = readers.get(name)
        number = reader() if reader is not None else ""
        for one in (number, _without_prefix(number, prefixes)):
            if one and one not in found:
                found.append(one)
    return tuple(found)


def _without_prefix(number: str, prefixes: tuple[str, ...]) -> str:
    for prefix in prefixes:  # longest first
        if number.startswith(prefix) and len(number) > len(prefix):
            return number[len(prefix) :]
    return ""


def _display(entry: str) -> str | None:
    """The display name of a name-addr, unquoted, controls removed, bounded; None if none."""
    split = _split_display(entry)
    if split is None:
        return None
    text = split[0].strip()
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        text = re.sub(r"\\(.)", r"\1", text[1:-1])
    text = " ".join(_CONTROL.sub("", text).split())[:MAX_NAME].strip()
    return text or None


def caller_identity(request: Request) -> tuple[str, str | None]:
    """Who calls: the number (P-Asserted-Identity's user, else From's; "" when
    anonymous or withheld by `Privacy: id`) and the display name (None when none)."""
    privacy = (request.headers.get("Privacy") or "").lower()
    if "id" in (token.strip() for token in privacy.split(";")):
        return "", None
    entry = ""
    for header in ("P-Asserted-Identity", "From"):
        value = request.headers.get(header) or ""
        if len(value) <= MAX_HEADER and number_of(_uri_and_params(value)[0]):
            entry = value
            break
    if not entry:
        entry = request.headers.get("From") or ""
        if len(entry) > MAX_HEADER:
            return "", None
    number = number_of(_uri_and_params(entry)[0])
    name = _display(entry)
    if number.lower() == "anonymous":
        number = ""
    if name is not None and name.lower() == "anonymous":
        name = None
    return number, name

"""Scrubbing texts from agents before they are stored: no secret is kept or shown.

Command errors and results, broadcast notes, call details, SIP details come from
software at the customer; viewers read them. Two nets (issue 14, point 5,
docs/decisions/secrets-in-errors.md):

- the strong secret values the server holds for the tenant (PBX passwords, a
  command's secrets): hidden wherever they stand, as written, in any case, and as
  JSON (once or twice), a repr or a URL would write them;
- what stands where a secret stands, whoever knows it: ``password=…``,
  ``"sipPassword": "…"``, ``-Password …``, ``PIN 4711``, ``Authorization: Bearer …``,
  our tokens (``rda_…``), a URL's login.

A PIN is a short number: as a bare digit run it is indistinguishable from an
internal number, a count or a part of an id, so it is hidden only in its context
(after a PIN keyword). Identifiers are never passed here: only free texts.

One `Scrubber` per tenant and request: its known values are one compiled pattern (a
trie, so the cost per text does not grow with the number of secrets).

Plain Python: the services hand in the values they decrypted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

HIDDEN = "***"
# A known value is hidden wherever it stands only when it cannot be an ordinary word or
# number: at least this long and not only digits. PINs are hidden by their context.
STRONG_MIN = 6
# A result is a JSON tree from an agent: walked this deep and this wide, no further
# (what lies beyond is replaced, not stored unscrubbed).
TREE_DEPTH = 12
TREE_NODES = 5000

_WORDS = r"password|passwort|passwd|pwd|kennwort|secret|token|api[_-]?key|pincode|pin"
_CAMEL = r"Password|Passwort|Passwd|Pwd|Kennwort|Secret|Token|ApiKey|Pincode|PinCode|Pin"
# A secret word as a part of a name: password, PASSWORD, sip_password,
# RUNDRUF_AGENT_SIP_PASSWORD, sipPassword, agentPin; not "ping", "spinner", "tokens".
_KEY_WORD = rf"(?:(?<![A-Za-z])(?i:{_WORDS})|(?<=[a-z0-9])(?:{_CAMEL}))(?![a-z])"
_KEY = rf"{_KEY_WORD}[A-Za-z0-9_]*"
# A quoted value, also escaped once or twice more (JSON in JSON: \"…\"); a value cut
# off before its closing quote runs to the end of the line.
# A doubled quote inside is one quote (PowerShell's 'Pbx''Geheim', SQL, CSV).
_QUOTED = r"""(?P<q>\\*["'])(?:(?P=q)(?P=q)|(?!(?<!\\)(?P=q)).)*(?:(?<!\\)(?P=q)|(?=[\r\n])|\Z)"""
_BARE_CHAR = r"""[^\s,;&"'<>{}\[\]()]"""
# After "=" a value runs over spaces (password=Mein Geheimes Passwort) up to the next
# name=, option or separator; after ":" or "is" it is one word.
_MORE = rf"(?:[ \t]+(?![\w.-]*[=:])(?!-){_BARE_CHAR}+)*"
_KEY_VALUE = re.compile(
    rf"""(?P<key>{_KEY}(?:\\*["'])?)"""
    rf"(?P<sep>\s*(?P<eq>=)\s*|\s*:\s*|\s+(?i:is|ist|lautet|was|war)\s+|(?P<space>\s+)(?=\\*[\"']))"
    rf"(?P<value>{_QUOTED}|(?P<first>{_BARE_CHAR}+)(?(eq){_MORE}))"
)
# PIN 4711, the PIN 12345678, PIN 9081 7263 (no separator: 4 digits or more).
_PIN_NUMBER = re.compile(
    r"(?P<key>(?<![A-Za-z])(?i:pin|pincode)(?![a-z])s?\s+)(?P<value>\d{4,}(?:[ -]\d{2,})*)(?!\w)"
)
# PowerShell's and command lines' -Password x, -SipPassword x, --pin 1234.
_OPTION = re.compile(
    rf"(?P<key>(?<![\w-])--?(?:[A-Za-z][\w-]*?)?{_KEY_WORD}[\w-]*\s+)"
    rf"(?P<value>{_QUOTED}|(?P<first>[^\s,;]+))"
)
# An Authorization header's value; Basic or Bearer with a token (it has a digit, so
# "the basic announcement" stays); a Digest header to the end of its line.
_OPAQUE_VALUE = r"(?=[A-Za-z0-9._~+/-]*\d)[A-Za-z0-9._~+/-]{12,}=*"
_DIGEST_HEADER = re.compile(r"(?i)(?P<key>\b(?:proxy-)?authorization\s*:\s*digest\s+)[^\r\n]+")
_AUTH_HEADER = re.compile(
    r"""(?i)(?P<key>\b(?:proxy-)?authorization\\*["']?\s*[:=]\s*\\*["']?"""
    r"(?:(?:basic|bearer|negotiate|ntlm)\s+)?)(?![Dd]igest\b)[A-Za-z0-9._~+/=-]{8,}"
)
_SCHEME_TOKEN = re.compile(rf"(?i)(?P<key>\b(?:bearer|basic)(?:\s+|%20|\+)){_OPAQUE_VALUE}")
# Our own tokens, also inside URL-encoded text (%20rda_…).
_TOKEN = re.compile(r"rd[asl]_[A-Za-z0-9_-]{16,}")
# https://user:password@host, the password may hold an "@" itself.
_URL_LOGIN = re.compile(r"(?i)\b(?P<key>[a-z][a-z0-9+.-]*://[^/\s:@]*:)[^/\s]*@")


class Scrubber:
    """Scrubs texts with the known values of one tenant and request."""

    def __init__(self, secrets: Iterable[object] = ()) -> None:
        forms = {form for value in _strong(secrets) for form in _forms(value)}
        self._known = re.compile(_trie(forms), re.IGNORECASE) if forms else None

    def __call__(self, text: str) -> str:
        """`text` with every known value and every secret-looking value as ``***``."""
        if self._known is not None:
            text = self._known.sub(HIDDEN, text)
        return _patterns(text)

    def optional(self, text: str | None) -> str | None:
        return None if text is None else self(text)

    def tree(self, value: Any) -> Any:
        """A JSON value with its texts scrubbed and the values of secret names hidden;
        names (keys) stay. Bounded: beyond TREE_DEPTH or TREE_NODES, ``***``."""
        budget = [TREE_NODES]
        return self._tree(value, 0, budget)

    def _tree(self, value: Any, depth: int, budget: list[int]) -> Any:
        budget[0] -= 1
        if budget[0] < 0 or depth > TREE_DEPTH:
            return HIDDEN
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {
                k: HIDDEN if secret_name(k) and _leaf(v) else self._tree(v, depth + 1, budget)
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [self._tree(v, depth + 1, budget) for v in value]
        return value


def secret_name(name: object) -> bool:
    """Whether a name (a JSON key, a parameter) says its value is a secret."""
    return isinstance(name, str) and re.fullmatch(rf"(?:[A-Za-z0-9_.-]*?){_KEY}", name) is not None


def scrub(text: str, secrets: Iterable[object] = ()) -> str:
    """`text` scrubbed; for one text. Many texts: one `Scrubber` for all of them."""
    return Scrubber(secrets)(text)


def scrub_optional(text: str | None, secrets: Iterable[object] = ()) -> str | None:
    return None if text is None else scrub(text, secrets)


def _leaf(value: Any) -> bool:
    return value is not None and not isinstance(value, dict | list | bool)


def _strong(secrets: Iterable[object]) -> set[str]:
    values = {str(s) for s in secrets if s is not None}
    return {v for v in values if len(v) >= STRONG_MIN and not v.isdigit()}


def _forms(value: str) -> set[str]:
    """The value as it is and as JSON (once, twice; ASCII or not), repr() and a URL write it."""
    once = [json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]]
    twice = [json.dumps(v)[1:-1] for v in once] + [
        json.dumps(v, ensure_ascii=False)[1:-1] for v in once
    ]
    urls = [quote(value), quote(value, safe=""), quote_plus(value)]
    return {value, *once, *twice, repr(value)[1:-1], repr(value.encode())[2:-1], *urls}


def _trie(forms: Iterable[str]) -> str:
    """One pattern for all forms: a trie, so that matching costs by the text's length,
    not by the number of forms; at each branch the longer continuation is tried first."""
    root: dict[str, Any] = {}
    for form in forms:
        # One case per branch (the pattern ignores case); a character whose lower
        # case has another length keeps its own.
        lower = form.lower()
        node = root
        for char in lower if len(lower) == len(form) else form:
            node = node.setdefault(char, {})
        node[""] = {}
    return _node(root)


def _node(node: dict[str, Any]) -> str:
    branches = []
    for char, child in node.items():
        if char == "":
            continue
        literal = char
        while len(child) == 1 and "" not in child:  # a chain: one literal, no nesting
            ((next_char, child),) = child.items()
            literal += next_char
        branches.append(re.escape(literal) + _node(child))
    if not branches:
        return ""
    group = "(?:" + "|".join(branches) + ")"
    return group + "?" if "" in node else group


def _patterns(text: str) -> str:
    text = _DIGEST_HEADER.sub(lambda m: f"{m['key']}{HIDDEN}", text)
    text = _AUTH_HEADER.sub(lambda m: f"{m['key']}{HIDDEN}", text)
    text = _SCHEME_TOKEN.sub(lambda m: f"{m['key']}{HIDDEN}", text)
    text = _TOKEN.sub(HIDDEN, text)
    text = _URL_LOGIN.sub(lambda m: f"{m['key']}{HIDDEN}@", text)
    text = _OPTION.sub(_hidden_value, text)
    text = _KEY_VALUE.sub(_hidden_value, text)
    return _PIN_NUMBER.sub(lambda m: f"{m['key']}{HIDDEN}", text)


_PLAIN_WORD = re.compile(r"[A-ZÄÖÜ]?[a-zäöüß]+")
_PIN_KEY = re.compile(r"(?i)pin")


def _hidden_value(match: re.Match[str]) -> str:
    groups = match.groupdict()
    key, sep = match["key"], groups.get("sep") or ""
    quote_mark = match["q"]
    if quote_mark:  # a quoted value is data, never prose
        closed = match["value"].endswith(quote_mark) and len(match["value"]) > len(quote_mark)
        return f"{key}{sep}{quote_mark}{HIDDEN}{quote_mark if closed else ''}"
    first = match["first"]
    is_pin = _PIN_KEY.search(key) is not None and not re.search(
        r"(?i)pass|wort|secret|token|key|pwd", key
    )
    if is_pin and not first.isdigit():
        return match[0]  # "PIN: abgelehnt": a PIN is a number
    if not groups.get("eq") and "sep" in groups and _PLAIN_WORD.fullmatch(first):
        return match[0]  # "Kennwort: abgelaufen", "password is wrong": a word, no value
    if groups.get("eq"):
        return f"{key}{sep}{HIDDEN}"
    rest = match["value"][len(first) :]
    return f"{key}{sep}{HIDDEN}{rest}"

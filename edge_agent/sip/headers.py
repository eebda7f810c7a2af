"""Header fields (RFC 3261 7.3): an ordered, case-insensitive multi-map.

Compact forms get their full names (7.3.3) and known names their usual spelling,
so `get("i")`, `get("call-id")` and `get("Call-ID")` are the same field.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator

from edge_agent.sip.addresses import split_quoted

COMPACT = {
    "i": "Call-ID",
    "m": "Contact",
    "f": "From",
    "t": "To",
    "v": "Via",
    "l": "Content-Length",
    "c": "Content-Type",
    "k": "Supported",
    "e": "Content-Encoding",
    "s": "Subject",
    "o": "Event",
    "u": "Allow-Events",
    "r": "Refer-To",  # RFC 3515
    "b": "Referred-By",  # RFC 3892
    "x": "Session-Expires",  # RFC 4028
}
_KNOWN = (  # noqa: SIM905 - one name a word reads better than a column of 59 strings
    "Accept Accept-Encoding Accept-Language Alert-Info Allow Allow-Events Authentication-Info "
    "Authorization Call-ID Call-Info Contact Content-Disposition Content-Encoding "
    "Content-Language Content-Length Content-Type CSeq Date Error-Info Event Expires From "
    "In-Reply-To Max-Forwards Min-Expires Min-SE MIME-Version Organization P-Asserted-Identity "
    "P-Preferred-Identity Path Priority Privacy Proxy-Authenticate Proxy-Authorization "
    "Proxy-Require RAck Reason Record-Route Refer-To Referred-By Reply-To Require "
    "Retry-After Route RSeq Server Service-Route Session-Expires Subject "
    "Subscription-State Supported Timestamp To Unsupported User-Agent Via Warning "
    "WWW-Authenticate"
).split()
_CANONICAL = {name.lower(): name for name in _KNOWN} | COMPACT
# Headers whose values are comma-separated lists (RFC 3261 7.3.1); `get_all` cuts them.
LIST_HEADERS = frozenset(
    "Via Contact Route Record-Route Allow Supported Require Proxy-Require Unsupported "  # noqa: SIM905
    "Allow-Events Accept Accept-Encoding Accept-Language Content-Encoding Path "
    "Service-Route".split()
)


def canonical_name(name: str) -> str:
    """The full, conventionally spelled name: "i" and "call-id" give "Call-ID"."""
    return _spelling(name)[0]


@functools.lru_cache(maxsize=1024)
def _spelling(name: str) -> tuple[str, str]:
    """(canonical name, its lower-case key); a handful of names, asked for all the time."""
    name = name.strip()
    canonical = _CANONICAL.get(name.lower(), name)
    return canonical, canonical.lower()


class Headers:
    """Ordered, case-insensitive multi-map of header fields; compact names made full."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        # (name as written, value, lower-case key): the key is worked out once per field.
        self._fields: list[tuple[str, str, str]] = []
        for name, value in items:
            self.add(name, value)

    def add(self, name: str, value: str) -> None:
        canonical, key = _spelling(name)
        self._fields.append((canonical, value, key))

    def get(self, name: str) -> str | None:
        """The first value (of a list header: its first element), or None."""
        values = self.get_all(name)
        return values[0] if values else None

    def first_line(self, name: str) -> str | None:
        """The first header line of that name as it stands (a list not cut), or None."""
        key = _spelling(name)[1]
        return next((v for _, v, k in self._fields if k == key), None)

    def get_all(self, name: str) -> list[str]:
        """Every value, in order; list headers (Via, Contact, ...) cut at their commas."""
        canonical, key = _spelling(name)
        values = [v for _, v, k in self._fields if k == key]
        if canonical not in LIST_HEADERS:
            return values
        parts: list[str] = []
        for value in values:
            parts += [p.strip() for p in split_quoted(value, ",", angles=True) if p.strip()]
        return parts

    def set(self, name: str, value: str) -> None:
        """Replaces every field of that name by one, where the first one was."""
        canonical, key = _spelling(name)
        index = next((i for i, field in enumerate(self._fields) if field[2] == key), None)
        self.remove(name)
        at = len(self._fields) if index is None else index
        self._fields.insert(at, (canonical, value, key))

    def remove(self, name: str) -> None:
        key = _spelling(name)[1]
        self._fields = [field for field in self._fields if field[2] != key]

    def count(self, name: str) -> int:
        """How many header lines (not list elements) have that name."""
        key = _spelling(name)[1]
        return sum(1 for field in self._fields if field[2] == key)

    def items(self) -> list[tuple[str, str]]:
        """The header lines as (name, value), in order."""
        return [(n, v) for n, v, _ in self._fields]

    def copy(self) -> Headers:
        copied = Headers()
        copied._fields = list(self._fields)
        return copied

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.count(name) > 0

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.items())

    def __len__(self) -> int:
        return len(self._fields)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(k, v) for _, v, k in self._fields] == [(k, v) for _, v, k in other._fields]

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"

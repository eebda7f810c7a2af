"""The call event kinds a broadcast report may carry, and what becomes of kinds this
service does not know (docs/decisions/report-compatibility.md).

An agent may be newer than the central service (agents update on their own schedule):
a kind added after this service was built is stored nowhere, but it must not cost the
report's other events. So a well-formed kind this service does not know is ignored
(and counted, logged the first time and then at 10, 100, 1000... events), while a
kind that is no name at all is refused like any other bad input.
"""

from __future__ import annotations

import logging
import re
import threading

log = logging.getLogger(__name__)

# What this service stores (api/models/history.py, one column each).
EVENT_KINDS = frozenset({"started", "ringing", "answered", "held", "resumed", "confirmed", "ended"})
# What a kind looks like: a lower-camel-case name, as the agent's kinds are.
KIND = re.compile(r"[a-z][A-Za-z0-9]{0,31}")
# Kinds counted by name at most; any further ones together (a report cannot grow memory).
COUNTED_MAX = 32
OTHERS = "(others)"

_lock = threading.Lock()
_ignored: dict[str, int] = {}


def well_formed(kind: str) -> bool:
    return KIND.fullmatch(kind) is not None


def known(kind: str) -> bool:
    return kind in EVENT_KINDS


def ignored(kinds: list[str]) -> None:
    """Counts events of unknown kinds left out of a report; logs a kind's first one and
    again at each power of ten, so a newer agent's kind shows once, not per report."""
    for kind in kinds:
        with _lock:
            name = kind if kind in _ignored or len(_ignored) < COUNTED_MAX else OTHERS
            count = _ignored[name] = _ignored.get(name, 0) + 1
        if count == 1 or _power_of_ten(count):
            log.warning(
                "broadcast reports: %d event(s) of kind %r ignored so far; this central "
                "service does not know the kind (an agent newer than the service)",
                count,
                name,
            )


def ignored_counts() -> dict[str, int]:
    """Events ignored so far in this process, by kind."""
    with _lock:
        return dict(_ignored)


def _power_of_ten(n: int) -> bool:
    while n >= 10 and n % 10 == 0:
        n //= 10
    return n == 1

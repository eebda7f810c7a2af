"""Reports to a central service older than the agent (docs/decisions/report-compatibility.md).

Agents and the central service update on their own schedules. A central service from
before the hold steps (issue 15, point 7) refuses a whole report that names a kind it
does not know ("unknown event kind 'held'"), and would go on refusing it: the
broadcast's other events, its confirmations among them, would never reach the history.
So a kind such a service refuses is left out of the reports to it, the batch is sent
again without it, and the kind is withheld until the agent restarts or RECHECK_S has
passed (the service may have been updated meanwhile; then it gets the kind again).

Only kinds added after the first central service can be left out (OPTIONAL_KINDS): the
history is whole without them. A refusal naming any other kind is a refusal like any
other and is retried as before.

Report fields added later (OPTIONAL_FIELDS: `triggerSource`, issue 16) go the same way:
a service from before a field refuses the whole report, as GraphQL refuses an input
field its schema lacks; the field is left out of its reports for a while, and the
service keeps what it derives without it (docs/decisions/trigger-source.md).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Collection

from edge_agent.errors import ServerRefused

log = logging.getLogger(__name__)

# Kinds the first central service did not know; what every one knows is never left out.
OPTIONAL_KINDS = frozenset({"held", "resumed"})
RECHECK_S = 3600.0
# The machine-readable refusal: GraphQL extensions {"unknownEventKind": "<kind>"}.
EXTENSION = "unknownEventKind"
# The refusal of the central services that predate the extension (api/services/
# broadcast_reports.py before report_kinds.py): code, field and message, exactly.
_LEGACY_CODE = "BAD_USER_INPUT"
_LEGACY_ANSWER = re.compile(r"unknown event kind '([a-z][A-Za-z0-9]{0,31})'")
# Report fields the first central service did not know: the history is whole without them.
# `stop` (issue 17): a service before it still gets the status CANCELLED, without who.
OPTIONAL_FIELDS = frozenset({"triggerSource", "stop"})
# How a service refuses an input field its schema lacks: graphql-core's words (3.3, the
# version every Rundruf service has run), with the code schema/errors.py gives them. The
# start is matched: what follows quotes the report, callers' names among it.
_VALIDATION_CODE = "GRAPHQL_VALIDATION_FAILED"
_UNKNOWN_FIELD = re.compile(
    r"Variable '\$input' has invalid value: Expected value of type 'BroadcastReportInput' "
    r"not to include unknown field '([a-z][A-Za-z0-9]{0,63})'"
)


def refused_field(exc: ServerRefused) -> str | None:
    """The report field `exc` refused a report for as unknown; None for any other refusal."""
    if exc.code != _VALIDATION_CODE:
        return None
    match = _UNKNOWN_FIELD.match(exc.answer)
    return match.group(1) if match else None


def refused_kind(exc: ServerRefused) -> str | None:
    """The event kind `exc` refused a report for as unknown; None for any other refusal."""
    named = exc.extensions.get(EXTENSION)
    if isinstance(named, str):
        return named
    if exc.code != _LEGACY_CODE or exc.extensions.get("field") != "events":
        return None
    match = _LEGACY_ANSWER.fullmatch(exc.answer)
    return match.group(1) if match else None


class _Withheld:
    """Names the central service refused as unknown, left out of reports to it until
    `recheck_s` has passed (or the agent restarts: this is memory only)."""

    what = "name"

    def __init__(
        self, recheck_s: float = RECHECK_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.recheck_s = recheck_s
        self._clock = clock
        self._until: dict[str, float] = {}

    def current(self) -> frozenset[str]:
        """The names to leave out now."""
        now = self._clock()
        for name, until in list(self._until.items()):
            if now >= until:
                del self._until[name]
                log.info("%s %r is offered to the central service again", self.what, name)
        return frozenset(self._until)


class WithheldFields(_Withheld):
    """The optional report fields an older central service refused."""

    what = "report field"

    def learn(self, exc: ServerRefused, sent: Collection[str]) -> str | None:
        """The field to leave out from now on when `exc` refused a report (with the
        fields `sent`) for an optional field it does not know; None: another refusal."""
        name = refused_field(exc)
        if name is None or name not in OPTIONAL_FIELDS or name not in sent:
            return None
        if name in self._until:
            return None
        self._until[name] = self._clock() + self.recheck_s
        log.warning(
            "the central service does not know the report field %r (an older version): "
            "reports leave it out for %.0f minutes; the service derives it meanwhile",
            name,
            self.recheck_s / 60,
        )
        return name


class WithheldKinds(_Withheld):
    """The optional kinds the central service refused as unknown."""

    what = "event kind"

    def learn(self, exc: ServerRefused, sent: Collection[str]) -> str | None:
        """The kind to leave out from now on when `exc` refused a report (whose events had
        the kinds `sent`) for an optional kind it does not know; None: a refusal to
        handle as before (no such kind, one every service knows, or one not sent)."""
        kind = refused_kind(exc)
        if kind is None or kind not in OPTIONAL_KINDS or kind not in sent:
            return None
        if kind in self._until:
            return None  # left out already: the refusal is about something else
        self._until[kind] = self._clock() + self.recheck_s
        log.warning(
            "the central service does not know the event kind %r (an older version): "
            "reports leave it out for %.0f minutes; the history will not show these steps",
            kind,
            self.recheck_s / 60,
        )
        return kind

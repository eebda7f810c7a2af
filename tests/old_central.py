"""`rundruf serve` as a central service from before the hold steps (issue 15, point 7)
answers a broadcast report: `python -m tests.old_central serve`.

Those services knew five event kinds and refused a whole report naming another one,
with exactly this error (api/services/broadcast_reports.py at 4baf94f): code
BAD_USER_INPUT, field "events", message "unknown event kind 'held'". Everything else is
today's service. tests/test_report_compat_e2e.py runs the agent's reporter against it.
"""

from __future__ import annotations

from api import cli
from api.errors import BadInput
from api.services import broadcast_reports

OLD_KINDS = frozenset({"started", "ringing", "answered", "confirmed", "ended"})
_check = broadcast_reports._check


def _old_check(report: broadcast_reports.ReportIn) -> None:
    for event in report.events:
        if event.kind not in OLD_KINDS:
            raise BadInput(f"unknown event kind {event.kind!r}", field="events")
    _check(report)


broadcast_reports._check = _old_check

if __name__ == "__main__":
    raise SystemExit(cli.main())

"""Which of a call's "held" and "resumed" steps are journaled (and so reported).

A phone that puts the call on hold and takes it back in a loop (a broken PBX, or a
hostile one) made one journal write and one reported event per change: 2,000
re-INVITEs journaled some 1,900 steps in 4 s and a report of 358 KiB (the outside
review of issue 15, point 7). The history keeps only the latest hold and return of an
attempt anyway (docs/decisions/sip-hold.md). So the first MAX_HOLD_STEPS are
journaled as they come; after that only the state counts: the last change not
journaled is journaled, with its own time, just before the call's next other step
(confirmed, ended) when it differs from the last step journaled, so that "held after
the latest return" still tells a call that ended on hold.
"""

from __future__ import annotations

from edge_agent.dialer.port import CallEvent, CallEventKind

__all__ = ["MAX_HOLD_STEPS", "HoldSteps"]

MAX_HOLD_STEPS = 10  # per call: five holds and five returns

_KINDS = (CallEventKind.HELD, CallEventKind.RESUMED)


class HoldSteps:
    """One call's hold steps: `steps(event)` says what to journal for an event."""

    __slots__ = ("_last", "_owed", "journaled")

    def __init__(self) -> None:
        self.journaled = 0
        self._last: CallEventKind | None = None  # the kind of the last step journaled
        self._owed: CallEvent | None = None

    def steps(self, event: CallEvent) -> list[CallEvent]:
        """The events to journal now, in order: a hold step among the first
        MAX_HOLD_STEPS, none for a later one (kept as the state), and for any other
        event the state owed first, if a change was left out, then the event."""
        if event.kind in _KINDS:
            if self.journaled < MAX_HOLD_STEPS:
                self.journaled += 1
                self._last = event.kind
                return [event]
            self._owed = None if event.kind is self._last else event
            return []
        owed, self._owed = self._owed, None
        if owed is None:
            return [event]
        self._last = owed.kind
        return [owed, event]

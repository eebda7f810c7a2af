"""A phone that holds and resumes in a loop journals a few steps, not thousands (issue 15,
point 7, the outside review: 2,000 re-INVITEs journaled some 1,900 steps in 4 s and a
report of 358 KiB). The first MAX_HOLD_STEPS are journaled; after that only the state
the call is in, with its own time, just before its next other step."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from edge_agent.broadcast.hold_steps import MAX_HOLD_STEPS, HoldSteps
from edge_agent.dialer.port import (
    CallEvent,
    CallEventKind,
    CallOutcome,
    CallRequest,
    Dialer,
    EventSink,
)
from edge_agent.pbx.port import UserState
from tests.agent.test_broadcast_executor import Bed, alarm, beds, make_bed, run_to_end

__all__ = ["beds"]  # the fixture

K = CallEventKind
TOGGLES = 500


class TogglingDialer(Dialer):
    """Answers, then the member holds and resumes TOGGLES times, and confirms on hold or
    not (an alarm calls again whoever did not confirm)."""

    kind = "sim"

    def __init__(self, end_on_hold: bool) -> None:
        self.end_on_hold = end_on_hold
        self.last_hold: datetime | None = None

    @property
    def max_parallel(self) -> int:
        return 10

    async def call(self, request: CallRequest, on_event: EventSink) -> CallOutcome:
        def event(kind: CallEventKind, **fields: object) -> CallEvent:
            return CallEvent(request.call_id, kind, datetime.now(UTC), **fields)  # type: ignore[arg-type]

        for kind in (K.STARTED, K.RINGING, K.ANSWERED, K.PLAYING):
            await on_event(event(kind))
        for _ in range(TOGGLES):
            await on_event(event(K.HELD))
            await on_event(event(K.RESUMED))
        if self.end_on_hold:
            held = event(K.HELD)
            self.last_hold = held.at
            await on_event(held)
        await on_event(event(K.DTMF, digit="1"))
        await on_event(event(K.CONFIRMED))
        await on_event(event(K.ENDED, outcome=CallOutcome.CONFIRMED))
        return CallOutcome.CONFIRMED

    async def close(self) -> None:
        pass


async def run(tmp_path: Path, beds: list[Bed], end_on_hold: bool) -> list[str]:
    bed = await make_bed(tmp_path, {"Anna": UserState.LOGGED_ON}, timeout_s=60)
    beds.append(bed)
    await bed.dialer.close()
    dialer = TogglingDialer(end_on_hold)
    bed.dialer = dialer  # type: ignore[assignment]
    bed.broadcasts.dialer = dialer
    _, events = await run_to_end(bed, alarm())
    steps = [e.kind for e in events]
    if end_on_hold:
        assert events[-3].kind == "held" and events[-3].at == dialer.last_hold
    return steps


async def test_a_hold_loop_journals_a_few_steps_and_the_state_it_ends_in(
    tmp_path: Path, beds: list[Bed]
) -> None:
    steps = await run(tmp_path, beds, end_on_hold=True)
    hold_steps = ["held", "resumed"] * (MAX_HOLD_STEPS // 2)
    assert steps == ["started", "ringing", "answered", *hold_steps, "held", "confirmed", "ended"]


async def test_a_hold_loop_that_ends_resumed_journals_no_extra_step(
    tmp_path: Path, beds: list[Bed]
) -> None:
    steps = await run(tmp_path, beds, end_on_hold=False)
    hold_steps = ["held", "resumed"] * (MAX_HOLD_STEPS // 2)
    assert steps == ["started", "ringing", "answered", *hold_steps, "confirmed", "ended"]


def test_only_a_change_against_the_last_step_journaled_is_owed() -> None:
    steps = HoldSteps()
    at = datetime.now(UTC)
    held, resumed = CallEvent("c", K.HELD, at), CallEvent("c", K.RESUMED, at)
    confirmed = CallEvent("c", K.CONFIRMED, at)
    for _ in range(MAX_HOLD_STEPS // 2):
        assert steps.steps(held) == [held] and steps.steps(resumed) == [resumed]
    assert steps.steps(held) == [] and steps.steps(resumed) == []
    assert steps.steps(confirmed) == [confirmed]  # back where the journal stands
    assert steps.steps(held) == []
    assert steps.steps(confirmed) == [held, confirmed]
    assert steps.steps(confirmed) == [confirmed]  # owed once
    assert steps.steps(resumed) == [] and steps.steps(held) == []
    assert steps.steps(confirmed) == [confirmed]

"""Runs one broadcast: every member called, retried until confirmed, the deadline or the quorum.

An alarm reaches every member at least once, also after the deadline (the agent
was down, say): a member whose attempts never reached the PBX or the phone (the
dialer was not ready, the agent stopped mid-call) keeps being tried after the
deadline, with a growing pause, for at most the timeout once more; such attempts
are journaled as late, with the reason. A test broadcast calls nobody after its
deadline; a member it leaves out ends `not_called`, with the reason. A member the
quorum made unnecessary ends `not_called` too (detail SPARED_BY_QUORUM), so every
member has a row in the history.

Each call is journaled as `started` before it is dialled, so a restart knows
which attempts were under way: those end `failed` ("interrupted") and the
member's next attempt gets the next number. Nobody is called twice for the
same attempt, and nobody is forgotten.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge_agent.broadcast.channels import Channels
from edge_agent.broadcast.hold_steps import HoldSteps
from edge_agent.broadcast.journal import Journal
from edge_agent.broadcast.model import (
    CANCELLED,
    COMPLETED,
    DEADLINE_PASSED,
    NOT_CALLED,
    REPORTED_KINDS,
    Broadcast,
    Late,
    Member,
    Mode,
    summary,
)
from edge_agent.dialer.port import (
    STOPPED,
    CallEvent,
    CallEventKind,
    CallOutcome,
    CallRequest,
    Dialer,
    DialerError,
)

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted: the agent stopped during this call"
CONFIRMED_BEFORE_STOP = "confirmed; the agent stopped before the call ended"
SKIPPED_BUSY = "skipped_busy"
START_CHUNK = 50
MAX_ATTEMPTS_KEPT = 100  # the central service keeps at most this many per member
QUORUM_HANGUP = "hung up before an answer: the quorum was reached"
# The detail of a `not_called` row the quorum spared (a code the website words); a row
# the timeout left out has its late reason instead of a detail.
SPARED_BY_QUORUM = "quorumReached"
# Outcomes that show the call reached the PBX and the member's phone (it rang, was busy,
# declined...). A `failed` attempt (the dialer or its network not ready, the agent
# stopped mid-call) reached nobody: after the deadline an alarm tries such a member again.
REACHED = frozenset(
    {
        CallOutcome.CONFIRMED,
        CallOutcome.ANSWERED,
        CallOutcome.BUSY,
        CallOutcome.NO_ANSWER,
        CallOutcome.REJECTED,
    }
)
LATE_PAUSE_CAP_S = 30.0  # the longest pause between two late tries of one member


@dataclass(frozen=True)
class CallSettings:
    ring_timeout_s: float = 30.0
    retry_pause_s: float = 15.0  # between two attempts on the same member
    max_attempts: int = 20  # per member, and again after the deadline (see `_member`)
    display_name: str = "Rundruf"  # what the member's phone shows


def _now() -> datetime:
    return datetime.now(UTC)


class BroadcastRun:
    def __init__(
        self,
        broadcast: Broadcast,
        members: list[Member],
        journal: Journal,
        dialer: Dialer,
        channels: Channels,
        settings: CallSettings,
        outage: Late | None = None,
        stop_notice: Path | None = None,
    ) -> None:
        self.broadcast = broadcast
        self.stop_notice = stop_notice  # what an answered call plays when it is stopped
        self.outage = outage  # why the agent took this broadcast up late, if it did
        self.members = members
        self.journal = journal
        self.dialer = dialer
        self.channels = channels
        self.settings = settings
        self.urgent = broadcast.mode != Mode.TEST
        self.outcomes: dict[str, str] = {}  # the latest outcome per member
        self.reached: set[str] = set()  # members an attempt reached (REACHED)
        self.spared: set[str] = set()  # members the quorum made unnecessary (never called)
        # After the deadline an alarm's unreached member is tried until this: the
        # timeout once more, from the deadline or from when the agent took it up late.
        timeout = broadcast.deadline_at - broadcast.started_at
        self.late_until = max(broadcast.deadline_at, _now()) + max(timeout, timedelta(0))
        self.confirmed = 0
        self._stop = asyncio.Event()  # the quorum is reached: no new calls
        self._unanswered: dict[str, asyncio.Task[CallOutcome]] = {}  # calls not yet answered
        self._hung_up: set[str] = set()  # calls cancelled for the quorum
        self._quorum_note = ""
        # Set by `stop` (issue 17): no new calls, ringing ones cancelled, answered ones told.
        self._stopped = asyncio.Event()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def stop(self) -> None:
        """Stops the broadcast now: no new calls or retries, ringing calls are cancelled
        (SIP: CANCEL), answered ones hear the stop notice and are hung up (the dialer).
        The caller has journaled the stop already."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._stop.set()  # wakes every retry pause; `_over` is true from now on
        for call_id, call in list(self._unanswered.items()):
            self._hung_up.add(call_id)
            call.cancel()
        log.info("broadcast %s: stopped", self.broadcast.id)

    async def run(self) -> None:
        b = self.broadcast
        if b.stop is not None:  # stopped, then the agent restarted: nobody is called again
            self.stop()
        attempts = await self._resume()
        self.confirmed = sum(1 for o in self.outcomes.values() if o == CallOutcome.CONFIRMED)
        self._check_quorum_from_resume()
        todo = [
            m
            for m in self.members
            if m.skip is None and self.outcomes.get(m.pbx_id) != CallOutcome.CONFIRMED
        ]
        # A task group: if one member's loop fails unexpectedly, the others stop too
        # (their calls end "cancelled") and the manager runs the broadcast again.
        async with asyncio.TaskGroup() as group:
            for index, m in enumerate(todo, 1):
                group.create_task(self._member(m, attempts.get(m.pbx_id, 0)))
                if index % START_CHUNK == 0:
                    await asyncio.sleep(0)  # the first calls go out while the rest are set up
        never = len(self.spared)
        if self._quorum_note and never:
            self._quorum_note += f", {never} members not called"
        # A note from the start (a fallback message, say) stays in front.
        done = summary(self.members, self.outcomes, self._quorum_note, self.spared)
        if self.stopped:
            done = f"{done}; stopped"
        note = "; ".join(filter(None, [b.note, done]))
        await self.journal.finish(b.id, CANCELLED if self.stopped else COMPLETED, _now(), note)
        log.info("broadcast %s finished: %s", b.id, note)

    async def _resume(self) -> dict[str, int]:
        """Reads what the journal holds of this broadcast; ends attempts cut short by a crash."""
        b = self.broadcast
        attempts: dict[str, int] = {}
        open_attempts: dict[tuple[str, int], bool] = {}  # True: confirmed before the stop
        for event in await self.journal.events(b.id):
            attempts[event.pbx_id] = max(attempts.get(event.pbx_id, 0), event.attempt_no)
            key = (event.pbx_id, event.attempt_no)
            if event.kind == "started":
                open_attempts[key] = False
            elif event.kind == "confirmed" and key in open_attempts:
                open_attempts[key] = True
            elif event.kind == "ended":
                open_attempts.pop(key, None)
                if event.outcome is not None:
                    self.outcomes[event.pbx_id] = event.outcome
                if event.outcome in REACHED:
                    self.reached.add(event.pbx_id)
                if event.outcome == NOT_CALLED and event.detail == SPARED_BY_QUORUM:
                    self.spared.add(event.pbx_id)
        closing: list[tuple[str, int, str, datetime, str | None, str | None]] = []
        for (pbx_id, attempt_no), confirmed in open_attempts.items():
            # A member who pressed 1 before the stop is reached: never call them again.
            # An interrupted attempt did not reach the member: an alarm calls them again.
            outcome = CallOutcome.CONFIRMED if confirmed else CallOutcome.FAILED
            detail = CONFIRMED_BEFORE_STOP if confirmed else INTERRUPTED
            closing.append((pbx_id, attempt_no, "ended", _now(), outcome.value, detail))
            self.outcomes[pbx_id] = outcome
            if confirmed:
                self.reached.add(pbx_id)
        for m in self.members:
            if m.skip is not None and m.pbx_id not in attempts:
                closing.append((m.pbx_id, 1, "ended", _now(), SKIPPED_BUSY, m.skip))
                self.outcomes[m.pbx_id] = SKIPPED_BUSY
        if closing:  # one write for all, not one fsync per member
            await self.journal.record_many(b.id, closing)
        return attempts

    def _check_quorum_from_resume(self) -> None:
        quorum = self.broadcast.quorum
        if quorum is not None and self.confirmed >= quorum:
            self._stop.set()
            self._quorum_note = f"quorum of {quorum} reached"

    def _over(self, member: Member) -> bool:
        """No further call. After the deadline an alarm still tries a member no attempt
        has reached yet, until `late_until`; a test broadcast calls nobody."""
        if self._stop.is_set():
            return True
        now = _now()
        if now < self.broadcast.deadline_at:
            return False
        owed = self.urgent and member.pbx_id not in self.reached
        return not owed or now >= self.late_until

    def _pause(self, late_tries: int) -> float:
        """Seconds until the member's next try (whether there is one, `_over` says)."""
        now = _now()
        remaining = (self.broadcast.deadline_at - now).total_seconds()
        if remaining > 0:
            return min(self.settings.retry_pause_s, remaining)
        if late_tries == 0:  # the deadline passed during the call: a late try right away
            return 0.0
        # Late tries after a failure the agent's side caused: a growing pause (the
        # dialer's network may need a while after a restart), within the late window.
        pause = min(self.settings.retry_pause_s * 2.0 ** (late_tries - 1), LATE_PAUSE_CAP_S)
        return min(pause, max(0.0, (self.late_until - now).total_seconds()))

    def _late(self) -> Late | None:
        """Why a call (or a member left out) now is late; None before the deadline."""
        deadline = self.broadcast.deadline_at
        if _now() < deadline:
            return None
        outage = self.outage
        # The outage is the reason only when the agent was down as the timeout passed;
        # one that began after it (the agent ran past the deadline) is not.
        if (
            outage is not None
            and outage.until is not None
            and outage.until >= deadline
            and (outage.since is None or outage.since <= deadline)
        ):
            return outage
        return Late(DEADLINE_PASSED, deadline, None)

    def _hold_until(self) -> datetime:
        """The latest a member may keep a call on hold: the broadcast's timeout, or, for a
        late attempt of an alarm, the end of its late window (docs/decisions/sip-hold.md)."""
        deadline = self.broadcast.deadline_at
        return deadline if _now() < deadline else self.late_until

    async def _member(self, member: Member, attempt: int) -> None:
        b = self.broadcast
        if member.extension is None:
            if attempt == 0:
                await self.journal.record(
                    b.id, member.pbx_id, 1, "ended", _now(), "failed", "no internal number"
                )
                self.outcomes[member.pbx_id] = CallOutcome.FAILED
            return
        late_tries = 0  # tries after the deadline (bounded like the tries before it)
        tried = attempt > 0
        while (
            attempt < MAX_ATTEMPTS_KEPT
            and late_tries < self.settings.max_attempts
            and (attempt < self.settings.max_attempts or _now() >= b.deadline_at)
            and not self._over(member)
        ):
            async with self.channels.slot(self.urgent):
                if self._over(member):
                    break
                attempt += 1
                late = self._late()
                if late is not None:
                    late_tries += 1
                tried = True
                outcome = await self._call(member, member.extension, attempt, late)
            if outcome == CallOutcome.CONFIRMED:
                self.confirmed += 1
                await self._confirmed()
                return
            if outcome in REACHED:
                self.reached.add(member.pbx_id)
            try:
                async with asyncio.timeout(self._pause(late_tries)):
                    await self._stop.wait()
            except TimeoutError:
                pass
        if not tried:
            await self._not_called(member)

    async def _not_called(self, member: Member) -> None:
        """A row for a member never called, never a member missing from the history: the
        quorum spared them, or the deadline passed before their turn (a test broadcast,
        or an alarm whose late window did), with the reason."""
        b = self.broadcast
        if self.stopped:
            detail, late = STOPPED, None
        elif self._stop.is_set():
            detail, late = SPARED_BY_QUORUM, None
            self.spared.add(member.pbx_id)
        else:
            detail, late = None, self._late() or Late(DEADLINE_PASSED, b.deadline_at, None)
        await self.journal.record(b.id, member.pbx_id, 1, "ended", _now(), NOT_CALLED, detail, late)
        self.outcomes[member.pbx_id] = NOT_CALLED

    async def _confirmed(self) -> None:
        quorum = self.broadcast.quorum
        if quorum is not None and self.confirmed >= quorum and not self._stop.is_set():
            self._stop.set()
            # Phones still ringing stop; calls someone answered play to their end, and
            # calls on hold end (the dialer sees `_stop` as the request's quorum_reached).
            for call_id, call in list(self._unanswered.items()):
                self._hung_up.add(call_id)
                call.cancel()
            self._quorum_note = f"quorum of {quorum} reached"
            await self.journal.quorum_reached(self.broadcast.id, _now())
            log.info("broadcast %s: quorum of %d reached", self.broadcast.id, quorum)

    async def _call(self, member: Member, extension: str, attempt: int, late: Late | None) -> str:
        b = self.broadcast
        # On disk before dialling: after a crash this attempt is known to have begun.
        await self.journal.record(
            b.id, member.pbx_id, attempt, "started", _now(), detail=extension, late=late
        )
        ended = False
        call_id = f"{b.id}:{member.pbx_id}:{attempt}"
        if self._stop.is_set():  # the quorum (or a stop) came while the start was written
            hangup = STOPPED if self.stopped else QUORUM_HANGUP
            await self.journal.record(
                b.id, member.pbx_id, attempt, "ended", _now(), "failed", hangup
            )
            self.outcomes[member.pbx_id] = CallOutcome.FAILED
            return CallOutcome.FAILED

        holds = HoldSteps()  # a phone holding in a loop journals a few steps, not thousands

        async def on_event(event: CallEvent) -> None:
            nonlocal ended
            kind = event.kind.value
            if event.kind is CallEventKind.ANSWERED:
                self._unanswered.pop(call_id, None)  # someone listens: let them hear it out
            if event.kind is CallEventKind.STARTED or kind not in REPORTED_KINDS:
                return  # STARTED is journaled above; PLAYING and DTMF stay local
            steps = holds.steps(event)
            if not steps:
                return
            for owed in steps[:-1]:  # the hold state, after steps left out
                await self.journal.record(b.id, member.pbx_id, attempt, owed.kind.value, owed.at)
            ended = ended or event.kind is CallEventKind.ENDED
            outcome = event.outcome.value if event.outcome is not None else None
            detail = event.detail
            if ended and self._stop.is_set() and call_id in self._hung_up:
                detail = STOPPED if self.stopped else QUORUM_HANGUP
                if self.stopped:  # it was being called or rang; nobody answered before the stop
                    outcome = CallOutcome.NO_ANSWER.value
            await self.journal.record(b.id, member.pbx_id, attempt, kind, event.at, outcome, detail)

        request = CallRequest(
            call_id=call_id,
            target=extension,
            display_name=self.settings.display_name,
            announcement=Path(b.announcement or ""),
            priority=self.urgent,
            ring_timeout_s=self.settings.ring_timeout_s,
            hold_until=self._hold_until(),
            # Once the quorum is reached a call on hold is not waited for any more.
            quorum_reached=self._stop,
            stopped=self._stopped,
            stop_notice=self.stop_notice,
        )
        call = asyncio.create_task(self.dialer.call(request, on_event), name=call_id)
        self._unanswered[call_id] = call
        try:
            outcome: str = await call
        except DialerError as exc:
            outcome = CallOutcome.FAILED
            if not ended:
                detail = exc.code or str(exc)  # a code the website words, else the text
                await self.journal.record(
                    b.id, member.pbx_id, attempt, "ended", _now(), outcome, detail
                )
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if call_id not in self._hung_up or (task is not None and task.cancelling()):
                raise  # the agent stops: the journal's open attempt says so on restart
            outcome = CallOutcome.NO_ANSWER if self.stopped else CallOutcome.FAILED
            if not ended:  # cancelled before the dialer began: it reported nothing
                hangup = STOPPED if self.stopped else QUORUM_HANGUP
                await self.journal.record(
                    b.id, member.pbx_id, attempt, "ended", _now(), outcome, hangup
                )
        finally:
            self._unanswered.pop(call_id, None)
        self.outcomes[member.pbx_id] = outcome
        return outcome

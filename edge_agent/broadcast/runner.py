"""Runs one broadcast: every member called, retried until confirmed, the deadline or the quorum.

An alarm calls every member at least once, also after the deadline (the agent was
down, say): such an attempt is journaled as late, with the reason. A test broadcast
calls nobody after its deadline; a member it leaves out ends `not_called`, with
the reason. Either way every member has a row in the history.

Each call is journaled as `started` before it is dialled, so a restart knows
which attempts were under way: those end `failed` ("interrupted") and the
member's next attempt gets the next number. Nobody is called twice for the
same attempt, and nobody is forgotten.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from edge_agent.broadcast.channels import Channels
from edge_agent.broadcast.journal import Journal
from edge_agent.broadcast.model import (
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
QUORUM_HANGUP = "hung up before an answer: the quorum was reached"
NOT_CALLED_DETAIL = "not called: the broadcast timeout passed before this member's call"


@dataclass(frozen=True)
class CallSettings:
    ring_timeout_s: float = 30.0
    retry_pause_s: float = 15.0  # between two attempts on the same member
    max_attempts: int = 20  # per member (the central service keeps at most 100)
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
    ) -> None:
        self.broadcast = broadcast
        self.outage = outage  # why the agent took this broadcast up late, if it did
        self.members = members
        self.journal = journal
        self.dialer = dialer
        self.channels = channels
        self.settings = settings
        self.urgent = broadcast.mode != Mode.TEST
        self.outcomes: dict[str, str] = {}  # the latest outcome per member
        self.confirmed = 0
        self._stop = asyncio.Event()  # the quorum is reached: no new calls
        self._unanswered: dict[str, asyncio.Task[CallOutcome]] = {}  # calls not yet answered
        self._hung_up: set[str] = set()  # calls cancelled for the quorum
        self._quorum_note = ""

    async def run(self) -> None:
        b = self.broadcast
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
        called = [m for m in self.members if m.skip is None]
        never = sum(1 for m in called if m.pbx_id not in self.outcomes)
        if self._quorum_note and never:
            self._quorum_note += f", {never} members not called"
        # A note from the start (a fallback message, say) stays in front.
        note = "; ".join(
            filter(None, [b.note, summary(self.members, self.outcomes, self._quorum_note)])
        )
        await self.journal.finish(b.id, COMPLETED, _now(), note)
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
        closing: list[tuple[str, int, str, datetime, str | None, str | None]] = []
        for (pbx_id, attempt_no), confirmed in open_attempts.items():
            # A member who pressed 1 before the stop is reached: never call them again.
            outcome = CallOutcome.CONFIRMED if confirmed else CallOutcome.FAILED
            detail = CONFIRMED_BEFORE_STOP if confirmed else INTERRUPTED
            closing.append((pbx_id, attempt_no, "ended", _now(), outcome.value, detail))
            self.outcomes[pbx_id] = outcome
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

    def _over(self, attempt: int) -> bool:
        """No further call; an alarm's member not yet called is called even after the deadline."""
        if self._stop.is_set():
            return True
        owed = self.urgent and attempt == 0
        return not owed and _now() >= self.broadcast.deadline_at

    def _late(self) -> Late | None:
        """Why a call (or a member left out) now is late; None before the deadline."""
        deadline = self.broadcast.deadline_at
        if _now() < deadline:
            return None
        outage = self.outage
        if outage is not None and outage.until is not None and outage.until >= deadline:
            return outage  # the agent was down when the timeout passed
        return Late(DEADLINE_PASSED, deadline, None)

    async def _member(self, member: Member, attempt: int) -> None:
        b = self.broadcast
        if member.extension is None:
            if attempt == 0:
                await self.journal.record(
                    b.id, member.pbx_id, 1, "ended", _now(), "failed", "no internal number"
                )
                self.outcomes[member.pbx_id] = CallOutcome.FAILED
            return
        while attempt < self.settings.max_attempts and not self._over(attempt):
            async with self.channels.slot(self.urgent):
                if self._over(attempt):
                    break
                attempt += 1
                outcome = await self._call(member, member.extension, attempt, self._late())
            if outcome == CallOutcome.CONFIRMED:
                self.confirmed += 1
                await self._confirmed()
                return
            remaining = (b.deadline_at - _now()).total_seconds()
            if remaining <= 0:
                return
            try:
                async with asyncio.timeout(min(self.settings.retry_pause_s, remaining)):
                    await self._stop.wait()
            except TimeoutError:
                pass
        if attempt == 0 and not self._stop.is_set():
            # A test broadcast whose deadline passed before this member's turn: a row
            # that says so, never a member missing from the history.
            late = self._late() or Late(DEADLINE_PASSED, b.deadline_at, None)
            await self.journal.record(
                b.id, member.pbx_id, 1, "ended", _now(), NOT_CALLED, NOT_CALLED_DETAIL, late
            )
            self.outcomes[member.pbx_id] = NOT_CALLED

    async def _confirmed(self) -> None:
        quorum = self.broadcast.quorum
        if quorum is not None and self.confirmed >= quorum and not self._stop.is_set():
            self._stop.set()
            # Phones still ringing stop; calls someone answered play to their end.
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
        if self._stop.is_set():  # the quorum came while the start was being written
            await self.journal.record(
                b.id, member.pbx_id, attempt, "ended", _now(), "failed", QUORUM_HANGUP
            )
            self.outcomes[member.pbx_id] = CallOutcome.FAILED
            return CallOutcome.FAILED

        async def on_event(event: CallEvent) -> None:
            nonlocal ended
            kind = event.kind.value
            if event.kind is CallEventKind.ANSWERED:
                self._unanswered.pop(call_id, None)  # someone listens: let them hear it out
            if event.kind is CallEventKind.STARTED or kind not in REPORTED_KINDS:
                return  # STARTED is journaled above; PLAYING and DTMF stay local
            ended = ended or event.kind is CallEventKind.ENDED
            outcome = event.outcome.value if event.outcome is not None else None
            detail = event.detail
            if ended and self._stop.is_set() and call_id in self._hung_up:
                detail = QUORUM_HANGUP
            await self.journal.record(b.id, member.pbx_id, attempt, kind, event.at, outcome, detail)

        request = CallRequest(
            call_id=call_id,
            target=extension,
            display_name=self.settings.display_name,
            announcement=Path(b.announcement or ""),
            priority=self.urgent,
            ring_timeout_s=self.settings.ring_timeout_s,
        )
        call = asyncio.create_task(self.dialer.call(request, on_event), name=call_id)
        self._unanswered[call_id] = call
        try:
            outcome: str = await call
        except DialerError as exc:
            outcome = CallOutcome.FAILED
            if not ended:
                await self.journal.record(
                    b.id, member.pbx_id, attempt, "ended", _now(), outcome, str(exc)
                )
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if call_id not in self._hung_up or (task is not None and task.cancelling()):
                raise  # the agent stops: the journal's open attempt says so on restart
            outcome = CallOutcome.FAILED
            if not ended:  # cancelled before the dialer began: it reported nothing
                await self.journal.record(
                    b.id, member.pbx_id, attempt, "ended", _now(), outcome, QUORUM_HANGUP
                )
        finally:
            self._unanswered.pop(call_id, None)
        self.outcomes[member.pbx_id] = outcome
        return outcome

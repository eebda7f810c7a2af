"""Sends the journal's call events to the central service, and finishes jobs after the last one.

The journal is the queue: events above a broadcast's `acked_seq` are unsent.
While the server is unreachable they wait on disk and go out on reconnect;
`reportBroadcast` is idempotent by broadcast id and event number, so a repeat
after a lost answer stores nothing twice. An older central service that refuses a
newer event kind or report field gets the reports without it (`report_compat.py`).
A job leaves the job service only after the server acknowledged the finished
broadcast, which then holds it for good, also while memory stands in for a journal
file that cannot be written.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Collection, Sequence
from contextlib import suppress
from typing import Any

from edge_agent.broadcast.journal import Journal
from edge_agent.broadcast.model import RUNNING, Broadcast, Event, Member, Mode
from edge_agent.broadcast.report_compat import WithheldFields, WithheldKinds
from edge_agent.channel import full_jitter
from edge_agent.error_text import redact
from edge_agent.errors import ServerRefused, ServerUnreachable
from edge_agent.jobservice import JobServiceClient, JobServiceRefused, JobServiceUnavailable
from edge_agent.pbx import text
from edge_agent.server import Server

log = logging.getLogger(__name__)

BATCH = 500  # events per report (the server takes up to 2,000)
# Bytes of events per report: well below the server's 256 KiB body limit.
MAX_REPORT_BYTES = 128 * 1024
MAX_DETAIL = 500
# What the server stores of a caller's number and of a note.
CALLER_NUMBER_MAX = 64
NOTE_MAX = 4000
# What the server stores of who stopped a broadcast and why.
STOP_BY_MAX = 200
STOP_REASON_MAX = 500
RETRY_IDLE_S = 30.0  # a running broadcast's reports are looked at again at least this often
# A job deletion that failed is tried again after 1 s, doubling up to 30 s: a job service the
# Windows service wrapper restarts (after 5 s) finishes its job seconds later, not 30 s later.
DELETE_RETRY_FIRST_S = 1.0
DELETE_RETRY_MAX_S = 30.0
# How the alarm was raised, by the broadcast's source: the central service's
# `TriggerSource` (a trigger call through the job service, the agent's own SIP line, the
# website's triggerBroadcast).
TRIGGER_SOURCES = {"job": "PHONE", "sip": "SIP", "command": "WEBSITE"}


class DeletionBackoff:
    """The pause before the next try of a failed job deletion; starts over after a success."""

    def __init__(
        self, first_s: float = DELETE_RETRY_FIRST_S, max_s: float = DELETE_RETRY_MAX_S
    ) -> None:
        self.first_s = first_s
        self.max_s = max_s
        self.failures = 0

    def failed(self) -> float:
        """Counts a pass with a failed deletion; the seconds to wait before the next."""
        self.failures += 1
        doublings = min(self.failures - 1, 30)  # a long outage must not overflow the float
        return min(self.first_s * 2.0**doublings, self.max_s)

    def succeeded(self) -> None:
        self.failures = 0


def event_json(e: Event, members: dict[str, Member], hide: Sequence[object] = ()) -> dict[str, Any]:
    m = members.get(e.pbx_id)
    # Only a late event carries the late fields: every other report stays as before.
    late = (
        {
            "lateReason": e.late.reason.upper(),
            "lateFrom": e.late.since.isoformat() if e.late.since else None,
            "lateUntil": e.late.until.isoformat() if e.late.until else None,
        }
        if e.late is not None
        else {}
    )
    return {
        "seq": e.seq,
        "memberPbxId": e.pbx_id,
        # Names and numbers from the PBX, the callers' from the call routing: cleaned, as
        # the server refuses (and would keep refusing) a report with a NUL in it.
        "memberName": text.clean(m.name if m else e.pbx_id, text.NAME_MAX),
        "memberExtension": text.extension(m.extension) if m else None,
        "attemptNo": e.attempt_no,
        "kind": e.kind,
        "at": e.at.isoformat(),
        "outcome": e.outcome.upper() if e.outcome else None,
        # The agent's secrets hidden before the cut: a cut could split one.
        "detail": _clean(e.detail, MAX_DETAIL, hide) if e.detail else None,
        **late,
    }


def _clean(value: str | None, limit: int, hide: Sequence[object] = ()) -> str | None:
    if value is None:
        return None
    return text.clean(redact(value, hide), limit) if hide else text.clean(value, limit)


def fitting(
    events: list[Event], members: dict[str, Member], hide: Sequence[object] = ()
) -> list[Event]:
    """The longest prefix of `events` whose report stays under MAX_REPORT_BYTES (at least one)."""
    size = 0
    for index, event in enumerate(events):
        size += len(json.dumps(event_json(event, members, hide))) + 2
        if size > MAX_REPORT_BYTES and index > 0:
            return events[:index]
    return events


def report_json(
    b: Broadcast,
    members: dict[str, Member],
    events: list[Event],
    final: bool,
    hide: Sequence[object] = (),
    leave_out: Collection[str] = (),
) -> dict[str, Any]:
    """The report; without the fields in `leave_out` (an older service refused them)."""
    report = {
        "broadcastId": b.id,
        "groupPbxId": b.group_pbx_id,
        "mode": Mode(b.mode).wire,
        "startedAt": b.started_at.isoformat(),
        "memberCount": len(members),
        "status": (b.status if final else RUNNING).upper(),
        "triggerCallerNumber": _clean(b.caller_number, CALLER_NUMBER_MAX),
        "triggerCallerName": _clean(b.caller_name, text.NAME_MAX),
        "quorum": b.quorum,
        "quorumReachedAt": b.quorum_reached_at.isoformat() if b.quorum_reached_at else None,
        "finishedAt": b.finished_at.isoformat() if final and b.finished_at else None,
        "note": _clean(b.note, NOTE_MAX, hide),
        "events": [event_json(e, members, hide) for e in events],
    }
    source = TRIGGER_SOURCES.get(b.source)
    if source is not None:
        report["triggerSource"] = source
    if b.stop is not None:  # who stopped it, how and when (issue 17)
        report["stop"] = {
            "via": b.stop.via.upper(),
            "at": b.stop.at.isoformat(),
            "by": _clean(b.stop.by, STOP_BY_MAX),
            "reason": _clean(b.stop.reason, STOP_REASON_MAX, hide),
        }
    for name in leave_out:
        report.pop(name, None)
    return report


class Reporter:
    def __init__(
        self,
        journal: Journal,
        server: Server,
        jobservice: JobServiceClient | None,
        backoff_cap_s: float,
        hide: Sequence[object] = (),
    ) -> None:
        self.journal = journal
        # The agent's own secrets (SIP password, tokens): never in a note or detail.
        self.hide = tuple(v for v in hide if v)
        self.server = server
        self.jobservice = jobservice
        self.backoff_cap_s = backoff_cap_s
        self._members: dict[str, dict[str, Member]] = {}
        self.deletion_backoff = DeletionBackoff()
        self._deletion_failed = False  # in the current pass of `settle`
        self.settled = asyncio.Event()  # set whenever nothing is left to send (tests wait on it)
        # Kinds and fields an older central service refused: left out of its reports for
        # a while.
        self.withheld = WithheldKinds()
        self.withheld_fields = WithheldFields()

    async def run_forever(self) -> None:
        attempt = 0
        while True:
            self.journal.changed.clear()
            try:
                left = await self.settle()
                attempt = 0
            except (ServerUnreachable, ServerRefused) as exc:
                # Refusals are retried too: the events must reach the history in the end.
                delay = full_jitter(attempt, self.backoff_cap_s)
                attempt += 1
                log.warning("broadcast report not delivered (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                continue
            except Exception:  # a bug or a disk error must not end reporting for good
                log.exception("broadcast reporting failed unexpectedly")
                await asyncio.sleep(self.backoff_cap_s)
                continue
            if left:
                self.settled.clear()
            else:
                self.settled.set()
            with suppress(TimeoutError):
                async with asyncio.timeout(self._idle_timeout(left)):
                    await self.journal.changed.wait()

    def _idle_timeout(self, left: bool) -> float | None:
        """How long to wait for news before the next pass (None: until there is news).

        A pass without a failed deletion starts the deletion pace over.
        """
        if not self._deletion_failed:
            self.deletion_backoff.succeeded()
            return RETRY_IDLE_S if left else None
        return min(self.deletion_backoff.failed(), RETRY_IDLE_S)

    async def settle(self) -> bool:
        """Sends everything unsent; True when something must wait (a running broadcast).

        Raises ServerUnreachable when the server is away: nothing else can go now.
        A report the server refuses holds up only its own broadcast.
        """
        left = False
        self._deletion_failed = False
        for b in await self.journal.unsettled():
            try:
                reported = await self._report(b)
            except ServerRefused as exc:
                log.error("the server refused the report of broadcast %s: %s", b.id, exc)
                reported = False
            if not reported:
                left = True
                continue
            if b.status != RUNNING and not b.source_done and not await self._finish_source(b):
                left = True
            if b.status == RUNNING:
                left = True
        return left

    async def _report(self, b: Broadcast) -> bool:
        """Sends the broadcast's unsent events; True once the server has all it can have now."""
        members = self._members.get(b.id)
        if members is None:
            members = {m.pbx_id: m for m in await self.journal.members(b.id)}
            self._members[b.id] = members
        acked = b.acked_seq
        while True:
            batch = fitting(await self.journal.events(b.id, acked, BATCH), members, self.hide)
            last = batch[-1].seq if batch else acked
            # Final only when this report carries the last event of a finished broadcast.
            final = b.status != RUNNING and last == await self.journal.last_seq(b.id)
            if not batch and (not final or b.final_acked):
                return True
            stored, sent_last = await self._send(b, members, batch, final)
            # Events left out for this server (report_compat.py) count as delivered.
            whole = stored >= sent_last
            await self.journal.acked(b.id, last if whole else stored, final and whole)
            if not whole:
                log.error("the server stored broadcast %s up to %d of %d", b.id, stored, last)
                return False
            acked = last
            if final:
                self._members.pop(b.id, None)
                return True

    async def _send(
        self, b: Broadcast, members: dict[str, Member], batch: list[Event], final: bool
    ) -> tuple[int, int]:
        """Reports `batch` without the kinds the server refused as unknown, and sends it
        again without a kind it refuses now; (the last number the server stored, the last
        one sent; 0, 0 when nothing had to go). Raises ServerRefused for other refusals."""
        while True:
            withheld = self.withheld.current()
            events = [e for e in batch if e.kind not in withheld]
            if not events and not final:
                return 0, 0
            stored = await self._post(b, members, events, final)
            if stored is None:
                continue
            return stored, events[-1].seq if events else 0

    async def _post(
        self, b: Broadcast, members: dict[str, Member], events: list[Event], final: bool
    ) -> int | None:
        """Sends one report without the fields withheld; the last number the server stored,
        or None when it refused an optional kind or field it does not know (learnt now:
        send again). Raises ServerRefused for other refusals."""
        report = report_json(b, members, events, final, self.hide, self.withheld_fields.current())
        try:
            return await self.server.report_broadcast(report)
        except ServerRefused as exc:
            # At most once per optional kind or field: each is learnt once, then left out.
            if self.withheld.learn(exc, {e.kind for e in events}) is not None:
                return None
            if self.withheld_fields.learn(exc, report) is not None:
                return None
            raise

    async def last_stored(self, b: Broadcast) -> int:
        """The last event number the server stored of the broadcast (0: none), asked with a
        report without events; raises ServerUnreachable or ServerRefused."""
        members = {m.pbx_id: m for m in await self.journal.members(b.id)}
        while True:
            stored = await self._post(b, members, [], False)
            if stored is not None:
                return stored

    async def _finish_source(self, b: Broadcast) -> bool:
        # Called only once the server acknowledged the finished broadcast's last event: it
        # holds the broadcast for good now, also while only memory holds it here (a full
        # disk). Keeping the job then would make a crash run the whole alarm again.
        if b.source == "job":
            if self.jobservice is None:
                return False
            try:
                await self.jobservice.delete_job(b.source_id)
            except JobServiceUnavailable as exc:
                # Only the deletion waits; reports of other broadcasts go on meanwhile.
                log.warning("job %s not deleted yet: %s", b.source_id, exc)
                self._deletion_failed = True
                return False
            except JobServiceRefused as exc:
                log.error("the job service refused to delete job %s: %s", b.source_id, exc)
                self._deletion_failed = True
                return False
        await self.journal.source_done(b.id)
        return True

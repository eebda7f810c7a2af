"""Broadcast reports from the agent: the history, idempotent by broadcast and event number.

The agent sends each call event once it happened, numbered from 1 per
broadcast; reports can repeat or overlap after a reconnect, so only events with a
number above the last stored one are applied, in order. An event of a kind this
service does not know (a newer agent's) is counted as stored and otherwise ignored
(`report_kinds.py`, docs/decisions/report-compatibility.md).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.db import after_commit
from api.domain import validation
from api.errors import BadInput
from api.models import (
    Broadcast,
    BroadcastGroup,
    BroadcastMode,
    BroadcastStatus,
    CallAttempt,
    CallOutcome,
    LateReason,
    PbxGroup,
)
from api.pubsub import tenant_events
from api.runtime import Runtime
from api.services import (
    broadcast_stop,
    known_secrets,
    mirror,
    notify,
    report_kinds,
    trigger_source,
)
from api.services.agents import Agent
from edge_agent.pbx import text as pbx_text

MAX_EVENTS = 2000


@dataclass(frozen=True)
class CallEventIn:
    seq: int
    member_pbx_id: str
    member_name: str
    member_extension: str | None
    attempt_no: int
    kind: str
    at: datetime
    outcome: CallOutcome | None = None
    detail: str | None = None
    # An attempt after the broadcast timeout, or a member not called: why (issue 14, 11).
    late_reason: LateReason | None = None
    late_from: datetime | None = None
    late_until: datetime | None = None


@dataclass(frozen=True)
class ReportIn:
    broadcast_id: str
    group_pbx_id: str
    mode: BroadcastMode
    started_at: datetime
    member_count: int
    status: BroadcastStatus
    trigger_caller_number: str | None = None
    trigger_caller_name: str | None = None
    quorum: int | None = None
    quorum_reached_at: datetime | None = None
    finished_at: datetime | None = None
    note: str | None = None
    events: list[CallEventIn] = field(default_factory=list)
    # PHONE, SIP or WEBSITE; None from an agent older than the field (trigger_source.py).
    trigger_source: str | None = None
    # Who stopped the broadcast, how and when (issue 17); None: not stopped.
    stop: broadcast_stop.StopIn | None = None


# The columns' sizes (api/models/history.py): a longer text fails on PostgreSQL only, and
# as "Unexpected error". The agent cuts its texts to these (edge_agent/broadcast/reporter.py);
# the input guard refuses longer ones naming the field (schema/input_limits.py).
BROADCAST_ID_MAX = 64
REPORT_TEXTS = (
    ("group_pbx_id", "groupPbxId", 64),  # the group's name when the mirror lacks it
    ("trigger_caller_number", "triggerCallerNumber", 64),
    ("trigger_caller_name", "triggerCallerName", 200),
    ("trigger_source", "triggerSource", trigger_source.NAME_MAX),
)
EVENT_TEXTS = (
    ("member_pbx_id", "memberPbxId", 64),
    ("member_name", "memberName", 200),
    ("member_extension", "memberExtension", 32),
)


def _check_lengths(report: ReportIn) -> None:
    for attribute, name, limit in REPORT_TEXTS:
        value = getattr(report, attribute)
        if value is not None and len(value) > limit:
            raise BadInput(f"at most {limit} characters", field=name)
    for i, event in enumerate(report.events):
        for attribute, name, limit in EVENT_TEXTS:
            value = getattr(event, attribute)
            if value is not None and len(value) > limit:
                raise BadInput(f"at most {limit} characters", field=f"events.{i}.{name}")


def _check(report: ReportIn) -> None:
    if not 1 <= len(report.broadcast_id) <= BROADCAST_ID_MAX:
        raise BadInput("1 to 64 characters", field="broadcastId")
    _check_lengths(report)
    trigger_source.parse(report.trigger_source)  # refuses a value that is no name
    if len(report.events) > MAX_EVENTS:
        raise BadInput(f"at most {MAX_EVENTS} events per report", field="events")
    seqs = [e.seq for e in report.events]
    if seqs != sorted(set(seqs)) or (seqs and seqs[0] < 1):
        raise BadInput("events must be numbered from 1 upwards, each once", field="events")
    for i, event in enumerate(report.events):
        # A kind this service does not know is ignored (report_kinds.py); one that is no
        # name is refused. Whether an outcome belongs to it is known for known kinds only.
        if not report_kinds.well_formed(event.kind):
            words = "an event kind is a name of up to 32 letters and digits"
            raise BadInput(words, field=f"events.{i}.kind")
        ended = event.kind == "ended"
        if report_kinds.known(event.kind) and ended != (event.outcome is not None):
            raise BadInput("an outcome comes with the ended event only", field="events")
        if event.at.tzinfo is None or not 1 <= event.attempt_no <= 100:
            raise BadInput("event times need a zone; attempts run 1 to 100", field="events")
        late_times = (event.late_from, event.late_until)
        if any(t is not None and t.tzinfo is None for t in late_times):
            raise BadInput("event times need a zone", field="events")
        if event.late_reason is None and late_times != (None, None):
            raise BadInput("an outage comes with a late reason only", field="events")


async def report(rt: Runtime, agent: Agent, report: ReportIn) -> int:
    """Stores what is new in the report; returns the last event number now stored."""
    _check(report)
    report = _cleaned(report, rt.clock())
    source = trigger_source.parse(report.trigger_source)
    async with rt.db.transaction() as session:
        broadcast = await session.scalar(
            select(Broadcast)
            .where(
                Broadcast.tenant_id == agent.tenant_id,
                Broadcast.agent_broadcast_id == report.broadcast_id,
            )
            .with_for_update()
        )
        if broadcast is None:
            group = await session.scalar(
                select(PbxGroup).where(
                    PbxGroup.tenant_id == agent.tenant_id, PbxGroup.pbx_id == report.group_pbx_id
                )
            )
            bg = (
                await session.scalar(
                    select(BroadcastGroup).where(BroadcastGroup.group_id == group.id)
                )
                if group
                else None
            )
            broadcast = Broadcast(
                id=uuid.uuid4(),
                tenant_id=agent.tenant_id,
                installation_id=agent.installation_id,
                broadcast_group_id=bg.id if bg else None,
                agent_broadcast_id=report.broadcast_id,
                group_name=group.name if group else report.group_pbx_id,
                mode=int(report.mode),
                started_at=report.started_at,
                status=report.status,
                last_event_seq=0,
                trigger_source=source
                or await trigger_source.derived(session, agent.tenant_id, report.broadcast_id),
            )
            session.add(broadcast)
            await session.flush()
        elif source is not None:
            broadcast.trigger_source = source
        # A finished broadcast stays finished, whatever a late report says.
        if broadcast.finished_at is None:
            broadcast.status = report.status
            broadcast.finished_at = report.finished_at
        broadcast_stop.apply(broadcast, report.stop, rt.clock())
        broadcast.member_count = report.member_count
        broadcast.quorum = report.quorum
        broadcast.quorum_reached_at = broadcast.quorum_reached_at or report.quorum_reached_at
        broadcast.trigger_caller_number = report.trigger_caller_number
        broadcast.trigger_caller_name = report.trigger_caller_name
        unseen = [e for e in report.events if e.seq > broadcast.last_event_seq]
        # Events of kinds unknown here count as stored: the agent must not send them again.
        new = [e for e in unseen if report_kinds.known(e.kind)]
        note, new = await _scrubbed(rt, session, agent, report.note, new)
        broadcast.note = sticky_note(broadcast.note, note)
        if new:
            await _apply_all(session, agent, broadcast, new)
        if unseen:
            broadcast.last_event_seq = unseen[-1].seq
        ignored = [e.kind for e in unseen if not report_kinds.known(e.kind)]
        last_seq, broadcast_id = broadcast.last_event_seq, broadcast.id
        after_commit(
            session,
            lambda: rt.hub.publish(
                tenant_events(agent.tenant_id), notify.event("broadcast", broadcast_id)
            ),
        )
    report_kinds.ignored(ignored)  # counted once stored, not per attempt
    return last_seq


# What is kept of a failure's words from the PBX (PowerShell, SIP) and of a note; the
# agent sends at most 500 and 4000 (edge_agent/broadcast/reporter.py).
DETAIL_MAX = 2000
NOTE_MAX = 4000


def _cleaned(report: ReportIn, now: datetime) -> ReportIn:
    """Every reported time between 2000 and a day ahead (validation.moment), in UTC; the
    texts from the PBX cleaned as the mirror cleans them (edge_agent/pbx/text.py), never
    refused: an agent older than its own cleaning must still get its calls into the
    history. The failure's words are cut, the names the guard has measured already."""

    def at(value: datetime | None, field: str) -> datetime | None:
        return None if value is None else validation.moment(value, field, now)

    def clean(value: str | None, limit: int) -> str | None:
        # The agent's rule first (line breaks become spaces), then whatever else the
        # guard refuses elsewhere (noncharacters, tags): stored text is safe text.
        return None if value is None else validation.replace_unsafe(pbx_text.clean(value, limit))

    events = [
        replace(
            e,
            at=validation.moment(e.at, f"events.{i}.at", now),
            late_from=at(e.late_from, f"events.{i}.lateFrom"),
            late_until=at(e.late_until, f"events.{i}.lateUntil"),
            member_name=clean(e.member_name, pbx_text.NAME_MAX) or "",
            detail=clean(e.detail, DETAIL_MAX),
        )
        for i, e in enumerate(report.events)
    ]
    return replace(
        report,
        started_at=validation.moment(report.started_at, "startedAt", now),
        finished_at=at(report.finished_at, "finishedAt"),
        quorum_reached_at=at(report.quorum_reached_at, "quorumReachedAt"),
        trigger_caller_name=clean(report.trigger_caller_name, pbx_text.NAME_MAX),
        note=clean(report.note, NOTE_MAX),
        events=events,
    )


async def _scrubbed(
    rt: Runtime,
    session: AsyncSession,
    agent: Agent,
    note: str | None,
    new: list[CallEventIn],
) -> tuple[str | None, list[CallEventIn]]:
    """The note and the new events' details without the tenant's secrets (viewers read
    them). Only what is stored: a detail is kept with the ended event alone, and events
    stored before (a resent report) are not scrubbed again."""
    stored = [i for i, e in enumerate(new) if e.kind == "ended" and e.detail]
    if note is None and not stored:
        return note, new
    clean = await known_secrets.for_tenant(rt, session, agent.tenant_id)
    events = list(new)
    for i in stored:
        events[i] = replace(new[i], detail=clean.optional(new[i].detail))
    return clean.optional(note), events


COLUMNS = {
    "started": "started_at",
    "ringing": "ringing_at",
    "answered": "answered_at",
    # A member may hold and resume several times: the latest of each is kept.
    "held": "held_at",
    "resumed": "resumed_at",
    "confirmed": "confirmed_at",
    "ended": "ended_at",
}


# Note parts that stay once reported: the agent sends them while its journal is behind and
# may lose them in a crash (a report after the restart would drop them).
STICKY_NOTES = ("journalNotWritable",)


def sticky_note(old: str | None, new: str | None) -> str | None:
    """The report's note, keeping a sticky part an earlier report carried."""
    kept = [
        c for c in STICKY_NOTES if old and c in old.split("; ") and c not in (new or "").split("; ")
    ]
    return "; ".join(filter(None, [new, *kept])) or None


async def _apply_all(
    session: AsyncSession, agent: Agent, broadcast: Broadcast, events: list[CallEventIn]
) -> None:
    """Applies events in order with two reads, however many there are.

    A report of a large alarm carries hundreds of events: one lookup per event
    would leave the live history seconds behind the calls.
    """
    attempts = {
        (a.member_pbx_id, a.attempt_no): a
        for a in await session.scalars(
            select(CallAttempt).where(
                CallAttempt.broadcast_id == broadcast.id,
                CallAttempt.member_pbx_id.in_({e.member_pbx_id[:64] for e in events}),
            )
        )
    }
    missing = {
        e.member_pbx_id for e in events if (e.member_pbx_id[:64], e.attempt_no) not in attempts
    }
    users = await mirror.pbx_user_ids(session, agent.tenant_id, missing)
    for event in events:
        key = (event.member_pbx_id[:64], event.attempt_no)
        attempt = attempts.get(key)
        if attempt is None:
            attempt = CallAttempt(
                tenant_id=agent.tenant_id,
                broadcast_id=broadcast.id,
                member_user_id=users.get(event.member_pbx_id),
                member_pbx_id=event.member_pbx_id[:64],
                member_name=event.member_name[:200],
                member_extension=(event.member_extension or "")[:32] or None,
                attempt_no=event.attempt_no,
            )
            session.add(attempt)
            attempts[key] = attempt
        elif event.kind == "ended" and attempt.outcome is not None:
            # The attempt ended already: a second end comes from an agent that lost its
            # memory in a crash (a full disk) and ends the attempt "interrupted". The first
            # end happened; it stays (a confirmation is never undone).
            continue
        setattr(attempt, COLUMNS[event.kind], event.at)
        if event.late_reason is not None:
            attempt.late_reason = event.late_reason
            attempt.late_from = event.late_from
            attempt.late_until = event.late_until
        if event.kind == "ended":
            attempt.outcome = event.outcome
            attempt.detail = (event.detail or "")[:DETAIL_MAX] or None
    await session.flush()

from __future__ import annotations

from datetime import datetime

import strawberry

from api import models
from api.domain.broadcast_outcome import outcome_of
from schema.enums import (
    BroadcastMode,
    BroadcastOutcome,
    BroadcastStatus,
    CallOutcome,
    LateReason,
    TriggerSource,
)
from schema.info import Info
from schema.pbx.types import PbxUser
from schema.platform.types import gid


@strawberry.type
class CallAttempt:
    id: strawberry.ID
    member_name: str
    member_extension: str | None
    attempt_no: int
    started_at: datetime | None
    ringing_at: datetime | None
    answered_at: datetime | None
    held_at: datetime | None = strawberry.field(
        description="When the member last put the call on hold (later than resumedAt: the "
        "call ended on hold)."
    )
    resumed_at: datetime | None = strawberry.field(
        description="When the member last took the call back from hold; the message then "
        "played again from its start."
    )
    confirmed_at: datetime | None
    ended_at: datetime | None
    outcome: CallOutcome | None
    detail: str | None
    late_reason: LateReason | None = strawberry.field(
        description="Set when the attempt began after the broadcast timeout (an alarm calls "
        "every member once, however late), or with NOT_CALLED: why."
    )
    late_from: datetime | None = strawberry.field(
        description="When the outage behind it began (the alarm, or the agent's last sign)."
    )
    late_until: datetime | None = strawberry.field(
        description="When the outage ended: the agent took the broadcast up."
    )
    _member_id: strawberry.Private[object]

    @classmethod
    def of(cls, a: models.CallAttempt) -> CallAttempt:
        return cls(
            id=gid(a.id),
            member_name=a.member_name,
            member_extension=a.member_extension,
            attempt_no=a.attempt_no,
            started_at=a.started_at,
            ringing_at=a.ringing_at,
            answered_at=a.answered_at,
            held_at=a.held_at,
            resumed_at=a.resumed_at,
            confirmed_at=a.confirmed_at,
            ended_at=a.ended_at,
            outcome=a.outcome,
            detail=a.detail,
            late_reason=a.late_reason,
            late_from=a.late_from,
            late_until=a.late_until,
            _member_id=a.member_user_id,
        )

    @strawberry.field(description="The PBX user called, while they still exist.")
    async def member(self, info: Info) -> PbxUser | None:
        if self._member_id is None:
            return None
        user = await info.context.loaders.pbx_user.load(self._member_id)  # type: ignore[arg-type]
        return PbxUser.of(user) if user else None


@strawberry.type
class BroadcastGroupRef:
    id: strawberry.ID = strawberry.field(description="The PBX group's id.")
    agent_extension: str


@strawberry.type
class Broadcast:
    id: strawberry.ID
    group_name: str
    mode: BroadcastMode
    status: BroadcastStatus
    trigger_caller_number: str | None
    trigger_caller_name: str | None
    trigger_source: TriggerSource = strawberry.field(
        description="How the alarm was raised: PHONE (a trigger call through the PBX's "
        "call routing), SIP (a call the agent answered itself), WEBSITE (triggerBroadcast). "
        "Broadcasts reported before agents said so: WEBSITE for the website's triggers "
        "known by their command, PHONE for the rest."
    )
    started_at: datetime
    finished_at: datetime | None
    member_count: int
    quorum: int | None
    quorum_reached_at: datetime | None
    note: str | None
    failure_code: str | None = strawberry.field(
        description="Set when the trigger never became a broadcast (or none was reported): "
        "JOB_FILE_DAMAGED (the job service could not read the accepted alarm's file, named "
        "in note) or "
        "AGENT_UNREACHABLE (the agent did not take the triggerBroadcast up before it "
        "expired; note: the agent's last heartbeat as an ISO time, null if none) or "
        "OUTCOME_UNKNOWN (the triggerBroadcast was handed to the agent but no outcome came "
        "before it expired: whether anyone was called is unknown; note as for "
        "AGENT_UNREACHABLE; a later success replaces the row by the broadcast's own)."
    )
    stopped_at: datetime | None = strawberry.field(
        description="When the broadcast was stopped before its end (status CANCELLED)."
    )
    stopped_by: str | None = strawberry.field(
        description="Who stopped it: the user's name and mail (WEBSITE) or the caller's "
        "number (PHONE, SIP); null when not known."
    )
    stopped_via: TriggerSource | None = strawberry.field(
        description="How: WEBSITE (cancelBroadcast), PHONE (the menu's 0 through the call "
        "routing), SIP (the menu's 0 on the agent's own line)."
    )
    stop_reason: str | None = strawberry.field(description="The reason the website gave.")
    _id: strawberry.Private[object]
    _bg_id: strawberry.Private[object]

    @classmethod
    def of(cls, b: models.Broadcast) -> Broadcast:
        return cls(
            id=gid(b.id),
            group_name=b.group_name,
            mode=models.BroadcastMode(b.mode),
            status=b.status,
            trigger_caller_number=b.trigger_caller_number,
            trigger_caller_name=b.trigger_caller_name,
            trigger_source=b.trigger_source,
            started_at=b.started_at,
            finished_at=b.finished_at,
            member_count=b.member_count,
            quorum=b.quorum,
            quorum_reached_at=b.quorum_reached_at,
            note=b.note,
            failure_code=b.failure_code,
            stopped_at=b.stopped_at,
            stopped_by=b.stopped_by,
            stopped_via=b.stopped_via,
            stop_reason=b.stop_reason,
            _id=b.id,
            _bg_id=b.broadcast_group_id,
        )

    @strawberry.field(description="The broadcast group, while it still is one.")
    async def group(self, info: Info) -> BroadcastGroupRef | None:
        if self._bg_id is None:
            return None
        bg = await info.context.loaders.broadcast_group.load(self._bg_id)  # type: ignore[arg-type]
        if bg is None:
            return None
        return BroadcastGroupRef(id=gid(bg.group_id), agent_extension=bg.agent_extension)

    @strawberry.field(
        description="Members with a confirmed attempt: with memberCount the list's "
        '"15/20 confirmed".'
    )
    async def confirmed_count(self, info: Info) -> int:
        count: int = await info.context.loaders.confirmed_counts.load(self._id)  # type: ignore[arg-type]
        return count

    @strawberry.field(
        description="How it went: RUNNING; ALL_CONFIRMED; QUORUM_REACHED; UNCONFIRMED "
        "(finished with members who never confirmed, no quorum); FAILED (also a trigger that "
        "never became a broadcast); CANCELLED."
    )
    async def outcome(self, info: Info) -> BroadcastOutcome:
        confirmed = await self.confirmed_count(info)
        return outcome_of(
            self.status, self.failure_code, self.quorum_reached_at, confirmed, self.member_count
        )

    @strawberry.field(description="Every call attempt, by member and attempt number.")
    async def attempts(self, info: Info) -> list[CallAttempt]:
        rows = await info.context.loaders.attempts.load(self._id)  # type: ignore[arg-type]
        return [CallAttempt.of(a) for a in rows]


@strawberry.type
class PageInfo:
    end_cursor: str | None
    has_next_page: bool


@strawberry.type
class BroadcastConnection:
    nodes: list[Broadcast]
    page_info: PageInfo


@strawberry.input
class BroadcastFilter:
    group_id: strawberry.ID | None = None
    mode: BroadcastMode | None = None
    started_from: datetime | None = None
    started_to: datetime | None = strawberry.field(
        default=None, description="Exclusive; must lie after startedFrom."
    )
    outcome: BroadcastOutcome | None = None

"""Broadcasts and their call attempts: the history the website shows."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, SmallInteger, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from api.models.base import Base, IdMixin, str_enum
from api.models.enums import BroadcastStatus, CallOutcome, LateReason, TriggerSource


class Broadcast(IdMixin, Base):
    __tablename__ = "broadcast"
    __table_args__ = (
        Index("ix_broadcast_tenant_started", "tenant_id", "started_at"),
        # The agent's own id for the broadcast makes its reports idempotent.
        UniqueConstraint("tenant_id", "agent_broadcast_id"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenant.id"))
    broadcast_group_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("broadcast_group.id", ondelete="SET NULL"), index=True
    )
    installation_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("installation.id"))
    agent_broadcast_id: Mapped[str] = mapped_column(String(64))
    # Kept as it was at the time, in case the group is renamed or removed.
    group_name: Mapped[str] = mapped_column(String(200))
    mode: Mapped[int] = mapped_column(SmallInteger)  # BroadcastMode
    trigger_caller_number: Mapped[str | None] = mapped_column(String(64))
    trigger_caller_name: Mapped[str | None] = mapped_column(String(200))
    triggered_by_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("app_user.id"))
    # How the alarm was raised (the agent says; an older agent's: derived, see
    # api/services/trigger_source.py).
    trigger_source: Mapped[TriggerSource] = mapped_column(
        str_enum(TriggerSource, "trigger_source"), default=TriggerSource.PHONE
    )
    status: Mapped[BroadcastStatus] = mapped_column(str_enum(BroadcastStatus, "broadcast_status"))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    member_count: Mapped[int] = mapped_column(default=0)
    quorum: Mapped[int | None]
    quorum_reached_at: Mapped[datetime | None]
    last_event_seq: Mapped[int] = mapped_column(default=0)
    note: Mapped[str | None] = mapped_column(Text)
    # Set when the trigger never became a broadcast (JOB_FILE_DAMAGED): the website
    # words it; None for every broadcast that ran.
    failure_code: Mapped[str | None] = mapped_column(String(32))
    # A stop (issue 17): when, by whom (a user's "name <mail>", or the caller's number),
    # how (the website, a trigger call through the call routing, the agent's SIP line),
    # and the reason the website gave. Reported by the agent, which acted on it.
    stopped_at: Mapped[datetime | None]
    stopped_by: Mapped[str | None] = mapped_column(String(200))
    stopped_via: Mapped[TriggerSource | None] = mapped_column(
        str_enum(TriggerSource, "stopped_via")
    )
    stop_reason: Mapped[str | None] = mapped_column(String(500))


class CallAttempt(IdMixin, Base):
    __tablename__ = "call_attempt"
    __table_args__ = (
        UniqueConstraint("broadcast_id", "member_pbx_id", "attempt_no"),
        # The list's confirmedCount and its outcome filter count these (issue 17, point 4).
        Index(
            "ix_call_attempt_confirmed",
            "broadcast_id",
            "member_pbx_id",
            postgresql_where=text("outcome = 'confirmed'"),
            sqlite_where=text("outcome = 'confirmed'"),
        ),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenant.id"), index=True)
    broadcast_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("broadcast.id", ondelete="CASCADE"), index=True
    )
    member_user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("pbx_user.id", ondelete="SET NULL"), index=True
    )
    member_pbx_id: Mapped[str] = mapped_column(String(64))
    member_name: Mapped[str] = mapped_column(String(200))
    member_extension: Mapped[str | None] = mapped_column(String(32))
    attempt_no: Mapped[int] = mapped_column(SmallInteger)
    started_at: Mapped[datetime | None]
    ringing_at: Mapped[datetime | None]
    answered_at: Mapped[datetime | None]
    # The member's latest hold and return of the call (issue 15, point 7); a hold after the
    # latest return means the call ended on hold.
    held_at: Mapped[datetime | None]
    resumed_at: Mapped[datetime | None]
    confirmed_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    outcome: Mapped[CallOutcome | None] = mapped_column(str_enum(CallOutcome, "call_outcome"))
    detail: Mapped[str | None] = mapped_column(Text)
    # Set when the attempt began after the broadcast timeout (an alarm calls every member
    # once, late if need be), or with NOT_CALLED: why; from/until the agent's outage.
    late_reason: Mapped[LateReason | None] = mapped_column(str_enum(LateReason, "late_reason"))
    late_from: Mapped[datetime | None]
    late_until: Mapped[datetime | None]

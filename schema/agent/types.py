from __future__ import annotations

from datetime import datetime
from typing import cast

import strawberry
from strawberry.scalars import JSON

from api.domain.health import SipErrorIn, SipRegistrationIn
from api.services.agents import Delivery
from schema.enums import BroadcastMode, BroadcastStatus, CallOutcome, Language, LateReason
from schema.platform.types import gid


@strawberry.type(description="A command for the agent, with the secrets it needs to carry it out.")
class AgentCommand:
    id: strawberry.ID
    type: str
    payload: JSON
    secrets: JSON
    created_at: datetime
    expires_at: datetime = strawberry.field(description="After this the server gives up on it.")
    server_time: datetime = strawberry.field(
        description="The server's clock as it sent the command: createdAt and expiresAt "
        "are measured against it, so a skewed agent clock does not age the command."
    )

    @classmethod
    def of(cls, d: Delivery) -> AgentCommand:
        return cls(
            id=gid(d.command.id),
            type=d.command.type,
            payload=cast(JSON, d.command.payload),
            secrets=cast(JSON, d.secrets),
            created_at=d.command.created_at,
            expires_at=d.command.expires_at,
            server_time=d.sent_at,
        )


@strawberry.type
class Enrolment:
    installation_id: strawberry.ID
    tenant_name: str
    token: str = strawberry.field(description="Shown this once; only its hash is stored.")


@strawberry.input(description="The SIP dialer's last registration error.")
class SipErrorInput:
    code: str = strawberry.field(
        description="refused, credentialsRefused, timeout, challengeUnsupported, network, "
        "unresolvable or internal (letters and digits, at most 32)."
    )
    params: JSON | None = strawberry.field(
        default=None,
        description='What the code\'s words need, e.g. {status: 403, reason: "Forbidden"}: '
        "at most 8 entries, texts up to 100 characters or whole numbers.",
    )
    detail: str | None = strawberry.field(default=None, description="At most 200 characters.")
    at: datetime


@strawberry.input(description="The SIP dialer's registration at the PBX.")
class SipRegistrationInput:
    state: str = strawberry.field(description="registering, registered, failed or disabled.")
    since: datetime = strawberry.field(description="When it entered this state.")
    last_error: SipErrorInput | None = strawberry.field(
        default=None, description="Kept after a later success."
    )


@strawberry.input
class HealthInput:
    agent_version: str
    pbx_reachable: bool
    jobservice_reachable: bool | None = None
    alarm_service_ok: bool
    participant_count: int
    reported_at: datetime = strawberry.field(description="The agent's clock at the report.")
    pbx_adapter: str | None = strawberry.field(
        default=None, description="The PBX adapter the agent runs: sim or swyx."
    )
    dialer: str | None = strawberry.field(
        default=None, description="How the agent calls: sim or sip."
    )
    sip_registration: SipRegistrationInput | None = strawberry.field(
        default=None, description="With the SIP dialer only."
    )
    journal_writable: bool | None = strawberry.field(
        default=None,
        description="False while the broadcast journal cannot be written (a full disk, "
        "say) and broadcasts run from memory; null from an older agent.",
    )

    def registration(self) -> SipRegistrationIn | None:
        value = self.sip_registration
        if value is None:
            return None
        error = value.last_error
        return SipRegistrationIn(
            state=value.state,
            since=value.since,
            last_error=SipErrorIn(error.code, error.at, error.params, error.detail)
            if error
            else None,
        )


@strawberry.type
class HealthAck:
    poll_interval_seconds: int = strawberry.field(description="When to report next.")
    language: Language = strawberry.field(
        description="The tenant's language: the agent's own trigger-call line speaks it "
        "(a change is pushed at once by updateSettings as well)."
    )


@strawberry.type(description="The PBX directory mirror changed; refetch what you show.")
class DirectoryChange:
    at: datetime


@strawberry.input
class CallEventInput:
    seq: int = strawberry.field(description="From 1 upwards per broadcast; repeats are ignored.")
    member_pbx_id: str
    member_name: str
    member_extension: str | None = None
    attempt_no: int
    kind: str = strawberry.field(
        description="started, ringing, answered, held, resumed, confirmed or ended. A kind "
        "this service does not know (a newer agent's) counts as stored and is ignored."
    )
    at: datetime
    outcome: CallOutcome | None = strawberry.field(default=None, description="With ended only.")
    detail: str | None = None
    late_reason: LateReason | None = strawberry.field(
        default=None,
        description="Why the attempt began after the broadcast timeout (on started), or why "
        "the member was not called (on ended with NOT_CALLED).",
    )
    late_from: datetime | None = strawberry.field(
        default=None, description="When the outage behind a late attempt began, if known."
    )
    late_until: datetime | None = strawberry.field(
        default=None, description="When it ended (the agent took the broadcast up again)."
    )


@strawberry.input(description="Who stopped a running broadcast, how and when (issue 17).")
class BroadcastStopInput:
    via: str = strawberry.field(
        description="PHONE (the menu's 0 through the call routing), SIP (the menu's 0 on the "
        "agent's own line) or WEBSITE (cancelBroadcast)."
    )
    at: datetime
    by: str | None = strawberry.field(
        default=None,
        description="The user's name and mail (WEBSITE) or the caller's number (by phone).",
    )
    reason: str | None = strawberry.field(default=None, description="What the website gave.")


@strawberry.input
class BroadcastReportInput:
    broadcast_id: str = strawberry.field(description="The agent's own id for the broadcast.")
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
    events: list[CallEventInput] = strawberry.field(default_factory=list)
    trigger_source: str | None = strawberry.field(
        default=None,
        description="How the alarm was raised: PHONE (a trigger call through the call "
        "routing and the job service), SIP (a call the agent answered itself) or WEBSITE "
        "(triggerBroadcast). A name this service does not know is ignored and, like a "
        "report without it, leaves the source derived: WEBSITE when a triggerBroadcast's "
        "result names the broadcast, else PHONE.",
    )
    stop: BroadcastStopInput | None = strawberry.field(
        default=None, description="Set once the broadcast was stopped (status CANCELLED)."
    )


@strawberry.type
class BroadcastAck:
    last_seq: int = strawberry.field(description="Events up to this number are stored.")


@strawberry.input(description="A notice from the PBX's call routing, forwarded by the agent.")
class NoticeInput:
    notice_id: str = strawberry.field(
        description="The job service's id for the notice (1 to 64 characters); repeats are ignored."
    )
    kind: str = strawberry.field(
        description="wrongPins (10 wrong PINs for one group) or jobFileDamaged (an accepted "
        "alarm whose file the job service could not read: it never ran)."
    )
    agent_number: str | None = strawberry.field(
        default=None, description="The broadcast group's number that was called."
    )
    caller_number: str | None = strawberry.field(
        default=None, description="The number of the last wrong PIN; none when withheld."
    )
    count: int
    at: datetime = strawberry.field(
        description="wrongPins: the last wrong PIN; jobFileDamaged: when the alarm was triggered."
    )
    file_name: str | None = strawberry.field(
        default=None, description="jobFileDamaged: the quarantined file's name (required)."
    )
    mode: int | None = strawberry.field(
        default=None, description="jobFileDamaged: the mode the damaged file still shows (1-3)."
    )


@strawberry.type
class NoticeAck:
    stored: bool = strawberry.field(description="False when this notice had been stored before.")

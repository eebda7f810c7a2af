from __future__ import annotations

import uuid
from datetime import datetime
from typing import cast

import strawberry
from strawberry.scalars import JSON

from api import models
from api.services import connection, directory
from schema.enums import (
    AnnouncementKind,
    AnnouncementSource,
    AnnouncementStatus,
    CommandStatus,
    PbxUserState,
    VerificationState,
)
from schema.info import Info
from schema.platform.types import AgentConnection, gid


@strawberry.type
class PbxSettings:
    host: str | None
    admin_user: str | None
    admin_password_set: bool = strawberry.field(description="The password itself is write-only.")
    poll_interval_seconds: int
    broadcast_timeout_seconds: int
    verification_state: VerificationState
    verification_error: str | None
    verified_at: datetime | None

    @classmethod
    def of(cls, s: models.PbxSettings) -> PbxSettings:
        return cls(
            host=s.host,
            admin_user=s.admin_user,
            admin_password_set=s.admin_password_sealed is not None,
            poll_interval_seconds=s.poll_interval_seconds,
            broadcast_timeout_seconds=s.broadcast_timeout_seconds,
            verification_state=s.verification_state,
            verification_error=s.verification_error,
            verified_at=s.verified_at,
        )


@strawberry.type(description="A change on its way to the PBX through the agent.")
class Command:
    id: strawberry.ID
    type: str
    status: CommandStatus
    payload: JSON = strawberry.field(description="What the agent is asked to do (no secrets).")
    result: JSON | None
    error: str | None
    created_at: datetime
    delivered_at: datetime | None
    completed_at: datetime | None
    expires_at: datetime
    _tenant_id: strawberry.Private[uuid.UUID]

    @classmethod
    def of(cls, c: models.Command) -> Command:
        return cls(
            id=gid(c.id),
            type=c.type,
            status=c.status,
            payload=cast(JSON, c.payload),
            result=cast(JSON, c.result),
            error=c.error,
            created_at=c.created_at,
            delivered_at=c.delivered_at,
            completed_at=c.completed_at,
            expires_at=c.expires_at,
            _tenant_id=c.tenant_id,
        )

    @strawberry.field(
        description="The tenant's agent now: unless CONNECTED the command waits for it "
        "until expiresAt. A broadcast trigger that expires before any agent received it "
        "leaves a FAILED broadcast (failureCode AGENT_UNREACHABLE) and a mail to the "
        "tenant; one the agent received but gave no outcome for by then, a FAILED "
        "broadcast (failureCode OUTCOME_UNKNOWN) and a mail; a later success replaces "
        "it by the broadcast's report."
    )
    async def agent_connection(self, info: Info) -> AgentConnection:
        actor = await info.context.actor()
        agent = await connection.of_tenant(info.context.rt, actor, self._tenant_id)
        return AgentConnection.of(agent)


@strawberry.type
class PbxUser:
    id: strawberry.ID
    name: str
    extension: str | None
    description: str | None
    state: PbxUserState | None
    callrouting_only: bool

    @classmethod
    def of(cls, u: models.PbxUser) -> PbxUser:
        return cls(
            id=gid(u.id),
            name=u.name,
            extension=u.extension,
            description=u.description,
            state=models.PbxUserState(u.state) if u.state is not None else None,
            callrouting_only=u.callrouting_only,
        )


@strawberry.type
class Announcement:
    id: strawberry.ID
    kind: AnnouncementKind
    source: AnnouncementSource
    status: AnnouncementStatus
    duration_ms: int | None
    sha256: str | None = strawberry.field(
        description="SHA-256 of the audio as uploaded or synthesised (downloadUrl)."
    )
    text: str | None
    language: str | None
    error: str | None
    updated_at: datetime
    download_url: str | None = strawberry.field(
        description="The audio as uploaded or synthesised; authenticated like the API "
        "(cookie or bearer token)."
    )
    telephony_url: str | None = strawberry.field(
        description="The telephony master made of it (WAV, PCM 16-bit, mono, 8 kHz): "
        "exactly what the agent plays to members. Authenticated like downloadUrl."
    )

    @classmethod
    def of(cls, a: models.Announcement) -> Announcement:
        return cls(
            id=gid(a.id),
            kind=a.kind,
            source=a.source,
            status=a.status,
            duration_ms=a.duration_ms,
            sha256=a.sha256,
            text=a.tts_text,
            language=a.tts_language,
            error=a.error,
            updated_at=a.updated_at,
            download_url=f"/api/audio/{a.audio_id}" if a.audio_id else None,
            telephony_url=f"/api/audio/{a.telephony_id}" if a.telephony_id else None,
        )


@strawberry.type(description="The agent user that makes a group a broadcast group.")
class BroadcastAgent:
    name: str
    extension: str
    pin: str | None = strawberry.field(description="Shown to the tenant's administrators only.")
    quorum: int | None
    repetitions: int
    _id: strawberry.Private[object]

    @strawberry.field
    async def announcements(self, info: Info) -> list[Announcement]:
        rows = await info.context.loaders.announcements.load(self._id)  # type: ignore[arg-type]
        return [Announcement.of(a) for a in rows]


@strawberry.type
class Group:
    id: strawberry.ID
    name: str
    description: str | None
    _id: strawberry.Private[object]

    @classmethod
    def of(cls, g: models.PbxGroup) -> Group:
        return cls(id=gid(g.id), name=g.name, description=g.description, _id=g.id)

    @strawberry.field
    async def members(self, info: Info) -> list[PbxUser]:
        rows = await info.context.loaders.members.load(self._id)  # type: ignore[arg-type]
        return [PbxUser.of(u) for u in rows]

    @strawberry.field(description="Set when the group is a broadcast group.")
    async def broadcast(self, info: Info) -> BroadcastAgent | None:
        bg = await info.context.loaders.broadcast_group_of.load(self._id)  # type: ignore[arg-type]
        if bg is None:
            return None
        actor = await info.context.actor()
        return BroadcastAgent(
            name=bg.agent_name,
            extension=bg.agent_extension,
            pin=directory.reveal_pin(info.context.rt, actor, bg),
            quorum=bg.quorum,
            repetitions=bg.repetitions,
            _id=bg.id,
        )


@strawberry.type
class PbxSettingsChange:
    settings: PbxSettings
    command: Command | None = strawberry.field(
        description="Sent when the agent must learn of the change (or check the credentials)."
    )


@strawberry.type
class AnnouncementChange:
    announcement: Announcement
    command: Command | None


@strawberry.input
class PbxSettingsInput:
    host: str | None = None
    admin_user: str | None = None
    admin_password: str | None = strawberry.field(default=None, description="Write-only.")
    poll_interval_seconds: int | None = None
    broadcast_timeout_seconds: int | None = None

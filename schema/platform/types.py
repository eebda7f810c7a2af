from __future__ import annotations

import uuid
from datetime import datetime

import strawberry

from api import models
from schema.enums import Language, Role
from schema.info import Info
from schema.ops.types import Incident


def gid(value: object) -> strawberry.ID:
    return strawberry.ID(str(value))


@strawberry.type
class Tenant:
    id: strawberry.ID
    name: str
    language: Language
    contact_email: str | None
    active: bool
    created_at: datetime
    deactivated_at: datetime | None

    @classmethod
    def of(cls, t: models.Tenant) -> Tenant:
        return cls(
            id=gid(t.id),
            name=t.name,
            language=t.language,
            contact_email=t.contact_email,
            active=t.active,
            created_at=t.created_at,
            deactivated_at=t.deactivated_at,
        )


@strawberry.type
class License:
    id: strawberry.ID
    tenant_id: strawberry.ID
    key_prefix: str = strawberry.field(
        description="The key's first characters, to tell keys apart."
    )
    seats: int = strawberry.field(description="Most participants (members of broadcast groups).")
    valid_until: datetime
    revoked_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, lic: models.License) -> License:
        return cls(
            id=gid(lic.id),
            tenant_id=gid(lic.tenant_id),
            key_prefix=lic.key_prefix,
            seats=lic.seats,
            valid_until=lic.valid_until,
            revoked_at=lic.revoked_at,
            created_at=lic.created_at,
        )


@strawberry.type
class IssuedLicense:
    license: License
    key: str = strawberry.field(description="Shown this once; only its hash is stored.")


@strawberry.type
class Installation:
    id: strawberry.ID
    tenant_id: strawberry.ID
    license_id: strawberry.ID
    hostname: str
    agent_version: str | None
    last_heartbeat_at: datetime | None
    participant_count: int | None
    pbx_reachable: bool | None
    jobservice_reachable: bool | None
    alarm_service_ok: bool | None
    revoked_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, i: models.Installation) -> Installation:
        return cls(
            id=gid(i.id),
            tenant_id=gid(i.tenant_id),
            license_id=gid(i.license_id),
            hostname=i.hostname,
            agent_version=i.agent_version,
            last_heartbeat_at=i.last_heartbeat_at,
            participant_count=i.participant_count,
            pbx_reachable=i.pbx_reachable,
            jobservice_reachable=i.jobservice_reachable,
            alarm_service_ok=i.alarm_service_ok,
            revoked_at=i.revoked_at,
            created_at=i.created_at,
        )

    @strawberry.field(description="What the watchdog has open for this installation.")
    async def open_incidents(self, info: Info) -> list[Incident]:
        rows = await info.context.loaders.open_incidents.load(uuid.UUID(self.id))
        return [Incident.of(incident, self.hostname) for incident in rows]


@strawberry.input
class TenantInput:
    name: str
    language: Language = Language.DE
    contact_email: str | None = None


@strawberry.input
class TenantUpdateInput:
    name: str | None = None
    language: Language | None = None
    contact_email: str | None = strawberry.field(
        default=None, description="An empty string removes the address."
    )
    active: bool | None = None


@strawberry.input
class UserInput:
    email: str
    name: str
    role: Role
    password: str
    tenant_id: strawberry.ID | None = None
    language: Language = Language.DE


@strawberry.input
class UserUpdateInput:
    name: str | None = None
    role: Role | None = None
    language: Language | None = None
    active: bool | None = None
    password: str | None = None

from __future__ import annotations

import uuid
from datetime import datetime

import strawberry

from api import models
from api.services.connection import TenantAgent, Watched
from schema.enums import AgentState, DialerKind, Language, PbxAdapter, Role
from schema.info import Info
from schema.ops.types import Incident
from schema.platform.health import SipRegistration, simulated, sip_registration_of


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


_STALE = " Null (unknown) while the agent is not connected: see offlineSince."


@strawberry.type
class Installation:
    id: strawberry.ID
    tenant_id: strawberry.ID
    license_id: strawberry.ID
    hostname: str
    agent_version: str | None
    last_heartbeat_at: datetime | None
    connected: bool = strawberry.field(
        description="Its agent reported within two poll intervals and is not revoked."
    )
    offline_since: datetime | None = strawberry.field(
        description="Not connected: since its last heartbeat (or its enrolment, if it "
        "never reported); null while connected."
    )
    participant_count: int | None = strawberry.field(description="As last reported." + _STALE)
    pbx_reachable: bool | None = strawberry.field(description="As last reported." + _STALE)
    jobservice_reachable: bool | None = strawberry.field(
        description="As last reported; null also when no job service is configured." + _STALE
    )
    alarm_service_ok: bool | None = strawberry.field(description="As last reported." + _STALE)
    journal_writable: bool | None = strawberry.field(
        description="The agent can write its broadcast journal, as last reported (false: "
        "broadcasts run from memory; null: an agent that does not say)." + _STALE
    )
    pbx_adapter: PbxAdapter | None = strawberry.field(
        description="The PBX adapter its agent runs (null: an agent that does not say)."
    )
    dialer: DialerKind | None = strawberry.field(
        description="How its agent calls (null: an agent that does not say)."
    )
    simulated: bool = strawberry.field(
        description="Runs the SwyxWare simulator or simulated calls: demo and tests only."
    )
    sip_registration: SipRegistration | None = strawberry.field(
        description="The SIP dialer's registration at the PBX as last reported; null "
        "without a SIP dialer." + _STALE
    )
    revoked_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, w: Watched) -> Installation:
        i, seen = w.installation, w.connection
        return cls(
            id=gid(i.id),
            tenant_id=gid(i.tenant_id),
            license_id=gid(i.license_id),
            hostname=i.hostname,
            agent_version=i.agent_version,
            last_heartbeat_at=i.last_heartbeat_at,
            connected=seen.connected,
            offline_since=seen.since,
            # A silent agent's last green values would claim what nobody knows now.
            participant_count=seen.current(i.participant_count),
            pbx_reachable=seen.current(i.pbx_reachable),
            jobservice_reachable=seen.current(i.jobservice_reachable),
            alarm_service_ok=seen.current(i.alarm_service_ok),
            journal_writable=seen.current(i.journal_writable),
            pbx_adapter=i.pbx_adapter,
            dialer=i.dialer,
            simulated=simulated(i),
            sip_registration=seen.current(sip_registration_of(i)),
            revoked_at=i.revoked_at,
            created_at=i.created_at,
        )

    @strawberry.field(description="What the watchdog has open for this installation.")
    async def open_incidents(self, info: Info) -> list[Incident]:
        rows = await info.context.loaders.open_incidents.load(uuid.UUID(self.id))
        return [Incident.of(incident, self.hostname) for incident in rows]


@strawberry.type(
    description="Whether the tenant's Rundruf Manager Service (its agent) is connected."
)
class AgentConnection:
    state: AgentState
    since: datetime | None = strawberry.field(
        description="OFFLINE: its last heartbeat; NEVER_REPORTED: its enrolment; "
        "REVOKED: its (or its license's) revocation; else null."
    )
    stale_at: datetime | None = strawberry.field(
        description="CONNECTED: when it counts as offline unless it reports before."
    )
    poll_interval_seconds: int = strawberry.field(
        description="The tenant's; silent for more than two of them is OFFLINE."
    )
    installation: Installation | None = strawberry.field(
        description="The installation that may connect; null when NOT_INSTALLED or REVOKED."
    )

    @classmethod
    def of(cls, agent: TenantAgent) -> AgentConnection:
        seen = agent.connection
        return cls(
            state=seen.state,
            since=seen.since,
            stale_at=seen.stale_at,
            poll_interval_seconds=agent.poll_seconds,
            installation=Installation.of(agent.installation) if agent.installation else None,
        )


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

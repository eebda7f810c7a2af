from __future__ import annotations

from datetime import datetime
from typing import cast

import strawberry
from strawberry.scalars import JSON

from api.services.agents import Delivery
from schema.platform.types import gid


@strawberry.type(description="A command for the agent, with the secrets it needs to carry it out.")
class AgentCommand:
    id: strawberry.ID
    type: str
    payload: JSON
    secrets: JSON
    created_at: datetime
    expires_at: datetime = strawberry.field(description="After this the server gives up on it.")

    @classmethod
    def of(cls, d: Delivery) -> AgentCommand:
        return cls(
            id=gid(d.command.id),
            type=d.command.type,
            payload=cast(JSON, d.command.payload),
            secrets=cast(JSON, d.secrets),
            created_at=d.command.created_at,
            expires_at=d.command.expires_at,
        )


@strawberry.type
class Enrolment:
    installation_id: strawberry.ID
    tenant_name: str
    token: str = strawberry.field(description="Shown this once; only its hash is stored.")


@strawberry.input
class HealthInput:
    agent_version: str
    pbx_reachable: bool
    jobservice_reachable: bool | None = None
    alarm_service_ok: bool
    participant_count: int
    reported_at: datetime = strawberry.field(description="The agent's clock at the report.")


@strawberry.type
class HealthAck:
    poll_interval_seconds: int = strawberry.field(description="When to report next.")


@strawberry.type(description="The PBX directory mirror changed; refetch what you show.")
class DirectoryChange:
    at: datetime

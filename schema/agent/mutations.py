from __future__ import annotations

import strawberry
from strawberry.scalars import JSON

from api.services import agents
from schema.agent.types import Enrolment, HealthAck, HealthInput
from schema.context import parse_id
from schema.info import Info
from schema.pbx.types import Command


@strawberry.type
class AgentMutation:
    @strawberry.mutation(description="Enrols an agent with a license key; returns its token once.")
    async def register_installation(
        self, info: Info, license_key: str, hostname: str, agent_version: str
    ) -> Enrolment:
        enrolled = await agents.register(info.context.rt, license_key, hostname, agent_version)
        return Enrolment(
            installation_id=strawberry.ID(str(enrolled.installation.id)),
            tenant_name=enrolled.tenant_name,
            token=enrolled.token,
        )

    @strawberry.mutation(description="The agent reports a command's outcome (idempotent).")
    async def complete_command(
        self,
        info: Info,
        id: strawberry.ID,
        ok: bool,
        result: JSON | None = None,
        error: str | None = None,
    ) -> Command:
        agent = await info.context.agent()
        command = await agents.complete(
            info.context.rt, agent, parse_id(id, "command"), ok, result, error
        )
        return Command.of(command)

    @strawberry.mutation(description="The agent's heartbeat with its health flags.")
    async def report_health(self, info: Info, input: HealthInput) -> HealthAck:
        agent = await info.context.agent()
        poll = await agents.report_health(
            info.context.rt,
            agent,
            agents.HealthReport(
                agent_version=input.agent_version,
                pbx_reachable=input.pbx_reachable,
                jobservice_reachable=input.jobservice_reachable,
                alarm_service_ok=input.alarm_service_ok,
                participant_count=input.participant_count,
                reported_at=input.reported_at,
            ),
        )
        return HealthAck(poll_interval_seconds=poll)

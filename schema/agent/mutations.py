from __future__ import annotations

import strawberry
from strawberry.scalars import JSON

from api.domain.notices import Notice
from api.services import agents, broadcast_reports, broadcast_stop, notices
from schema.agent.types import (
    BroadcastAck,
    BroadcastReportInput,
    Enrolment,
    HealthAck,
    HealthInput,
    NoticeAck,
    NoticeInput,
)
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

    @strawberry.mutation(description="The agent reports a broadcast's calls (idempotent).")
    async def report_broadcast(self, info: Info, input: BroadcastReportInput) -> BroadcastAck:
        agent = await info.context.agent()
        last = await broadcast_reports.report(
            info.context.rt,
            agent,
            broadcast_reports.ReportIn(
                broadcast_id=input.broadcast_id,
                group_pbx_id=input.group_pbx_id,
                mode=input.mode,
                started_at=input.started_at,
                member_count=input.member_count,
                status=input.status,
                trigger_caller_number=input.trigger_caller_number,
                trigger_caller_name=input.trigger_caller_name,
                quorum=input.quorum,
                quorum_reached_at=input.quorum_reached_at,
                finished_at=input.finished_at,
                note=input.note,
                trigger_source=input.trigger_source,
                stop=broadcast_stop.StopIn(
                    via=input.stop.via,
                    at=input.stop.at,
                    by=input.stop.by,
                    reason=input.stop.reason,
                )
                if input.stop is not None
                else None,
                events=[
                    broadcast_reports.CallEventIn(
                        seq=e.seq,
                        member_pbx_id=e.member_pbx_id,
                        member_name=e.member_name,
                        member_extension=e.member_extension,
                        attempt_no=e.attempt_no,
                        kind=e.kind,
                        at=e.at,
                        outcome=e.outcome,
                        detail=e.detail,
                        late_reason=e.late_reason,
                        late_from=e.late_from,
                        late_until=e.late_until,
                    )
                    for e in input.events
                ],
            ),
        )
        return BroadcastAck(last_seq=last)

    @strawberry.mutation(
        description="The agent forwards a notice; the tenant gets mails (idempotent)."
    )
    async def report_notice(self, info: Info, input: NoticeInput) -> NoticeAck:
        agent = await info.context.agent()
        stored = await notices.report(
            info.context.rt,
            agent,
            Notice(
                notice_id=input.notice_id,
                kind=input.kind,
                agent_number=input.agent_number,
                caller_number=input.caller_number,
                count=input.count,
                at=input.at,
                file_name=input.file_name,
                mode=input.mode,
            ),
        )
        return NoticeAck(stored=stored)

    @strawberry.mutation(description="The agent's heartbeat with its health flags.")
    async def report_health(self, info: Info, input: HealthInput) -> HealthAck:
        agent = await info.context.agent()
        answer = await agents.report_health(
            info.context.rt,
            agent,
            agents.HealthReport(
                agent_version=input.agent_version,
                pbx_reachable=input.pbx_reachable,
                jobservice_reachable=input.jobservice_reachable,
                alarm_service_ok=input.alarm_service_ok,
                participant_count=input.participant_count,
                reported_at=input.reported_at,
                pbx_adapter=input.pbx_adapter,
                dialer=input.dialer,
                sip_registration=input.registration(),
                journal_writable=input.journal_writable,
            ),
        )
        return HealthAck(
            poll_interval_seconds=answer.poll_interval_seconds, language=answer.language
        )

"""The heartbeat asks for the tenant's language; a central service from before it refuses
the question, and the agent asks without it for an hour (edge_agent/health_answer.py).

The older service is this service's schema (schema/schema.graphql) without
`HealthAck.language`, executed by graphql-core with its errors shaped by
schema/errors.py: the words and code such a service answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from graphql import GraphQLObjectType, build_schema, graphql_sync

from edge_agent.config import Enrolment
from edge_agent.errors import ServerRefused
from edge_agent.health_answer import HealthQuestion, lacks_language, language_of
from edge_agent.server import Server as AgentServer
from schema.errors import shape

SDL = Path(__file__).resolve().parents[2] / "schema" / "schema.graphql"
REPORT = {
    "agentVersion": "1.0.0",
    "pbxReachable": True,
    "jobserviceReachable": True,
    "alarmServiceOk": True,
    "participantCount": 3,
    "reportedAt": "2026-12-08T08:00:00+00:00",
}


class Service:
    """A central service answering heartbeats: today's, or one from before the language."""

    def __init__(self, older: bool) -> None:
        self.schema = build_schema(SDL.read_text())
        if older:
            ack = self.schema.type_map["HealthAck"]
            assert isinstance(ack, GraphQLObjectType)
            del ack.fields["language"]
        self.answered = 0
        self.refused: list[str] = []

    def _health(self, _info: object, input: dict[str, Any]) -> dict[str, Any]:
        self.answered += 1
        return {"pollIntervalSeconds": 30, "language": "EN"}

    def answer(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        result = graphql_sync(
            self.schema,
            body["query"],
            root_value={"reportHealth": self._health},
            variable_values=body["variables"],
        )
        if result.errors:
            errors = [shape(e).formatted for e in result.errors]
            self.refused += [e["message"] for e in errors]
            return httpx.Response(200, json={"data": None, "errors": errors})
        return httpx.Response(200, json={"data": result.data})


def _server(service: Service, clock: list[float]) -> AgentServer:
    server = AgentServer(Enrolment("http://central.invalid", "i", "t"), verify_tls=False)
    server._client = httpx.AsyncClient(transport=httpx.MockTransport(service.answer))
    server.health_question = HealthQuestion(recheck_s=3600, clock=lambda: clock[0])
    return server


async def test_todays_service_says_the_language() -> None:
    service = Service(older=False)
    server = _server(service, [0.0])
    answer = await server.report_health(REPORT)
    assert (answer.poll_interval_seconds, answer.language) == (30, "en")
    assert service.refused == []
    await server.aclose()


async def test_an_older_service_gets_the_heartbeat_without_the_question() -> None:
    service = Service(older=True)
    clock = [0.0]
    server = _server(service, clock)
    answer = await server.report_health(REPORT)
    assert (answer.poll_interval_seconds, answer.language) == (30, None)
    assert len(service.refused) == 1 and service.answered == 1
    await server.report_health(REPORT)  # asked without it at once
    assert len(service.refused) == 1 and service.answered == 2
    clock[0] = 3600  # an hour later: asked again (the service may be newer now)
    await server.report_health(REPORT)
    assert len(service.refused) == 2 and service.answered == 3
    await server.aclose()


def test_only_that_refusal_is_read_as_a_service_without_the_language() -> None:
    words = "Cannot query field 'language' on type 'HealthAck'."
    assert lacks_language(ServerRefused(words, code="GRAPHQL_VALIDATION_FAILED", answer=words))
    assert not lacks_language(ServerRefused(words, code="BAD_USER_INPUT", answer=words))
    other = "Cannot query field 'x' on type 'HealthAck'."
    assert not lacks_language(ServerRefused(other, code="GRAPHQL_VALIDATION_FAILED", answer=other))
    assert [language_of(v) for v in ("DE", "EN", "FR", None, 3)] == ["de", "en", None, None, None]

"""The agent's report says how the alarm was raised (issue 16, point 3), and an older
central service without the field still gets every report (report_compat.py).

The older service is this service's own schema (schema/schema.graphql) without
`BroadcastReportInput.triggerSource`, executed by graphql-core and its errors shaped
by schema/errors.py: the very words and code a service from before the field answers
(the real current service accepting the field: tests/test_trigger_source.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import GraphQLInputObjectType, build_schema, graphql_sync

from edge_agent.broadcast.journal import Journal
from edge_agent.broadcast.model import COMPLETED, Broadcast, Member
from edge_agent.broadcast.report_compat import WithheldFields, refused_field
from edge_agent.broadcast.reporter import Reporter, report_json
from edge_agent.config import Enrolment
from edge_agent.errors import ServerRefused
from edge_agent.server import Server as AgentServer
from schema.errors import shape
from tests.agent.test_report_compat import legacy

SDL = Path(__file__).resolve().parents[2] / "schema" / "schema.graphql"
NOW = datetime.now(UTC) - timedelta(minutes=1)


def _broadcast(source: str) -> Broadcast:
    return Broadcast("b-1", source, "s-1", "g1", 2, NOW, NOW + timedelta(minutes=5))


@pytest.mark.parametrize(
    ("source", "wire"), [("job", "PHONE"), ("sip", "SIP"), ("command", "WEBSITE")]
)
def test_the_report_says_how_the_alarm_was_raised(source: str, wire: str) -> None:
    report = report_json(_broadcast(source), {}, [], False)
    assert report["triggerSource"] == wire
    assert "triggerSource" not in report_json(
        _broadcast(source), {}, [], False, (), {"triggerSource"}
    )


def test_a_source_the_service_has_no_name_for_is_not_reported() -> None:
    assert "triggerSource" not in report_json(_broadcast("carrierPigeon"), {}, [], False)


class OlderService:
    """A central service from before `triggerSource`; records each report it got."""

    def __init__(self) -> None:
        schema = build_schema(SDL.read_text())
        report_input = schema.type_map["BroadcastReportInput"]
        assert isinstance(report_input, GraphQLInputObjectType)
        del report_input.fields["triggerSource"]
        self.schema = schema
        self.stored: list[dict[str, Any]] = []
        self.refused = 0

    def _report(self, _info: object, input: dict[str, Any]) -> dict[str, int]:
        self.stored.append(input)
        return {"lastSeq": max((e["seq"] for e in input["events"]), default=0)}

    def answer(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        result = graphql_sync(
            self.schema,
            body["query"],
            root_value={"reportBroadcast": self._report},
            variable_values=body["variables"],
        )
        if result.errors:
            self.refused += 1
            errors = [shape(e).formatted for e in result.errors]
            return httpx.Response(200, json={"data": None, "errors": errors})
        return httpx.Response(200, json={"data": result.data})


async def _sip_alarm(tmp_path: Path, broadcast_id: str = "b-1") -> Journal:
    journal = Journal(tmp_path / f"{broadcast_id}.sqlite")
    b = Broadcast(
        broadcast_id,
        "sip",
        broadcast_id,
        "g1",
        2,
        NOW,
        NOW + timedelta(minutes=5),
        caller_number="+49301234",
    )
    await journal.create(b, [Member(0, "u0", "Anna", "200")])
    steps = ["started", "answered", "confirmed", "ended"]
    await journal.record_many(
        broadcast_id,
        [
            (
                "u0",
                1,
                kind,
                NOW + timedelta(seconds=i),
                "confirmed" if kind == "ended" else None,
                None,
            )
            for i, kind in enumerate(steps)
        ],
    )
    await journal.finish(broadcast_id, COMPLETED, NOW + timedelta(seconds=30), "")
    return journal


async def test_an_older_service_gets_the_report_without_the_field(tmp_path: Path) -> None:
    service = OlderService()
    server = AgentServer(Enrolment("http://central.invalid", "i", "t"), verify_tls=False)
    server._client = httpx.AsyncClient(transport=httpx.MockTransport(service.answer))
    clock = [0.0]
    journal = await _sip_alarm(tmp_path)
    reporter = Reporter(journal, server, None, 60)
    reporter.withheld_fields = WithheldFields(recheck_s=3600, clock=lambda: clock[0])
    try:
        assert await reporter.settle() is False  # everything delivered
        assert service.refused == 1  # once: the field is learnt and left out
        assert len(service.stored) == 1
        stored = service.stored[0]
        assert "triggerSource" not in stored
        assert stored["triggerCallerNumber"] == "+49301234"
        assert [e["kind"] for e in stored["events"]] == [
            "started",
            "answered",
            "confirmed",
            "ended",
        ]
        b = await journal.get("b-1")
        assert (b.acked_seq, b.final_acked, b.source_done) == (4, True, True)
        assert reporter.withheld_fields.current() == {"triggerSource"}
        # The next broadcast's reports leave it out at once: no refusal.
        assert await reporter.last_stored(b) == 0
        assert service.refused == 1
        clock[0] = 3600  # an hour later it is offered again (the service may be newer)
        assert reporter.withheld_fields.current() == frozenset()
        assert await reporter.last_stored(b) == 0
        assert service.refused == 2
    finally:
        await journal.close()
        await server.aclose()


def test_only_the_older_services_refusal_of_an_optional_field_is_read_as_one() -> None:
    unknown = (
        "Variable '$input' has invalid value: Expected value of type 'BroadcastReportInput' "
        "not to include unknown field '{}', found: {{'triggerCallerName': 'x'}}."
    )

    def refusal(answer: str, code: str = "GRAPHQL_VALIDATION_FAILED") -> ServerRefused:
        return ServerRefused(answer, code=code, answer=answer)

    assert refused_field(refusal(unknown.format("triggerSource"))) == "triggerSource"
    assert refused_field(refusal(unknown.format("triggerSource"), "BAD_USER_INPUT")) is None
    assert refused_field(legacy("held")) is None
    # A caller's name quoting the words is not the service's refusal.
    quoted = "Variable '$input' has invalid value: x, found: {'n': \"" + unknown.format("a") + '"}'
    assert refused_field(refusal(quoted)) is None
    fields = WithheldFields()
    # A field every service knows is never left out: the refusal is an ordinary one.
    assert fields.learn(refusal(unknown.format("memberCount")), {"memberCount"}) is None
    assert fields.learn(refusal(unknown.format("triggerSource")), {"mode"}) is None
    assert fields.learn(refusal(unknown.format("triggerSource")), {"triggerSource"}) == (
        "triggerSource"
    )

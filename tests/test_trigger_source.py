"""How an alarm was raised reaches the history: the agent's report says it, and what an
older agent's report leaves open is derived (issue 16, point 3)."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlalchemy import update

from api.models import Command
from api.services import agents
from tests.conftest import error_codes
from tests.test_broadcast_reports import REPORT, _events, _report
from tests.test_trigger_broadcast import COMPLETE, TRIGGER

HISTORY = """query { broadcasts(first: 5) { nodes { triggerSource triggerCallerNumber
  triggerCallerName startedAt } } }"""


async def _shown(gql, world) -> list[dict]:
    """The broadcasts these tests reported (the world's own began 5 minutes before)."""
    data = await gql.as_(world.tokens["viewer"]).ok(HISTORY)
    nodes = data["broadcasts"]["nodes"]
    newest = max((b["startedAt"] for b in nodes), default="")
    return [
        {k: v for k, v in b.items() if k != "startedAt"}
        for b in nodes
        if b["startedAt"] == newest and len(nodes) > 1
    ]


@pytest.mark.parametrize("source", ["SIP", "PHONE", "WEBSITE"])
async def test_the_reported_source_is_shown_with_the_callers_number(gql, rt, world, source):
    agent = gql.as_(world.tokens["agent_a"])
    ack = await agent.ok(REPORT, **_report(rt, _events(rt, 0, 1), triggerSource=source))
    assert ack["reportBroadcast"]["lastSeq"] == 5
    assert await _shown(gql, world) == [
        {"triggerSource": source, "triggerCallerNumber": "100", "triggerCallerName": None}
    ]


async def test_an_older_agents_report_is_a_trigger_call(gql, rt, world):
    await gql.as_(world.tokens["agent_a"]).ok(REPORT, **_report(rt, _events(rt, 0, 1)))
    assert [b["triggerSource"] for b in await _shown(gql, world)] == ["PHONE"]


@pytest.mark.parametrize("result_first", [True, False])
async def test_an_older_agents_trigger_from_the_website_is_known_by_its_command(
    gql, rt, world, result_first
):
    """The command's result names the broadcast, before or after the first report."""
    command = await gql.as_(world.tokens["owner"]).ok(
        TRIGGER, g=str(world.a.group_id), mode="ALARM"
    )
    agent = gql.as_(world.tokens["agent_a"])
    complete = {"id": command["triggerBroadcast"]["id"], "result": {"broadcastId": "b-1"}}
    if result_first:
        await agent.ok(COMPLETE, **complete)
    await agent.ok(REPORT, **_report(rt, [], triggerCallerNumber=None))
    if not result_first:
        await agent.ok(COMPLETE, **complete)
    assert [b["triggerSource"] for b in await _shown(gql, world)] == ["WEBSITE"]


async def test_a_source_this_service_does_not_know_keeps_the_derived_one(gql, rt, world, caplog):
    agent = gql.as_(world.tokens["agent_a"])
    with caplog.at_level(logging.WARNING, logger="api.services.trigger_source"):
        for seq in (1, 6):
            events = _events(rt, seq, seq)
            await agent.ok(REPORT, **_report(rt, events, triggerSource="CARRIER_PIGEON"))
    assert [b["triggerSource"] for b in await _shown(gql, world)] == ["PHONE"]
    assert sum("CARRIER_PIGEON" in r.getMessage() for r in caplog.records) <= 1


async def test_a_later_report_that_says_it_corrects_the_derived_source(gql, rt, world):
    agent = gql.as_(world.tokens["agent_a"])
    await agent.ok(REPORT, **_report(rt, _events(rt, 0, 1)))
    await agent.ok(REPORT, **_report(rt, [], status="COMPLETED", triggerSource="SIP"))
    assert [b["triggerSource"] for b in await _shown(gql, world)] == ["SIP"]


@pytest.mark.parametrize("value", ["sip", "", "S" * 33, "SIP OVER TLS"])
async def test_a_source_that_is_no_name_is_refused_and_writes_nothing(gql, rt, world, value):
    agent = gql.as_(world.tokens["agent_a"])
    answer = await agent(REPORT, **_report(rt, _events(rt, 0, 1), triggerSource=value))
    assert error_codes(answer) == ["BAD_USER_INPUT"]
    assert answer["errors"][0]["extensions"]["field"] == "triggerSource"
    assert await _shown(gql, world) == []


async def test_a_lost_trigger_from_the_website_says_so(gql, rt, world, clock):
    await gql.as_(world.tokens["owner"]).ok(TRIGGER, g=str(world.a.group_id), mode="ALARM")
    async with rt.db.transaction() as s:  # the alarm's day passed (sessions would not last)
        await s.execute(update(Command).values(expires_at=clock.now - timedelta(seconds=1)))
    assert await agents.expire_overdue(rt) == 1
    shown = await _shown(gql, world)
    assert [(b["triggerSource"], b["triggerCallerName"]) for b in shown] == [
        ("WEBSITE", "Admin <admin@owner.example>")
    ]

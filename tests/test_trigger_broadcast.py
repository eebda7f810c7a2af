"""A broadcast started from the website, and a group's quorum and repetitions."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, update

from api.models import (
    AuditLog,
    BroadcastGroup,
    Command,
    CommandStatus,
    Email,
    Installation,
    License,
)
from api.services import agents
from api.services.agents import Agent
from tests.conftest import error_codes
from tests.test_authorization import snapshot
from tests.test_broadcast_reports import _report

TRIGGER = """mutation($g: ID!, $mode: BroadcastMode!) {
  triggerBroadcast(groupId: $g, mode: $mode) { id type status payload result }
}"""
OPTIONS = """mutation($g: ID!, $quorum: Int, $repetitions: Int!) {
  updateBroadcastOptions(groupId: $g, quorum: $quorum, repetitions: $repetitions) {
    id type status payload
  }
}"""
COMPLETE = """mutation($id: ID!, $result: JSON) {
  completeCommand(id: $id, ok: true, result: $result) { id type status result }
}"""
BROADCAST = "query($id: ID!) { group(id: $id) { broadcast { quorum repetitions } } }"
REFUSE = """mutation($id: ID!, $result: JSON, $error: String) {
  completeCommand(id: $id, ok: false, result: $result, error: $error) { id status }
}"""
COMMAND = "query($id: ID!) { command(id: $id) { status } }"


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def _options(rt, world) -> tuple[int | None, int]:
    async with rt.db.reading() as s:
        bg = await s.get(BroadcastGroup, world.a.broadcast_group_id)
        return bg.quorum, bg.repetitions


async def _invalidate_license(rt, tenant_id, how: str) -> None:
    values = (
        {"valid_until": rt.clock() - timedelta(days=1)}
        if how == "expired"
        else {"revoked_at": rt.clock()}
    )
    async with rt.db.transaction() as s:
        await s.execute(update(License).where(License.tenant_id == tenant_id).values(**values))


# --- triggerBroadcast ----------------------------------------------------------------


@pytest.mark.parametrize(("mode", "number"), [("TEST", 1), ("ALARM", 2)])
async def test_it_sends_the_trigger_to_the_tenants_agent(gql, rt, world, mode, number):
    data = await gql.as_(world.tokens["owner"]).ok(TRIGGER, g=str(world.a.group_id), mode=mode)
    command = data["triggerBroadcast"]
    assert command["type"] == "triggerBroadcast"
    assert command["status"] == "PENDING"
    assert command["payload"] == {
        "groupPbxId": "g1",
        "mode": number,
        "requestedBy": "Admin <admin@owner.example>",
    }
    owners = await agents.take_open_commands(
        rt, Agent(world.a.installation_id, world.a.tenant_id), set()
    )
    outsiders = await agents.take_open_commands(
        rt, Agent(world.b.installation_id, world.b.tenant_id), set()
    )
    assert [(d.command.id, d.secrets) for d in owners] == [(uuid.UUID(command["id"]), {})]
    assert outsiders == []
    async with rt.db.reading() as s:
        entry = await s.scalar(select(AuditLog).where(AuditLog.action == "broadcast.trigger"))
    assert entry is not None
    assert entry.tenant_id == world.a.tenant_id
    assert entry.target == str(world.a.group_id)
    assert entry.details == {"mode": number}


async def test_the_agent_answers_with_its_broadcast_id(gql, world):
    data = await gql.as_(world.tokens["owner"]).ok(TRIGGER, g=str(world.a.group_id), mode="ALARM")
    command_id = data["triggerBroadcast"]["id"]
    done = await gql.as_(world.tokens["agent_a"]).ok(
        COMPLETE, id=command_id, result={"broadcastId": "b-42"}
    )
    assert done["completeCommand"]["status"] == "SUCCEEDED"
    assert done["completeCommand"]["result"] == {"broadcastId": "b-42"}
    shown = await gql.as_(world.tokens["viewer"]).ok(
        "query($id: ID!) { command(id: $id) { status result } }", id=command_id
    )
    assert shown["command"] == {"status": "SUCCEEDED", "result": {"broadcastId": "b-42"}}


async def test_a_viewer_cannot_trigger(gql, rt, world):
    before = await snapshot(rt)
    body = await gql.as_(world.tokens["viewer"])(TRIGGER, g=str(world.a.group_id), mode="ALARM")
    assert error_codes(body) == ["FORBIDDEN"]
    assert await snapshot(rt) == before


async def test_it_rejects_triggering_another_tenants_group(gql, rt, world):
    before = await snapshot(rt)
    body = await gql.as_(world.tokens["outsider"])(TRIGGER, g=str(world.a.group_id), mode="ALARM")
    assert error_codes(body) == ["NOT_FOUND"]
    assert "Brandschutz" not in str(body)
    assert await snapshot(rt) == before


async def test_a_group_that_is_no_broadcast_group_cannot_be_triggered(gql, rt, world):
    before = await snapshot(rt)
    body = await gql.as_(world.tokens["owner"])(
        TRIGGER, g=str(world.a.plain_group_id), mode="ALARM"
    )
    assert error_codes(body) == ["CONFLICT"]
    assert body["errors"][0]["message"] == "this group is not a broadcast group"
    assert body["errors"][0]["extensions"]["field"] == "groupId"
    assert await snapshot(rt) == before


async def test_the_website_cannot_start_a_recorded_alarm(gql, rt, world):
    before = await snapshot(rt)
    body = await gql.as_(world.tokens["owner"])(
        TRIGGER, g=str(world.a.group_id), mode="ALARM_RECORDED"
    )
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["extensions"]["field"] == "mode"
    assert await snapshot(rt) == before


@pytest.mark.parametrize("how", ["expired", "revoked"])
async def test_without_a_valid_license_it_is_refused_like_any_command(gql, rt, world, how):
    await _invalidate_license(rt, world.a.tenant_id, how)
    before = await snapshot(rt)
    body = await gql.as_(world.tokens["owner"])(TRIGGER, g=str(world.a.group_id), mode="ALARM")
    assert error_codes(body) == ["CONFLICT"]
    assert body["errors"][0]["extensions"]["reason"] == "LICENSE"
    assert await snapshot(rt) == before


# --- updateBroadcastOptions ---------------------------------------------------------


async def test_options_are_stored_and_sent_to_the_agent(gql, rt, world):
    owner = gql.as_(world.tokens["owner"])
    data = await owner.ok(OPTIONS, g=str(world.a.group_id), quorum=2, repetitions=3)
    command = data["updateBroadcastOptions"]
    assert command["type"] == "updateBroadcastOptions"
    assert command["status"] == "PENDING"
    assert command["payload"] == {"groupPbxId": "g1", "quorum": 2, "repetitions": 3}
    assert await _options(rt, world) == (2, 3)
    shown = await gql.as_(world.tokens["viewer"]).ok(BROADCAST, id=str(world.a.group_id))
    assert shown["group"]["broadcast"] == {"quorum": 2, "repetitions": 3}
    async with rt.db.reading() as s:
        entry = await s.scalar(
            select(AuditLog).where(AuditLog.action == "broadcast.update_options")
        )
    assert entry is not None and entry.details == {"quorum": 2, "repetitions": 3}


async def test_no_quorum_calls_everyone(gql, rt, world):
    owner = gql.as_(world.tokens["owner"])
    await owner.ok(OPTIONS, g=str(world.a.group_id), quorum=5, repetitions=1)
    # An omitted quorum is null, too: more calls, never fewer, than the admin may expect.
    data = await owner.ok(OPTIONS, g=str(world.a.group_id), repetitions=5)
    assert data["updateBroadcastOptions"]["payload"] == {
        "groupPbxId": "g1",
        "quorum": None,
        "repetitions": 5,
    }
    assert await _options(rt, world) == (None, 5)
    await owner.ok(OPTIONS, g=str(world.a.group_id), quorum=5, repetitions=1)
    await owner.ok(OPTIONS, g=str(world.a.group_id), quorum=None, repetitions=2)
    assert await _options(rt, world) == (None, 2)


async def test_the_bounds_are_accepted(gql, rt, world):
    owner = gql.as_(world.tokens["owner"])
    await owner.ok(OPTIONS, g=str(world.a.group_id), quorum=1000, repetitions=1)
    assert await _options(rt, world) == (1000, 1)
    await owner.ok(OPTIONS, g=str(world.a.group_id), quorum=1, repetitions=5)
    assert await _options(rt, world) == (1, 5)


@pytest.mark.parametrize(
    ("quorum", "repetitions", "field"),
    [
        (0, 2, "quorum"),
        (-1, 2, "quorum"),
        (1001, 2, "quorum"),
        (2, 0, "repetitions"),
        (2, 6, "repetitions"),
        (None, -3, "repetitions"),
    ],
)
async def test_out_of_range_options_change_nothing(gql, rt, world, quorum, repetitions, field):
    before = await snapshot(rt)
    body = await gql.as_(world.tokens["owner"])(
        OPTIONS, g=str(world.a.group_id), quorum=quorum, repetitions=repetitions
    )
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["extensions"]["field"] == field
    assert await snapshot(rt) == before
    assert await _options(rt, world) == (None, 2)


async def test_a_viewer_cannot_change_the_options(gql, rt, world):
    before = await snapshot(rt)
    body = await gql.as_(world.tokens["viewer"])(
        OPTIONS, g=str(world.a.group_id), quorum=1, repetitions=1
    )
    assert error_codes(body) == ["FORBIDDEN"]
    assert await snapshot(rt) == before


async def test_it_rejects_changing_another_tenants_options(gql, rt, world):
    before = await snapshot(rt)
    body = await gql.as_(world.tokens["outsider"])(
        OPTIONS, g=str(world.a.group_id), quorum=1, repetitions=1
    )
    assert error_codes(body) == ["NOT_FOUND"]
    assert await snapshot(rt) == before


async def test_a_plain_group_has_no_options(gql, rt, world):
    before = await snapshot(rt)
    body = await gql.as_(world.tokens["owner"])(
        OPTIONS, g=str(world.a.plain_group_id), quorum=1, repetitions=1
    )
    assert error_codes(body) == ["CONFLICT"]
    assert await snapshot(rt) == before


@pytest.mark.parametrize("how", ["expired", "revoked"])
async def test_without_a_valid_license_the_options_stay(gql, rt, world, how):
    await _invalidate_license(rt, world.a.tenant_id, how)
    before = await snapshot(rt)
    body = await gql.as_(world.tokens["owner"])(
        OPTIONS, g=str(world.a.group_id), quorum=1, repetitions=1
    )
    assert error_codes(body) == ["CONFLICT"]
    assert body["errors"][0]["extensions"]["reason"] == "LICENSE"
    assert await snapshot(rt) == before
    assert await _options(rt, world) == (None, 2)


async def test_options_commands_complete_without_changing_the_stored_values(gql, rt, world):
    owner = gql.as_(world.tokens["owner"])
    data = await owner.ok(OPTIONS, g=str(world.a.group_id), quorum=3, repetitions=4)
    done = await gql.as_(world.tokens["agent_a"]).ok(
        COMPLETE, id=data["updateBroadcastOptions"]["id"], result={}
    )
    assert done["completeCommand"]["status"] == "SUCCEEDED"
    assert await _options(rt, world) == (3, 4)
    async with rt.db.reading() as s:
        types = set(await s.scalars(select(Command.type)))
    assert "updateBroadcastOptions" in types


# --- an agent offline: the trigger waits, and is never lost silently ---------------------

LOST = """{ broadcasts(first: 20) { nodes { groupName mode status triggerCallerName startedAt
  finishedAt memberCount note failureCode } } }"""
WAITING = """mutation($g: ID!, $mode: BroadcastMode!) {
  triggerBroadcast(groupId: $g, mode: $mode) {
    id createdAt expiresAt agentConnection { state since }
  }
}"""


async def _lost(gql, world, who: str = "owner") -> list[dict]:
    history = await gql.as_(world.tokens[who]).ok(LOST)
    return [n for n in history["broadcasts"]["nodes"] if n["failureCode"] is not None]


async def _mails(rt) -> list[Email]:
    async with rt.db.reading() as s:
        return list((await s.scalars(select(Email).order_by(Email.to_address))).all())


async def _last_heartbeat(rt, world, at) -> None:
    async with rt.db.transaction() as s:
        await s.execute(
            update(Installation)
            .where(Installation.id == world.a.installation_id)
            .values(last_heartbeat_at=at)
        )


async def test_an_alarm_waits_a_day_for_an_offline_agent_and_the_answer_says_it_is_offline(
    gql, rt, world, clock
):
    seen = clock.now - timedelta(minutes=30)
    await _last_heartbeat(rt, world, seen)
    owner = gql.as_(world.tokens["owner"])
    alarm = (await owner.ok(WAITING, g=str(world.a.group_id), mode="ALARM"))["triggerBroadcast"]
    test = (await owner.ok(WAITING, g=str(world.a.group_id), mode="TEST"))["triggerBroadcast"]
    assert at(alarm["expiresAt"]) - at(alarm["createdAt"]) == timedelta(hours=24)
    assert at(test["expiresAt"]) - at(test["createdAt"]) == timedelta(minutes=15)
    assert alarm["agentConnection"] == {"state": "OFFLINE", "since": seen.isoformat()}
    # Still open after the usual 15 minutes: an agent back within the day runs it (late).
    clock.advance(minutes=16)
    assert await agents.expire_overdue(rt) == 1  # the test trigger only
    delivered = await agents.take_open_commands(
        rt, Agent(world.a.installation_id, world.a.tenant_id), set()
    )
    assert [str(d.command.id) for d in delivered] == [alarm["id"]]


@pytest.mark.parametrize("mode", ["TEST", "ALARM"])
async def test_an_expired_trigger_leaves_a_failed_broadcast_and_a_mail(gql, rt, world, clock, mode):
    seen = clock.now - timedelta(minutes=30)
    await _last_heartbeat(rt, world, seen)
    owner = gql.as_(world.tokens["owner"])
    command = (await owner.ok(TRIGGER, g=str(world.a.group_id), mode=mode))["triggerBroadcast"]
    triggered = clock.now
    clock.advance(minutes=16)
    async with rt.db.transaction() as s:  # an alarm's day passed (sessions would not last)
        await s.execute(update(Command).values(expires_at=clock.now - timedelta(seconds=1)))
    assert await agents.expire_overdue(rt) == 1
    assert await agents.expire_overdue(rt) == 0  # once
    assert await _lost(gql, world, "outsider") == []
    assert await _lost(gql, world) == [
        {
            "groupName": "Brandschutz",
            "mode": mode,
            "status": "FAILED",
            "triggerCallerName": "Admin <admin@owner.example>",
            "startedAt": triggered.isoformat(),
            "finishedAt": clock.now.isoformat(),
            "memberCount": 0,
            "note": seen.isoformat(),
            "failureCode": "AGENT_UNREACHABLE",
        }
    ]
    mails = await _mails(rt)
    assert [m.to_address for m in mails] == ["admin@owner.example", "it@owner.example"]
    german = mails[0]
    assert "nicht ausgeführt" in german.subject and "Brandschutz" in german.subject
    assert "NICHT durchgeführt" in german.body and "Niemand wurde angerufen" in german.body
    assert (await gql.as_(world.tokens["owner"]).ok(COMMAND, id=command["id"]))["command"][
        "status"
    ] == "EXPIRED"


async def test_a_trigger_the_agent_refuses_as_expired_is_not_lost_silently(gql, rt, world):
    command = (
        await gql.as_(world.tokens["owner"]).ok(TRIGGER, g=str(world.a.group_id), mode="ALARM")
    )["triggerBroadcast"]
    refused = await gql.as_(world.tokens["agent_a"]).ok(
        REFUSE,
        id=command["id"],
        result={"errorCode": "commandExpired"},
        error="expired before the agent could run it",
    )
    assert refused["completeCommand"]["status"] == "FAILED"
    lost = await _lost(gql, world)
    assert [(n["status"], n["failureCode"]) for n in lost] == [("FAILED", "AGENT_UNREACHABLE")]
    assert len(await _mails(rt)) == 2


async def test_other_expired_commands_leave_no_history(gql, rt, world, clock):
    await gql.as_(world.tokens["owner"]).ok(
        OPTIONS, g=str(world.a.group_id), quorum=2, repetitions=1
    )
    clock.advance(minutes=16)
    assert await agents.expire_overdue(rt) == 1
    assert await _lost(gql, world) == []
    assert await _mails(rt) == []


# --- a trigger the agent received: its outcome may come late, unknown until it does ------

HISTORY = "{ broadcasts(first: 20) { nodes { groupName status failureCode } } }"
# The broadcast the agent ran, as the history shows it (newest first).
ran = {"groupName": "Brandschutz", "status": "COMPLETED", "failureCode": None}
REPORT = "mutation($input: BroadcastReportInput!) { reportBroadcast(input: $input) { lastSeq } }"


async def _history(gql, world) -> list[dict]:
    return (await gql.as_(world.tokens["owner"]).ok(HISTORY))["broadcasts"]["nodes"]


async def _deliver(rt, world) -> None:
    agent = Agent(world.a.installation_id, world.a.tenant_id)
    assert len(await agents.take_open_commands(rt, agent, set())) == 1


async def test_a_delivered_trigger_whose_outcome_is_slow_is_not_reported_lost(
    gql, rt, world, clock
):
    before = await _history(gql, world)
    command = (
        await gql.as_(world.tokens["owner"]).ok(TRIGGER, g=str(world.a.group_id), mode="TEST")
    )["triggerBroadcast"]
    await _deliver(rt, world)
    # The broadcast ran; its report and its outcome come slowly, but before the expiry.
    clock.advance(minutes=14)
    agent = gql.as_(world.tokens["agent_a"])
    await agent.ok(REPORT, **_report(rt, [], status="COMPLETED", finishedAt=rt.clock().isoformat()))
    done = await agent.ok(COMPLETE, id=command["id"], result={"broadcastId": "b-1"})
    assert done["completeCommand"]["status"] == "SUCCEEDED"
    clock.advance(minutes=2)
    assert await agents.expire_overdue(rt) == 0
    assert await _history(gql, world) == [ran, *before]
    assert await _mails(rt) == []


async def test_a_delivered_alarm_without_an_outcome_by_its_expiry_is_reported_unknown(
    gql, rt, world, clock
):
    """Handed to the socket, then the agent's machine died (a power cut) and stayed down
    past the day: not silence, and not "not run" either (issue 14, point 11, review)."""
    before = await _history(gql, world)
    command = (
        await gql.as_(world.tokens["owner"]).ok(TRIGGER, g=str(world.a.group_id), mode="ALARM")
    )["triggerBroadcast"]
    await _deliver(rt, world)
    clock.advance(minutes=16)
    async with rt.db.transaction() as s:  # an alarm's day passed (sessions would not last)
        await s.execute(update(Command).values(expires_at=clock.now - timedelta(seconds=1)))
    assert await agents.expire_overdue(rt) == 1
    assert await agents.expire_overdue(rt) == 0  # once
    lost = await _lost(gql, world)
    assert [(n["status"], n["mode"], n["failureCode"]) for n in lost] == [
        ("FAILED", "ALARM", "OUTCOME_UNKNOWN")
    ]
    mails = await _mails(rt)
    assert [m.to_address for m in mails] == ["admin@owner.example", "it@owner.example"]
    german = mails[0]
    assert "ohne Rückmeldung" in german.subject and "Brandschutz" in german.subject
    assert "übergeben" in german.body and "Ob angerufen wurde, ist unbekannt" in german.body
    assert "NICHT durchgeführt" not in german.body
    # The agent was back after all and had run it: its broadcast replaces the failed row.
    agent = gql.as_(world.tokens["agent_a"])
    await agent.ok(REPORT, **_report(rt, [], status="COMPLETED", finishedAt=rt.clock().isoformat()))
    late = await agent.ok(COMPLETE, id=command["id"], result={"broadcastId": "b-1"})
    assert late["completeCommand"]["status"] == "EXPIRED"
    assert await _history(gql, world) == [ran, *before]
    assert len(await _mails(rt)) == 2  # sent, not taken back


async def test_a_delivered_trigger_the_agent_refuses_after_the_sweep_is_lost_once(
    gql, rt, world, clock
):
    command = (
        await gql.as_(world.tokens["owner"]).ok(TRIGGER, g=str(world.a.group_id), mode="TEST")
    )["triggerBroadcast"]
    await _deliver(rt, world)
    clock.advance(minutes=16)
    assert await agents.expire_overdue(rt) == 1
    lost = await _lost(gql, world)  # received, no outcome yet: whether it ran is unknown
    assert [(n["status"], n["failureCode"]) for n in lost] == [("FAILED", "OUTCOME_UNKNOWN")]
    refusal = {"result": {"errorCode": "commandExpired"}, "error": "expired before ..."}
    for _ in range(2):  # the agent resends an outcome it is not sure of
        await gql.as_(world.tokens["agent_a"]).ok(REFUSE, id=command["id"], **refusal)
    lost = await _lost(gql, world)  # now known: not run
    assert [(n["status"], n["failureCode"]) for n in lost] == [("FAILED", "AGENT_UNREACHABLE")]
    assert len(await _mails(rt)) == 2


@pytest.mark.parametrize("race", [False, True])
async def test_a_lost_trigger_the_agent_ran_after_all_gives_way_to_its_broadcast(
    gql, rt, world, clock, race
):
    before = await _history(gql, world)
    command = (
        await gql.as_(world.tokens["owner"]).ok(TRIGGER, g=str(world.a.group_id), mode="TEST")
    )["triggerBroadcast"]
    clock.advance(minutes=16)
    assert await agents.expire_overdue(rt) == 1
    assert len(await _lost(gql, world)) == 1
    if race:  # the agent took it in the moment the sweep expired it
        async with rt.db.transaction() as s:
            await s.execute(update(Command).values(status=CommandStatus.DELIVERED))
    agent = gql.as_(world.tokens["agent_a"])
    await agent.ok(REPORT, **_report(rt, [], status="COMPLETED", finishedAt=rt.clock().isoformat()))
    await agent.ok(COMPLETE, id=command["id"], result={"broadcastId": "b-1"})
    assert await _history(gql, world) == [ran, *before]

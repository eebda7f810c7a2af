"""Stopping a running broadcast from the website (issue 17, point 2): cancelBroadcast, and
the stop as the agent reports it ("beendet von ...")."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import select

from api.models import AuditLog, Broadcast, Command, CommandStatus
from api.services import agents
from api.services.agents import Agent
from schema.platform.types import gid
from tests.conftest import error_codes
from tests.test_audit_walk import TEXTS
from tests.test_authorization import snapshot
from tests.test_broadcast_reports import REPORT, _at, _report

CANCEL = """mutation($id: ID!, $reason: String) {
  cancelBroadcast(id: $id, reason: $reason) { id type status payload }
}"""
SHOWN = """query($id: ID!) { broadcast(id: $id) {
  status stoppedAt stoppedBy stoppedVia stopReason
} }"""


async def _running(gql, rt, world) -> str:
    await gql.as_(world.tokens["agent_a"]).ok(REPORT, **_report(rt, []))
    async with rt.db.reading() as s:
        b = await s.scalar(select(Broadcast).where(Broadcast.agent_broadcast_id == "b-1"))
    assert b is not None
    return str(gid(b.id))


async def _reported_stopped(gql, rt, world, stop: dict[str, str]) -> None:
    """The agent reports b-1 cancelled (finished at 6 s) with `stop`."""
    await gql.as_(world.tokens["agent_a"]).ok(
        REPORT, **_report(rt, [], status="CANCELLED", finishedAt=_at(rt, 6), stop=stop)
    )


async def test_a_tenant_admin_stops_a_running_broadcast_through_the_agent(gql, rt, world):
    broadcast = await _running(gql, rt, world)
    data = await gql.as_(world.tokens["owner"]).ok(CANCEL, id=broadcast, reason="Fehlalarm")
    command = data["cancelBroadcast"]
    assert command["type"] == "cancelBroadcast" and command["status"] == "PENDING"
    assert command["payload"] == {
        "broadcastId": "b-1",
        "requestedBy": "Admin <admin@owner.example>",
        "reason": "Fehlalarm",
    }
    owners = await agents.take_open_commands(
        rt, Agent(world.a.installation_id, world.a.tenant_id), set()
    )
    assert [d.command.id for d in owners] == [uuid.UUID(command["id"])]
    async with rt.db.reading() as s:
        entry = await s.scalar(select(AuditLog).where(AuditLog.action == "broadcast.cancel"))
    assert entry is not None and entry.tenant_id == world.a.tenant_id
    assert entry.details == {"reason": "Fehlalarm"}


async def test_the_agents_report_says_who_stopped_it_how_and_when(gql, rt, world):
    broadcast = await _running(gql, rt, world)
    stop = {"via": "WEBSITE", "at": _at(rt, 5), "by": "Admin <admin@owner.example>"}
    await _reported_stopped(gql, rt, world, stop)
    shown = (await gql.as_(world.tokens["viewer"]).ok(SHOWN, id=broadcast))["broadcast"]
    assert shown["status"] == "CANCELLED"
    assert shown["stoppedBy"] == "Admin <admin@owner.example>"
    assert shown["stoppedVia"] == "WEBSITE" and shown["stoppedAt"]
    # A later report of another stop does not change who stopped it.
    later = {"via": "PHONE", "at": _at(rt, 7), "by": "+4930123"}
    await _reported_stopped(gql, rt, world, later)
    again = (await gql.as_(world.tokens["viewer"]).ok(SHOWN, id=broadcast))["broadcast"]
    assert again == shown


async def test_a_stop_by_phone_names_the_caller(gql, rt, world):
    broadcast = await _running(gql, rt, world)
    stop = {"via": "PHONE", "at": _at(rt, 5), "by": "+4930123"}
    await _reported_stopped(gql, rt, world, stop)
    shown = (await gql.as_(world.tokens["owner"]).ok(SHOWN, id=broadcast))["broadcast"]
    assert (shown["stoppedVia"], shown["stoppedBy"]) == ("PHONE", "+4930123")


# A viewer may not; another tenant's admin does not even see the broadcast.
@pytest.mark.parametrize(("who", "code"), [("viewer", "FORBIDDEN"), ("outsider", "NOT_FOUND")])
async def test_who_may_not_stop_it_changes_nothing(gql, rt, world, who, code):
    broadcast = await _running(gql, rt, world)
    before = await snapshot(rt)
    body = await gql.as_(world.tokens[who])(CANCEL, id=broadcast)
    assert error_codes(body) == [code]
    assert await snapshot(rt) == before


async def test_a_broadcast_that_is_not_running_is_refused_with_a_reason(gql, rt, world):
    broadcast = await _running(gql, rt, world)
    await gql.as_(world.tokens["agent_a"]).ok(
        REPORT, **_report(rt, [], status="COMPLETED", finishedAt=_at(rt, 30))
    )
    before = await snapshot(rt)
    body = await gql.as_(world.tokens["owner"])(CANCEL, id=broadcast)
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["extensions"]["reason"] == "BROADCAST_NOT_RUNNING"
    assert await snapshot(rt) == before


async def test_a_second_stop_while_the_first_waits_returns_the_first(gql, rt, world):
    # Review of issue 17, M2: a second click made a second command and a second entry
    # "beendet" although it did nothing.
    broadcast = await _running(gql, rt, world)
    owner = gql.as_(world.tokens["owner"])
    first = (await owner.ok(CANCEL, id=broadcast, reason="Fehlalarm"))["cancelBroadcast"]
    second = (await owner.ok(CANCEL, id=broadcast))["cancelBroadcast"]
    assert second["id"] == first["id"]
    async with rt.db.reading() as s:
        stops = list(await s.scalars(select(Command).where(Command.type == "cancelBroadcast")))
        entries = list(
            await s.scalars(select(AuditLog).where(AuditLog.action == "broadcast.cancel"))
        )
    assert [c.id for c in stops] == [uuid.UUID(first["id"])]
    assert len(entries) == 1
    # The entry says what happened: a stop was asked for, not that the broadcast ended.
    de = (TEXTS / "de.js").read_text()
    en = (TEXTS / "en.js").read_text()
    assert '"audit.action.broadcast.cancel": "Beenden angefordert"' in de
    assert '"audit.action.broadcast.cancel": "Stop requested"' in en


async def test_a_stop_waits_for_the_agent_as_long_as_an_alarm(gql, rt, world):
    # Review of issue 17, M1: a stop 15 minutes late is still wanted while the broadcast runs.
    broadcast = await _running(gql, rt, world)
    sent = (await gql.as_(world.tokens["owner"]).ok(CANCEL, id=broadcast))["cancelBroadcast"]
    async with rt.db.reading() as s:
        command = await s.get(Command, uuid.UUID(sent["id"]))
    assert command is not None
    waits = command.expires_at - command.created_at
    assert waits.total_seconds() >= rt.settings.alarm_command_expiry_seconds - 1


async def test_a_second_stop_after_the_agent_carried_out_the_first_returns_it(gql, rt, world):
    # The reviewer's double click: the agent had already done the first stop, but its
    # report that the broadcast ended had not come yet (review of issue 17, M2).
    broadcast = await _running(gql, rt, world)
    owner = gql.as_(world.tokens["owner"])
    first = (await owner.ok(CANCEL, id=broadcast))["cancelBroadcast"]
    async with rt.db.transaction() as s:
        command = await s.get(Command, uuid.UUID(first["id"]))
        assert command is not None
        command.status = CommandStatus.SUCCEEDED
    second = (await owner.ok(CANCEL, id=broadcast))["cancelBroadcast"]
    assert second["id"] == first["id"]
    # A stop that failed is no stop: the next one is a new command.
    async with rt.db.transaction() as s:
        command = await s.get(Command, uuid.UUID(first["id"]))
        assert command is not None
        command.status = CommandStatus.FAILED
    third = (await owner.ok(CANCEL, id=broadcast))["cancelBroadcast"]
    assert third["id"] != first["id"]


async def test_two_stops_at_once_make_one_command(gql, rt, world):
    broadcast = await _running(gql, rt, world)
    owner = gql.as_(world.tokens["owner"])
    both = await asyncio.gather(*(owner.ok(CANCEL, id=broadcast) for _ in range(2)))
    assert len({b["cancelBroadcast"]["id"] for b in both}) == 1
    async with rt.db.reading() as s:
        entries = list(
            await s.scalars(select(AuditLog).where(AuditLog.action == "broadcast.cancel"))
        )
    assert len(entries) == 1

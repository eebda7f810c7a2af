"""The tenant's language reaches its agent (issue 16, point 2: the agent's own trigger-call
line speaks it): pushed by updateSettings when the platform admin changes it, and in
every heartbeat's answer, which the real agent code follows (the agent's Server and
cache against this app over ASGI)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import select, update

from api.models import Command, CommandStatus, License
from api.services import agents
from api.services.agents import Agent
from edge_agent.cache import LocalCache
from edge_agent.commands import Commands
from edge_agent.config import Enrolment
from edge_agent.pbx.port import Pbx
from edge_agent.server import Server as AgentServer
from schema.platform.types import gid

UPDATE = """mutation($id: ID!, $input: TenantUpdateInput!) {
  updateTenant(id: $id, input: $input) { id language } }"""
HEALTH = """mutation($input: HealthInput!) {
  reportHealth(input: $input) { pollIntervalSeconds language } }"""


def _health(rt: Any) -> dict[str, Any]:
    return {
        "agentVersion": "1.0.0",
        "pbxReachable": True,
        "jobserviceReachable": True,
        "alarmServiceOk": True,
        "participantCount": 3,
        "reportedAt": rt.clock().isoformat(),
    }


async def _language_commands(rt: Any, world: Any) -> list[dict[str, Any]]:
    async with rt.db.reading() as s:
        rows = await s.scalars(
            select(Command).where(
                Command.tenant_id == world.a.tenant_id, Command.type == "updateSettings"
            )
        )
        return [c.payload for c in rows if c.status is CommandStatus.PENDING]


async def _change(gql: Any, world: Any, language: str) -> None:
    answer = await gql.as_(world.tokens["platform"]).ok(
        UPDATE, id=str(gid(world.a.tenant_id)), input={"language": language}
    )
    assert answer["updateTenant"]["language"] == language


async def test_a_language_change_is_pushed_to_the_agent_once(gql, rt, world):
    await _change(gql, world, "EN")
    assert await _language_commands(rt, world) == [{"language": "en"}]
    await _change(gql, world, "EN")  # no change: nothing to push
    assert await _language_commands(rt, world) == [{"language": "en"}]
    delivered = await agents.take_open_commands(
        rt, Agent(world.a.installation_id, world.a.tenant_id), set()
    )
    assert [(d.command.type, d.command.payload) for d in delivered] == [
        ("updateSettings", {"language": "en"})
    ]


async def test_without_a_valid_license_the_language_still_changes(gql, rt, world):
    async with rt.db.transaction() as s:
        await s.execute(
            update(License)
            .where(License.tenant_id == world.a.tenant_id)
            .values(valid_until=rt.clock() - timedelta(days=1))
        )
    await _change(gql, world, "EN")  # no command (configuration is blocked), no error
    assert await _language_commands(rt, world) == []
    answer = await gql.as_(world.tokens["agent_a"]).ok(HEALTH, input=_health(rt))
    assert answer["reportHealth"]["language"] == "EN"  # the heartbeat brings it


class _NoPbx:
    pass


async def test_the_agent_follows_the_push_and_the_heartbeat(client, gql, rt, world, tmp_path):
    cache = LocalCache(tmp_path)
    server = AgentServer(Enrolment("https://testserver", "i", world.tokens["agent_a"]), False)
    server._client = client
    commands = Commands(cast(Pbx, _NoPbx()), cache, server)
    answer = await server.report_health(_health(rt))
    assert (answer.language, cache.follow(answer.poll_interval_seconds, answer.language)) == (
        "de",
        False,
    )
    await _change(gql, world, "EN")
    (payload,) = await _language_commands(rt, world)
    outcome = await commands.run("updateSettings", payload, {})
    assert outcome.ok and cache.language == "en"
    assert LocalCache(tmp_path).language == "en"  # saved
    # A command lost (expired, say): the heartbeat's answer brings the change back.
    await _change(gql, world, "DE")
    answer = await server.report_health(_health(rt))
    assert cache.follow(answer.poll_interval_seconds, answer.language) is True
    assert cache.language == "de"


async def test_the_agent_refuses_a_language_it_cannot_speak(tmp_path: Path) -> None:
    cache = LocalCache(tmp_path)
    commands = Commands(cast(Pbx, _NoPbx()), cache, cast(AgentServer, None))
    for bad in ("fr", "DE", 1, ""):
        outcome = await commands.run("updateSettings", {"language": bad}, {})
        assert not outcome.ok and outcome.error and "language" in outcome.error
    cache.update_settings({"language": "xx", "pollIntervalSeconds": 30})
    assert (cache.language, cache.poll_interval) == ("de", 30)
    outcome = await commands.run("updateSettings", {"language": "en"}, {})
    assert outcome.ok and outcome.result["settings"]["language"] == "en"

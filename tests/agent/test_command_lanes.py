"""Bounds and lanes of the agent's commands (issue 14, point 1, review point 6): an alarm
trigger runs on a lane of its own and never waits behind a slow PBX command; a command's
time limit follows the PBX script timeout; a stopped command still reports the directory;
a directory read on a replay or resend is bounded too."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

from edge_agent.channel import CommandChannel
from edge_agent.config import Enrolment
from edge_agent.ledger import Outcome
from edge_agent.pbx.sim import DEFAULT_ADMIN_PASSWORD, DEFAULT_ADMIN_USER, DEFAULT_HOST
from edge_agent.service import OWN_LANE, AgentService, command_timeout, directory_timeout
from edge_agent.settings import AgentSettings
from tests.agent.test_outcomes import Central, central, service  # noqa: F401 - fixtures

VERIFY = {
    "id": "verify",
    "type": "verifyPbxCredentials",
    "payload": {"host": DEFAULT_HOST, "adminUser": DEFAULT_ADMIN_USER},
    "secrets": {"adminPassword": DEFAULT_ADMIN_PASSWORD},
}


async def test_an_alarm_trigger_does_not_wait_behind_a_slow_pbx_command(tmp_path: Path) -> None:
    async def server(ws: ServerConnection) -> None:
        assert json.loads(await ws.recv())["type"] == "connection_init"
        await ws.send(json.dumps({"type": "connection_ack"}))
        async for raw in ws:
            message = json.loads(raw)
            if message.get("type") != "subscribe":
                continue
            for command_id, kind in (("slow", "syncDirectory"), ("alarm", "triggerBroadcast")):
                command = {"id": command_id, "type": kind, "payload": {}, "secrets": {}}
                data = {"data": {"agentCommands": command}}
                await ws.send(json.dumps({"id": message["id"], "type": "next", "payload": data}))

    release = asyncio.Event()
    alarm_ran = asyncio.Event()

    async def sink(command: dict[str, Any]) -> None:
        if command["id"] == "slow":
            await release.wait()  # a PBX that takes its time
        else:
            alarm_ran.set()

    async with serve(server, "127.0.0.1", 0) as running:
        port = running.sockets[0].getsockname()[1]
        enrolment = Enrolment(f"http://127.0.0.1:{port}", "installation", "token")
        settings = AgentSettings(pbx="sim", dialer="sim", state_dir=tmp_path)
        channel = CommandChannel(enrolment, settings, sink, own_lane=OWN_LANE)
        task = asyncio.create_task(channel.run_forever())
        try:
            await asyncio.wait_for(alarm_ran.wait(), 10)  # while "slow" still runs
            assert not release.is_set()
        finally:
            release.set()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def test_the_time_limit_follows_the_pbx_script_timeout(tmp_path: Path) -> None:
    slow = AgentSettings(pbx="sim", dialer="sim", state_dir=tmp_path, swyx_timeout_seconds=300)
    assert command_timeout(slow) >= 8 * 300
    assert directory_timeout(slow) >= 2 * 300
    default = AgentSettings(pbx="sim", dialer="sim", state_dir=tmp_path)
    assert 8 * 60 <= command_timeout(default) < 15 * 60  # below the server's expiry


async def test_a_stopped_command_still_reports_the_directory(
    service: AgentService,  # noqa: F811 - the fixture
    central: Central,  # noqa: F811 - the fixture
) -> None:
    await service.handle(VERIFY)  # signed in: the directory can be read
    service.command_timeout = 0.2

    async def hangs(payload: dict[str, Any], secrets: dict[str, Any]) -> dict[str, Any]:
        await asyncio.Event().wait()
        return {}

    service.commands.handlers["createGroup"] = hangs
    async with asyncio.timeout(20):
        await service.handle({"id": "stuck", "type": "createGroup", "payload": {"name": "A"}})
    (sent,) = central.sent("stuck")
    assert sent["ok"] is False and "did not finish within 0 seconds" in sent["error"]
    assert "directory" in sent["result"]


async def test_a_replay_does_not_wait_for_a_directory_that_never_comes(
    service: AgentService,  # noqa: F811 - the fixture
    central: Central,  # noqa: F811 - the fixture
) -> None:
    service.directory_timeout = 0.2
    service.ledger.record("old", Outcome(True, {"groupId": "7", "directory": {}}, None))

    async def hangs() -> dict[str, Any]:
        await asyncio.Event().wait()
        return {}

    service.commands.fresh_directory = hangs  # type: ignore[method-assign]
    async with asyncio.timeout(20):
        await service.handle({"id": "old", "type": "createGroup", "payload": {"name": "A"}})
        service.outcomes.kept["old"] = service.outcomes.kept.get("old") or _kept()
        await service.outcomes.resend()  # the resend's directory read is bounded as well
    assert [v["ok"] for v in central.sent("old")] == [True, True]


def _kept() -> Any:
    from datetime import UTC, datetime, timedelta

    from edge_agent.outcomes import _Kept

    outcome = Outcome(True, {"groupId": "7", "directory": {}}, None)
    return _Kept(outcome, datetime.now(UTC) + timedelta(hours=1))

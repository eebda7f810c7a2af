"""A command's age in one clock, the server's (issue 14, point 11, review point 2).

The server sends its clock with each command; the agent places the command's
creation and expiry on its own clock by that age, so skew between the two
clocks neither ages nor rejuvenates a command. An older server without the
field still delivers its commands.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

from edge_agent.channel import CommandChannel
from edge_agent.command_clock import RECEIVED_AT, local_times
from edge_agent.config import Enrolment
from edge_agent.settings import AgentSettings

RECEIVED = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


def _command(created: datetime, server_now: datetime | None) -> dict[str, Any]:
    command: dict[str, Any] = {
        "id": "c1",
        "createdAt": created.isoformat(),
        "expiresAt": (created + timedelta(minutes=15)).isoformat(),
        RECEIVED_AT: RECEIVED,
    }
    if server_now is not None:
        command["serverTime"] = server_now.isoformat()
    return command


def test_a_server_clock_behind_ours_does_not_age_the_command() -> None:
    server_now = RECEIVED - timedelta(minutes=1)
    times = local_times(_command(server_now - timedelta(seconds=5), server_now))
    assert times.created_at == RECEIVED - timedelta(seconds=5)
    assert times.expires_at == RECEIVED + timedelta(minutes=15, seconds=-5)


def test_a_server_clock_ahead_of_ours_does_not_hide_the_commands_age() -> None:
    server_now = RECEIVED + timedelta(minutes=1)
    times = local_times(_command(server_now - timedelta(seconds=40), server_now))
    assert times.created_at == RECEIVED - timedelta(seconds=40)


def test_without_the_servers_clock_the_times_are_taken_as_sent() -> None:
    created = RECEIVED - timedelta(seconds=7)
    assert local_times(_command(created, None)).created_at == created
    assert local_times({"id": "c2"}).created_at is None


async def test_the_channel_stamps_each_command_and_falls_back_for_an_older_server(
    tmp_path: Path,
) -> None:
    queries: list[str] = []

    async def older_server(ws: ServerConnection) -> None:
        assert json.loads(await ws.recv())["type"] == "connection_init"
        await ws.send(json.dumps({"type": "connection_ack"}))
        async for raw in ws:
            message = json.loads(raw)
            if message.get("type") != "subscribe":
                continue
            query = message["payload"]["query"]
            queries.append(query)
            if "serverTime" in query:  # as a server from before the field answers
                error = [{"message": "Cannot query field 'serverTime' on type 'AgentCommand'."}]
                await ws.send(json.dumps({"id": message["id"], "type": "error", "payload": error}))
                continue
            command = {"id": "c1", "type": "noop", "payload": {}, "secrets": {}}
            data = {"data": {"agentCommands": command}}
            await ws.send(json.dumps({"id": message["id"], "type": "next", "payload": data}))

    got: list[dict[str, Any]] = []
    done = asyncio.Event()

    async def sink(command: dict[str, Any]) -> None:
        got.append(command)
        done.set()

    async with serve(older_server, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        enrolment = Enrolment(f"http://127.0.0.1:{port}", "installation", "token")
        settings = AgentSettings(pbx="sim", dialer="sim", state_dir=tmp_path)
        channel = CommandChannel(enrolment, settings, sink)
        before = datetime.now(UTC)
        task = asyncio.create_task(channel.run_forever())
        try:
            await asyncio.wait_for(done.wait(), 10)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert [c["id"] for c in got] == ["c1"]
    assert before <= got[0][RECEIVED_AT] <= datetime.now(UTC)
    assert ["serverTime" in q for q in queries] == [True, False]
